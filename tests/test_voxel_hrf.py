"""Voxel-wise HRF estimators (rfir, r1glm, library): known answers and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from bids_hrf.errors import DataError
from bids_hrf.hrf._voxel import (
    ar1_bins,
    as_runs,
    make_event_design,
    voxel_glm,
    voxel_hrf_parameters,
    whitened_bins,
)
from bids_hrf.hrf.library import HRFLibrary, default_library, read_library_tsv
from bids_hrf.hrf.r1glm import RankOneGLM, hrf_basis
from bids_hrf.hrf.rfir import RegularizedFIR, smoothness_matrix
from tests.jde_simulation import gamma_hrf
from tests.voxel_simulation import simulate


@pytest.fixture(scope="module")
def sim():
    return simulate(n_parcels=3, voxels_per_parcel=30, n_runs=2, n_scans=200, noise_sd=0.5,
                    seed=0)


@pytest.fixture(scope="module")
def design(sim):
    return make_event_design(sim.events, sim.frame_times, fir_duration=24.0)


def _corr(a, b):
    return np.array([np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(a.shape[1])])


# ---------------------------------------------------------------- design and bad input
def test_fir_longer_than_run_is_a_clear_error(sim):
    ft = sim.frame_times[0][:10]
    with pytest.raises(ValueError, match="longer than the run.*fir-duration"):
        make_event_design(sim.events[0], ft, fir_duration=24.0)


def test_data_must_match_design(sim, design):
    with pytest.raises(ValueError, match="runs of data"):
        as_runs(sim.Y[0], design)
    bad = [sim.Y[0].copy(), sim.Y[1]]
    bad[0][3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RegularizedFIR().fit(bad, design)


def test_ar1_estimate_close_to_truth():
    s = simulate(n_parcels=1, voxels_per_parcel=60, n_runs=2, n_scans=300, rho=0.4, seed=2)
    d = make_event_design(s.events, s.frame_times)
    rho = ar1_bins(as_runs(s.Y, d), d)
    assert abs(np.median(rho) - 0.4) < 0.08


def test_parameters_of_a_known_hrf():
    t = np.arange(0, 32, 0.5)
    h = np.column_stack([gamma_hrf(t, 5.0), gamma_hrf(t, 7.0)])
    p = voxel_hrf_parameters(h, t)
    np.testing.assert_allclose(p["time_to_peak"], [5.0, 7.0], atol=0.3)
    np.testing.assert_allclose(p["height"], 1.0, atol=0.02)
    assert np.all((p["undershoot"] > 0.05) & (p["undershoot"] < 0.5))


# ---------------------------------------------------------------- rfir
def test_smoothness_matrix_is_invertible_second_difference():
    D = smoothness_matrix(6)
    assert D.shape == (4, 4)
    np.testing.assert_array_equal(D[1], [1, -2, 1, 0])
    assert np.linalg.matrix_rank(D) == 4


def test_rfir_recovers_hrfs_and_beats_unregularised_fir(sim, design):
    est = RegularizedFIR(noise_model="ols").fit(sim.Y, design)
    truth = sim.true_hrfs(design.time)
    act = sim.amplitudes[0] > 0
    h = est.hrfs_[:, 0]  # condition c0
    assert np.median(_corr(h, truth)[act]) > 0.95
    ttp = voxel_hrf_parameters(h, design.time)["time_to_peak"]
    assert np.nanmedian(np.abs(ttp - sim.time_to_peak)[act]) < 0.5
    # plain least squares on the same interior knots
    b = next(whitened_bins(sim.Y, design, None))
    M, K = len(design.conditions), design.n_knots
    X = np.vstack(b.X).reshape(-1, M, K)[:, :, 1:-1].reshape(-1, M * (K - 2))
    ols = np.linalg.lstsq(X, np.vstack(b.Y), rcond=None)[0][: K - 2]
    h_true = truth[1:-1] * sim.amplitudes[0]
    err_rfir = np.sum((h[1:-1] - h_true) ** 2, axis=0)
    err_ols = np.sum((ols - h_true) ** 2, axis=0)
    assert np.median(err_rfir) < 0.8 * np.median(err_ols)
    assert np.all(est.hrf_var_[1:-1] > 0) and np.all(est.hrfs_[[0, -1]] == 0)


def test_rfir_posterior_mean_and_evidence_match_dense_formulas(sim, design):
    """Posterior mean = (X'X + lam D'D)^-1 X'y at the selected lam, and lam maximises the
    profiled Gaussian marginal likelihood computed with dense matrices."""
    est = RegularizedFIR(noise_model="ols", n_lambdas=121).fit(sim.Y, design)
    b = next(whitened_bins(sim.Y, design, None))
    M, K = len(design.conditions), design.n_knots
    X = np.vstack(b.X).reshape(-1, M, K)[:, :, 1:-1].reshape(-1, M * (K - 2))
    Y = np.vstack(b.Y)
    D = np.kron(np.eye(M), smoothness_matrix(K))
    R = D.T @ D
    n = b.dof

    def evidence(y, lam):
        C = np.eye(X.shape[0]) + X @ np.linalg.solve(R, X.T) / lam
        _, logdet = np.linalg.slogdet(C)
        quad = y @ np.linalg.solve(C, y)
        return -0.5 * n * np.log(quad / n) - 0.5 * logdet

    for j in (0, 7):
        lam = est.lambda_[j]
        h = np.linalg.solve(X.T @ X + lam * R, X.T @ Y[:, j])
        got = est.hrfs_[1:-1, :, j].T.ravel()
        np.testing.assert_allclose(got, h, rtol=1e-6, atol=1e-8)
        e0 = evidence(Y[:, j], lam)
        assert e0 >= evidence(Y[:, j], lam * 2) - 1e-6
        assert e0 >= evidence(Y[:, j], lam / 2) - 1e-6
        np.testing.assert_allclose(est.log_evidence_[j], e0, rtol=1e-8)


def test_rfir_shared_hrf_and_param_checks(sim, design):
    est = RegularizedFIR(shared_hrf=True).fit(sim.Y, design)
    assert est.hrfs_.shape == (design.n_knots, 1, sim.Y[0].shape[1])
    assert est.conditions_ == ["all"]
    h, var = est.voxel_hrf()
    assert h.shape == var.shape == (design.n_knots, sim.Y[0].shape[1])
    with pytest.raises(ValueError, match="noise_model"):
        RegularizedFIR(noise_model="ar2").fit(sim.Y, design)


# ---------------------------------------------------------------- r1glm
def _data_from_design(design, hrfs, betas, rng, noise=0.0):
    """Y = sum_m beta_m X_m h (+ noise), from the design itself (known answer)."""
    M, K = len(design.conditions), design.n_knots
    out = []
    for f in design.fir:
        Xr = f.reshape(-1, M, K)
        y = np.einsum("nmk,kv,mv->nv", Xr, hrfs, betas)
        out.append(100 + y + noise * rng.standard_normal(y.shape))
    return out


def test_r1glm_exact_in_its_basis(design):
    rng = np.random.default_rng(1)
    B = hrf_basis(design.time)
    c = np.array([[1.0, 0.8, 1.0], [0.3, -0.4, 0.0], [0.1, 0.2, -0.2]])
    h = B @ c
    h = h / np.abs(h).max(axis=0)
    betas = np.array([[2.0, -1.0, 0.5], [1.0, 1.5, 0.0]])
    Y = _data_from_design(design, h, betas, rng)
    est = RankOneGLM(noise_model="ols", tol=1e-14, max_iter=500).fit(Y, design)
    np.testing.assert_allclose(est.hrfs_, h, atol=1e-6)
    np.testing.assert_allclose(est.betas_, betas, atol=1e-6)
    assert np.all(est.r2_ > 0.999999)


def test_r1glm_reaches_the_least_squares_optimum(sim, design):
    """ALS reaches the minimum found by an independent optimiser (scipy least_squares)."""
    est = RankOneGLM(noise_model="ols", tol=1e-12, max_iter=1000).fit(sim.Y, design)
    b = next(whitened_bins(sim.Y, design, None))
    M, K = len(design.conditions), design.n_knots
    X = np.vstack(b.X).reshape(-1, M, K)
    B = est.basis_
    for j in (0, 5):
        y = np.vstack(b.Y)[:, j]

        def resid(w, y=y):
            return y - np.einsum("nmk,k,m->n", X, B @ w[:3], w[3:])

        w0 = np.r_[est.coef_[:, j] * 1.3, est.betas_[:, j] / 1.3 + 0.1]
        ref = optimize.least_squares(resid, w0, xtol=1e-14, ftol=1e-14, gtol=1e-14)
        ours = np.r_[est.coef_[:, j], est.betas_[:, j]]
        assert np.sum(resid(ours) ** 2) <= np.sum(ref.fun**2) * (1 + 1e-8)


def test_r1glm_recovers_voxel_hrfs(sim, design):
    est = RankOneGLM().fit(sim.Y, design)
    act = sim.amplitudes[0] > 0
    truth = sim.true_hrfs(design.time)
    assert np.median(_corr(est.hrfs_, truth)[act]) > 0.97
    fir = RankOneGLM(basis="fir").fit(sim.Y, design)
    assert np.median(_corr(fir.hrfs_, truth)[act]) > 0.9
    with pytest.raises(ValueError, match="basis"):
        RankOneGLM(basis="spline").fit(sim.Y, design)


def test_r1glms_single_trial_betas_known_answer():
    """Exact when every trial has the same amplitude (the 'other trials' regressor is then
    right); close to the truth when the amplitudes vary (each trial's model lumps the
    others into one regressor, the method's approximation)."""
    rng = np.random.default_rng(5)
    ft = np.arange(120) * 2.0
    on = np.arange(10.0, 200.0, 12.0) + rng.uniform(0, 2, 16)
    ev = pd.DataFrame({"onset": on, "duration": 0.0, "trial_type": "a"})
    d = make_event_design(ev, ft, fir_duration=20.0, single_trials=True)
    B = hrf_basis(d.time)
    h = B @ np.array([1.0, 0.4, 0.1])
    h /= np.abs(h).max()
    T = d.trials[0].reshape(120, on.size, d.n_knots)
    est = RankOneGLM(noise_model="ols", tol=1e-14, max_iter=500)
    same = np.repeat([[1.5, 0.7]], on.size, axis=0)
    got = est.single_trial_betas(50 + np.einsum("ntk,k,tv->nv", T, h, same), d)
    np.testing.assert_allclose(got, same, rtol=1e-5)
    amps = rng.uniform(0.5, 2.0, (on.size, 2))
    Y = 50 + np.einsum("ntk,k,tv->nv", T, h, amps) + 0.05 * rng.standard_normal((120, 2))
    got = est.single_trial_betas(Y, d)
    assert np.all(_corr(got, amps) > 0.95)
    with pytest.raises(ValueError, match="single_trials=True"):
        RankOneGLM().single_trial_betas(Y, make_event_design(ev, ft, fir_duration=20.0))


# ---------------------------------------------------------------- library
def test_library_picks_the_generating_hrf(design):
    rng = np.random.default_rng(2)
    lt, lv, names = default_library()
    est0 = HRFLibrary()
    truth_idx = rng.integers(0, lv.shape[1], 12)
    from bids_hrf.hrf.library import resample_library

    L = resample_library(lt, lv, design.time)
    Y = _data_from_design(design, L[:, truth_idx], rng.uniform(1, 2, (2, 12)), rng, 0.05)
    est0.fit(Y, design)
    np.testing.assert_array_equal(est0.choice_, truth_idx)
    assert est0.cv_ and est0.heldout_r2_.min() > 0.5
    assert len(names) == lv.shape[1] == est0.library_.shape[1]


def test_library_shrinks_noisy_voxels_toward_their_parcel(design):
    """A parcel of voxels sharing one HRF, half of them nearly pure noise: with shrinkage
    the noisy voxels follow the parcel's choice more often than without."""
    rng = np.random.default_rng(3)
    lt, lv, _ = default_library()
    from bids_hrf.hrf.library import resample_library

    L = resample_library(lt, lv, design.time)
    n = 80
    amp = np.r_[np.full(n // 2, 1.0), np.full(n // 2, 0.08)]
    Y = _data_from_design(design, np.repeat(L[:, [10]], n, 1), np.vstack([amp, amp]), rng, 1.0)
    parcels = np.zeros(n, int)
    plain = HRFLibrary(shrinkage=False).fit(Y, design, parcels)
    shrunk = HRFLibrary().fit(Y, design, parcels)
    weak = slice(n // 2, n)
    ttp_true = voxel_hrf_parameters(L[:, [10]], design.time)["time_to_peak"][0]

    def err(est):
        return np.abs(voxel_hrf_parameters(est.hrfs_[:, weak], design.time)["time_to_peak"]
                      - ttp_true).mean()

    assert err(shrunk) < err(plain)


@pytest.mark.parametrize("amplitude", [0.5, 2.0])
def test_library_cv_pooling_beats_in_sample_on_a_new_run(amplitude):
    """HRFs jittered +-1 s within parcels: the cross-validated pooling toward the parcel
    predicts a third run better than the in-sample choice at low SNR (weights near the
    parcel's choice) and as well at high SNR (weights near the voxel's own choice)."""
    s = simulate(n_parcels=4, voxels_per_parcel=100, n_runs=3, n_scans=300, noise_sd=1.0,
                 active_fraction=0.6, amplitude=amplitude, seed=11)
    d = make_event_design(s.events[:2], s.frame_times[:2], fir_duration=24.0)
    d3 = make_event_design(s.events[2:], s.frame_times[2:], fir_duration=24.0)
    act = s.amplitudes[0] > 0
    cv = HRFLibrary().fit(s.Y[:2], d, s.parcels)
    ins = HRFLibrary(cv=False).fit(s.Y[:2], d, s.parcels)
    r2_cv, r2_in = cv.score(s.Y[2:], d3)[act].mean(), ins.score(s.Y[2:], d3)[act].mean()
    weights = np.array(list(cv.pooling_.values()))
    if amplitude < 1:
        assert np.all(weights >= 10) and r2_cv > 1.05 * r2_in
    else:
        assert np.all(weights <= 3) and r2_cv > 0.995 * r2_in
    with pytest.raises(ValueError, match="conditions and knots"):
        cv.score(s.Y[2:], make_event_design(s.events[2:], s.frame_times[2:],
                                            fir_duration=20.0))


def test_library_cv_needs_two_runs(sim):
    d1 = make_event_design(sim.events[0], sim.frame_times[0])
    with pytest.raises(ValueError, match="at least 2 runs"):
        HRFLibrary(cv=True).fit(sim.Y[0], d1)
    with pytest.warns(UserWarning, match="in-sample"):
        est = HRFLibrary().fit(sim.Y[0], d1)
    assert not est.cv_ and est.heldout_r2_ is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HRFLibrary(cv=False).fit(sim.Y[0], d1)


def test_library_tsv_errors(tmp_path):
    good = tmp_path / "lib.tsv"
    t = np.arange(0, 30, 0.5)
    pd.DataFrame({"time": t, "a": gamma_hrf(t, 5), "b": gamma_hrf(t, 7)}).to_csv(
        good, sep="\t", index=False)
    time, values, names = read_library_tsv(good)
    assert names == ["a", "b"] and values.shape == (t.size, 2)
    notime = tmp_path / "notime.tsv"
    pd.DataFrame({"t": t, "a": gamma_hrf(t, 5)}).to_csv(notime, sep="\t", index=False)
    with pytest.raises(DataError, match=r"no 'time' column.*notime\.tsv|notime\.tsv.*time"):
        read_library_tsv(notime)
    nan = tmp_path / "nan.tsv"
    v = gamma_hrf(t, 5)
    v[3] = np.nan
    pd.DataFrame({"time": t, "a": v}).to_csv(nan, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(DataError, match="missing or non-numeric values in \\['a'\\]"):
        read_library_tsv(nan)
    rev = tmp_path / "rev.tsv"
    pd.DataFrame({"time": t[::-1], "a": gamma_hrf(t, 5)}).to_csv(rev, sep="\t", index=False)
    with pytest.raises(DataError, match="not increasing"):
        read_library_tsv(rev)


def test_library_outside_the_fir_window_is_a_clear_error(sim, design):
    t = np.arange(30.0, 60.0, 0.5)  # starts after the 24 s FIR window
    with pytest.raises(ValueError, match="zero over the FIR window.*must cover 0-24 s"):
        HRFLibrary(library=(t, gamma_hrf(t - 30.0, 5)[:, None])).fit(sim.Y, design)


def test_user_library_drives_the_choice(sim, design):
    t = np.arange(0, 30, 0.25)
    lib = (t, np.column_stack([gamma_hrf(t, x) for x in (3.0, 5.5, 8.0)]))
    est = HRFLibrary(library=lib).fit(sim.Y, design, sim.parcels)
    assert set(np.unique(est.choice_)) <= {0, 1, 2}
    act = sim.amplitudes[0] > 0
    # the chosen HRF is the library entry nearest the voxel's time to peak, mostly
    nearest = np.argmin(np.abs(sim.time_to_peak[:, None] - [3.0, 5.5, 8.0]), axis=1)
    assert np.mean(est.choice_[act] == nearest[act]) > 0.7


# ---------------------------------------------------------------- GLM with voxel HRFs
def test_voxel_glm_matches_nilearn_with_the_same_hrf(sim, design):
    """Every voxel given the same HRF: t values equal nilearn's run_glm on the same design."""
    from nilearn.glm.first_level import run_glm

    from bids_hrf.hrf._voxel import _block_design
    from tests.jde_simulation import gamma_hrf as g

    h = g(design.time, 5.5)
    out = voxel_glm(sim.Y, design, np.repeat(h[:, None], sim.Y[0].shape[1], 1),
                    noise_model="ols", contrasts={"c0-c1": [1.0, -1.0]})
    M, K = len(design.conditions), design.n_knots
    Xfull = _block_design(design)
    reg = np.column_stack([Xfull[:, m * K:(m + 1) * K] @ h for m in range(M)])
    X = np.column_stack([reg, Xfull[:, M * K:]])
    labels, res = run_glm(np.vstack(sim.Y), X, noise_model="ols")
    cons = [np.eye(X.shape[1])[m] for m in range(M)]
    cons.append(cons[0] - cons[1])
    t_ref = np.vstack([res[labels[0]].Tcontrast(c).t for c in cons])
    assert out["names"] == ["c0", "c1", "c0-c1"]
    np.testing.assert_allclose(out["beta"] / np.sqrt(out["variance"]), out["t"])
    np.testing.assert_allclose(out["t"], t_ref, rtol=1e-6)
    assert out["dof"] == X.shape[0] - X.shape[1]


@pytest.mark.parametrize("tag", ["rfir", "r1glm", "library"])
def test_estimate_voxelwise_fills_the_contract(sim, tag):
    from bids_hrf.hrf._voxel_app import estimate_voxelwise, voxel_map_metadata

    est = {"rfir": RegularizedFIR(), "r1glm": RankOneGLM(), "library": HRFLibrary()}[tag]
    names = {p + 1: f"p{p}" for p in range(3)}
    out = estimate_voxelwise(tag, est, sim.Y, sim.events, sim.frame_times, sim.tr,
                             sim.parcels + 1, names, fir_duration=24.0,
                             contrasts={"c0-c1": [1, -1]})
    n_vox = sim.Y[0].shape[1]
    assert out.labels == ["p0", "p1", "p2"] and out.hrfs.shape[1] == 3
    np.testing.assert_allclose(np.linalg.norm(out.hrfs, axis=0), 1.0)
    hrf4d = out.voxel_maps[f"desc-{tag}Hrf_bold"]
    assert hrf4d.shape == (out.time.size, n_vox)
    ttp = out.voxel_maps[f"desc-{tag}_stat-ttp_statmap"]
    act = sim.amplitudes[0] > 0
    assert np.nanmedian(np.abs(ttp - sim.time_to_peak)[act]) < 1.0
    z = out.voxel_maps[f"contrast-c0_desc-{tag}_stat-z_statmap"]
    assert np.nanmedian(z[act]) > 3 > np.nanmedian(z[~act])
    assert f"contrast-c0c1_desc-{tag}_stat-effect_statmap" in out.voxel_maps
    assert (f"desc-{tag}_stat-ttpsd_statmap" in out.voxel_maps) == (tag == "rfir")
    assert (f"desc-{tag}_stat-heldoutr2_statmap" in out.voxel_maps) == (tag == "library")
    hist = out.parcel_tables["ttphist"]
    assert list(hist["parcel"]) == ["p0", "p1", "p2"]
    assert hist.drop(columns="parcel").to_numpy().sum() == np.isfinite(ttp).sum()
    meta = voxel_map_metadata(f"desc-{tag}Hrf_bold", out.parameters)
    assert meta["SamplingPeriod"] == sim.tr
    meta = voxel_map_metadata(f"contrast-c0c1_desc-{tag}_stat-z_statmap", out.parameters)
    assert meta["Contrast"] == "c0-c1" and meta["ContrastWeights"] == [1.0, -1.0]


def test_pool_hrfs_weighted_unit_peak_means():
    from bids_hrf.hrf._voxel import pool_hrfs

    h = np.array([[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 3.0]])
    labels, table, pooled = pool_hrfs(h, np.array([5, 5, 7, 7]), np.array([3.0, 1.0, 0, 0]))
    np.testing.assert_array_equal(labels, [5, 7])
    np.testing.assert_allclose(table, [[1.0, 1.0], [1 / 3, 1.0]])  # 7: all-zero weights
    np.testing.assert_allclose(pooled, table[:, [0, 0, 1, 1]])


def test_parcel_glm_hrf_detects_better_at_low_snr():
    """rfir at peak SNR 0.5: the voxel's own HRF also fits the noise of silent voxels;
    regressors with the parcel's R^2-weighted HRF separate active from silent voxels
    better (ROC AUC of the z map)."""
    from scipy.stats import rankdata

    from bids_hrf.hrf._voxel_app import estimate_voxelwise

    s = simulate(n_parcels=4, voxels_per_parcel=100, n_runs=2, n_scans=300, noise_sd=1.0,
                 active_fraction=0.6, amplitude=0.5, seed=11)
    act = s.amplitudes[0] > 0
    names = {p + 1: f"p{p}" for p in range(4)}

    def auc(glm_hrf):
        out = estimate_voxelwise("rfir", RegularizedFIR(shared_hrf=True), s.Y, s.events,
                                 s.frame_times, s.tr, s.parcels + 1, names, n_draws=2,
                                 glm_hrf=glm_hrf)
        assert out.parameters["glm_hrf"] == glm_hrf
        r = rankdata(out.voxel_maps["contrast-c0_desc-rfir_stat-z_statmap"])
        return (r[act].sum() - act.sum() * (act.sum() + 1) / 2) / (act.sum() * (~act).sum())

    own, parcel = auc("voxel"), auc("parcel")
    assert parcel > own + 0.02
    with pytest.raises(ValueError, match="glm_hrf must be"):
        estimate_voxelwise("rfir", RegularizedFIR(), s.Y, s.events, s.frame_times, s.tr,
                           s.parcels + 1, names, glm_hrf="canonical")
