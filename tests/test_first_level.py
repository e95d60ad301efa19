"""fit_first_level: per-parcel HRF designs, sample masks, input validation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import gamma

from bids_hrf.glm import DesignSpec, NoiseSpec, ParcelHRFs, fit_first_level, make_design
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.basis import canonical_estimate, sampled_hrf_model

TR = 2.0
N = 150
FT = np.arange(N) * TR


def _events():
    onsets = np.arange(5.0, 290.0, 12.0)
    return pd.DataFrame({
        "onset": onsets, "duration": 1.0,
        "trial_type": np.where(np.arange(onsets.size) % 2, "audio", "visual"),
    })


def _late_hrf(t):
    """Double gamma peaking at 7 s (1 s later than SPM's)."""
    return gamma.pdf(t, 8.0) - 0.1 * gamma.pdf(t, 17.0)


@pytest.fixture(scope="module")
def parcel_data():
    rng = np.random.default_rng(11)
    ev = _events()
    vp = np.repeat([1, 2, 3, 0], 15)  # three parcels + 15 voxels outside any parcel
    X = make_design(FT, ev, "spm", None)
    Y = 100 + rng.standard_normal((N, vp.size)) + np.outer(
        2.0 * X["audio"] + 1.0 * X["visual"], np.ones(vp.size))
    return ev, vp, Y


def test_canonical_parcels_reproduce_canonical_path(parcel_data):
    ev, vp, Y = parcel_data
    names = {1: "p1", 2: "p2", 3: "p3"}
    # duration 32 s: the full support of nilearn's kernels (25 s truncates the undershoot)
    est = canonical_estimate(["p1", "p2", "p3"], "spm", dt=0.1, duration=32.0)
    ref = fit_first_level(Y, FT, ev, hrf="spm")
    fit = fit_first_level(Y, FT, ev, hrf=ParcelHRFs(est, vp, names))
    assert set(fit.design_matrices) == {"p1", "p2", "p3", "canonical"}
    assert fit.hrf_source == {"p1": "estimate", "p2": "estimate", "p3": "estimate"}
    np.testing.assert_array_equal(fit.voxel_index["canonical"], np.arange(45, 60))
    assert list(fit.design_matrices["p1"].columns) == list(ref.columns)
    for con in ("audio - visual", "audio", ["audio", "visual"]):
        np.testing.assert_allclose(fit.compute_contrast(con).z, ref.compute_contrast(con).z,
                                   atol=1e-2)
    # voxels outside parcels use exactly the canonical design
    out = slice(45, 60)
    np.testing.assert_allclose(fit.compute_contrast("audio").z[out],
                               ref.compute_contrast("audio").z[out], rtol=1e-10)
    # with the default 25 s support, still close
    est25 = canonical_estimate(["p1", "p2", "p3"], "spm")
    fit25 = fit_first_level(Y, FT, ev, hrf=ParcelHRFs(est25, vp, names))
    np.testing.assert_allclose(fit25.compute_contrast("audio").z,
                               ref.compute_contrast("audio").z, atol=5e-2)


def test_matching_hrf_beats_canonical():
    rng = np.random.default_rng(5)
    ev = _events()
    t = np.arange(0, 32.01, 0.1)
    truth = _late_hrf(t)
    X = make_design(FT, ev, sampled_hrf_model(t, truth), None)
    n_vox = 40
    Y = 50 + 1.5 * rng.standard_normal((N, n_vox)) + np.outer(12.0 * X["audio"], np.ones(n_vox))
    est = HRFEstimate(time=t, hrfs=truth[:, None], labels=["late"], method="fir")
    vp = np.ones(n_vox, int)
    z_match = fit_first_level(Y, FT, ev, hrf=ParcelHRFs(est, vp, {1: "late"}))\
        .compute_contrast("audio").z
    z_canon = fit_first_level(Y, FT, ev, hrf="spm").compute_contrast("audio").z
    assert np.mean(z_canon) > 2  # detected either way, better with the right HRF
    assert np.mean(z_match) > np.mean(z_canon) + 0.3
    assert np.mean(z_match > z_canon) > 0.8


def test_parcel_without_hrf_falls_back_with_warning(parcel_data):
    ev, vp, Y = parcel_data
    est = canonical_estimate(["p1", "p2"], "spm")
    bad = est.hrfs.copy()
    bad[:, 1] = np.nan
    est_bad = HRFEstimate(time=est.time, hrfs=bad, labels=["p1", "p2"], method="jde-vem")
    with pytest.warns(UserWarning, match="'p3' has no HRF"):
        fit = fit_first_level(Y, FT, ev, hrf=ParcelHRFs(est, vp, {1: "p1", 2: "p2", 3: "p3"}))
    assert fit.hrf_source["p3"] == "canonical"
    np.testing.assert_array_equal(fit.voxel_index["canonical"],
                                  np.r_[np.arange(30, 45), np.arange(45, 60)])
    with pytest.warns(UserWarning, match="'p2': HRF unusable"):
        fit = fit_first_level(Y, FT, ev, hrf=ParcelHRFs(est_bad, vp, {1: "p1", 2: "p2"}))
    assert fit.hrf_source == {"p1": "estimate", "p2": "canonical"}
    # default names are str(label)
    est_num = canonical_estimate(["1", "2", "3"], "spm")
    fit = fit_first_level(Y, FT, ev, hrf=ParcelHRFs(est_num, vp))
    assert set(fit.design_matrices) == {"1", "2", "3", "canonical"}
    fit_f = fit_first_level(Y, FT, ev, hrf=ParcelHRFs(est_num, vp.astype(float)))
    np.testing.assert_array_equal(fit_f.compute_contrast("audio").z,
                                  fit.compute_contrast("audio").z)
    with pytest.raises(ValueError, match="integer parcel labels"):
        fit_first_level(Y, FT, ev, hrf=ParcelHRFs(est_num, vp + 0.5))


def test_fir_design_path(parcel_data):
    ev, _, Y = parcel_data
    fit = fit_first_level(Y, FT, ev, hrf="fir", design=DesignSpec(fir_delays=range(6)),
                          noise=NoiseSpec("ols"))
    assert "audio_delay_5" in fit.columns
    res = fit.compute_contrast(["audio_delay_2", "audio_delay_3"])
    assert res.contrast_type == "F" and res.effect.shape == (2, Y.shape[1])
    pd.testing.assert_frame_equal(fit.design_matrices["canonical"],
                                  make_design(FT, ev, "fir", None, fir_delays=range(6)))


def test_sample_mask_forms_agree(parcel_data):
    ev, _, Y = parcel_data
    keep = np.arange(4, N)
    boolean = np.zeros(N, bool)
    boolean[4:] = True
    a = fit_first_level(Y, FT, ev, sample_mask=keep)
    b = fit_first_level(Y, FT, ev, sample_mask=boolean)
    full = fit_first_level(Y, FT, ev)
    np.testing.assert_array_equal(a.compute_contrast("audio").z, b.compute_contrast("audio").z)
    assert a.design_matrices["canonical"].shape[0] == N - 4
    assert not np.allclose(a.compute_contrast("audio").z, full.compute_contrast("audio").z)
    assert np.all(a.compute_contrast("audio").dof == full.compute_contrast("audio").dof - 4)


def test_f_contrast_and_stat_types(parcel_data):
    ev, _, Y = parcel_data
    fit = fit_first_level(Y, FT, ev, noise=NoiseSpec("ols"))
    res = fit.compute_contrast(["audio", "visual"])
    assert res.contrast_type == "F" and res.dim == 2 and res.effect.shape == (2, Y.shape[1])
    # an F test of one row equals the squared t
    t = fit.compute_contrast("audio - visual")
    f1 = fit.compute_contrast("audio - visual", stat_type="F")
    np.testing.assert_allclose(f1.stat, t.stat**2, rtol=1e-8)
    np.testing.assert_allclose(f1.p, 2 * np.minimum(t.p, 1 - t.p), rtol=1e-6, atol=1e-12)
    # a weight vector over the columns gives the same as the expression
    w = np.array([float(c == "audio") - float(c == "visual") for c in fit.columns])
    np.testing.assert_allclose(fit.compute_contrast(w).z, t.z)
    with pytest.raises(ValueError, match="expected"):
        fit.compute_contrast(np.ones(3))
    with pytest.raises(ValueError, match="one row"):
        fit.compute_contrast(["audio", "visual"], stat_type="t")
    with pytest.raises(ValueError, match="unknown name"):
        fit.compute_contrast("auditory")
    assert fit.r_square.shape == (Y.shape[1],) and 0 < fit.r_square.mean() < 1


def test_input_validation(parcel_data):
    ev, vp, Y = parcel_data
    with pytest.raises(ValueError, match="frame_times has"):
        fit_first_level(Y, FT[:-1], ev)
    with pytest.raises(ValueError, match="NaN"):
        fit_first_level(np.where(np.eye(N, Y.shape[1]) > 0, np.nan, Y), FT, ev)
    with pytest.raises(ValueError, match=r"sample_mask indices must be in \[0, 149\]"):
        fit_first_level(Y, FT, ev, sample_mask=np.array([0, 150]))
    with pytest.raises(ValueError, match="Boolean sample_mask has 3 entries"):
        fit_first_level(Y, FT, ev, sample_mask=np.ones(3, bool))
    with pytest.raises(ValueError, match="needs voxel_parcels"):
        fit_first_level(Y, FT, ev, hrf=canonical_estimate(["a"]))
    with pytest.raises(ValueError, match="voxel_parcels has 3 entries"):
        fit_first_level(Y, FT, ev, hrf=ParcelHRFs(canonical_estimate(["a"]), [1, 2, 3]))
    with pytest.raises(ValueError, match="model name or ParcelHRFs"):
        fit_first_level(Y, FT, ev, hrf=np.ones(3))
    with pytest.raises(ValueError, match="Unknown HRF model 'spn'"):
        fit_first_level(Y, FT, ev, hrf="spn")
    with pytest.raises(ValueError, match="signal_scaling"):
        NoiseSpec(signal_scaling=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_first_level(Y, FT, ev, hrf="spm+derivative")  # alias accepted, no warning


def test_parcel_chunks_keep_parcels_whole_and_results_equal_one_fit(parcel_data):
    """With one HRF per parcel, chunks hold whole parcels (each parcel's design and AR
    models built once) and the maps equal those of one fit of all voxels, in voxel order."""
    from functools import partial

    from bids_hrf.steps import glm

    ev, vp, Y = parcel_data
    order = np.random.default_rng(0).permutation(vp.size)  # parcels scattered over voxels
    vp, Y = vp[order], Y[:, order]
    names = {1: "p1", 2: "p2", 3: "p3"}
    est = canonical_estimate(["p1", "p2", "p3"], "glover", dt=0.1, duration=32.0)
    chunks, sorted_voxels = glm.parcel_chunks(vp, N, chunk_bytes=1)  # 1000-voxel minimum
    assert len(chunks) == 1
    chunks, sorted_voxels = glm.parcel_chunks(np.repeat(vp, 50), N, chunk_bytes=1)
    assert [np.unique(np.repeat(vp, 50)[c]).tolist() for c in chunks] == [[0, 1], [2, 3]]
    np.testing.assert_array_equal(np.sort(np.concatenate(chunks)), np.arange(vp.size * 50))
    fit = partial(fit_first_level, frame_times=FT, events=ev)
    specs = {"av": "audio - visual", "f": ["audio", "visual"]}
    Y_big, vp_big = np.tile(Y, 30), np.tile(vp, 30)  # 1800 voxels: 2 chunks of >= 1000
    results = {}
    original = glm.GLM_CHUNK_BYTES
    try:
        for name, chunk_bytes in (("one", 10**12), ("many", 1)):
            glm.GLM_CHUNK_BYTES = chunk_bytes
            results[name] = glm._fit_in_chunks(fit, Y_big, ParcelHRFs(est, vp_big, names),
                                               specs)
    finally:
        glm.GLM_CHUNK_BYTES = original
    one, many = results["one"], results["many"]
    assert many.n_chunks == 2 and one.n_chunks == 1
    np.testing.assert_array_equal(np.concatenate(many.r_square), np.concatenate(one.r_square))
    for label in specs:
        for stat in glm.STATS:
            np.testing.assert_array_equal(np.concatenate(many.contrasts[label][stat], axis=-1),
                                          np.concatenate(one.contrasts[label][stat], axis=-1))
        assert glm._join_dof(many.contrasts[label]["dof"]).shape == \
            glm._join_dof(one.contrasts[label]["dof"]).shape
