"""HRF matrix conventions, batched LARS and FISTA against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import gamma
from sklearn.linear_model import Lasso, lars_path_gram

from bids_hrf.hrf._hrf_matrix import canonical_hrf, convolution_matrix, hrf_matrix
from bids_hrf.hrf.sparse._fista import (
    fista_batched,
    largest_eigenvalue,
    noise_sigma,
    prox_l1_l21,
    select_lambda,
)
from bids_hrf.hrf.sparse._lars import lars_batched
from bids_hrf.hrf.sparse.deconvolution import SparseDeconvolution


def _spikes(rng, n_scans, n_vox, n_events=5, margin=10):
    s = np.zeros((n_scans, n_vox))
    for v in range(n_vox):
        pos = rng.choice(np.arange(3, n_scans - margin), n_events, replace=False)
        s[pos, v] = rng.uniform(1.0, 3.0, n_events) * rng.choice([-1, 1], n_events)
    return s


# ----------------------------------------------------------------------------- HRF matrix
def test_canonical_hrf_matches_double_gamma_formula():
    t = np.arange(0, 30, 0.5)
    ref = gamma.pdf(t, 6) - gamma.pdf(t, 16) / 6
    ours = canonical_hrf(t, "spm")
    assert np.corrcoef(ours, ref)[0, 1] > 0.999999
    assert t[np.argmax(ours)] == 5.0
    assert ours[0] == 0.0


def test_time_convention_event_at_scan_i_recovers_at_i():
    tr, n = 2.0, 60
    H = hrf_matrix(tr, n)
    h = canonical_hrf(np.arange(n) * tr)
    for i in (5, 17, 30):
        col = H[:, i] * np.max(np.abs(convolution_matrix(h, n)))
        expected = np.zeros(n)
        expected[i:] = h[: n - i]
        np.testing.assert_allclose(col, expected, atol=1e-12)
    # Deconvolving a single noiseless event at scan 20 puts it at coefficient 20.
    y = np.zeros(n)
    y[20:] = h[: n - 20]
    coef = SparseDeconvolution(tr, criterion="bic").fit(y[:, None]).coef_[:, 0]
    assert np.argmax(np.abs(coef)) == 20


def test_block_and_multi_echo_matrices():
    tr, n = 1.5, 40
    H = hrf_matrix(tr, n, block_model=False)
    Hb = hrf_matrix(tr, n, block_model=True)
    raw = H @ np.tril(np.ones((n, n)))
    np.testing.assert_allclose(Hb, raw / np.max(np.abs(raw)))
    te = [15.0, 30.0, 45.0]
    Hm = hrf_matrix(tr, n, te=te)
    assert Hm.shape == (3 * n, n)
    np.testing.assert_allclose(Hm[2 * n :], 3.0 * Hm[:n])
    assert np.max(np.abs(Hm)) == pytest.approx(1.0)
    assert np.all(Hm[:n][H > 0] < 0)  # -TE scaling


def test_custom_hrf_validation():
    with pytest.raises(ValueError, match="samples but"):
        hrf_matrix(2.0, 10, hrf_model=np.ones(20))
    with pytest.raises(ValueError, match="Unknown HRF model"):
        hrf_matrix(2.0, 10, hrf_model="nope")


# ----------------------------------------------------------------------------- LARS
def test_batched_lars_path_equals_sklearn():
    rng = np.random.default_rng(0)
    n, v = 80, 6
    H = hrf_matrix(2.0, n)
    Y = H @ _spikes(rng, n, v) + 0.3 * rng.standard_normal((n, v))
    G, XY = H.T @ H, H.T @ Y
    res = lars_batched(G, XY, np.sum(Y**2, 0), n, 40, criterion=None, return_path=True)
    for j in range(v):
        alphas, _, coefs = lars_path_gram(
            Xy=XY[:, j], Gram=G, n_samples=n, max_iter=39, method="lasso", eps=1e-12
        )
        ours = np.array([p[0][:, j] for p in res.path])[: alphas.size]
        lams = np.array([p[1][j] for p in res.path])[: alphas.size]
        np.testing.assert_allclose(lams, alphas * n, atol=1e-9)
        np.testing.assert_allclose(ours, coefs.T, atol=1e-9)


@pytest.mark.parametrize("criterion", ["bic", "aic"])
def test_lars_selection_matches_brute_force(criterion):
    rng = np.random.default_rng(1)
    n, v = 70, 5
    H = hrf_matrix(2.0, n)
    Y = H @ _spikes(rng, n, v) + 0.4 * rng.standard_normal((n, v))
    G, XY = H.T @ H, H.T @ Y
    res = lars_batched(G, XY, np.sum(Y**2, 0), n, 30, criterion=criterion)
    for j in range(v):
        _, _, coefs = lars_path_gram(
            Xy=XY[:, j], Gram=G, n_samples=n, max_iter=30, method="lasso", eps=1e-12
        )
        rss = np.sum((Y[:, [j]] - H @ coefs) ** 2, axis=0)
        k = np.count_nonzero(coefs, axis=0)
        pen = np.log(n) if criterion == "bic" else 2.0
        best = np.argmin(n * np.log(rss / n) + pen * k)
        np.testing.assert_allclose(res.coef[:, j], coefs[:, best], atol=1e-9)


# ----------------------------------------------------------------------------- FISTA
def test_power_iteration_and_noise_estimate():
    rng = np.random.default_rng(2)
    H = hrf_matrix(2.0, 100)
    G = H.T @ H
    lmax = np.linalg.eigvalsh(G)[-1]
    assert lmax <= largest_eigenvalue(G) <= 1.02 * lmax
    sig = noise_sigma(2.0 * rng.standard_normal((400, 50)))
    assert np.mean(sig) == pytest.approx(2.0, rel=0.05)


def test_fista_matches_sklearn_lasso():
    rng = np.random.default_rng(3)
    n, v = 60, 4
    H = hrf_matrix(2.0, n)
    Y = H @ _spikes(rng, n, v) + 0.2 * rng.standard_normal((n, v))
    lam = np.array([0.2, 0.5, 1.0, 2.0])
    res = fista_batched(H, Y, lam, max_iter=20000, tol=1e-12)
    for j in range(v):
        ref = Lasso(alpha=lam[j] / n, fit_intercept=False, tol=1e-12, max_iter=200000)
        ref.fit(H, Y[:, j])

        def obj(s, y=Y[:, j], lj=lam[j]):
            return 0.5 * np.sum((y - H @ s) ** 2) + lj * np.abs(s).sum()

        assert obj(res.coef[:, j]) <= obj(ref.coef_) + 1e-6
        np.testing.assert_allclose(res.coef[:, j], ref.coef_, atol=1e-3)


def test_group_prox_is_the_proximal_operator():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((6, 5))
    thr, g = 0.7, 0.4
    x = prox_l1_l21(z, thr, g)

    def f(u):
        u = u.reshape(z.shape)
        w = np.sqrt(z.shape[1])  # group weight: sqrt of the group size (voxels per row)
        reg = (1 - g) * np.abs(u).sum() + g * w * np.linalg.norm(u, axis=1).sum()
        return 0.5 * np.sum((u - z) ** 2) + thr * reg

    for _ in range(200):  # no random perturbation does better
        assert f(x) <= f(x + 1e-3 * rng.standard_normal(z.shape)) + 1e-12
    weak = np.zeros_like(z)
    weak[0] = 0.1
    assert not np.any(prox_l1_l21(weak, thr, g))


def test_lambda_rules():
    rng = np.random.default_rng(5)
    n = 128
    H = hrf_matrix(2.0, n)
    Y = rng.standard_normal((n, 3))
    sig = noise_sigma(Y)
    np.testing.assert_allclose(select_lambda("ut", Y, H, sig), sig * np.sqrt(2 * np.log(n)))
    lut = select_lambda("lut", Y, H, sig)
    assert np.all(lut < select_lambda("ut", Y, H, sig))
    np.testing.assert_allclose(select_lambda("factor", Y, H, sig, factor=3), 3 * sig)
    np.testing.assert_allclose(
        select_lambda("pcg", Y, H, sig, pcg=0.5), 0.5 * np.abs(H.T @ Y).max(0)
    )
    with pytest.raises(ValueError, match="criterion"):
        select_lambda("nope", Y, H, sig)


def test_eigval_lambda_is_the_noise_spectral_norm():
    """``eigval`` (as pySPFM): the largest singular value of Gaussian noise of the data's
    shape at the mean noise level, one value for all voxels; random-matrix theory puts it
    at sigma (sqrt(n) + sqrt(v)) for large matrices (Bai-Yin)."""
    rng = np.random.default_rng(11)
    n, v = 400, 60
    H = hrf_matrix(2.0, n)
    Y = 0.7 * rng.standard_normal((n, v))
    sig = noise_sigma(Y)
    lam = select_lambda("eigval", Y, H, sig, random_state=3)
    assert lam.shape == (v,) and np.all(lam == lam[0])
    expected = np.mean(sig) * (np.sqrt(n) + np.sqrt(v))
    assert abs(lam[0] / expected - 1) < 0.05
    np.testing.assert_allclose(select_lambda("eigval", Y, H, sig, random_state=3), lam)
    assert select_lambda("eigval", Y, H, sig, random_state=4)[0] != lam[0]
    np.testing.assert_allclose(select_lambda("eigval", Y, H, 2 * sig, random_state=3), 2 * lam)


# ----------------------------------------------------------------------------- estimator
@pytest.mark.parametrize("criterion", ["bic", "ut", "mad_update", "lut"])
def test_spike_recovery(criterion):
    rng = np.random.default_rng(6)
    n, v = 150, 20
    H = hrf_matrix(2.0, n)
    S = _spikes(rng, n, v)
    Y = H @ S + 0.15 * rng.standard_normal((n, v))
    model = SparseDeconvolution(2.0, criterion=criterion).fit(Y)
    assert model.coef_.shape == (n, v) and model.lambda_.shape == (v,)
    assert np.corrcoef(model.coef_.ravel(), S.ravel())[0, 1] > 0.9
    hits = np.mean([(model.coef_[S[:, j] != 0, j] != 0).mean() for j in range(v)])
    assert hits > 0.9
    np.testing.assert_allclose(model.fitted_, H @ model.coef_)
    resid_sd = np.std(Y - model.fitted_)
    assert resid_sd < 0.3


def test_group_sparsity_shares_support_and_block_model():
    rng = np.random.default_rng(7)
    n, v = 120, 12
    H = hrf_matrix(2.0, n)
    s = np.zeros(n)
    s[[20, 55, 90]] = [2.0, -1.5, 2.5]
    Y = H @ np.tile(s[:, None], (1, v)) + 0.2 * rng.standard_normal((n, v))
    m = SparseDeconvolution(2.0, criterion="ut", group=0.8).fit(Y)
    assert np.all(m.lambda_ == m.lambda_[0])
    rows = np.flatnonzero(np.any(m.coef_ != 0, axis=1))
    assert {20, 55, 90} <= set(rows)
    # What plain L1 cannot do. Weak events shared by all voxels: the pure L2,1 penalty
    # keeps or drops each time point in every voxel at once (L1 decides voxel by voxel),
    # and pooling the voxels' evidence finds the events in more voxels than L1 does.
    weak = np.zeros(n)
    ev = [20, 55, 90]
    weak[ev] = [0.5, -0.5, 0.5]
    Yw = H @ np.tile(weak[:, None], (1, v)) + 0.3 * rng.standard_normal((n, v))
    fits = {
        g: SparseDeconvolution(2.0, criterion="ut", group=g).fit(Yw).coef_ for g in (0.0, 0.8, 1.0)
    }
    for g, coef in fits.items():
        kept = (coef != 0)[np.any(coef != 0, axis=1)]
        mixed = int((kept.sum(axis=1) < v).sum())
        assert (mixed == 0) if g == 1.0 else (mixed > 0), (g, mixed)

    def hits(coef):
        return float(np.mean(np.sign(coef[ev]) == np.sign(weak[ev])[:, None]))

    assert hits(fits[1.0]) >= hits(fits[0.0]) + 0.1
    assert hits(fits[0.8]) >= hits(fits[0.0]) + 0.1
    # block model: a box of activity from scan 30 to 59 -> innovations at 30 and 60
    act = np.zeros(n)
    act[30:60] = 1.0
    y = convolution_matrix(canonical_hrf(np.arange(n) * 2.0), n) @ act
    y = y / np.max(np.abs(convolution_matrix(canonical_hrf(np.arange(n) * 2.0), n)))
    yb = y[:, None] + 0.02 * rng.standard_normal((n, 1))
    mb = SparseDeconvolution(2.0, criterion="bic", block_model=True).fit(yb)
    top = set(np.argsort(-np.abs(mb.coef_[:, 0]))[:2])
    assert top == {30, 60}
    assert np.corrcoef(mb.fitted_[:, 0], y)[0, 1] > 0.99


def test_multi_echo_recovery():
    rng = np.random.default_rng(8)
    n, v, te = 100, 5, [15.0, 35.0, 55.0]
    H = hrf_matrix(2.0, n, te=te)
    S = _spikes(rng, n, v, n_events=4)
    Y = H @ S + 0.05 * rng.standard_normal((3 * n, v))
    m = SparseDeconvolution(2.0, te=te, criterion="bic").fit(Y)
    assert m.coef_.shape == (n, v) and m.fitted_.shape == (3 * n, v)
    assert np.corrcoef(m.coef_.ravel(), S.ravel())[0, 1] > 0.95


def test_positive_only_and_parallel_and_transform():
    rng = np.random.default_rng(9)
    n, v = 80, 8
    H = hrf_matrix(2.0, n)
    S = np.abs(_spikes(rng, n, v, n_events=3))
    Y = H @ S + 0.1 * rng.standard_normal((n, v))
    m = SparseDeconvolution(2.0, criterion="ut", positive_only=True).fit(Y)
    assert np.all(m.coef_ >= 0)
    serial = SparseDeconvolution(2.0, criterion="bic").fit(Y)
    par = SparseDeconvolution(2.0, criterion="bic", n_jobs=2).fit(Y)
    np.testing.assert_allclose(serial.coef_, par.coef_, atol=1e-10)
    np.testing.assert_allclose(serial.transform(Y), serial.coef_)
    with pytest.raises(ValueError, match="scans"):
        serial.transform(Y[:-2])


def test_errors():
    Y = np.zeros((40, 3))
    with pytest.raises(ValueError, match="FISTA criterion"):
        SparseDeconvolution(2.0, criterion="bic", group=0.5).fit(Y)
    with pytest.raises(ValueError, match="Unknown criterion"):
        SparseDeconvolution(2.0, criterion="cv").fit(Y)
    with pytest.raises(ValueError, match="multiple"):
        SparseDeconvolution(2.0, te=[10, 20]).fit(np.zeros((41, 2)))
    bad = Y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SparseDeconvolution(2.0).fit(bad)
    with pytest.raises(ValueError, match="not fitted"):
        SparseDeconvolution(2.0).transform(Y)
    # all-zero data: nothing selected, no crash
    m = SparseDeconvolution(2.0).fit(Y)
    assert not np.any(m.coef_)


@pytest.mark.parametrize("group", [0.5, 1.0])
def test_group_threshold_does_not_depend_on_parcel_size(group):
    """Known truth: a small (3 voxels) and a large (100 voxels) parcel with the same
    per-voxel SNR and the same shared events. The L2,1 threshold is weighted by sqrt(V), so
    detection and false-positive rates are comparable across sizes; without the weight the
    L2 norm of a noise row grows as sqrt(V) and the large parcel fills with false events
    (measured without it: 99 % of the large parcel's event-free time points non-zero against
    17 % of the small one's at group 1.0, 22 % against 6 % at 0.5)."""
    n = 160
    H = hrf_matrix(2.0, n)
    ev = np.array([15, 40, 70, 100, 130])
    s = np.zeros(n)
    s[ev] = 2.0 * np.array([1, -1, 1, 1, -1])
    free = np.ones(n, dtype=bool)
    free[ev] = False
    rates = {}
    for v in (3, 100):
        rng = np.random.default_rng(v)
        Y = H @ np.tile(s[:, None], (1, v)) + rng.standard_normal((n, v))
        nz = SparseDeconvolution(2.0, criterion="ut", group=group).fit(Y).coef_ != 0
        rates[v] = (nz[ev].mean(), nz[free].mean())
    (det_s, fp_s), (det_l, fp_l) = rates[3], rates[100]
    assert det_s >= 0.9 and det_l >= 0.9, rates
    assert abs(det_s - det_l) <= 0.1, rates
    assert fp_s <= 0.05 and fp_l <= 0.05, rates
