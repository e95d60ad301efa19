"""Surface and grayordinate samples as they travel between the steps of a run.

Every step after the input query works on *samples*: the voxels of a brain mask for volume
data; the vertices of both hemispheres (GIFTI pair) or the grayordinates (CIFTI) for surface
data. Surface samples are carried as a FreeSurfer-style "surface NIfTI" (shape
``(n_samples, 1, 1[, n_scans])``, identity affine), so that the masker, the GLM, the HRF
estimators and the parcel averages read them exactly like voxels. What the array grid
cannot say, the :class:`SampleGeometry` saved beside them says: which sample is which vertex
of which hemisphere (or voxel of which subcortical structure), and the neighbourhood graph.
Nothing spatial (smoothing, neighbours, figures, output files) is ever taken from the array
grid of a surface NIfTI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

#: CIFTI structure names of the two cortical hemispheres
CORTEX = {"L": "CIFTI_STRUCTURE_CORTEX_LEFT", "R": "CIFTI_STRUCTURE_CORTEX_RIGHT"}

#: fsaverage densities (vertices per hemisphere) fMRIPrep writes as GIFTI pairs.
FSAVERAGE_VERTICES = {"fsaverage3": 642, "fsaverage4": 2562, "fsaverage5": 10242,
                      "fsaverage6": 40962, "fsaverage": 163842}
#: Spaces written as CIFTI grayordinates.
CIFTI_SPACES = ("fsLR",)


def surface_kind(space: str) -> str | None:
    """``"gifti"`` for fsaverage spaces, ``"cifti"`` for fsLR, None for volume spaces."""
    if space in FSAVERAGE_VERTICES:
        return "gifti"
    if space in CIFTI_SPACES:
        return "cifti"
    return None


@dataclass
class SampleGeometry:
    """Where each surface sample comes from.

    Attributes
    ----------
    kind : str
        ``"gifti"`` (a ``hemi-L``/``hemi-R`` pair) or ``"cifti"`` (grayordinates).
    space : str
        Output space (``fsaverage5``, ``fsLR``...).
    structure, vertex, ijk : ndarray
        As :class:`bids_hrf.io.surface.SurfaceBold`.
    mesh_size : dict
        Vertices of each hemisphere's full mesh.
    volume_affine, volume_shape
        The grid of CIFTI's subcortical voxels (None without voxels).
    den : str or None
        The input's ``den`` entity (CIFTI density such as ``91k``).
    """

    kind: str
    space: str
    structure: np.ndarray
    vertex: np.ndarray
    ijk: np.ndarray
    mesh_size: dict
    volume_affine: np.ndarray | None = None
    volume_shape: tuple | None = None
    den: str | None = None

    @property
    def n_samples(self) -> int:
        """Number of samples (vertices and voxels)."""
        return int(self.structure.size)

    def hemisphere(self, hemi: str) -> np.ndarray:
        """Indices of the samples of one cortical hemisphere (``"L"`` or ``"R"``)."""
        return np.flatnonzero(self.structure == CORTEX[hemi])

    def save(self, path: str | Path) -> Path:
        """Write the geometry (``.npz`` with a JSON header)."""
        header = {"kind": self.kind, "space": self.space, "mesh_size": self.mesh_size,
                  "den": self.den,
                  "volume_shape": list(self.volume_shape) if self.volume_shape else None}
        arrays = {"structure": self.structure.astype(str), "vertex": self.vertex,
                  "ijk": self.ijk, "header": np.array(json.dumps(header))}
        if self.volume_affine is not None:
            arrays["volume_affine"] = self.volume_affine
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> SampleGeometry:
        """Read a geometry written by :meth:`save`."""
        with np.load(path) as data:
            header = json.loads(str(data["header"]))
            affine = data["volume_affine"] if "volume_affine" in data.files else None
            return cls(kind=header["kind"], space=header["space"],
                       structure=data["structure"], vertex=data["vertex"], ijk=data["ijk"],
                       mesh_size=header["mesh_size"], volume_affine=affine,
                       volume_shape=tuple(header["volume_shape"])
                       if header["volume_shape"] else None, den=header.get("den"))


def sample_image(values: np.ndarray, dtype=np.float32) -> nib.Nifti1Image:
    """Surface NIfTI of ``values``: (n_samples,) -> (n, 1, 1); (n_scans, n_samples) ->
    (n, 1, 1, n_scans)."""
    values = np.asarray(values, dtype=dtype)
    if values.ndim == 1:
        data = values[:, None, None]
    elif values.ndim == 2:
        data = values.T[:, None, None, :]
    else:
        raise ValueError(f"values must be 1-D or 2-D, got shape {values.shape}")
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_xyzt_units("mm", "sec")
    return img


def sample_values(img) -> np.ndarray:
    """The values of a surface NIfTI: (n_samples,) or (n_samples, n_volumes)."""
    data = np.asarray(img.dataobj)
    if data.ndim < 3 or data.shape[1:3] != (1, 1):
        raise ValueError(f"not a surface NIfTI (shape {data.shape})")
    return data.reshape(data.shape[0], -1) if data.ndim == 4 else data[:, 0, 0]


def is_sample_image(img) -> bool:
    """Whether an image has the surface NIfTI layout ``(n, 1, 1[, t])``."""
    shape = img.shape
    return len(shape) >= 3 and shape[1:3] == (1, 1) and shape[0] > 1
