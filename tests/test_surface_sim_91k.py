"""The true-size fsLR 91k option of the surface generator (issue 12, benchmarks)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_hrf.datasets._fslr91k import (
    FSLR_VERTICES,
    SUBCORTEX,
    fibonacci_sphere,
    fslr91k_sphere,
    medial_wall,
    subcortical_voxels,
)
from bids_hrf.datasets.surface_sim import make_surface_dataset


def test_medial_wall_is_one_contiguous_cap_of_the_91k_size():
    sphere = fslr91k_sphere()
    for hemi, kept in (("L", 29696), ("R", 29716)):
        coords = sphere[hemi]
        assert coords.shape == (FSLR_VERTICES, 3)
        wall = medial_wall(coords, hemi)
        assert (~wall).sum() == kept
        # a cap facing the midline: every wall vertex is closer to the midline than
        # every kept one (contiguous on the sphere)
        toward = coords[:, 0] * (1 if hemi == "L" else -1)
        assert toward[wall].min() >= toward[~wall].max()
        assert toward[wall].mean() > 90  # near the +x (left) / -x (right) pole, radius 100
    # the lattice is nearly even: nearest-neighbour distances within a factor 1.5
    pts = fibonacci_sphere(2000)
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    nn = d.min(1)
    assert nn.max() / nn.min() < 1.5


def test_subcortical_structures_have_the_91k_counts_and_do_not_overlap():
    vox = subcortical_voxels()
    assert {k: v.shape[0] for k, v in vox.items()} == {k: v[0] for k, v in SUBCORTEX.items()}
    allv = np.concatenate(list(vox.values()))
    assert allv.shape[0] == 31870
    assert np.unique(allv, axis=0).shape[0] == 31870
    assert allv.min() >= 0 and (allv < [91, 109, 91]).all()
    # left structures lie left of the midline (x = 90 - 2 i < 0 mm, i > 45)
    assert (vox["CIFTI_STRUCTURE_THALAMUS_LEFT"][:, 0] > 45).all()
    assert (vox["CIFTI_STRUCTURE_THALAMUS_RIGHT"][:, 0] < 45).all()


def test_full_density_cifti_has_91282_grayordinates(tmp_path):
    ds = make_surface_dataset(
        tmp_path / "bids", space="fsLR", n_subjects=1, n_runs=1, n_scans=20, full_density=True
    )
    img = nib.load(str(next(ds.fmriprep_dir.rglob("*_space-fsLR_den-91k_bold.dtseries.nii"))))
    assert img.shape == (20, 91282)
    models = img.header.get_axis(1)
    sizes = {name: (sl.stop or len(models)) - sl.start for name, sl, _ in models.iter_structures()}
    assert sizes["CIFTI_STRUCTURE_CORTEX_LEFT"] == 29696
    assert sizes["CIFTI_STRUCTURE_CORTEX_RIGHT"] == 29716
    assert sum(models.volume_mask) == 31870
    assert models.nvertices == {
        "CIFTI_STRUCTURE_CORTEX_LEFT": 32492,
        "CIFTI_STRUCTURE_CORTEX_RIGHT": 32492,
    }
    assert np.isfinite(img.get_fdata()).all() and img.get_fdata().std(0).min() > 0
    atlas = nib.load(str(ds.atlas))
    assert atlas.shape == (1, 91282)
    assert atlas.header.get_axis(1) == models
    assert (atlas.get_fdata() > 0).all()  # every grayordinate in a parcel (no wall in CIFTI)
    assert len(ds.truth) == 91282


def test_full_density_is_for_fslr_only(tmp_path):
    with pytest.raises(ValueError, match="fsLR.* only"):
        make_surface_dataset(tmp_path / "b", space="fsaverage5", full_density=True)
