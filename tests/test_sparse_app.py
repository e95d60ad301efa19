"""The app driver estimate_sparse and the low-rank + sparse decomposition."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bids_hrf.hrf._hrf_matrix import canonical_hrf, hrf_matrix
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.sparse_app import estimate_sparse
from bids_hrf.hrf.splora import LowRankPlusSparse


def _run(seed=0, n=150, v=24):
    rng = np.random.default_rng(seed)
    H = hrf_matrix(2.0, n)
    S = np.zeros((n, v))
    for j in range(v):
        pos = rng.choice(np.arange(2, n - 12), 6, replace=False)
        S[pos, j] = rng.uniform(1.0, 2.0, 6)
    labels = np.repeat([0, 3, 7], v // 3)
    return H @ S + 0.15 * rng.standard_normal((n, v)), S, labels


def test_estimate_sparse_canonical_outputs():
    Y, S, labels = _run()
    calls = []
    est = estimate_sparse(
        Y,
        2.0,
        labels,
        {3: "left", 7: "right"},
        estimate_hrf=False,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert isinstance(est, HRFEstimate) and est.method == "sparse"
    assert est.labels == ["left", "right"]
    np.testing.assert_allclose(est.hrfs[:, 0], canonical_hrf(est.time))
    assert est.time[1] - est.time[0] == pytest.approx(0.1) and est.time[-1] == pytest.approx(25)
    act = est.voxel_maps["desc-activity_bold"]
    assert act.shape == Y.shape
    assert est.voxel_maps["desc-denoised_bold"].shape == Y.shape
    assert est.voxel_maps["desc-sparse_stat-lambda_statmap"].shape == (Y.shape[1],)
    assert "desc-sparse_stat-auc_bold" not in est.voxel_maps
    assert np.corrcoef(act.ravel(), S.ravel())[0, 1] > 0.9
    assert calls and calls[-1][0] == calls[-1][1]
    if importlib.util.find_spec("bids_hrf.hrf.params") is not None:
        table = est.parcel_tables["hrfparams"]
        assert list(table["parcel"]) == ["left", "right"]
        np.testing.assert_allclose(table["time_to_peak"], 5.0, atol=0.2)


def test_estimate_sparse_blind_stability_block():
    Y, S, labels = _run(seed=1)
    est = estimate_sparse(
        Y,
        2.0,
        labels,
        {3: "a"},
        n_surrogates=5,
        block_model=True,
        hrf_duration=20.0,
    )
    assert est.labels == ["a", "7"]
    assert "desc-innovation_bold" in est.voxel_maps
    auc = est.voxel_maps["desc-sparse_stat-auc_bold"]
    assert auc.shape == Y.shape and np.all((auc >= 0) & (auc <= 1))
    for i in range(2):  # estimated HRFs stay close to the (true) canonical one
        assert np.corrcoef(est.hrfs[:, i], canonical_hrf(est.time))[0, 1] > 0.95
        assert est.hrfs[0, i] == 0.0


def test_estimate_sparse_errors():
    Y, _, labels = _run()
    with pytest.raises(ValueError, match="one label per voxel"):
        estimate_sparse(Y, 2.0, labels[:-1], {})
    with pytest.raises(ValueError, match="no parcel"):
        estimate_sparse(Y, 2.0, np.zeros_like(labels), {})


def test_low_rank_plus_sparse_separates_global_signal():
    rng = np.random.default_rng(4)
    n, v = 120, 40
    H = hrf_matrix(2.0, n)
    S = np.zeros((n, v))
    for j in range(v):
        pos = rng.choice(np.arange(2, n - 12), 4, replace=False)
        S[pos, j] = rng.uniform(1.5, 2.5, 4)
    drift = np.sin(np.linspace(0, 6 * np.pi, n))[:, None] * rng.uniform(2, 3, v)[None]
    Y = H @ S + drift + 0.1 * rng.standard_normal((n, v))
    m = LowRankPlusSparse(2.0, criterion="bic").fit(Y)
    assert m.rank_ >= 1
    assert np.corrcoef(m.low_rank_.ravel(), drift.ravel())[0, 1] > 0.9
    plain = np.corrcoef(
        LowRankPlusSparse(2.0, max_iter=1, threshold=0.999).fit(Y).coef_.ravel(), S.ravel()
    )[0, 1]
    assert np.corrcoef(m.coef_.ravel(), S.ravel())[0, 1] > max(0.8, plain)
    np.testing.assert_allclose(m.fitted_, H @ m.coef_ + m.low_rank_)
    with pytest.raises(ValueError, match="threshold"):
        LowRankPlusSparse(2.0, threshold=2.0).fit(Y)
