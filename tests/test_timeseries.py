"""Tests of bids_hrf.timeseries against direct computations with nilearn."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.masking import apply_mask, unmask
from nilearn.signal import clean

from bids_hrf.errors import DataError
from bids_hrf.timeseries import (
    extract_parcel_timeseries,
    masked_voxel_data,
    parcel_means,
    voxel_parcels,
)

AFF = np.diag([3.0, 3.0, 3.0, 1.0])


def make_run(n_scans=30, seed=0):
    rng = np.random.default_rng(seed)
    shape = (8, 7, 6)
    data = rng.normal(100, 5, size=shape + (n_scans,)).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    mask[1:7, 1:6, 1:5] = 1
    atlas = np.zeros(shape, np.int32)
    atlas[:4, :, :] = 3
    atlas[4:, :4, :] = 7
    atlas[4:, 4:, :3] = 9
    return (nib.Nifti1Image(data, AFF), nib.Nifti1Image(mask, AFF),
            nib.Nifti1Image(atlas, AFF))


def test_masked_voxel_data_matches_apply_mask_and_unmask():
    bold, mask, atlas = make_run()
    vox = masked_voxel_data(bold, mask)
    assert vox.Y.dtype == np.float32 and vox.Y.shape == (30, int(mask.get_fdata().sum()))
    np.testing.assert_allclose(vox.Y, apply_mask(bold, mask), rtol=1e-6)
    # voxel_ijk indexes the same voxels
    data = bold.get_fdata()
    np.testing.assert_allclose(vox.Y[:, 5], data[tuple(vox.voxel_ijk[5])], rtol=1e-6)
    # labels in the same order: unmasking them gives back the atlas inside the mask
    parcels = voxel_parcels(atlas, vox.mask_img)
    back = unmask(parcels.astype(float), vox.mask_img).get_fdata()
    np.testing.assert_array_equal(back, atlas.get_fdata() * mask.get_fdata())


def test_bad_voxels_are_dropped_from_mask(tmp_path):
    bold, mask, _ = make_run()
    data = bold.get_fdata().astype(np.float32)
    data[2, 2, 2, 4] = np.nan
    data[3, 3, 3, :] = np.inf
    data[4, 4, 2, :] = 7.0  # constant
    data[0, 0, 0, 3] = np.nan  # outside the mask: ignored
    path = tmp_path / "sub-01_bold.nii.gz"
    nib.save(nib.Nifti1Image(data, AFF), path)
    with pytest.warns(UserWarning, match=r"sub-01_bold.nii.gz: dropped 2 voxels with NaN/inf "
                      r"values and 1 constant"):
        vox = masked_voxel_data(str(path), mask)
    eff = vox.mask_img.get_fdata() > 0
    assert eff.sum() == mask.get_fdata().sum() - 3
    assert not eff[2, 2, 2] and not eff[3, 3, 3] and not eff[4, 4, 2]
    assert np.isfinite(vox.Y).all()


def test_bold_shape_errors(tmp_path):
    _, mask, _ = make_run()
    three = tmp_path / "three_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 7, 6), np.float32), AFF), three)
    with pytest.raises(DataError, match="three_bold.nii.gz is 3D"):
        masked_voxel_data(str(three), mask)
    short = tmp_path / "short_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 7, 6, 5), np.float32), AFF),
             short)
    with pytest.raises(DataError, match="short_bold.nii.gz has 5 volumes"):
        masked_voxel_data(str(short), mask)
    bold, _, _ = make_run()
    with pytest.raises(DataError, match="not on the grid"):
        masked_voxel_data(bold, nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), AFF))


def test_smoothing_matches_nilearn_masker():
    from nilearn.maskers import NiftiMasker

    bold, mask, _ = make_run()
    vox = masked_voxel_data(bold, mask, smoothing_fwhm=6.0)
    ref = NiftiMasker(mask_img=mask, smoothing_fwhm=6.0, standardize=False).fit_transform(bold)
    np.testing.assert_allclose(vox.Y, ref, rtol=1e-5, atol=1e-4)


def test_parcel_means_known_answer():
    Y = np.array([[1.0, 3.0, 10.0, 5.0], [2.0, 4.0, 20.0, 5.0]])
    parcels = np.array([2, 2, 5, 0])
    np.testing.assert_allclose(parcel_means(Y, parcels, [5, 2]), [[10, 2], [20, 3]])


@pytest.mark.parametrize("high_pass", [None, 0.02])
def test_parcel_timeseries_equal_direct_computation(high_pass):
    bold, mask, atlas = make_run(n_scans=40)
    rng = np.random.default_rng(3)
    confounds = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    sample_mask = np.setdiff1d(np.arange(40), [0, 1, 17])
    labels = {3: "left", 7: "right_low", 9: "right_high"}
    ts = extract_parcel_timeseries(bold, atlas, labels, mask, confounds=confounds,
                                   sample_mask=sample_mask, tr=2.0, high_pass=high_pass)
    assert list(ts.columns) == ["left", "right_low", "right_high"]
    np.testing.assert_array_equal(ts.index, sample_mask)
    assert ts.attrs["parcel_index"] == [3, 7, 9]
    # direct: clean every voxel with nilearn, then average per parcel
    Y = apply_mask(bold, mask).astype(float)
    cleaned = clean(Y, detrend=False, standardize=False, confounds=confounds.to_numpy(),
                    sample_mask=sample_mask, t_r=2.0, high_pass=high_pass,
                    filter="cosine" if high_pass else False)
    lab = atlas.get_fdata()[mask.get_fdata() > 0]
    for idx, name in labels.items():
        np.testing.assert_allclose(ts[name], cleaned[:, lab == idx].mean(axis=1),
                                   rtol=1e-6, atol=1e-6)


def test_parcel_timeseries_no_cleaning_is_plain_mean():
    bold, mask, atlas = make_run()
    ts = extract_parcel_timeseries(bold, atlas, {3: "a"}, mask)
    data = bold.get_fdata()
    sel = (atlas.get_fdata() == 7) & (mask.get_fdata() > 0)
    np.testing.assert_allclose(ts["7"], data[sel].mean(axis=0), rtol=1e-6)
    assert list(ts.columns) == ["a", "7", "9"]  # unnamed parcels named by index


def test_parcel_timeseries_standardize_and_absent_parcel():
    bold, mask, atlas = make_run()
    with pytest.warns(UserWarning, match="ghost"):
        ts = extract_parcel_timeseries(bold, atlas, {3: "a", 7: "b", 9: "c", 11: "ghost"},
                                       mask, standardize="zscore_sample", detrend=True)
    np.testing.assert_allclose(ts.mean(), 0, atol=1e-6)
    np.testing.assert_allclose(ts.std(ddof=1), 1, atol=1e-6)
    assert "ghost" not in ts.columns
    with pytest.raises(ValueError, match="tr"):
        extract_parcel_timeseries(bold, atlas, {}, mask, high_pass=0.01)
    with pytest.raises(ValueError, match="rows"):
        extract_parcel_timeseries(bold, atlas, {}, mask, confounds=np.zeros((3, 2)))


@pytest.mark.golden
def test_parcel_timeseries_match_nilearn_labels_masker():
    from nilearn.maskers import NiftiLabelsMasker

    bold, mask, atlas = make_run(n_scans=40, seed=5)
    rng = np.random.default_rng(8)
    confounds = pd.DataFrame(rng.normal(size=(40, 4)))
    sample_mask = np.setdiff1d(np.arange(40), [0, 1, 2, 30])
    ts = extract_parcel_timeseries(bold, atlas, {3: "a", 7: "b", 9: "c"}, mask,
                                   confounds=confounds, sample_mask=sample_mask, tr=2.0,
                                   detrend=True, standardize="zscore_sample")
    masker = NiftiLabelsMasker(labels_img=atlas, mask_img=mask, standardize="zscore_sample",
                               detrend=True, t_r=2.0, strategy="mean")
    ref = masker.fit_transform(bold, confounds=confounds.to_numpy(), sample_mask=sample_mask)
    assert ref.shape == ts.shape
    np.testing.assert_allclose(ts.to_numpy(), ref, rtol=1e-5, atol=1e-5)
