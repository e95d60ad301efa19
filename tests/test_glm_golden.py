"""Golden comparison: the canonical path of fit_first_level against nilearn's FirstLevelModel."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import FirstLevelModel

from bids_hrf.glm import NoiseSpec, fit_first_level, fixed_effects, make_design

pytestmark = pytest.mark.golden

TR = 2.0
N_SCANS = 120
SHAPE = (8, 8, 8)


@pytest.fixture(scope="module")
def dataset():
    """8x8x8 image, 120 scans, two conditions, one active blob, AR(1) noise, confounds."""
    rng = np.random.default_rng(42)
    frame_times = np.arange(N_SCANS) * TR
    onsets = np.arange(6.0, 225.0, 14.0)
    events = pd.DataFrame(
        {
            "onset": onsets,
            "duration": 2.0,
            "trial_type": np.where(np.arange(onsets.size) % 2, "audio", "visual"),
        }
    )
    mask = np.zeros(SHAPE, bool)
    mask[1:7, 1:7, 1:7] = True
    n_vox = int(mask.sum())
    blob = np.zeros(SHAPE)
    blob[2:5, 2:5, 2:5] = 1.0
    amp = blob[mask]
    X = make_design(frame_times, events, "spm", None)
    innov = rng.standard_normal((N_SCANS, n_vox))
    noise = np.zeros_like(innov)
    for t in range(N_SCANS):
        noise[t] = 0.4 * noise[t - 1] + innov[t] if t else innov[t]
    confounds = pd.DataFrame(
        {"trans_x": rng.standard_normal(N_SCANS), "csf": np.cumsum(rng.standard_normal(N_SCANS))}
    )
    Y = (
        500.0
        + 20 * rng.random(n_vox)
        + 2 * noise
        + 20.0 * np.outer(X["audio"], amp)
        + 8.0 * np.outer(X["visual"], amp)
        + np.outer(confounds["trans_x"], rng.uniform(0.5, 2.0, n_vox))
    )
    data = np.zeros((*SHAPE, N_SCANS))
    data[mask] = Y.T
    img = nib.Nifti1Image(data, np.eye(4))
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), np.eye(4))
    return {
        "Y": Y, "frame_times": frame_times, "events": events, "confounds": confounds,
        "img": img, "mask_img": mask_img, "mask": mask, "amp": amp,
    }


def _nilearn(d, hrf, sample_mask, signal_scaling=0):
    flm = FirstLevelModel(
        t_r=TR, hrf_model=hrf, drift_model="cosine", high_pass=0.01, noise_model="ar1",
        minimize_memory=False, mask_img=d["mask_img"], signal_scaling=signal_scaling,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flm.fit(d["img"], events=d["events"], confounds=d["confounds"], sample_masks=sample_mask)
    return flm


def _f_matrix(columns):
    return np.array([[float(c == name) for c in columns] for name in ("audio", "visual")])


@pytest.mark.parametrize("hrf", ["spm", "glover", "spm + derivative"])
@pytest.mark.parametrize("masked", [False, True])
def test_z_maps_match_first_level_model(dataset, hrf, masked):
    d = dataset
    sample_mask = np.r_[np.arange(3, 50), np.arange(53, N_SCANS)] if masked else None
    flm = _nilearn(d, hrf, sample_mask)
    fit = fit_first_level(
        d["Y"], d["frame_times"], d["events"], hrf=hrf, confounds=d["confounds"],
        sample_mask=sample_mask,
    )
    ours_design = fit.design_matrices["canonical"]
    np.testing.assert_allclose(ours_design.to_numpy(), flm.design_matrices_[0].to_numpy())
    mask = d["mask"]
    for expression in ("audio - visual", "audio", "0.5*audio + 0.5*visual"):
        ref = flm.compute_contrast(expression, output_type="all")
        res = fit.compute_contrast(expression)
        np.testing.assert_allclose(res.z, ref["z_score"].get_fdata()[mask], atol=1e-3)
        np.testing.assert_allclose(res.effect, ref["effect_size"].get_fdata()[mask], atol=1e-6)
        np.testing.assert_allclose(res.stat, ref["stat"].get_fdata()[mask], atol=1e-3)
        assert res.contrast_type == "t"
    # F contrast on both conditions
    ref_f = flm.compute_contrast(_f_matrix(fit.columns), stat_type="F", output_type="all")
    res_f = fit.compute_contrast(["audio", "visual"])
    assert res_f.contrast_type == "F"
    np.testing.assert_allclose(res_f.z, ref_f["z_score"].get_fdata()[mask], atol=1e-3)
    np.testing.assert_allclose(res_f.stat, ref_f["stat"].get_fdata()[mask], atol=1e-3)
    # the blob is detected: this comparison is not between two empty maps
    assert np.median(res_f.z[d["amp"] > 0]) > 5 > 2 > np.median(res_f.z[d["amp"] == 0])


def test_without_signal_scaling(dataset):
    d = dataset
    flm = _nilearn(d, "spm", None, signal_scaling=False)
    fit = fit_first_level(
        d["Y"], d["frame_times"], d["events"], hrf="spm", confounds=d["confounds"],
        noise=NoiseSpec(signal_scaling=False),
    )
    ref = flm.compute_contrast("audio - visual", output_type="all")
    res = fit.compute_contrast("audio - visual")
    np.testing.assert_allclose(res.z, ref["z_score"].get_fdata()[d["mask"]], atol=1e-3)
    # raw units: the effect in the blob is about the simulated 20 - 8 = 12
    np.testing.assert_allclose(res.effect, ref["effect_size"].get_fdata()[d["mask"]], atol=1e-6)
    assert abs(np.median(res.effect[d["amp"] > 0]) - 12.0) < 2.0


def test_r_square_matches_first_level_model(dataset):
    d = dataset
    flm = _nilearn(d, "spm", None)
    fit = fit_first_level(d["Y"], d["frame_times"], d["events"], confounds=d["confounds"])
    ref = flm.r_square[0].get_fdata()[d["mask"]].ravel()
    np.testing.assert_allclose(fit.r_square, ref, atol=1e-6)


def test_fixed_effects_match_two_run_first_level_model(dataset):
    """Two runs: our per-run fits + fixed_effects(precision_weighted=False) equal nilearn's
    multi-run FirstLevelModel (which averages effects)."""
    d = dataset
    rng = np.random.default_rng(7)
    Y2 = d["Y"] + 3 * rng.standard_normal(d["Y"].shape)
    data2 = np.zeros((*SHAPE, N_SCANS))
    data2[d["mask"]] = Y2.T
    img2 = nib.Nifti1Image(data2, np.eye(4))
    flm = FirstLevelModel(
        t_r=TR, hrf_model="spm", drift_model="cosine", high_pass=0.01, noise_model="ar1",
        mask_img=d["mask_img"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flm.fit([d["img"], img2], events=[d["events"]] * 2, confounds=[d["confounds"]] * 2)
        ref_t = flm.compute_contrast("audio - visual", output_type="all")
        ref_f = flm.compute_contrast([_f_matrix(flm.design_matrices_[0].columns)] * 2,
                                     stat_type="F")
    fits = [
        fit_first_level(y, d["frame_times"], d["events"], confounds=d["confounds"])
        for y in (d["Y"], Y2)
    ]
    res_t = fixed_effects([f.compute_contrast("audio - visual") for f in fits],
                          precision_weighted=False)
    mask = d["mask"]
    np.testing.assert_allclose(res_t.z, ref_t["z_score"].get_fdata()[mask], atol=1e-3)
    np.testing.assert_allclose(res_t.effect, ref_t["effect_size"].get_fdata()[mask], atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res_f = fixed_effects([f.compute_contrast(["audio", "visual"]) for f in fits])
    np.testing.assert_allclose(res_f.z, ref_f.get_fdata()[mask], atol=1e-3)
