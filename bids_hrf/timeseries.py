"""Voxel and parcel time series of one BOLD run, in nilearn's masked-voxel order.

* :func:`masked_voxel_data` loads the run inside its brain mask (optionally smoothed), after
  dropping voxels with NaN/inf values or no variance from the mask (the effective mask is
  returned);
* :func:`voxel_parcels` gives the parcel label of each masked voxel, in the same order, so
  that voxel maps can be put back in the brain with :func:`nilearn.masking.unmask`;
* :func:`extract_parcel_timeseries` averages the voxels of each parcel and cleans the
  averages with :func:`nilearn.signal.clean` (confounds, censoring, high-pass filter).
"""

from __future__ import annotations

import warnings
import zlib
from typing import NamedTuple

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import sparse

from bids_hrf.atlas.resample import _image
from bids_hrf.errors import DataError

#: Fewest volumes a run must have to be analysed.
MIN_VOLUMES = 10


class VoxelData(NamedTuple):
    """Masked voxel time series of one run.

    Attributes
    ----------
    Y : ndarray, shape (n_scans, n_voxels), float32
        Time series of the voxels of the effective mask, in :func:`nilearn.masking.apply_mask`
        order (C order of the voxel indices).
    voxel_ijk : ndarray, shape (n_voxels, 3), int
        Array indices of each voxel.
    mask_img : nibabel.Nifti1Image
        The effective mask: the brain mask without NaN/inf or constant voxels.
    """

    Y: np.ndarray
    voxel_ijk: np.ndarray
    mask_img: nib.Nifti1Image


CHUNK_BYTES = 64 * 1024 ** 2


def masked_rows(bold, mask: np.ndarray, name: str = "the BOLD run") -> np.ndarray:
    """Voxel time series of ``bold`` inside the boolean ``mask``, read in chunks of volumes.

    Returns ``Y`` (float32, shape (n_scans, n_voxels), voxels in the C order of ``mask``,
    as :func:`nilearn.masking.apply_mask`; NaN/inf kept). A file-backed image is read
    :data:`CHUNK_BYTES` of volumes at a time through one open file handle, so the whole
    4D array never sits in memory (peak ~ Y + one chunk instead of ~2x the 4D array).

    Raises
    ------
    bids_hrf.errors.DataError
        If the data cannot be decompressed or read (truncated or corrupted file).
    """
    n_scans = int(bold.shape[3])
    filename = bold.get_filename() if hasattr(bold, "get_filename") else None
    proxy = bold.dataobj
    if filename and nib.is_proxy(proxy):
        proxy = nib.load(filename, keep_file_open=True).dataobj
    step = max(1, int(CHUNK_BYTES // max(1, mask.size * 4)))
    Y = np.empty((n_scans, int(mask.sum())), dtype=np.float32)
    try:
        for t0 in range(0, n_scans, step):
            chunk = np.asarray(proxy[..., t0:t0 + step], dtype=np.float32)
            Y[t0:t0 + step] = chunk.reshape(mask.shape + (-1,))[mask].T
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise DataError(f"{name} cannot be read ({type(exc).__name__}: {exc})",
                        fix="the file is truncated or corrupted: restore it from the "
                            "fMRIPrep output", path=name) from exc
    finally:
        fileobj = getattr(proxy, "_opener", None)
        if fileobj is not None and hasattr(fileobj, "close"):
            fileobj.close()
    return Y


def _mask_array(mask_img, shape3: tuple[int, ...], affine: np.ndarray, bold_name: str):
    if mask_img is None:
        return np.ones(shape3, dtype=bool), "the whole field of view"
    mimg, mname = _image(mask_img, "brain mask")
    if tuple(mimg.shape[:3]) != shape3 or not np.allclose(mimg.affine, affine, atol=1e-3):
        raise DataError(f"brain mask {mname} (shape {tuple(mimg.shape[:3])}) is not on the "
                        f"grid of {bold_name} (shape {shape3})",
                        fix="use the brain mask fMRIPrep wrote for this run", path=mname)
    mask = np.asanyarray(mimg.dataobj).reshape(shape3) > 0
    if not mask.any():
        raise DataError(f"brain mask {mname} is empty", fix="check the mask file", path=mname)
    return mask, mname


def masked_voxel_data(bold_img, mask_img=None, smoothing_fwhm: float | None = None) -> VoxelData:
    """Load the voxel time series of a run inside its brain mask.

    Voxels of the mask whose time series has NaN/inf values or zero variance are dropped
    from the mask with a warning naming their number and the file.

    Parameters
    ----------
    bold_img : path or nibabel image
        4D BOLD run.
    mask_img : path or nibabel image, optional
        Brain mask on the same grid (whole field of view when ``None``).
    smoothing_fwhm : float, optional
        Full width at half maximum (mm) of a Gaussian smoothing applied to the volumes
        before masking (:func:`nilearn.image.smooth_img`; non-finite values set to 0).

    Returns
    -------
    VoxelData
        ``(Y, voxel_ijk, mask_img)``; ``Y`` is float32 of shape (n_scans, n_voxels).

    Raises
    ------
    bids_hrf.errors.DataError
        If the BOLD image is not 4D, has fewer than :data:`MIN_VOLUMES` volumes, is not on
        the mask's grid, or has no usable voxel in the mask.
    """
    bold, bold_name = _image(bold_img, "BOLD run")
    if len(bold.shape) != 4:
        raise DataError(f"BOLD run {bold_name} is {len(bold.shape)}D (shape {bold.shape}); a "
                        "4D time series is needed", fix="give the preprocessed 4D BOLD file",
                        path=bold_name)
    n_scans = int(bold.shape[3])
    if n_scans < MIN_VOLUMES:
        raise DataError(f"BOLD run {bold_name} has {n_scans} volumes; at least {MIN_VOLUMES} "
                        "are needed", fix="exclude this run", path=bold_name)
    shape3 = tuple(int(s) for s in bold.shape[:3])
    mask, _ = _mask_array(mask_img, shape3, bold.affine, bold_name)
    Y = masked_rows(bold, mask, bold_name)  # apply_mask order: C order of the mask
    finite = np.all(np.isfinite(Y), axis=0)
    varying = np.zeros_like(finite)
    varying[finite] = np.ptp(Y[:, finite], axis=0) > 0
    good = finite & varying
    if not good.any():
        raise DataError(f"BOLD run {bold_name} has no voxel with finite, varying values in "
                        "the brain mask", fix="check the preprocessing of this run",
                        path=bold_name)
    if not good.all():
        where = bold_name if bold_name.startswith("the ") else f"BOLD run {bold_name}"
        warnings.warn(f"{where}: dropped {int((~finite).sum())} voxels with "
                      f"NaN/inf values and {int((finite & ~varying).sum())} constant voxels "
                      f"from the brain mask ({int(good.sum())} of {good.size} kept)",
                      UserWarning, stacklevel=2)
        ijk_all = np.argwhere(mask)
        mask = np.zeros(shape3, dtype=bool)
        mask[tuple(ijk_all[good].T)] = True
        Y = Y[:, good]
    if smoothing_fwhm:
        from nilearn.image import smooth_img

        data = np.asarray(bold.dataobj, dtype=np.float32)  # smoothing needs whole volumes
        smoothed = smooth_img(nib.Nifti1Image(data, bold.affine), smoothing_fwhm)
        del data
        Y = np.asarray(np.asanyarray(smoothed.dataobj)[mask].T, dtype=np.float32)
    mask_out = nib.Nifti1Image(mask.astype(np.uint8), bold.affine)
    return VoxelData(np.ascontiguousarray(Y), np.argwhere(mask), mask_out)


def voxel_parcels(atlas_img, mask_img) -> np.ndarray:
    """Return the parcel label of each voxel of the mask, in nilearn's masked order.

    Parameters
    ----------
    atlas_img : path or nibabel image
        Integer label image on the BOLD grid (see :func:`bids_hrf.atlas.resample_atlas`).
    mask_img : path or nibabel image
        The (effective) brain mask on the same grid.

    Returns
    -------
    ndarray, shape (n_voxels,), int
        Label of each mask voxel (0 for voxels in no parcel), ordered as
        :func:`nilearn.masking.apply_mask` orders them.
    """
    atlas, aname = _image(atlas_img, "atlas")
    mimg, mname = _image(mask_img, "brain mask")
    if tuple(atlas.shape[:3]) != tuple(mimg.shape[:3]) or not np.allclose(
            atlas.affine, mimg.affine, atol=1e-3):
        raise DataError(f"atlas {aname} (shape {tuple(atlas.shape[:3])}) is not on the grid "
                        f"of brain mask {mname} (shape {tuple(mimg.shape[:3])})",
                        fix="resample the atlas to the BOLD grid first", path=aname)
    mask = np.asanyarray(mimg.dataobj).reshape(mimg.shape[:3]) > 0
    labels = np.rint(np.asanyarray(atlas.dataobj).reshape(atlas.shape[:3]))
    return labels[mask].astype(np.int64)


def parcel_means(Y: np.ndarray, parcels: np.ndarray, indices: list[int]) -> np.ndarray:
    """Average voxel time series within parcels.

    Parameters
    ----------
    Y : ndarray, shape (n_scans, n_voxels)
    parcels : ndarray, shape (n_voxels,)
        Parcel label of each voxel.
    indices : list of int
        Parcels to average, in output column order (each must have a voxel).

    Returns
    -------
    ndarray, shape (n_scans, len(indices)), float64
    """
    col = {int(p): j for j, p in enumerate(indices)}
    sel = np.flatnonzero(np.isin(parcels, indices))
    cols = np.fromiter((col[int(p)] for p in parcels[sel]), dtype=np.int64, count=sel.size)
    onehot = sparse.csr_matrix((np.ones(sel.size), (sel, cols)),
                               shape=(parcels.size, len(indices)))
    counts = np.asarray(onehot.sum(axis=0)).ravel()
    if np.any(counts == 0):
        raise ValueError("every parcel of `indices` needs at least one voxel")
    return np.asarray(onehot.T.dot(np.asarray(Y, dtype=np.float64).T).T) / counts


def cosine_basis(n_scans: int, tr: float, high_pass: float) -> np.ndarray:
    """Discrete cosine regressors below ``high_pass`` Hz (as in SPM and nilearn's drifts).

    Returns an array of shape (n_scans, K) without the constant term; K may be 0.
    """
    order = min(n_scans - 1, int(np.floor(2 * n_scans * high_pass * tr)))
    k = np.arange(1, order + 1)
    t = np.arange(n_scans) + 0.5
    return np.sqrt(2.0 / n_scans) * np.cos(np.pi / n_scans * np.outer(t, k))


def extract_parcel_timeseries(
    bold_img,
    atlas_img,
    labels: dict[int, str],
    mask_img,
    confounds: pd.DataFrame | None = None,
    sample_mask: np.ndarray | None = None,
    tr: float | None = None,
    high_pass: float | None = None,
    smoothing_fwhm: float | None = None,
    standardize: bool | str = False,
    detrend: bool = False,
    filter: str = "cosine",
    voxels: VoxelData | None = None,
) -> pd.DataFrame:
    """Mean time series of each parcel, cleaned of confounds.

    The voxels of each parcel inside the effective mask (see :func:`masked_voxel_data`) are
    averaged, then :func:`nilearn.signal.clean` regresses out ``confounds``, removes the
    censored volumes (``sample_mask``), high-pass filters and optionally detrends and
    standardises. Cleaning is linear, so without ``standardize`` the result equals the
    parcel mean of cleaned voxel time series.

    Parameters
    ----------
    bold_img : path or nibabel image
        4D BOLD run.
    atlas_img : path or nibabel image
        Integer labels on the BOLD grid.
    labels : dict of int to str
        Parcel index -> column name. Parcels of the image missing from ``labels`` are
        named by their index; parcels without a voxel in the effective mask are left out
        (with a warning).
    mask_img : path or nibabel image
        Brain mask on the BOLD grid.
    confounds : pandas.DataFrame, optional
        One row per volume of the run (all volumes).
    sample_mask : array of int, optional
        Indices of the volumes to keep.
    tr : float, optional
        Repetition time (s); required with ``high_pass``.
    high_pass : float, optional
        High-pass cutoff (Hz).
    smoothing_fwhm : float, optional
        Spatial smoothing (mm) before averaging.
    standardize : bool or str, default=False
        Passed to :func:`nilearn.signal.clean` (e.g. ``"zscore_sample"``, ``"psc"``).
    detrend : bool, default=False
        Remove a linear trend.
    filter : {"cosine", "butterworth"}, default="cosine"
        How ``high_pass`` is applied: discrete cosine regressors (as in the GLM's drift
        model) or a Butterworth filter.
    voxels : VoxelData, optional
        ``masked_voxel_data(bold_img, mask_img, smoothing_fwhm)`` already read by the
        caller (the BOLD is then not read again).

    Returns
    -------
    pandas.DataFrame
        Shape (n_kept_volumes, n_parcels); columns are parcel names (ordered by index),
        the index holds the kept volume numbers. ``attrs["parcel_index"]`` lists the
        parcel indices of the columns.
    """
    from nilearn.signal import clean

    if high_pass is not None and (tr is None or tr <= 0):
        raise ValueError("a high-pass filter needs the repetition time tr (> 0)")
    if voxels is None:
        voxels = masked_voxel_data(bold_img, mask_img, smoothing_fwhm=smoothing_fwhm)
    parcels = voxel_parcels(atlas_img, voxels.mask_img)
    n_scans = voxels.Y.shape[0]
    present = sorted(int(p) for p in np.unique(parcels[parcels > 0]))
    absent = [labels[i] for i in labels if i not in set(present)]
    if absent:
        warnings.warn(f"{len(absent)} parcels have no voxel in the effective brain mask and "
                      f"are left out: {', '.join(absent[:10])}", UserWarning, stacklevel=2)
    if not present:
        raise DataError("no parcel of the atlas has a voxel in the brain mask",
                        fix="check that the atlas is on the BOLD grid")
    means = parcel_means(voxels.Y, parcels, present)
    conf = None
    if confounds is not None:
        conf = np.asarray(confounds, dtype=float)
        if conf.ndim == 1:
            conf = conf[:, None]
        if conf.shape[0] != n_scans:
            raise ValueError(f"confounds have {conf.shape[0]} rows but the run has {n_scans} "
                             "volumes")
        if conf.shape[1] == 0:
            conf = None
    kept = np.arange(n_scans)
    if sample_mask is not None:
        sample_mask = np.asarray(sample_mask)
        if sample_mask.dtype == bool:
            sample_mask = np.flatnonzero(sample_mask)
        kept = kept[sample_mask]
    use_filter = filter if high_pass is not None else False
    if use_filter == "cosine":
        # Regress the discrete cosine basis together with the confounds: nilearn's own
        # cosine filter silently drops its regressors when a confound resembles one.
        basis = cosine_basis(n_scans, tr, high_pass)
        conf = basis if conf is None else np.column_stack([conf, basis])
        use_filter, high_pass = False, None
    cleaned = clean(means, detrend=detrend, standardize=standardize, sample_mask=sample_mask,
                    confounds=conf, filter=use_filter, high_pass=high_pass, t_r=tr)
    names = [labels.get(i, str(i)) for i in present]
    frame = pd.DataFrame(cleaned, columns=names, index=pd.Index(kept, name="volume"))
    frame.attrs["parcel_index"] = present
    return frame
