"""Bring an atlas onto the BOLD grid and measure how much of each parcel the data cover."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_hrf.atlas.base import Atlas
from bids_hrf.errors import DataError

COVERAGE_COLUMNS = ["index", "name", "network", "n_voxels_atlas", "volume_mm3",
                    "n_voxels_bold", "n_voxels_in_mask", "coverage", "kept"]


def _image(img, what: str) -> tuple[nib.spatialimages.SpatialImage, str]:
    if isinstance(img, str | Path):
        path = Path(img)
        if not path.is_file():
            raise DataError(f"{what} {path} does not exist", path=str(path))
        try:
            return nib.load(str(path)), str(path)
        except Exception as exc:
            raise DataError(f"{what} {path} is not a readable NIfTI image ({exc})",
                            path=str(path)) from exc
    name = img.get_filename() if hasattr(img, "get_filename") else None
    return img, str(name) if name else f"the {what}"


def _voxel_volume(affine: np.ndarray) -> float:
    return float(abs(np.linalg.det(affine[:3, :3])))


def resample_atlas(
    atlas: Atlas,
    bold_ref_img,
    mask_img=None,
    min_voxels: int = 5,
    space: str | None = None,
) -> tuple[Atlas, pd.DataFrame]:
    """Resample an atlas to the BOLD grid (nearest neighbour) and drop tiny parcels.

    Parameters
    ----------
    atlas : Atlas
        The atlas, on any grid in the same space as the BOLD data.
    bold_ref_img : path or nibabel image
        The BOLD run (3D reference or 4D; only its grid is used).
    mask_img : path or nibabel image, optional
        Brain mask on the BOLD grid (all voxels when ``None``).
    min_voxels : int, default=5
        Parcels with fewer voxels inside the mask are dropped (with a warning naming them).
    space : str, optional
        Name of the BOLD data's space, quoted in the error when the atlas misses the mask.

    Returns
    -------
    atlas : Atlas
        Labels on the BOLD grid, 0 outside the mask and in dropped parcels; ``labels`` and
        ``networks`` list the kept parcels only.
    coverage : pandas.DataFrame
        One row per parcel of the input atlas: ``index``, ``name``, ``network``,
        ``n_voxels_atlas`` (the parcel's volume in the atlas, in BOLD-voxel units, i.e.
        atlas voxels x atlas voxel volume / BOLD voxel volume), ``volume_mm3``,
        ``n_voxels_bold`` (BOLD voxels after resampling), ``n_voxels_in_mask``,
        ``coverage`` (``n_voxels_in_mask / n_voxels_atlas``, clipped to [0, 1]: the
        fraction of the parcel the analysis sees) and ``kept``. ``coverage.attrs`` holds
        ``mask_coverage``, the fraction of mask voxels that fall in a parcel.

    Raises
    ------
    bids_hrf.errors.DataError
        If the atlas covers none of the brain mask (wrong space or field of view), or if
        every parcel has fewer than ``min_voxels`` voxels in the mask.
    """
    if not isinstance(min_voxels, int | np.integer) or min_voxels < 1:
        raise ValueError(f"min_voxels must be a positive integer, not {min_voxels!r}")
    ref, ref_name = _image(bold_ref_img, "BOLD reference")
    shape3 = tuple(int(s) for s in ref.shape[:3])
    mask = _brain_mask(mask_img, ref, ref_name)
    data = _labels_on_grid(atlas.img, ref.affine, shape3)
    table = _coverage_table(atlas, data, mask, _voxel_volume(ref.affine))
    table["kept"] = table["n_voxels_in_mask"] >= min_voxels
    _check_coverage(atlas, table, min_voxels, ref_name, space)
    kept_idx = [int(i) for i in table.loc[table["kept"], "index"]]
    data = np.where(mask & np.isin(data, kept_idx), data, 0).astype(np.int32)
    header = ref.header.copy() if isinstance(ref, nib.Nifti1Image) else None
    out = nib.Nifti1Image(data, ref.affine, header)
    out.header.set_data_dtype(np.int32)
    out.header.set_slope_inter(1, 0)
    networks = atlas.networks or {}
    return (Atlas(img=out, labels={i: atlas.labels[i] for i in kept_idx},
                  networks=({i: networks.get(i, "n/a") for i in kept_idx}
                            if atlas.networks is not None else None),
                  name=atlas.name, source=atlas.source), table)


def _brain_mask(mask_img, ref: nib.spatialimages.SpatialImage, ref_name: str) -> np.ndarray:
    """The boolean brain mask on the grid of ``ref`` (all voxels when ``mask_img`` is None)."""
    shape3 = tuple(int(s) for s in ref.shape[:3])
    if mask_img is None:
        return np.ones(shape3, dtype=bool)
    mimg, mname = _image(mask_img, "brain mask")
    if tuple(mimg.shape[:3]) != shape3 or not np.allclose(mimg.affine, ref.affine, atol=1e-3):
        raise DataError(f"brain mask {mname} (shape {mimg.shape[:3]}) is not on the grid "
                        f"of {ref_name} (shape {shape3})",
                        fix="use the brain mask fMRIPrep wrote for this run",
                        path=mname)
    return np.asanyarray(mimg.dataobj).reshape(shape3) > 0


def _labels_on_grid(img: nib.spatialimages.SpatialImage, affine: np.ndarray,
                    shape3: tuple[int, ...]) -> np.ndarray:
    """The atlas labels resampled (nearest neighbour) to a grid; 0 outside the atlas."""
    # lazy (start-up time): the CLI imports bids_hrf.atlas, not nilearn
    from nilearn.image import resample_img
    from nilearn.image.resampling import BoundingBoxError

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Rr]esampl.*")
            on_bold = resample_img(img, target_affine=affine, target_shape=shape3,
                                   interpolation="nearest", force_resample=True,
                                   copy_header=True)
        return np.rint(np.asanyarray(on_bold.dataobj)).astype(np.int32)
    except BoundingBoxError:  # the atlas lies entirely outside the BOLD field of view
        return np.zeros(shape3, dtype=np.int32)


def _coverage_table(atlas: Atlas, data: np.ndarray, mask: np.ndarray,
                    vol_bold: float) -> pd.DataFrame:
    """Size and coverage of each parcel of ``atlas`` (``data``: its labels on the BOLD grid).

    ``kept`` is left True; ``attrs["mask_coverage"]`` is the fraction of mask voxels in a
    parcel.
    """
    atlas_data = np.asanyarray(atlas.img.dataobj)
    n_max = int(max(atlas_data.max(), data.max(), max(atlas.labels, default=0))) + 1
    count_atlas = np.bincount(atlas_data.ravel().astype(np.int64), minlength=n_max)
    count_bold = np.bincount(data.ravel(), minlength=n_max)
    count_mask = np.bincount(data[mask], minlength=n_max)
    vol_atlas = _voxel_volume(atlas.img.affine)
    indices = sorted(atlas.labels)
    idx = np.asarray(indices, dtype=int)
    n_atlas_bold_units = count_atlas[idx] * vol_atlas / vol_bold
    with np.errstate(divide="ignore", invalid="ignore"):
        coverage = np.where(n_atlas_bold_units > 0,
                            np.minimum(count_mask[idx] / n_atlas_bold_units, 1.0), 0.0)
    networks = atlas.networks or {}
    table = pd.DataFrame({
        "index": idx,
        "name": [atlas.labels[i] for i in indices],
        "network": [networks.get(i, "n/a") for i in indices],
        "n_voxels_atlas": n_atlas_bold_units,
        "volume_mm3": count_atlas[idx] * vol_atlas,
        "n_voxels_bold": count_bold[idx],
        "n_voxels_in_mask": count_mask[idx],
        "coverage": coverage,
        "kept": np.ones(idx.size, dtype=bool),
    }, columns=COVERAGE_COLUMNS)
    n_mask = int(mask.sum())
    table.attrs["mask_coverage"] = int(np.count_nonzero(data[mask])) / n_mask if n_mask else 0.0
    return table


def _check_coverage(atlas: Atlas, table: pd.DataFrame, min_voxels: int, ref_name: str,
                    space: str | None) -> None:
    """Raise when the atlas misses the mask or every parcel is too small; warn of drops."""
    where = f"atlas {atlas.name} ({atlas.source})"
    if table.attrs["mask_coverage"] == 0:
        raise DataError(
            f"{where} covers 0% of the brain mask of {ref_name}; is it in space "
            f"{space or 'of the BOLD data'}?",
            fix="give an atlas in the space of the preprocessed BOLD data (--output-spaces "
            "of fMRIPrep) or a data-driven atlas", path=atlas.source)
    if not table["kept"].any():
        raise DataError(
            f"{where}: every parcel has fewer than {min_voxels} voxels in the brain mask of "
            f"{ref_name}", fix="lower the minimum parcel size or use a coarser atlas",
            path=atlas.source)
    dropped = [f"{atlas.labels[int(i)]} ({n} voxels)" for i, n, k in
               table[["index", "n_voxels_in_mask", "kept"]].itertuples(index=False) if not k]
    if dropped:
        warnings.warn(f"{where}: dropped {len(dropped)} parcels with fewer than {min_voxels} "
                      f"voxels in the brain mask of {ref_name}: {', '.join(dropped)}",
                      UserWarning, stacklevel=3)
