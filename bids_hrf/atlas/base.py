"""The :class:`Atlas` record and the checks every label image goes through."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_hrf.errors import DataError, NoInputError


@dataclass
class Atlas:
    """A parcellation: an integer label image and the names of its parcels.

    Attributes
    ----------
    img : nibabel.Nifti1Image
        3D image of integer labels (int32), 0 for background.
    labels : dict of int to str
        Parcel index -> name (``str(index)`` when no name is known), sorted by index.
    networks : dict of int to str or None
        Parcel index -> network name, when the atlas defines networks.
    name : str
        Alphanumeric label for the ``seg-<name>`` entity of output files.
    source : str
        Where the atlas came from: a file path, a TemplateFlow spec or ``"data-driven"``.
    """

    img: nib.Nifti1Image
    labels: dict[int, str]
    networks: dict[int, str] | None
    name: str
    source: str

    @property
    def indices(self) -> list[int]:
        """Parcel indices, sorted."""
        return sorted(self.labels)

    @property
    def n_parcels(self) -> int:
        """Number of parcels."""
        return len(self.labels)


def bids_label(text: str, default: str = "custom") -> str:
    """Return ``text`` with everything but ASCII letters and digits removed.

    Parameters
    ----------
    text : str
        Any name (file stem, atlas and description, ...).
    default : str, default="custom"
        Returned when nothing is left.

    Returns
    -------
    str
        A value usable as a BIDS entity label (e.g. ``seg-<label>``).
    """
    label = re.sub(r"[^A-Za-z0-9]", "", text)
    return label or default


def load_label_image(path: str | Path) -> nib.Nifti1Image:
    """Load a label NIfTI file, reporting missing and corrupted files by name.

    Raises
    ------
    bids_hrf.errors.NoInputError
        If the file does not exist.
    bids_hrf.errors.DataError
        If it is empty or not a readable NIfTI image.
    """
    path = Path(path)
    if not path.is_file():
        raise NoInputError(f"atlas file {path} does not exist",
                           fix="check the path given to --atlas", path=str(path))
    if path.stat().st_size == 0:
        raise DataError(f"atlas file {path} is empty (0 bytes; a TemplateFlow placeholder "
                        "that was never downloaded?)",
                        fix="download the real file or give another --atlas", path=str(path))
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # gzip, zlib, nibabel and OS errors alike
        raise DataError(f"atlas file {path} is not a readable NIfTI image ({exc})",
                        fix="give a .nii or .nii.gz label image", path=str(path)) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise DataError(f"atlas file {path} is a {type(img).__name__}, not a NIfTI image",
                        fix="convert it to NIfTI (.nii.gz)", path=str(path))
    return nib.Nifti1Image(data, img.affine, img.header)


def check_label_image(img: nib.spatialimages.SpatialImage, where: str) -> nib.Nifti1Image:
    """Check a label image and return it as a 3D int32 NIfTI image.

    Parameters
    ----------
    img : nibabel image
        The label image.
    where : str
        The file (or description) named in error messages.

    Raises
    ------
    bids_hrf.errors.DataError
        If the image is 4D with more than one volume, has NaN, negative or non-integer
        values, or no label at all.
    """
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(
            f"atlas {where} has shape {data.shape}; a 3D image of integer labels is needed "
            "(probabilistic 4D atlases are not supported)",
            fix="give a deterministic (dseg) label image", path=where)
    if not np.issubdtype(data.dtype, np.integer):
        data = np.asarray(data, dtype=float)
        if not np.all(np.isfinite(data)):
            raise DataError(f"atlas {where} contains NaN or infinite values",
                            fix="give an image of integer labels", path=where)
        frac = np.abs(data - np.rint(data))
        if frac.max() > 1e-3:
            example = data.flat[int(np.argmax(frac))]
            raise DataError(
                f"atlas {where} has non-integer values (e.g. {example:g}); is it a "
                "probabilistic map or a label image resampled with linear interpolation?",
                fix="give an image of integer labels (resample labels with nearest "
                "neighbour)", path=where)
        data = np.rint(data)
    if data.min() < 0:
        raise DataError(f"atlas {where} has negative labels (min {data.min():g})",
                        fix="use 0 for background and positive integers for parcels",
                        path=where)
    if data.max() > np.iinfo(np.int32).max:
        raise DataError(f"atlas {where} has labels too large for int32", path=where)
    data = data.astype(np.int32)
    n_labels = np.unique(data[data > 0]).size
    if n_labels == 0:
        raise DataError(f"atlas {where} has no parcel (all voxels are 0)",
                        fix="give an image with positive integer labels", path=where)
    if n_labels == 1:
        warnings.warn(f"atlas {where} has a single label: the parcel-wise analysis will "
                      "treat the whole region as one parcel", UserWarning, stacklevel=3)
    header = img.header.copy()
    header.set_data_dtype(np.int32)
    out = nib.Nifti1Image(data, img.affine, header)
    out.header.set_slope_inter(1, 0)
    return out
