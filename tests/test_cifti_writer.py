"""The CIFTI writer of surface outputs writes what nibabel's Cifti2Image writes (issue 12
benchmark: it skips nibabel's element-by-element shape checks and reuses the brain models)."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest

from bids_hrf.datasets.surface_sim import make_surface_dataset
from bids_hrf.io import surface_writers
from bids_hrf.io.surface import load_surface_bold


@pytest.fixture(scope="module")
def geometry(tmp_path_factory):
    root = tmp_path_factory.mktemp("fslr")
    ds = make_surface_dataset(
        root / "bids", space="fsLR", n_subjects=1, n_runs=1, n_scans=20, seed=5
    )
    source = next(ds.fmriprep_dir.rglob("*dtseries.nii"))
    return load_surface_bold(source, "fsLR")[1]


@pytest.mark.parametrize("kind", ["scalar", "series", "label"])
def test_cifti_files_are_nibabels_bytes(geometry, tmp_path, kind):
    rng = np.random.default_rng(0)
    n_maps = 7 if kind == "series" else 1
    values = rng.normal(size=(geometry.n_samples, 1, 1, n_maps)).astype(np.float32)
    if kind == "label":
        values = rng.integers(0, 3, values.shape).astype(np.float32)
    labels = {1: "a", 2: "b"} if kind != "series" else None
    ours = tmp_path / f"ours_{kind}.nii"
    surface_writers._cifti_writer(values, geometry, kind, labels, 2.0)(ours)
    back = nib.load(str(ours))
    reference = nib.cifti2.Cifti2Image(
        np.asarray(back.dataobj),
        header=(back.header.get_axis(0), surface_writers.brain_model_axis(geometry)),
    )
    nib.save(reference, str(tmp_path / "ref.nii"))
    assert ours.read_bytes() == (tmp_path / "ref.nii").read_bytes()
    assert back.shape == (n_maps, geometry.n_samples)
    np.testing.assert_array_equal(np.asarray(back.dataobj), values.reshape(-1, n_maps).T)


def test_brain_models_are_cached_per_geometry_object(geometry):
    first = surface_writers.brain_model_axis(geometry)
    assert surface_writers.brain_model_axis(geometry) is first
    other = dataclasses.replace(geometry, vertex=geometry.vertex.copy())
    assert surface_writers.brain_model_axis(other) is not first
    assert surface_writers.brain_model_axis(other) == first


def test_cifti_writer_refuses_data_of_another_size(geometry, tmp_path):
    values = np.zeros((geometry.n_samples - 1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="do not match"):
        surface_writers._cifti_writer(values, geometry, "scalar", None, None)(tmp_path / "x.nii")
