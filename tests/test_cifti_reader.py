"""The CIFTI-2 reader of bids_hrf.io.cifti against nibabel's axes, and the header-only
look at a run's surface BOLD that the input query uses (issue 12 performance)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel import cifti2

from bids_hrf.errors import DataError
from bids_hrf.io.cifti import read_cifti
from bids_hrf.io.surface import load_surface_bold, surface_bold_info


def _models() -> cifti2.BrainModelAxis:
    """Cortex with a medial wall, and voxels of two structures on an oblique grid."""
    rng = np.random.default_rng(3)
    left = cifti2.BrainModelAxis.from_mask(rng.random(40) > 0.3, name="CortexLeft")
    right = cifti2.BrainModelAxis.from_mask(rng.random(35) > 0.2, name="CortexRight")
    affine = np.array([[-2.0, 0.1, 0, 90], [0, 2, 0.2, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
    vol = np.zeros((5, 6, 4), bool)
    vol[1:3, 2:5, 1:3] = True
    caudate = cifti2.BrainModelAxis.from_mask(vol, name="CaudateLeft", affine=affine)
    vol2 = np.zeros((5, 6, 4), bool)
    vol2[3, 0:2, 0] = vol2[4, 5, 3] = True
    cerebellum = cifti2.BrainModelAxis.from_mask(vol2, name="CerebellumRight", affine=affine)
    return left + caudate + right + cerebellum


@pytest.mark.parametrize("kind", ["dtseries", "dscalar", "dlabel", "transposed"])
def test_brain_models_and_data_equal_nibabel(tmp_path, kind):
    bm = _models()
    rng = np.random.default_rng(0)
    if kind == "dlabel":
        first = cifti2.LabelAxis(["parcels"], [{0: ("???", (0, 0, 0, 0)), 1: ("a", (1, 0, 0, 1))}])
        data = rng.integers(0, 2, size=(1, len(bm))).astype(np.int32)
    elif kind == "dscalar":
        first = cifti2.ScalarAxis(["m1", "m2"])
        data = rng.normal(size=(2, len(bm))).astype(np.float32)
    else:
        first = cifti2.SeriesAxis(start=1.5, step=0.8, size=12, unit="SECOND")
        data = rng.normal(size=(12, len(bm))).astype(np.float32)
    axes = (bm, first) if kind == "transposed" else (first, bm)
    if kind == "transposed":
        data = np.ascontiguousarray(data.T)
    path = tmp_path / f"x.{kind}.nii"
    nib.save(cifti2.Cifti2Image(data, header=axes), str(path))

    cifti = read_cifti(path)
    img = nib.load(str(path))
    model_dim = 0 if kind == "transposed" else 1
    ref = img.header.get_axis(model_dim)
    ours = cifti.maps[model_dim].brain_models()
    assert cifti.maps[model_dim].kind == "BRAIN_MODELS" and cifti.shape == img.shape
    np.testing.assert_array_equal(ours.structure, ref.name)
    np.testing.assert_array_equal(ours.vertex, ref.vertex)
    np.testing.assert_array_equal(ours.ijk, ref.voxel)
    np.testing.assert_array_equal(ours.volume_mask, ref.volume_mask)
    assert ours.mesh_size == ref.nvertices
    np.testing.assert_array_equal(ours.affine, ref.affine)
    assert ours.volume_shape == tuple(ref.volume_shape)
    np.testing.assert_array_equal(cifti.data(), img.get_fdata(dtype=np.float64))
    other = cifti.maps[1 - model_dim]
    if kind in ("dtseries", "transposed"):
        ref_series = img.header.get_axis(1 - model_dim)
        assert other.series() == (
            ref_series.start,
            ref_series.step,
            ref_series.size,
            ref_series.unit,
        )
    else:
        assert other.kind == {"dscalar": "SCALARS", "dlabel": "LABELS"}[kind]
    if kind == "dlabel":
        ref_table = img.header.get_axis(0).label[0]
        assert other.label_tables() == [{k: v[0] for k, v in ref_table.items()}]


def test_surface_only_file_has_no_volume(tmp_path):
    bm = cifti2.BrainModelAxis.from_mask(np.ones(8, bool), name="CortexLeft")
    path = tmp_path / "s.dtseries.nii"
    series = cifti2.SeriesAxis(0, 2.0, 10, "SECOND")
    nib.save(cifti2.Cifti2Image(np.ones((10, 8), np.float32), header=(series, bm)), str(path))
    ours = read_cifti(path).maps[1].brain_models()
    assert ours.affine is None and ours.volume_shape is None
    assert ours.mesh_size == {"CIFTI_STRUCTURE_CORTEX_LEFT": 8}


def test_not_cifti_is_a_value_error(tmp_path):
    path = tmp_path / "plain.nii"
    nib.save(nib.Nifti2Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), str(path))
    with pytest.raises(ValueError, match="no NIfTI extension"):
        read_cifti(path)
    nifti1 = tmp_path / "one.nii"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), str(nifti1))
    with pytest.raises(ValueError, match="NIfTI-2"):
        read_cifti(nifti1)


def _gifti(path, data, step_ms=None, one_array=False):
    meta = {"TimeStep": str(step_ms)} if step_ms is not None else {}
    if one_array:
        arrays = [
            nib.gifti.GiftiDataArray(
                np.asarray(data.T, dtype=np.float32), intent="NIFTI_INTENT_TIME_SERIES", meta=meta
            )
        ]
    else:
        arrays = [
            nib.gifti.GiftiDataArray(
                np.asarray(row, dtype=np.float32),
                intent="NIFTI_INTENT_TIME_SERIES",
                meta=meta if i == 0 else {},
            )
            for i, row in enumerate(data)
        ]
    nib.save(nib.gifti.GiftiImage(darrays=arrays), str(path))


@pytest.mark.parametrize("one_array", [False, True])
def test_header_info_of_a_gifti_pair_equals_the_full_read(tmp_path, one_array, monkeypatch):
    from bids_hrf.surface import samples

    monkeypatch.setitem(samples.FSAVERAGE_VERTICES, "fsaverage5", 9)
    rng = np.random.default_rng(1)
    stem = "sub-01_task-x_hemi-{}_space-fsaverage5_bold.func.gii"
    _gifti(tmp_path / stem.format("L"), rng.normal(size=(14, 9)), 1500, one_array)
    _gifti(tmp_path / stem.format("R"), rng.normal(size=(14, 9)), None, one_array)
    bold, _ = load_surface_bold(tmp_path / stem.format("L"), "fsaverage5")
    assert surface_bold_info(tmp_path / stem.format("L"), "fsaverage5") == (
        bold.data.shape[1],
        bold.data.shape[0],
        1.5,
    )
    _gifti(tmp_path / stem.format("R"), rng.normal(size=(13, 9)), None, one_array)
    with pytest.raises(DataError, match="14 volumes but .* 13"):
        surface_bold_info(tmp_path / stem.format("L"), "fsaverage5")
    _gifti(tmp_path / stem.format("R"), rng.normal(size=(14, 8)), None, one_array)
    with pytest.raises(DataError, match=r"\[8, 9\] vertices per hemisphere"):
        surface_bold_info(tmp_path / stem.format("L"), "fsaverage5")


def test_header_info_of_a_dtseries_equals_the_full_read(tmp_path):
    bm = _models()
    series = cifti2.SeriesAxis(0, 0.72, 20, "SECOND")
    data = np.random.default_rng(2).normal(size=(20, len(bm))).astype(np.float32)
    path = tmp_path / "sub-01_task-x_space-fsLR_den-91k_bold.dtseries.nii"
    nib.save(cifti2.Cifti2Image(data, header=(series, bm)), str(path))
    bold, geometry = load_surface_bold(path, "fsLR")
    assert surface_bold_info(path, "fsLR") == (len(bm), 20, 0.72)
    assert bold.step == 0.72 and geometry.volume_shape == (5, 6, 4)
    np.testing.assert_allclose(bold.data, data, atol=0)
    scalar = tmp_path / "sub-01_task-x_space-fsLR_den-91k_bold.dscalar.nii"
    nib.save(cifti2.Cifti2Image(data[:2], header=(cifti2.ScalarAxis(["a", "b"]), bm)), str(scalar))
    with pytest.raises(DataError, match="not a dense time series.*ScalarAxis"):
        surface_bold_info(scalar, "fsLR")
