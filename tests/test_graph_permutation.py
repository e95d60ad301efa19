"""Cluster-extent permutation inference on a graph (surface group level, issue 12)."""

from __future__ import annotations

import numpy as np

from bids_hrf.glm.graph_permutation import graph_cluster_permutation
from bids_hrf.surface.graph import grid_adjacency

SIDE = 24
ADJ = grid_adjacency(np.argwhere(np.ones((SIDE, SIDE, 1), bool)))  # a 24 x 24 sheet
BLOB = np.zeros((SIDE, SIDE), bool)
BLOB[5:11, 8:14] = True
BLOB = BLOB.ravel()


def _smooth_noise(rng, n):
    """Spatially smooth noise (neighbour averaging), so null clusters exist."""
    x = rng.standard_normal((n, SIDE * SIDE))
    op = (ADJ + np.eye(SIDE * SIDE) * 1.0)
    op = op / op.sum(axis=1)
    for _ in range(3):
        x = np.asarray(x @ op.T)
    return x / x.std()


def test_one_sample_sign_flips_find_the_planted_cluster():
    rng = np.random.default_rng(0)
    Y = _smooth_noise(rng, 12) + 1.2 * BLOB
    res = graph_cluster_permutation(Y, np.ones((12, 1)), np.array([1.0]), ADJ, alpha=0.01,
                                    n_perm=200, random_state=1)
    best = res.clusters.iloc[0]
    assert BLOB[int(best["Peak sample"])] and best["p_fwe"] < 0.05
    assert (res.logp_cluster[BLOB] > 1.3).mean() > 0.5 and (res.logp_cluster[~BLOB] < 1.3).all()


def test_two_sample_freedman_lane_finds_a_group_difference():
    rng = np.random.default_rng(2)
    group = np.repeat([0, 1], 8)
    Y = _smooth_noise(rng, 16) + 1.5 * np.outer(group, BLOB)
    X = np.column_stack([1 - group, group]).astype(float)
    res = graph_cluster_permutation(Y, X, np.array([-1.0, 1.0]), ADJ, alpha=0.01,
                                    n_perm=200, random_state=3)
    best = res.clusters.iloc[0]
    assert BLOB[int(best["Peak sample"])] and best["p_fwe"] < 0.05 and best["Sign"] == "+"


def test_family_wise_error_is_controlled_under_the_null():
    """Null data: the largest cluster reaches p < 0.05 in about 5 % of datasets."""
    hits = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        res = graph_cluster_permutation(_smooth_noise(rng, 10), np.ones((10, 1)),
                                        np.array([1.0]), ADJ, alpha=0.01, n_perm=100,
                                        random_state=seed)
        hits += bool(len(res.clusters)) and res.clusters["p_fwe"].min() < 0.05
    assert hits <= 6  # 40 x 0.05 = 2 expected; P(>= 7 | binomial 0.05) < 0.01
