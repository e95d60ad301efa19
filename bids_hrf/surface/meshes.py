"""Meshes of surface spaces, the sample neighbourhood graph, and smoothing on the mesh.

Meshes come from what is installed, never from the network: nilearn ships fsaverage5
(pial, white, inflated, sphere); other densities (fsaverage6, fsaverage, fsLR 32k) are read
from the local TemplateFlow folder (``TEMPLATEFLOW_HOME``: ``tpl-fsLR_hemi-L_den-32k_
midthickness.surf.gii``...) when it holds them. Without a mesh the graph is the subcortical
voxels' only, and what needs the mesh (smoothing, figures on the cortex) says so.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
from scipy import sparse

from bids_hrf.errors import UsageError
from bids_hrf.surface.graph import block_adjacency, grid_adjacency, mesh_adjacency
from bids_hrf.surface.samples import CORTEX, SampleGeometry

LOGGER = logging.getLogger("bids_hrf")

_HEMI_PART = {"L": "left", "R": "right"}
#: Offline meshes (nilearn's bundled fsaverage5).
_NILEARN_MESHES = {"fsaverage5"}


def surface_mesh(space: str, hemi: str, kind: str = "midthickness"
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """Coordinates (mm) and triangles of one hemisphere's mesh, or None if not offline
    (see :func:`_surface_mesh`; cached per TemplateFlow folder)."""
    import os

    return _surface_mesh(space, hemi, kind, os.environ.get("TEMPLATEFLOW_HOME", ""))


@lru_cache(maxsize=16)
def _surface_mesh(space: str, hemi: str, kind: str, home: str
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Coordinates (mm) and triangles of one hemisphere's mesh, or None if not offline.

    Parameters
    ----------
    space : str
        ``fsaverage5`` (shipped by nilearn); other spaces give None.
    hemi : {"L", "R"}
    kind : {"midthickness", "pial", "white_matter", "inflated", "sphere"}
        ``midthickness`` is the mean of pial and white.
    """
    if space not in _NILEARN_MESHES:
        return _templateflow_mesh(space, hemi, kind, home)
    from nilearn.datasets import load_fsaverage

    meshes = load_fsaverage(space)
    part = _HEMI_PART[hemi]
    if kind == "midthickness":
        pial, white = meshes["pial"].parts[part], meshes["white_matter"].parts[part]
        coords = 0.5 * (np.asarray(pial.coordinates) + np.asarray(white.coordinates))
        return coords, np.asarray(pial.faces)
    mesh = meshes[kind].parts[part]
    return np.asarray(mesh.coordinates), np.asarray(mesh.faces)


#: TemplateFlow template and density of the meshes of each surface space.
_TEMPLATEFLOW_MESHES = {"fsaverage6": ("fsaverage", "41k"), "fsaverage": ("fsaverage", "164k"),
                        "fsLR": ("fsLR", "32k")}
_TEMPLATEFLOW_KINDS = {"white_matter": "white"}


def _templateflow_mesh(space: str, hemi: str, kind: str, home: str
                       ) -> tuple[np.ndarray, np.ndarray] | None:
    """A mesh from the local TemplateFlow folder (fMRIPrep's ``--cifti-output`` needs
    ``tpl-fsLR`` there, so fMRIPrep users have it), never downloaded; None if absent."""
    from pathlib import Path

    import nibabel as nib

    if space not in _TEMPLATEFLOW_MESHES:
        return None
    template, den = _TEMPLATEFLOW_MESHES[space]
    if not home:
        return None
    name = _TEMPLATEFLOW_KINDS.get(kind, kind)
    path = (Path(home) / f"tpl-{template}"
            / f"tpl-{template}_hemi-{hemi}_den-{den}_{name}.surf.gii")
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        img = nib.load(str(path))
        coords = np.asarray(img.agg_data("NIFTI_INTENT_POINTSET"), dtype=float)
        faces = np.asarray(img.agg_data("NIFTI_INTENT_TRIANGLE"), dtype=int)
    except Exception as exc:  # a broken template file: no mesh, say why
        LOGGER.warning("cannot read the mesh %s (%s): not used", path, exc)
        return None
    return coords, faces


def _hemisphere_graph(geometry: SampleGeometry, hemi: str
                      ) -> tuple[sparse.csr_matrix, np.ndarray | None]:
    """Adjacency of one hemisphere's samples and their coordinates (None without mesh)."""
    idx = geometry.hemisphere(hemi)
    mesh = surface_mesh(geometry.space, hemi)
    if mesh is None:
        return sparse.csr_matrix((idx.size, idx.size), dtype=bool), None
    coords, faces = mesh
    full = mesh_adjacency(faces, coords.shape[0])
    vertices = geometry.vertex[idx]
    return full[vertices][:, vertices].tocsr(), coords[vertices]


def sample_graph(geometry: SampleGeometry) -> sparse.csr_matrix:
    """Neighbourhood graph of all samples, in sample order.

    Cortical vertices are neighbours when they share a mesh edge; CIFTI's subcortical voxels
    when they are 6-neighbours in the same structure. Samples are ordered hemisphere by
    hemisphere then structure by structure (as both GIFTI pairs and CIFTI files are), which
    the block graph assumes (checked).
    """
    blocks, order = [], []
    for hemi in ("L", "R"):
        idx = geometry.hemisphere(hemi)
        if idx.size:
            blocks.append(_hemisphere_graph(geometry, hemi)[0])
            order.append(idx)
    for name in dict.fromkeys(geometry.structure.tolist()):
        if name in CORTEX.values():
            continue
        idx = np.flatnonzero(geometry.structure == name)
        blocks.append(grid_adjacency(geometry.ijk[idx]))
        order.append(idx)
    flat = np.concatenate(order) if order else np.zeros(0, dtype=int)
    if not np.array_equal(flat, np.arange(geometry.n_samples)):
        raise ValueError("samples are not grouped by structure")
    if not any(surface_mesh(geometry.space, h) for h in ("L", "R")) and \
            geometry.hemisphere("L").size:
        LOGGER.warning("no offline mesh for space %s: cortical vertices have no neighbours "
                       "(spatial priors and mesh clustering see each vertex alone)",
                       geometry.space)
    return block_adjacency(*blocks)


def _smoothing_steps(adjacency: sparse.csr_matrix, coords: np.ndarray, fwhm: float) -> int:
    """Iterations of neighbour averaging whose Gaussian-equivalent FWHM is ``fwhm``.

    One step of averaging a vertex with its ``k`` neighbours adds, per tangent axis, the
    variance ``sum_j d_ij^2 / (2 (k + 1))`` (mean over the mesh); ``n`` steps add ``n`` times
    that, and ``FWHM = sqrt(8 ln 2) sigma``.
    """
    coo = adjacency.tocoo()
    d2 = np.sum((coords[coo.row] - coords[coo.col]) ** 2, axis=1)
    per_vertex = np.bincount(coo.row, weights=d2, minlength=adjacency.shape[0])
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    var_step = float(np.mean(per_vertex / (2.0 * (degree + 1.0))))
    sigma = fwhm / np.sqrt(8.0 * np.log(2.0))
    return max(1, int(round(sigma ** 2 / var_step)))


def smooth_on_mesh(values: np.ndarray, geometry: SampleGeometry, fwhm: float
                   ) -> tuple[np.ndarray, dict]:
    """Smooth (n_scans, n_samples) data along the cortical mesh by iterated averaging.

    Each cortical vertex is averaged with its mesh neighbours ``n`` times, ``n`` chosen
    so the equivalent Gaussian FWHM (on the midthickness surface) is ``fwhm`` mm;
    subcortical voxels are not smoothed. Returns the data and what was done (for sidecars).

    Raises
    ------
    UsageError
        When the space has no offline mesh (smoothing is never silently skipped).
    """
    out = np.array(values, dtype=np.float64, copy=True)
    done = {}
    for hemi in ("L", "R"):
        idx = geometry.hemisphere(hemi)
        if not idx.size:
            continue
        adjacency, coords = _hemisphere_graph(geometry, hemi)
        if coords is None:
            raise UsageError(f"--smoothing-fwhm on {geometry.space} needs the cortical mesh, "
                             "which is not available offline",
                             fix="drop --smoothing-fwhm, use --space fsaverage5, or set "
                                 "TEMPLATEFLOW_HOME to a folder holding the space's "
                                 "midthickness surfaces")
        steps = _smoothing_steps(adjacency, coords, fwhm)
        degree = np.asarray(adjacency.sum(axis=1)).ravel()
        operator = sparse.diags(1.0 / (degree + 1.0)) @ (adjacency + sparse.eye(idx.size))
        block = out[:, idx].T
        for _ in range(steps):
            block = operator @ block
        out[:, idx] = block.T
        done[hemi] = steps
    return out, {"SmoothingMethod": "iterated mesh-neighbour averaging on the midthickness "
                                    "surface", "SmoothingIterations": done}
