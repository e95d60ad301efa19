"""FIR HRF estimation: tent regressors, rank-1 shape recovery, variance, multi-run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import gamma

from bids_hrf.hrf.fir.estimator import estimate_fir, tent_regressors

TR = 2.0


def _truth(t):
    """Double gamma peaking at 7 s with an undershoot."""
    return gamma.pdf(t, 8.0) - 0.15 * gamma.pdf(t, 17.0)


def _simulate(rng, n_scans=200, dt_sim=0.1, amps=(1.0, 0.6), noise=0.25, n_parcels=3,
              jitter=True):
    """Impulse events of two conditions convolved with the truth; noise sd relative to the
    peak of a single response (``noise`` = 0.25 -> peak SNR 4)."""
    duration = n_scans * TR
    if jitter:
        onsets = np.sort(rng.uniform(0, duration - 30, 50))
    else:
        onsets = np.arange(4, duration - 30, 8.0)
    trial = np.where(rng.random(onsets.size) < 0.5, "a", "b")
    events = pd.DataFrame({"onset": onsets, "duration": 0.0, "trial_type": trial})
    grid = np.arange(0, duration + 40, dt_sim)
    h = _truth(np.arange(0, 32, dt_sim))
    h /= h.max()
    stim = np.zeros(grid.size)
    for o, c in zip(onsets, trial, strict=True):
        stim[int(round(o / dt_sim))] += amps[0] if c == "a" else amps[1]
    bold = np.convolve(stim, h)[: grid.size]
    ft = np.arange(n_scans) * TR
    signal = np.interp(ft, grid, bold)
    drift = np.cos(np.pi * ft / ft[-1])
    Y = (signal[:, None] + 0.5 * drift[:, None] + noise * rng.standard_normal((n_scans, n_parcels))
         + 10)
    return Y, events, ft


def test_tent_regressors_are_shifted_sticks_on_the_scan_grid():
    ft = np.arange(30) * TR
    ev = pd.DataFrame({"onset": [4.0, 20.0], "duration": 0.0, "trial_type": ["a", "a"]})
    X = tent_regressors(ev, ["a"], ft, TR, 5)
    expected = np.zeros((30, 5))
    for o in (4.0, 20.0):
        for k in range(5):
            expected[int(o / TR) + k, k] += 1
    np.testing.assert_allclose(X, expected, atol=1e-12)
    # half-way between knots: linear interpolation weights
    ev2 = pd.DataFrame({"onset": [5.0], "duration": 0.0, "trial_type": ["a"]})
    X2 = tent_regressors(ev2, ["a"], ft, TR, 3)
    np.testing.assert_allclose(X2[3], [0.5, 0.5, 0])  # scan at 6 s: lag 1 s
    np.testing.assert_allclose(X2[4], [0, 0.5, 0.5])  # scan at 8 s: lag 3 s
    # a block of duration D integrates the tent: a long block reaches D-independent plateau dt
    ev3 = pd.DataFrame({"onset": [0.0], "duration": [40.0], "trial_type": ["a"]})
    X3 = tent_regressors(ev3, ["a"], ft, TR, 3)
    np.testing.assert_allclose(X3[10], [TR, TR, TR], rtol=1e-6)


@pytest.mark.parametrize("dt", [TR, 1.0])
def test_recovers_known_shape(dt):
    rng = np.random.default_rng(0)
    Y, events, ft = _simulate(rng)
    est = estimate_fir(Y, events, ft, TR, ["p0", "p1", "p2"], fir_duration=24.0, dt=dt)
    assert est.method == "fir" and est.labels == ["p0", "p1", "p2"]
    assert est.time[0] == 0 and est.time[-1] == pytest.approx(24.0)
    assert np.allclose(np.linalg.norm(est.hrfs, axis=0), 1.0)
    truth = _truth(est.time)
    for p in range(3):
        r = np.corrcoef(est.hrfs[:, p], truth)[0, 1]
        assert r > 0.9, (p, r)
    mean_peak = est.time[np.argmax(est.hrfs.mean(axis=1))]
    assert abs(mean_peak - est.time[np.argmax(truth)]) <= dt
    amps = est.parcel_tables["fir-amplitudes"]
    ratio = (amps["b"] / amps["a"]).to_numpy()
    assert np.all(np.abs(ratio - 0.6) < 0.2)
    assert np.all(amps["rank1_fraction"] > 0.8)
    assert est.variance.shape == est.hrfs.shape and np.all(est.variance > 0)


def test_variance_matches_monte_carlo_spread():
    rng = np.random.default_rng(1)
    Y, events, ft = _simulate(rng, n_parcels=300, noise=0.3)
    est = estimate_fir(Y, events, ft, TR, [str(i) for i in range(300)], noise_model="ols")
    # parcels are independent replicates of the same truth: the spread of the estimates
    # across parcels should match the reported variance (within 35 %)
    spread = est.hrfs.var(axis=1)
    reported = est.variance.mean(axis=1)
    sel = reported > 1e-6
    ratio = spread[sel] / reported[sel]
    assert 0.65 < np.median(ratio) < 1.35


def test_more_noise_more_variance_and_multi_run():
    rng = np.random.default_rng(2)
    Y1, ev1, ft = _simulate(rng, noise=0.2)
    Y2, ev2, _ = _simulate(rng, noise=0.2)
    one = estimate_fir(Y1, ev1, ft, TR, ["a", "b", "c"])
    two = estimate_fir([Y1, Y2], [ev1, ev2], [ft, ft], TR, ["a", "b", "c"],
                       confounds=[None, pd.DataFrame({"m": rng.standard_normal(ft.size)})])
    assert two.parameters["n_runs"] == 2
    assert np.median(two.variance) < np.median(one.variance)
    truth = _truth(two.time)
    assert min(np.corrcoef(two.hrfs[:, p], truth)[0, 1] for p in range(3)) > 0.95
    noisy = estimate_fir(Y1 + 0.5 * rng.standard_normal(Y1.shape), ev1, ft, TR, ["a", "b", "c"])
    assert np.median(noisy.variance) > np.median(one.variance)


def test_errors():
    rng = np.random.default_rng(3)
    Y, events, ft = _simulate(rng, jitter=False)
    with pytest.raises(ValueError, match="rank deficient"):
        estimate_fir(Y[:20], events, ft[:20], TR, ["a", "b", "c"], fir_duration=36.0)
    with pytest.raises(ValueError, match="3 parcel time series but 2"):
        estimate_fir(Y, events, ft, TR, ["a", "b"])
    with pytest.raises(ValueError, match="events: 1 entries for 2 runs"):
        estimate_fir([Y, Y], [events], [ft, ft], TR, ["a", "b", "c"])
    with pytest.raises(ValueError, match="tr must be"):
        estimate_fir(Y, events, ft, 0.0, ["a", "b", "c"])


def test_fir_hrfs_feed_the_per_parcel_glm():
    """Late truth HRF: the GLM with the FIR-estimated parcel HRFs detects the effect
    better than the canonical GLM."""
    from bids_hrf.glm import ParcelHRFs, fit_first_level

    rng = np.random.default_rng(4)
    Y, events, ft = _simulate(rng, n_parcels=40, noise=0.5)
    vp = np.repeat([1, 2], 20)
    means = np.column_stack([Y[:, vp == k].mean(axis=1) for k in (1, 2)])
    est = estimate_fir(means, events, ft, TR, ["left", "right"], fir_duration=30.0)
    names = {1: "left", 2: "right"}
    z_fir = fit_first_level(Y, ft, events, hrf=ParcelHRFs(est, vp, names))\
        .compute_contrast("a + b").z
    z_can = fit_first_level(Y, ft, events, hrf="spm").compute_contrast("a + b").z
    assert np.median(z_fir) > np.median(z_can) + 0.3


def test_fine_dt_on_locked_onsets_falls_back_to_tr_knots():
    rng = np.random.default_rng(6)
    Y, events, ft = _simulate(rng, jitter=False)
    with pytest.warns(UserWarning, match="not identifiable"):
        fine = estimate_fir(Y, events, ft, TR, ["a", "b", "c"], dt=0.5)
    coarse = estimate_fir(Y, events, ft, TR, ["a", "b", "c"])
    assert fine.parameters["knot_spacing"] == TR and fine.sampling_period == 0.5
    assert fine.time[-1] == pytest.approx(24.0)
    # the fine table is the coarse piecewise-linear HRF sampled every 0.5 s (renormalised)
    for p in range(3):
        interp = np.interp(fine.time, coarse.time, coarse.hrfs[:, p])
        np.testing.assert_allclose(fine.hrfs[:, p], interp / np.linalg.norm(interp), atol=1e-9)
    # variance at the knots is the coarse variance rescaled by the same normalisation
    scale = np.linalg.norm(np.interp(fine.time, coarse.time, coarse.hrfs[:, 0]))
    np.testing.assert_allclose(fine.variance[::4, 0], coarse.variance[:, 0] / scale**2,
                               rtol=1e-6)
    amps_f = fine.parcel_tables["fir-amplitudes"]["a"].to_numpy()
    amps_c = coarse.parcel_tables["fir-amplitudes"]["a"].to_numpy()
    recon_f = np.outer(fine.hrfs[::4, 0], amps_f[0])
    recon_c = np.outer(coarse.hrfs[:, 0], amps_c[0])
    np.testing.assert_allclose(recon_f, recon_c, rtol=1e-6, atol=1e-9)
