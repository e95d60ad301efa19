"""Stability selection (AUC), AUC thresholding and batched debiasing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls
from sklearn.linear_model import lars_path_gram

from bids_hrf.hrf._hrf_matrix import hrf_matrix
from bids_hrf.hrf.sparse.stability import StabilitySelection, debias, threshold_auc


def _data(seed=0, n=100, v=10, noise=0.2):
    rng = np.random.default_rng(seed)
    H = hrf_matrix(2.0, n)
    S = np.zeros((n, v))
    for j in range(v):
        pos = rng.choice(np.arange(3, n - 10), 4, replace=False)
        S[pos, j] = rng.uniform(1.5, 3.0, 4)
    return H, S, H @ S + noise * rng.standard_normal((n, v))


def test_auc_matches_per_voxel_reference():
    """AUC of one surrogate equals the lambda-weighted selection along sklearn's path."""
    H, _, Y = _data(v=3)
    n = H.shape[0]
    model = StabilitySelection(2.0, n_surrogates=1, n_lambdas=30, random_state=3).fit(Y)
    keep = np.sort(np.random.default_rng(3).choice(n, int(0.6 * n), replace=False))
    hs = H[keep]
    for j in range(3):
        alphas, _, coefs = lars_path_gram(
            Xy=hs.T @ Y[keep, j],
            Gram=hs.T @ hs,
            n_samples=keep.size,
            max_iter=29,
            method="lasso",
            eps=1e-12,
        )
        # sklearn leaves ~1e-17 on a coefficient dropped at a breakpoint: count it as zero
        ref = ((np.abs(coefs) > 1e-10) * alphas).sum(axis=1) / alphas.sum()
        np.testing.assert_allclose(model.auc_[:, j], ref, atol=1e-9)


def test_auc_is_high_at_true_events():
    H, S, Y = _data(seed=1, v=15)
    auc = StabilitySelection(2.0, n_surrogates=20, random_state=0).fit_transform(Y)
    assert auc.shape == S.shape and np.all((auc >= 0) & (auc <= 1))
    assert auc[S != 0].mean() > 3 * auc[S == 0].mean()
    support = threshold_auc(auc, threshold=95.0)
    assert (support & (S != 0)).sum() / (S != 0).sum() > 0.7


def test_threshold_auc_strategies():
    auc = np.tile(np.linspace(0, 1, 10)[:, None], (1, 4))
    auc[:, 0] = 0.0  # reference voxel
    mask = np.array([True, False, False, False])
    np.testing.assert_array_equal(threshold_auc(auc, 0.5), auc > 0.5)
    sup = threshold_auc(auc, 95.0, mask=mask)
    np.testing.assert_array_equal(sup, auc > 0.0)
    per_t = threshold_auc(auc, 50.0, strategy="time")
    np.testing.assert_array_equal(per_t, auc > np.median(auc, axis=1, keepdims=True))
    with pytest.raises(ValueError, match="strategy"):
        threshold_auc(auc, 95.0, strategy="bad")
    with pytest.raises(ValueError, match="percentile"):
        threshold_auc(auc, 150.0)


def test_debias_equals_least_squares_and_nnls():
    H, S, Y = _data(seed=2, v=12)
    rng = np.random.default_rng(0)
    support = (S != 0) | (rng.random(S.shape) < 0.05)
    support[:, 0] = False  # a voxel with an empty support
    out = debias(H, Y, support)
    out_small = debias(H, Y, support, max_block_bytes=2000)  # many small blocks
    np.testing.assert_allclose(out, out_small, atol=1e-10)
    assert not np.any(out[:, 0])
    for j in range(1, 12):
        idx = np.flatnonzero(support[:, j])
        ref = np.linalg.lstsq(H[:, idx], Y[:, j], rcond=None)[0]
        np.testing.assert_allclose(out[idx, j], ref, atol=1e-8)
        assert not np.any(out[~support[:, j], j])
    pos = debias(H, Y, support, positive_only=True)
    idx = np.flatnonzero(support[:, 3])
    np.testing.assert_allclose(pos[idx, 3], nnls(H[:, idx], Y[:, 3])[0], atol=1e-10)


def test_stability_errors():
    with pytest.raises(ValueError, match="n_surrogates"):
        StabilitySelection(2.0, n_surrogates=0).fit(np.zeros((30, 2)))
    with pytest.raises(ValueError, match="subsample_fraction"):
        StabilitySelection(2.0, subsample_fraction=1.5).fit(np.zeros((30, 2)))
