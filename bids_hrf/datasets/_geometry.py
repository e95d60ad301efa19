"""Brain geometry of the synthetic dataset: grid, tissue masks, parcellation, atlas.

Two geometries are available:

``small``
    A brain-like ellipsoid in a 20 x 24 x 20 grid of 4 mm voxels with an MNI-like affine,
    grey matter split into 10 parcels; the atlas is written on a 2 mm grid whose voxel
    centres include the BOLD voxel centres, so nearest-neighbour resampling to the BOLD grid
    gives back the BOLD-grid labels exactly.
``realistic``
    nilearn's MNI152 brain mask and tissue templates (shipped with nilearn, no download) at
    3 mm, grey matter split into about 200 parcels by k-means on voxel coordinates; the
    atlas is written at 2 mm.

The parcellation is defined in millimetres (nearest centroid among grey-matter points), so
that the atlas can be rasterised at any resolution and is the same for every subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np
from scipy.spatial import cKDTree
from sklearn.cluster import KMeans

NETWORK_QUOTAS = (
    # (network, fraction of parcels); the remainder goes to "Frontoparietal"
    ("Visual", 0.15),
    ("Auditory", 0.12),
    ("Somatomotor", 0.15),
    ("Default", 0.2),
)


@dataclass
class Geometry:
    """Voxel grid, tissues and parcellation of the synthetic brain (BOLD grid).

    Attributes
    ----------
    affine : ndarray, shape (4, 4)
        Voxel-to-MNI affine of the BOLD grid.
    shape : tuple of int
        Spatial shape of the BOLD grid.
    brain, gm, wm, csf : ndarray of bool, shape ``shape``
        Brain mask and disjoint tissue masks (``gm | wm | csf == brain``).
    labels : ndarray of int, shape ``shape``
        Parcel index (1..n_parcels) in grey matter, 0 elsewhere.
    names, networks : list of str
        Parcel names and networks, entry ``i`` for parcel index ``i + 1``.
    centroids : ndarray, shape (n_parcels, 3)
        Parcel centroids in millimetres.
    baseline : ndarray of float, shape ``shape``
        Mean BOLD intensity (0 outside the brain).
    atlas_img : nibabel.Nifti1Image
        The parcellation rasterised on the atlas grid (a different resolution).
    anat_img : nibabel.Nifti1Image
        A T1-weighted-like image for ``anat/``.
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    brain: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    labels: np.ndarray
    names: list[str]
    networks: list[str]
    centroids: np.ndarray
    baseline: np.ndarray
    atlas_img: nib.Nifti1Image
    anat_img: nib.Nifti1Image

    @property
    def n_parcels(self) -> int:
        """Number of parcels."""
        return len(self.names)

    def voxel_coords_mm(self, mask: np.ndarray) -> np.ndarray:
        """Millimetre coordinates of the voxels of ``mask`` (C order), shape (n, 3)."""
        ijk = np.argwhere(mask)
        return nib.affines.apply_affine(self.affine, ijk)


def _grid_coords(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    ijk = np.indices(shape).reshape(3, -1).T
    return nib.affines.apply_affine(affine, ijk)


def _assign_networks(centroids: np.ndarray) -> list[str]:
    """Assign a network to each centroid from its position (posterior = visual...)."""
    n = len(centroids)
    x, y, z = centroids.T
    span = np.ptp(centroids, axis=0) + 1e-9
    xn, yn, zn = ((centroids - centroids.min(axis=0)) / span).T
    scores = {
        "Visual": -yn,  # posterior
        "Auditory": np.abs(x) / (np.abs(x).max() + 1e-9) - zn - 0.5 * np.abs(yn - 0.5),
        "Somatomotor": zn - np.abs(yn - 0.5),  # superior, central
        "Default": -np.abs(x) / (np.abs(x).max() + 1e-9) - np.abs(zn - 0.5),  # medial
    }
    networks = np.array(["Frontoparietal"] * n, dtype=object)
    free = np.ones(n, dtype=bool)
    for network, fraction in NETWORK_QUOTAS:
        quota = max(2, int(round(fraction * n)))
        score = np.where(free, scores[network], -np.inf)
        if network == "Auditory":
            # one half on each hemisphere when possible
            picks: list[int] = []
            for side in (x < 0, x >= 0):
                s = np.where(side, score, -np.inf)
                picks += [int(i) for i in np.argsort(-s)[: quota // 2] if np.isfinite(s[i])]
            chosen = np.array(picks[:quota], dtype=int)
        else:
            chosen = np.argsort(-score)[:quota]
        networks[chosen] = network
        free[chosen] = False
    return list(networks)


def _name_parcels(centroids: np.ndarray, networks: list[str]) -> list[str]:
    """Schaefer-like names: ``<Network>_<LH|RH>_<k>``."""
    counts: dict[str, int] = {}
    names = []
    for (x, _, _), network in zip(centroids, networks, strict=True):
        key = f"{network}_{'LH' if x < 0 else 'RH'}"
        counts[key] = counts.get(key, 0) + 1
        names.append(f"{key}_{counts[key]}")
    return names


def _order_parcels(centroids: np.ndarray, networks: list[str]) -> np.ndarray:
    """Order parcels by network, hemisphere, then y (stable, readable atlas tables)."""
    order_net = ["Visual", "Auditory", "Somatomotor", "Default", "Frontoparietal"]
    keys = [
        (order_net.index(n), c[0] >= 0, c[1], c[2])
        for c, n in zip(centroids, networks, strict=True)
    ]
    return np.array(sorted(range(len(keys)), key=lambda i: keys[i]), dtype=int)


def _label_points(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index (1-based) of the nearest centroid of each point."""
    _, idx = cKDTree(centroids).query(points)
    return idx.astype(np.int16) + 1


def _parcellate(
    gm_coords: np.ndarray, n_parcels: int, seed: int
) -> tuple[np.ndarray, list[str], list[str]]:
    km = KMeans(n_clusters=n_parcels, n_init=1, random_state=seed, max_iter=100)
    km.fit(gm_coords)
    centroids = km.cluster_centers_
    networks = _assign_networks(centroids)
    order = _order_parcels(centroids, networks)
    centroids = centroids[order]
    networks = [networks[i] for i in order]
    return centroids, networks, _name_parcels(centroids, networks)


def _baseline(
    tissues: dict[str, np.ndarray], affine: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Tissue-dependent mean intensity (~1000) with a smooth bias field."""
    shape = tissues["gm"].shape
    coords = _grid_coords(shape, affine).reshape(*shape, 3)
    centre = coords[tissues["gm"] | tissues["wm"] | tissues["csf"]].mean(axis=0)
    rel = (coords - centre) / 100.0
    direction = rng.normal(size=3)
    bias = 1.0 + 0.12 * (rel @ (direction / np.linalg.norm(direction)))
    base = np.zeros(shape)
    for tissue, value in (("gm", 1000.0), ("wm", 850.0), ("csf", 1350.0)):
        base[tissues[tissue]] = value
    return base * bias


def _anat(tissues: dict[str, np.ndarray], affine: np.ndarray) -> nib.Nifti1Image:
    shape = tissues["gm"].shape
    data = np.zeros(shape, dtype=np.int16)
    data[tissues["csf"]] = 300
    data[tissues["gm"]] = 600
    data[tissues["wm"]] = 900
    return _nifti(data, affine, "mm")


def _nifti(data: np.ndarray, affine: np.ndarray, units: str = "mm") -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units(units, "sec")
    img.header.set_qform(affine, code=4)  # 4 = MNI
    img.header.set_sform(affine, code=4)
    return img


def small_geometry(seed: int = 0, n_parcels: int = 10) -> Geometry:
    """Ellipsoid brain in a 20 x 24 x 20 grid of 4 mm voxels with ``n_parcels`` parcels."""
    rng = np.random.default_rng(seed)
    shape = (20, 24, 20)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = (-38.0, -64.0, -30.0)
    centre = np.array([0.0, -18.0, 8.0])
    radii = np.array([34.0, 42.0, 32.0])
    ventricles = [(np.array([s * 7.0, -14.0, 12.0]), np.array([5.0, 16.0, 7.0])) for s in (-1, 1)]

    def tissues_at(points: np.ndarray) -> dict[str, np.ndarray]:
        rho = np.sqrt((((points - centre) / radii) ** 2).sum(axis=1))
        vent = np.zeros(len(points), dtype=bool)
        for c, r in ventricles:
            vent |= (((points - c) / r) ** 2).sum(axis=1) <= 1.0
        brain = rho <= 1.0
        csf = brain & ((rho > 0.93) | vent)
        wm = brain & ~csf & (rho < 0.55)
        gm = brain & ~csf & ~wm
        return {"brain": brain, "gm": gm, "wm": wm, "csf": csf}

    points = _grid_coords(shape, affine)
    tissues = {k: v.reshape(shape) for k, v in tissues_at(points).items()}
    gm_coords = points[tissues["gm"].ravel()]
    centroids, networks, names = _parcellate(gm_coords, n_parcels, seed)
    labels = np.zeros(shape, dtype=np.int16)
    labels[tissues["gm"]] = _label_points(gm_coords, centroids)

    # atlas at 2 mm; voxel 2i of the atlas grid is voxel i of the BOLD grid
    atlas_affine = affine.copy()
    atlas_affine[:3, :3] = np.diag([2.0, 2.0, 2.0])
    atlas_shape = tuple(2 * s for s in shape)
    atlas_points = _grid_coords(atlas_shape, atlas_affine)
    atlas_gm = tissues_at(atlas_points)["gm"]
    atlas = np.zeros(len(atlas_points), dtype=np.int16)
    atlas[atlas_gm] = _label_points(atlas_points[atlas_gm], centroids)
    atlas_img = _nifti(atlas.reshape(atlas_shape), atlas_affine)

    return _assemble(affine, shape, tissues, labels, names, networks, centroids,
                     atlas_img, rng)


@lru_cache(maxsize=2)
def _mni_tissues(resolution: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    from nilearn.datasets import (
        load_mni152_brain_mask,
        load_mni152_gm_template,
        load_mni152_wm_template,
    )

    brain_img = load_mni152_brain_mask(resolution=resolution)
    brain = np.asarray(brain_img.dataobj) > 0
    gm_p = np.asarray(load_mni152_gm_template(resolution=resolution).dataobj, dtype=float)
    wm_p = np.asarray(load_mni152_wm_template(resolution=resolution).dataobj, dtype=float)
    wm = brain & (wm_p >= gm_p) & (wm_p > 0.5)
    gm = brain & ~wm & (gm_p > 0.25)
    csf = brain & ~wm & ~gm
    return {"brain": brain, "gm": gm, "wm": wm, "csf": csf}, brain_img.affine


def realistic_geometry(seed: int = 0, n_parcels: int = 200, resolution: int = 3) -> Geometry:
    """nilearn's MNI152 brain at ``resolution`` mm with ``n_parcels`` k-means parcels."""
    rng = np.random.default_rng(seed)
    tissues, affine = _mni_tissues(resolution)
    shape = tissues["brain"].shape
    ijk = np.argwhere(tissues["gm"])
    gm_coords = nib.affines.apply_affine(affine, ijk)
    centroids, networks, names = _parcellate(gm_coords, n_parcels, seed)
    labels = np.zeros(shape, dtype=np.int16)
    labels[tissues["gm"]] = _label_points(gm_coords, centroids)

    atlas_res = 2 if resolution != 2 else 3
    atlas_tissues, atlas_affine = _mni_tissues(atlas_res)
    atlas_gm = atlas_tissues["gm"]
    atlas = np.zeros(atlas_gm.shape, dtype=np.int16)
    atlas_points = nib.affines.apply_affine(atlas_affine, np.argwhere(atlas_gm))
    atlas[atlas_gm] = _label_points(atlas_points, centroids)
    atlas_img = _nifti(atlas, atlas_affine)
    return _assemble(affine, shape, tissues, labels, names, networks, centroids,
                     atlas_img, rng)


def _assemble(affine, shape, tissues, labels, names, networks, centroids, atlas_img,
              rng) -> Geometry:
    """Build the :class:`Geometry` of either size from its parts."""
    return Geometry(
        affine=affine,
        shape=shape,
        brain=tissues["brain"],
        gm=tissues["gm"],
        wm=tissues["wm"],
        csf=tissues["csf"],
        labels=labels,
        names=names,
        networks=networks,
        centroids=centroids,
        baseline=_baseline(tissues, affine, rng),
        atlas_img=atlas_img,
        anat_img=_anat(tissues, affine),
    )
