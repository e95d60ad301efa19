"""First-level GLM on masked voxels, with a canonical HRF or one HRF per parcel.

With a canonical HRF this is exactly nilearn's path (``make_first_level_design_matrix`` +
``run_glm`` + ``compute_contrast``, the same as ``FirstLevelModel``). With an
:class:`~bids_hrf.hrf.base.HRFEstimate`, each parcel gets its own design, built by
convolving the events with that parcel's HRF, and is fitted on its own voxels.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from nilearn.glm.contrasts import compute_contrast as nl_compute_contrast
from nilearn.glm.first_level import mean_scaling, run_glm
from nilearn.glm.regression import SimpleRegressionResults

from bids_hrf.glm.contrasts import ContrastResult, ContrastSpec, contrast_matrix
from bids_hrf.glm.design import check_events, conditions_of, make_design
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.basis import nilearn_hrf_model, sampled_hrf_model

CANONICAL = "canonical"


@dataclass
class FirstLevelFit:
    """A fitted first-level GLM (one run).

    Attributes
    ----------
    design_matrices : dict of str to pandas.DataFrame
        ``"canonical"`` and/or one entry per parcel name; rows are the kept scans.
    voxel_index : dict of str to ndarray
        Indices (into the voxels of ``Y``) fitted with each design.
    labels, results : dict of str to ...
        nilearn's ``run_glm`` output (AR-coefficient labels per voxel, regression results
        per label) for each design.
    conditions : list of str
        Task conditions (design columns modelled by the HRF).
    n_voxels : int
    r_square : ndarray, shape (n_voxels,)
        (Pseudo-)R^2 of each voxel's model (whitened for AR models, as nilearn).
    hrf_source : dict of str to str
        For each parcel, ``"estimate"`` or ``"canonical"`` (fallback) HRF.
    scaling_mean : ndarray or None
        Per-voxel mean removed by the signal scaling.
    """

    design_matrices: dict[str, pd.DataFrame]
    voxel_index: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    results: dict[str, dict]
    conditions: list[str]
    n_voxels: int
    r_square: np.ndarray
    hrf_source: dict[str, str] = field(default_factory=dict)
    scaling_mean: np.ndarray | None = None
    sample_mask: np.ndarray | None = None

    @property
    def columns(self) -> list[str]:
        """Design-matrix columns (the same for every design)."""
        return list(next(iter(self.design_matrices.values())).columns)

    def compute_contrast(
        self,
        contrast: ContrastSpec | str | Sequence[str] | np.ndarray,
        stat_type: str | None = None,
    ) -> ContrastResult:
        """Compute a t or F contrast on every voxel.

        Parameters
        ----------
        contrast : ContrastSpec, str, list of str or ndarray
            A contrast spec, an expression over the design columns (t), a list of
            expressions (F), or weights over the columns: shape (n_columns,) (t) or
            (q, n_columns) (F).
        stat_type : {"t", "F"}, optional
            Defaults to the spec's type, else "t" for one row and "F" for several.

        Returns
        -------
        ContrastResult
        """
        columns = self.columns
        if isinstance(contrast, np.ndarray):
            con = np.asarray(contrast, dtype=float)
            if con.shape[-1] != len(columns) or con.ndim > 2:
                raise ValueError(
                    f"Contrast weights have shape {con.shape}; expected ({len(columns)},) or "
                    f"(q, {len(columns)}) for the design columns {columns}"
                )
        else:
            con = contrast_matrix(contrast, columns)
        if stat_type is None:
            if isinstance(contrast, ContrastSpec):
                stat_type = contrast.stat_type
            else:
                stat_type = "F" if con.ndim == 2 and con.shape[0] > 1 else "t"
        if stat_type not in ("t", "F"):
            raise ValueError(f"stat_type must be 't' or 'F', got {stat_type!r}")
        if stat_type == "t" and con.ndim == 2:
            if con.shape[0] != 1:
                raise ValueError(f"A t contrast needs one row of weights, got {con.shape[0]}")
            con = con[0]
        dim = con.shape[0] if (stat_type == "F" and con.ndim == 2) else 1
        n = self.n_voxels
        effect = np.zeros((dim, n)) if stat_type == "F" else np.zeros(n)
        variance, dof = np.zeros(n), np.full(n, np.nan)
        for key, idx in self.voxel_index.items():
            if idx.size == 0:
                continue
            c = nl_compute_contrast(self.labels[key], self.results[key], con, stat_type)
            effect[..., idx] = c.effect
            variance[idx] = c.variance
            dof[idx] = c.dof
        return ContrastResult.from_effects(effect, variance, dof, stat_type, dim)


def _sample_mask_indices(sample_mask: np.ndarray | None, n_scans: int) -> np.ndarray | None:
    if sample_mask is None:
        return None
    mask = np.asarray(sample_mask)
    if mask.dtype == bool:
        if mask.size != n_scans:
            raise ValueError(
                f"Boolean sample_mask has {mask.size} entries but there are {n_scans} scans"
            )
        mask = np.flatnonzero(mask)
    if mask.ndim != 1 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError("sample_mask must be a 1-D array of kept scan indices (or booleans)")
    if mask.size and (mask.min() < 0 or mask.max() >= n_scans):
        raise ValueError(f"sample_mask indices must be in [0, {n_scans - 1}]")
    if np.unique(mask).size != mask.size:
        raise ValueError("sample_mask has repeated scan indices")
    return mask


def _fit_design(Y, design, noise_model, bins, n_jobs, random_state, minimize_memory):
    labels, results = run_glm(
        Y, design.to_numpy(), noise_model=noise_model, bins=bins, n_jobs=n_jobs,
        random_state=random_state,
    )
    r2 = np.zeros(Y.shape[1])
    for lab, res in results.items():
        r2[labels == lab] = np.nan_to_num(np.ravel(res.r_square))
    if minimize_memory:
        results = {k: SimpleRegressionResults(v) for k, v in results.items()}
    return labels, results, r2


def fit_first_level(
    Y: np.ndarray,
    frame_times: np.ndarray,
    events: pd.DataFrame,
    *,
    hrf: str | HRFEstimate = "spm",
    voxel_parcels: np.ndarray | None = None,
    parcel_names: Mapping[int, str] | None = None,
    confounds: pd.DataFrame | None = None,
    sample_mask: np.ndarray | None = None,
    drift_model: str | None = "cosine",
    high_pass: float = 0.01,
    drift_order: int = 1,
    noise_model: str = "ar1",
    signal_scaling: bool | int | tuple = 0,
    canonical_model: str = "spm",
    fir_delays: Sequence[int] | None = None,
    min_onset: float = -24,
    bins: int = 100,
    minimize_memory: bool = True,
    random_state: int | None = None,
    n_jobs: int = 1,
) -> FirstLevelFit:
    """Fit a first-level GLM to the voxel time series of one run.

    Parameters
    ----------
    Y : ndarray, shape (n_scans, n_voxels)
        BOLD time series in masked-voxel space (all scans of the run). float32 data are
        fitted in float32 like ``FirstLevelModel`` does; other types become float64.
    frame_times : ndarray, shape (n_scans,)
        Acquisition time of each scan in seconds.
    events : pandas.DataFrame
        BIDS events of the run (``onset``, ``duration``, ``trial_type``).
    hrf : str or HRFEstimate, default="spm"
        A preset name (``"spm"``, ``"glover + derivative"``..., or ``"fir"`` with
        ``fir_delays``): one design for all voxels, exactly nilearn's path. Or an
        HRFEstimate whose columns are parcels: each parcel's voxels are fitted with a
        design convolved with that parcel's HRF (via
        :func:`~bids_hrf.hrf.basis.sampled_hrf_model`, kernel normalised to unit sum).
        Voxels outside any parcel of the estimate (label not in ``parcel_names``, label
        ``0``) use the canonical design of ``canonical_model``; so do parcels whose HRF is
        missing from the estimate or invalid (with a warning).
    voxel_parcels : ndarray of int, shape (n_voxels,), optional
        Parcel label of each voxel; required with an HRFEstimate.
    parcel_names : mapping of int to str, optional
        Name (HRFEstimate column) of each label; default ``str(label)``.
    confounds : pandas.DataFrame, optional
        Nuisance regressors, one row per scan of the run.
    sample_mask : ndarray, optional
        Indices (or a boolean mask) of the scans to keep (dummy scans, scrubbing). As in
        nilearn, the design is built on all scans and its rows are then selected, as are
        the rows of ``Y``.
    drift_model, high_pass, drift_order, fir_delays, min_onset
        Passed to :func:`~bids_hrf.glm.design.make_design`.
    noise_model : str, default="ar1"
        ``"ols"`` or ``"arN"`` (nilearn's ``run_glm``).
    signal_scaling : False, 0, 1 or (0, 1), default=0
        As nilearn's ``FirstLevelModel``: ``0`` scales each voxel to percent signal change
        of its mean over the kept scans (FirstLevelModel's default), ``False`` fits the
        data as given.
    canonical_model : str, default="spm"
        Preset for voxels without a parcel HRF.
    bins : int, default=100
        AR coefficient bins (nilearn's ``run_glm``).
    minimize_memory : bool, default=True
        Keep light regression results (no residuals), as nilearn's default.
    random_state : int, optional
        For AR(N>1) clustering.
    n_jobs : int, default=1
        Passed to ``run_glm``.

    Returns
    -------
    FirstLevelFit
    """
    Y = np.asarray(Y)
    if Y.dtype not in (np.float32, np.float64):
        Y = Y.astype(float)
    # float32 data (NIfTI BOLD) stay float32, as in FirstLevelModel: the AR(1) coefficients
    # are binned to 1/bins, and a voxel at a bin edge would otherwise change bin.
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise ValueError(f"Y must have shape (n_scans, n_voxels), got {Y.shape}")
    frame_times = np.asarray(frame_times, dtype=float).ravel()
    n_scans, n_voxels = Y.shape
    if frame_times.size != n_scans:
        raise ValueError(f"frame_times has {frame_times.size} entries but Y has {n_scans} scans")
    if not np.all(np.isfinite(Y)):
        raise ValueError("Y contains NaN or inf values; mask or fill them before the GLM")
    keep = _sample_mask_indices(sample_mask, n_scans)
    if keep is not None:
        Y = Y[keep]
    if signal_scaling is not False:
        if signal_scaling not in (0, 1, (0, 1)):
            raise ValueError(f"signal_scaling must be False, 0, 1 or (0, 1), got {signal_scaling}")
        Y, scaling_mean = mean_scaling(Y, signal_scaling)
    else:
        scaling_mean = None
    ev = check_events(events, frame_times)
    conditions = conditions_of(ev)
    design_kw = dict(
        confounds=confounds, drift_model=drift_model, high_pass=high_pass,
        drift_order=drift_order, fir_delays=fir_delays, min_onset=min_onset,
    )
    glm_kw = dict(
        noise_model=noise_model, bins=bins, n_jobs=n_jobs, random_state=random_state,
        minimize_memory=minimize_memory,
    )

    def build(model) -> pd.DataFrame:
        design = make_design(frame_times, ev, model, **design_kw)
        return design.iloc[keep] if keep is not None else design

    designs: dict[str, pd.DataFrame] = {}
    index: dict[str, np.ndarray] = {}
    hrf_source: dict[str, str] = {}
    if isinstance(hrf, str):
        designs[CANONICAL] = build(nilearn_hrf_model(hrf))
        index[CANONICAL] = np.arange(n_voxels)
    elif isinstance(hrf, HRFEstimate):
        if voxel_parcels is None:
            raise ValueError("fit_first_level with an HRFEstimate needs voxel_parcels")
        vp = np.asarray(voxel_parcels).ravel()
        if vp.dtype.kind == "f":
            if not np.all(np.isfinite(vp)) or np.any(vp != np.round(vp)):
                raise ValueError("voxel_parcels must hold integer parcel labels")
            vp = vp.astype(int)
        if vp.size != n_voxels:
            raise ValueError(f"voxel_parcels has {vp.size} entries but Y has {n_voxels} voxels")
        names = (
            {int(k): str(v) for k, v in parcel_names.items()}
            if parcel_names is not None else None
        )
        canonical_voxels = []
        for lab in np.unique(vp):
            idx = np.flatnonzero(vp == lab)
            name = names.get(int(lab)) if names is not None else str(lab)
            if name is None or (names is None and name not in hrf.labels) or int(lab) == 0:
                canonical_voxels.append(idx)
                continue
            if name not in hrf.labels:
                warnings.warn(
                    f"parcel {name!r} has no HRF in the {hrf.method} estimate; its voxels use "
                    f"the canonical {canonical_model!r} HRF", UserWarning, stacklevel=2,
                )
                hrf_source[name] = "canonical"
                canonical_voxels.append(idx)
                continue
            try:
                kernel = sampled_hrf_model(hrf.time, hrf.hrf_for(name), name="parcel_hrf")
            except ValueError as e:
                warnings.warn(
                    f"parcel {name!r}: HRF unusable ({e}); its voxels use the canonical "
                    f"{canonical_model!r} HRF", UserWarning, stacklevel=2,
                )
                hrf_source[name] = "canonical"
                canonical_voxels.append(idx)
                continue
            designs[name] = build(kernel)
            index[name] = idx
            hrf_source[name] = "estimate"
        if canonical_voxels:
            designs[CANONICAL] = build(nilearn_hrf_model(canonical_model))
            index[CANONICAL] = np.sort(np.concatenate(canonical_voxels))
    else:
        raise ValueError(f"hrf must be a model name or an HRFEstimate, got {type(hrf).__name__}")

    columns = None
    labels, results = {}, {}
    r_square = np.zeros(n_voxels)
    for key, design in designs.items():
        if columns is None:
            columns = list(design.columns)
        elif list(design.columns) != columns:
            raise ValueError(
                f"design of {key!r} has columns {list(design.columns)}, expected {columns}"
            )
        idx = index[key]
        labels[key], results[key], r_square[idx] = _fit_design(Y[:, idx], design, **glm_kw)
    return FirstLevelFit(
        design_matrices=designs, voxel_index=index, labels=labels, results=results,
        conditions=conditions, n_voxels=n_voxels, r_square=r_square, hrf_source=hrf_source,
        scaling_mean=scaling_mean, sample_mask=keep,
    )
