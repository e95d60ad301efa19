"""Second-level (group) statistics on subject maps, built on nilearn.

Subject maps are NIfTI images (voxel maps) or an array ``(n_subjects, n_elements)`` (e.g.
one value per parcel). The parametric model is nilearn's: ordinary least squares
(:func:`nilearn.glm.first_level.run_glm` with ``noise_model="ols"``) and
:func:`nilearn.glm.contrasts.compute_contrast`, exactly as
:class:`nilearn.glm.second_level.SecondLevelModel` does, so that t, F, z and p agree with
it; images are masked with the same :class:`~nilearn.maskers.NiftiMasker` setup.
Permutation inference wraps :func:`nilearn.glm.second_level.non_parametric_inference`
(images) or :func:`nilearn.mass_univariate.permuted_ols` (arrays).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.stats import norm

from bids_hrf.glm.group_design import (
    ContrastSpec,
    GroupModelSpec,
    build_group_design,
    group_contrasts,
    paired_design,
    parse_group_model,
)

__all__ = [
    "ContrastSpec",
    "GroupContrastResult",
    "GroupModelSpec",
    "build_group_design",
    "combine_sessions",
    "fit_second_level",
    "group_contrasts",
    "paired_design",
    "parse_group_model",
    "permutation_inference",
    "threshold_and_clusters",
]

_OUTPUTS = ("effect_size", "effect_variance", "stat", "z_score", "p_value")


@dataclass
class GroupContrastResult:
    """Maps of one group contrast.

    Each map is a NIfTI image when the inputs were images, else an array of shape
    ``(n_elements,)`` (t) or ``(n_rows, n_elements)`` for the effect of an F contrast.

    Attributes
    ----------
    name : str
        Contrast name.
    stat_type : str
        ``"t"`` or ``"F"``.
    weights : ndarray
        Contrast weights over the design columns.
    effect, variance, stat, z, p : ndarray or Nifti1Image
        Effect size, its variance, the t (or F) statistic, the z score and the p value
        (one-sided for t: large positive effects give small p, as in nilearn).
    dof : float
        Residual degrees of freedom.
    """

    name: str
    stat_type: str
    weights: np.ndarray
    effect: object
    variance: object
    stat: object
    z: object
    p: object
    dof: float


def _is_images(maps) -> bool:
    return not isinstance(maps, np.ndarray) and all(
        isinstance(m, nib.spatialimages.SpatialImage) for m in maps
    )


def _masker(maps, mask_img):
    """The masker SecondLevelModel would use for these images."""
    from nilearn.image import mean_img
    from nilearn.maskers import NiftiMasker

    masker = NiftiMasker(mask_img=mask_img, standardize=None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*Generation of a mask.*")
        masker.fit(mean_img(maps, copy_header=True) if mask_img is None else None)
    return masker


def _data(maps, design: pd.DataFrame, mask_img):
    """Masked data ``(n_subjects, n_elements)`` and the masker (None for arrays)."""
    if _is_images(maps):
        if mask_img is not None and not isinstance(mask_img, nib.spatialimages.SpatialImage):
            mask_img = nib.load(mask_img)
        masker = _masker(list(maps), mask_img)
        data = masker.transform(list(maps))
    else:
        data = np.asarray(maps, dtype=float)
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2:
            raise ValueError(
                f"maps must be a list of images or an array (n_subjects, n_elements), "
                f"got shape {data.shape}"
            )
        masker = None
    if data.shape[0] != design.shape[0]:
        raise ValueError(
            f"{data.shape[0]} subject maps but the design matrix has {design.shape[0]} rows"
        )
    if not np.all(np.isfinite(data)):
        raise ValueError("subject maps contain NaN or infinite values inside the mask; "
                         "mask them out (mask_img) or replace them")
    return data, masker


def _contrast_vector(con, design: pd.DataFrame) -> np.ndarray:
    from nilearn.glm.contrasts import expression_to_contrast_vector

    if isinstance(con, str):
        try:
            vec = expression_to_contrast_vector(con, list(design.columns))
        except Exception as err:  # pandas.eval raises many types
            raise ValueError(
                f"cannot read contrast {con!r} over design columns {list(design.columns)}: "
                f"{err}"
            ) from err
        return np.asarray(vec, dtype=float)
    vec = np.asarray(con, dtype=float)
    if vec.shape[-1] != design.shape[1] or vec.ndim > 2:
        raise ValueError(
            f"contrast of shape {vec.shape} does not match the {design.shape[1]} design "
            f"columns {list(design.columns)}"
        )
    if not np.any(vec):
        raise ValueError("contrast weights are all zero")
    return vec


def fit_second_level(
    maps,
    design: pd.DataFrame,
    mask_img=None,
    contrasts: dict[str, str | np.ndarray] | None = None,
) -> dict[str, GroupContrastResult]:
    """Fit an OLS group model and compute contrasts.

    Parameters
    ----------
    maps : list of Nifti1Image or ndarray, shape (n_subjects, n_elements)
        One effect map per design row.
    design : pandas.DataFrame
        Design matrix (from :func:`build_group_design` or nilearn's
        ``make_second_level_design_matrix``).
    mask_img : Nifti1Image or path, optional
        Mask for images (default: computed from the mean image, as nilearn does).
    contrasts : dict of str to (str or ndarray), optional
        Name -> formula over design columns (``"patient - control"``), vector (t) or 2-D
        matrix (F). Default: ``design.attrs["contrasts"]`` when present, else one t
        contrast per column.

    Returns
    -------
    dict of str to GroupContrastResult
        One result per contrast.
    """
    from nilearn.glm.contrasts import compute_contrast
    from nilearn.glm.first_level import run_glm

    if not isinstance(design, pd.DataFrame):
        raise ValueError("design must be a pandas DataFrame (one column per regressor)")
    if contrasts is None:
        contrasts = design.attrs.get("contrasts") or {
            c: np.eye(design.shape[1])[j] for j, c in enumerate(design.columns)
        }
    if not contrasts:
        raise ValueError("no contrast given")
    data, masker = _data(maps, design, mask_img)
    x = design.to_numpy(dtype=float)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise ValueError(f"design matrix is rank deficient (columns {list(design.columns)})")
    dof = x.shape[0] - x.shape[1]
    if dof < 1:
        raise ValueError(f"{x.shape[0]} maps for {x.shape[1]} design columns: no residual "
                         "degrees of freedom; add subjects or remove covariates")
    labels, results = run_glm(data, x, noise_model="ols")
    out = {}
    for name, con in contrasts.items():
        vec = _contrast_vector(con, design)
        stat_type = "F" if vec.ndim == 2 and vec.shape[0] > 1 else "t"
        if vec.ndim == 2 and vec.shape[0] == 1:
            vec = vec[0]
        contrast = compute_contrast(labels, results, vec, stat_type)
        maps_out = {}
        for key in _OUTPUTS:
            values = np.asarray(getattr(contrast, key)())
            if masker is not None:
                values = masker.inverse_transform(values)
            maps_out[key] = values
        out[name] = GroupContrastResult(
            name=name, stat_type=stat_type, weights=vec, effect=maps_out["effect_size"],
            variance=maps_out["effect_variance"], stat=maps_out["stat"],
            z=maps_out["z_score"], p=maps_out["p_value"], dof=float(dof),
        )
    return out


def permutation_inference(
    maps,
    design: pd.DataFrame,
    contrast,
    mask_img=None,
    n_perm: int = 1000,
    two_sided: bool = True,
    tfce: bool = False,
    threshold: float | None = None,
    random_state: int | None = 0,
    n_jobs: int = 1,
) -> dict:
    """Permutation (sign-flip or label-swap) inference with family-wise error control.

    Parameters
    ----------
    maps : list of Nifti1Image or ndarray, shape (n_subjects, n_elements)
        Subject maps.
    design : pandas.DataFrame
        Design matrix; columns with a non-zero weight form the tested variable, the others
        are confounds (nilearn's convention; an intercept is added unless tested or
        spanned by the confounds). For paired designs, a one-sample test of the
        difference maps (sign flipping) is the exact permutation scheme.
    contrast : str or ndarray
        A t contrast (formula or vector).
    mask_img : Nifti1Image, optional
        Mask for images.
    n_perm : int
        Number of permutations.
    two_sided : bool
        Two-sided test.
    tfce : bool
        Also compute threshold-free cluster enhancement p values (images only).
    threshold : float, optional
        Cluster-forming threshold as an uncorrected p value (e.g. 0.001; nilearn converts it
        to t) for cluster size and mass inference (images only).
    random_state : int, optional
        Seed.
    n_jobs : int
        Parallel jobs.

    Returns
    -------
    dict
        ``"logp_max_t"`` (-log10 FWE-corrected voxel p) and ``"t"``; with ``tfce``:
        ``"tfce"``, ``"logp_max_tfce"``; with ``threshold``: ``"size"``,
        ``"logp_max_size"``, ``"mass"``, ``"logp_max_mass"``. Images for image inputs,
        arrays of shape ``(n_elements,)`` otherwise.
    """
    if n_perm < 1:
        raise ValueError(f"n_perm must be a positive integer, got {n_perm}")
    if threshold is not None and not 0 < threshold < 1:
        raise ValueError(
            f"threshold is a cluster-forming p value in (0, 1), got {threshold}; e.g. 0.001"
        )
    vec = _contrast_vector(contrast, design)
    if vec.ndim != 1:
        raise ValueError("permutation inference needs a t contrast (one row of weights)")
    if _is_images(maps):
        from nilearn.glm.second_level import non_parametric_inference

        data, masker = _data(maps, design, mask_img)
        tested, confounds = _permuted_vars(design, vec)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            result = non_parametric_inference(
                list(maps), design_matrix=design, second_level_contrast=vec,
                mask=mask_img, n_perm=n_perm, two_sided_test=two_sided,
                random_state=random_state, n_jobs=n_jobs, threshold=threshold, tfce=tfce,
                model_intercept=not _spans_constant(confounds),
            )
        if not isinstance(result, dict):
            from nilearn.mass_univariate import permuted_ols

            t = permuted_ols(tested, data, confounding_vars=confounds, n_perm=0,
                             model_intercept=not _spans_constant(confounds))["t"]
            result = {"logp_max_t": result, "t": masker.inverse_transform(np.ravel(t))}
        return result
    if tfce or threshold is not None:
        raise ValueError("TFCE and cluster inference need images; give NIfTI maps")
    from nilearn.mass_univariate import permuted_ols

    data, _ = _data(maps, design, None)
    tested, confounds = _permuted_vars(design, vec)
    result = permuted_ols(
        tested, data, confounding_vars=confounds, n_perm=n_perm,
        model_intercept=not _spans_constant(confounds),
        two_sided_test=two_sided, random_state=random_state, n_jobs=n_jobs,
    )
    return {"logp_max_t": np.ravel(result["logp_max_t"]), "t": np.ravel(result["t"])}


def _permuted_vars(design: pd.DataFrame, vec: np.ndarray):
    """Tested variable and confounds, as non_parametric_inference builds them."""
    tested = design.to_numpy(dtype=float) @ vec
    others = [c for c, w in zip(design.columns, vec, strict=True) if w == 0]
    confounds = design[others].to_numpy(dtype=float) if others else None
    return tested[:, None], confounds


def _spans_constant(confounds: np.ndarray | None) -> bool:
    """Whether the confounds already model a constant (e.g. one column per subject)."""
    if confounds is None:
        return False
    ones = np.ones(confounds.shape[0])
    coef = np.linalg.lstsq(confounds, ones, rcond=None)[0]
    return bool(np.allclose(confounds @ coef, ones, atol=1e-8))


def _threshold_value(z: np.ndarray, alpha: float, height_control: str, two_sided: bool):
    from nilearn.glm import fdr_threshold

    alpha_ = alpha / 2 if two_sided else alpha
    stats = np.abs(z) if two_sided else z
    if height_control == "fpr":
        return float(norm.isf(alpha_))
    if height_control == "fdr":
        return float(fdr_threshold(stats, alpha_))
    return float(norm.isf(alpha_ / stats.size))


def threshold_and_clusters(
    z_img,
    alpha: float = 0.001,
    height_control: str = "fpr",
    cluster_threshold: int = 0,
    two_sided: bool = True,
    mask_img=None,
    min_distance: float = 8.0,
) -> tuple[object, pd.DataFrame]:
    """Threshold a z map and list its clusters (or surviving elements for arrays).

    Parameters
    ----------
    z_img : Nifti1Image or ndarray
        z map (image) or z values per element (e.g. per parcel).
    alpha : float
        False-positive rate (``"fpr"``), false discovery rate (``"fdr"``) or family-wise
        rate (``"bonferroni"``).
    height_control : {"fpr", "fdr", "bonferroni"}
        How the height threshold is chosen (nilearn's ``threshold_stats_img``).
    cluster_threshold : int
        Minimum cluster size in voxels (images only).
    two_sided : bool
        Threshold ``|z|``.
    mask_img : Nifti1Image, optional
        Voxels over which FDR/Bonferroni count (default: the non-zero voxels).
    min_distance : float
        Minimum distance between sub-peaks in mm (clusters table).

    Returns
    -------
    thresholded : Nifti1Image or ndarray
        z map with sub-threshold values set to 0.
    clusters : pandas.DataFrame
        nilearn's clusters table (images) or ``index, z`` of surviving elements (arrays);
        ``clusters.attrs["threshold"]`` holds the z threshold used (inf when nothing
        survives FDR).
    """
    if height_control not in ("fpr", "fdr", "bonferroni"):
        raise ValueError(
            f"height_control must be 'fpr', 'fdr' or 'bonferroni', got {height_control!r}"
        )
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if cluster_threshold < 0:
        raise ValueError(f"cluster_threshold must be >= 0, got {cluster_threshold}")
    if isinstance(z_img, nib.spatialimages.SpatialImage):
        from nilearn.glm import threshold_stats_img
        from nilearn.reporting import get_clusters_table

        thresholded, thr = threshold_stats_img(
            z_img, mask_img=mask_img, alpha=alpha, height_control=height_control,
            cluster_threshold=cluster_threshold, two_sided=two_sided,
        )
        if np.isfinite(thr) and np.any(np.asarray(thresholded.dataobj)):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=UserWarning)
                clusters = get_clusters_table(
                    z_img, stat_threshold=thr, cluster_threshold=cluster_threshold,
                    two_sided=two_sided, min_distance=min_distance,
                )
        else:
            clusters = pd.DataFrame(
                columns=["Cluster ID", "X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"]
            )
        clusters.attrs["threshold"] = float(thr)
        return thresholded, clusters
    z = np.asarray(z_img, dtype=float).ravel()
    if cluster_threshold:
        raise ValueError("cluster_threshold needs a z image, not an array")
    thr = _threshold_value(z[np.isfinite(z)], alpha, height_control, two_sided)
    keep = (np.abs(z) if two_sided else z) >= thr
    keep &= np.isfinite(z)
    thresholded = np.where(keep, z, 0.0)
    clusters = pd.DataFrame({"index": np.flatnonzero(keep), "z": z[keep]})
    clusters.attrs["threshold"] = thr
    return thresholded, clusters


def combine_sessions(effects, variances) -> tuple[object, object]:
    """Precision-weighted fixed-effects combination across sessions (or runs).

    ``effect = sum(e_k / v_k) / sum(1 / v_k)`` and ``variance = 1 / sum(1 / v_k)``.
    Elements with a non-positive or non-finite variance in a session are left out of that
    session; elements with no valid session get effect and variance 0 (images) or NaN
    (arrays).

    Parameters
    ----------
    effects : list of Nifti1Image or ndarray, shape (n_sessions, ...)
        Per-session effect maps.
    variances : same type and shape as ``effects``
        Per-session variance maps.

    Returns
    -------
    effect, variance : Nifti1Image or ndarray
        The combined effect and its variance.
    """
    images = _is_images(effects)
    if images:
        ref = effects[0]
        e = np.stack([np.asarray(img.dataobj, dtype=float) for img in effects])
        v = np.stack([np.asarray(img.dataobj, dtype=float) for img in variances])
    else:
        e, v = np.asarray(effects, dtype=float), np.asarray(variances, dtype=float)
    if e.shape != v.shape:
        raise ValueError(f"effects {e.shape} and variances {v.shape} differ in shape")
    if e.shape[0] < 1:
        raise ValueError("combine_sessions needs at least one session")
    valid = np.isfinite(v) & (v > 0) & np.isfinite(e)
    precision = np.where(valid, 1.0 / np.where(valid, v, 1.0), 0.0)
    total = precision.sum(axis=0)
    any_valid = total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        effect = (precision * np.where(valid, e, 0.0)).sum(axis=0) / total
        variance = 1.0 / total
    fill = 0.0 if images else np.nan
    effect = np.where(any_valid, effect, fill)
    variance = np.where(any_valid, variance, fill)
    if images:
        out = [nib.Nifti1Image(x, ref.affine, ref.header) for x in (effect, variance)]
        for img in out:
            img.set_data_dtype(np.float32)
        return out[0], out[1]
    return effect, variance
