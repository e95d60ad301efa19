"""A true-size fsLR 91k grayordinate set for the surface generator (benchmarks; issue 12).

No fsLR mesh ships offline (and none may be downloaded), so the geometry is made up at the
real sizes of the HCP "91k" grayordinates:

* cortex: 32492 vertices per hemisphere on a Fibonacci lattice of a sphere of radius 100 mm
  (the right hemisphere mirrors the left), of which a contiguous cap facing the midline
  (the "medial wall") is left out: 29696 vertices kept on the left, 29716 on the right;
* subcortex: the 19 structures of the 91k volume with their voxel counts (31870 voxels in
  all) on its 2 mm MNI grid (91 x 109 x 91), each grown as the voxels nearest its centre
  (an ellipsoid, scaled per structure) not taken by an earlier one, left structures left of
  the midline, right ones right of it.

91282 grayordinates in all, as in fMRIPrep's ``space-fsLR_den-91k`` CIFTI files.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

FSLR_VERTICES = 32492
KEPT_VERTICES = {"L": 29696, "R": 29716}
GRID_SHAPE = (91, 109, 91)
GRID_AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])

# structure: (voxels, centre in MNI mm, ellipsoid scales x, y, z); counts of the HCP 91k file
SUBCORTEX: dict[str, tuple[int, tuple[float, float, float], tuple[float, float, float]]] = {
    "CIFTI_STRUCTURE_ACCUMBENS_LEFT": (135, (-10, 12, -8), (1, 1, 1)),
    "CIFTI_STRUCTURE_ACCUMBENS_RIGHT": (140, (10, 12, -8), (1, 1, 1)),
    "CIFTI_STRUCTURE_AMYGDALA_LEFT": (315, (-23, -4, -18), (1, 1.2, 1)),
    "CIFTI_STRUCTURE_AMYGDALA_RIGHT": (332, (24, -3, -18), (1, 1.2, 1)),
    "CIFTI_STRUCTURE_BRAIN_STEM": (3472, (0, -28, -32), (1, 1, 2)),
    "CIFTI_STRUCTURE_CAUDATE_LEFT": (728, (-13, 12, 10), (0.7, 1.5, 1)),
    "CIFTI_STRUCTURE_CAUDATE_RIGHT": (755, (14, 12, 10), (0.7, 1.5, 1)),
    "CIFTI_STRUCTURE_CEREBELLUM_LEFT": (8709, (-26, -62, -36), (1.3, 1, 0.8)),
    "CIFTI_STRUCTURE_CEREBELLUM_RIGHT": (9144, (26, -62, -36), (1.3, 1, 0.8)),
    "CIFTI_STRUCTURE_DIENCEPHALON_VENTRAL_LEFT": (706, (-11, -18, -8), (1, 1, 1)),
    "CIFTI_STRUCTURE_DIENCEPHALON_VENTRAL_RIGHT": (712, (11, -18, -8), (1, 1, 1)),
    "CIFTI_STRUCTURE_HIPPOCAMPUS_LEFT": (764, (-27, -22, -12), (0.8, 1.8, 0.8)),
    "CIFTI_STRUCTURE_HIPPOCAMPUS_RIGHT": (795, (28, -21, -12), (0.8, 1.8, 0.8)),
    "CIFTI_STRUCTURE_PALLIDUM_LEFT": (297, (-19, -3, 0), (1, 1, 1)),
    "CIFTI_STRUCTURE_PALLIDUM_RIGHT": (260, (20, -3, 0), (1, 1, 1)),
    "CIFTI_STRUCTURE_PUTAMEN_LEFT": (1060, (-25, 2, 2), (0.7, 1.5, 1)),
    "CIFTI_STRUCTURE_PUTAMEN_RIGHT": (1010, (26, 2, 2), (0.7, 1.5, 1)),
    "CIFTI_STRUCTURE_THALAMUS_LEFT": (1288, (-11, -18, 7), (1, 1.3, 1)),
    "CIFTI_STRUCTURE_THALAMUS_RIGHT": (1248, (12, -18, 7), (1, 1.3, 1)),
}


def fibonacci_sphere(n: int, radius: float = 100.0) -> np.ndarray:
    """``n`` nearly evenly spread points on a sphere (Fibonacci lattice), ``(n, 3)``."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i
    return radius * np.c_[r * np.cos(phi), r * np.sin(phi), z]


def fslr91k_sphere() -> dict[str, np.ndarray]:
    """Vertex coordinates of both hemispheres (the right one mirrors the left in x)."""
    left = fibonacci_sphere(FSLR_VERTICES)
    return {"L": left, "R": left * [-1.0, 1.0, 1.0]}


def medial_wall(coords: np.ndarray, hemi: str) -> np.ndarray:
    """Boolean mask of the left-out cap: the vertices facing the midline (+x on the left
    hemisphere, -x on the right), as many as the 91k file leaves out."""
    toward = coords[:, 0] * (1.0 if hemi == "L" else -1.0)
    wall = np.zeros(coords.shape[0], bool)
    wall[np.argsort(-toward, kind="stable")[: coords.shape[0] - KEPT_VERTICES[hemi]]] = True
    return wall


def subcortical_voxels() -> dict[str, np.ndarray]:
    """Voxel indices ``(n, 3)`` of each structure on the 2 mm grid, in C order (as
    :meth:`nibabel.cifti2.BrainModelAxis.from_mask` lists them); no voxel in two."""
    taken = np.zeros(GRID_SHAPE, bool)
    inverse = np.linalg.inv(GRID_AFFINE)
    out = {}
    for name, (count, centre, scales) in SUBCORTEX.items():
        ijk_c = (inverse @ np.r_[centre, 1.0])[:3]
        half = 40  # voxels around the centre searched (80 mm: enough for the largest)
        lo = np.maximum(np.floor(ijk_c - half).astype(int), 0)
        hi = np.minimum(np.ceil(ijk_c + half).astype(int), GRID_SHAPE)
        box = np.stack(
            np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1
        ).reshape(-1, 3)
        free = ~taken[tuple(box.T)]
        x_mm = GRID_AFFINE[0, 0] * box[:, 0] + GRID_AFFINE[0, 3]
        if name.endswith("_LEFT"):  # lateralised structures stay on their side
            free &= x_mm < 0
        elif name.endswith("_RIGHT"):
            free &= x_mm > 0
        box = box[free]
        dist = np.sum(((box - ijk_c) / np.asarray(scales)) ** 2, axis=1)
        chosen = box[np.argsort(dist, kind="stable")[:count]]
        taken[tuple(chosen.T)] = True
        mask = np.zeros(GRID_SHAPE, bool)
        mask[tuple(chosen.T)] = True
        out[name] = np.argwhere(mask)
    return out


def fslr91k_samples(
    n_regions: int,
    rng: np.random.Generator,
    regions: Callable[[np.ndarray, int, np.random.Generator], np.ndarray],
    cortex: dict[str, str],
) -> tuple[pd.DataFrame, dict]:
    """Samples of the 91k set for :func:`bids_hrf.datasets.surface_sim._samples`.

    Parameters
    ----------
    n_regions : int
        Truth regions: half per hemisphere on the cortex; the subcortical structures take
        the last regions in turn.
    rng : numpy.random.Generator
        Draws the region centres.
    regions : callable
        ``regions(coords, n, rng)``: contiguous regions on a sphere (0..n-1).
    cortex : dict
        CIFTI structure name of each hemisphere's cortex (``"L"``, ``"R"``).

    Returns
    -------
    samples : pandas.DataFrame
        Per grayordinate: structure, vertex (-1 for voxels), i, j, k (-1 for vertices),
        region.
    extra : dict
        ``affine`` and ``shape`` of the voxel grid, ``full_density`` True.
    """
    sphere = fslr91k_sphere()
    rows = []
    per_hemi = n_regions // 2
    for k, hemi in enumerate("LR"):
        region = regions(sphere[hemi], per_hemi, rng) + k * per_hemi
        vert = np.flatnonzero(~medial_wall(sphere[hemi], hemi))
        rows.append(
            pd.DataFrame(
                {
                    "structure": cortex[hemi],
                    "vertex": vert,
                    "i": -1,
                    "j": -1,
                    "k": -1,
                    "region": region[vert],
                }
            )
        )
    for s, (name, ijk) in enumerate(subcortical_voxels().items()):
        rows.append(
            pd.DataFrame(
                {
                    "structure": name,
                    "vertex": -1,
                    "i": ijk[:, 0],
                    "j": ijk[:, 1],
                    "k": ijk[:, 2],
                    "region": n_regions - 1 - s % n_regions,
                }
            )
        )
    extra = {"affine": GRID_AFFINE.copy(), "shape": GRID_SHAPE, "full_density": True}
    return pd.concat(rows, ignore_index=True), extra
