"""Memory of the sparse HRF step (issue 12): voxels cleaned and deconvolved in batches give
the numbers of one call for all voxels, and the solvers' memory follows the batch."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest
from nilearn import signal

from bids_hrf.confounds.voxels import clean_voxels
from bids_hrf.hrf._hrf_matrix import hrf_matrix
from bids_hrf.hrf._memory import release_free_memory
from bids_hrf.hrf.sparse.app import estimate_sparse


def _one_call(raw, confounds, kept, tr, high_pass):
    """The cleaning as it was: every voxel in one nilearn call."""
    Y = raw.astype(np.float64)
    mean = Y.mean(axis=0)
    good = (
        np.isfinite(mean)
        & (np.abs(mean) > 1e-6)
        & np.isfinite(Y).all(axis=0)
        & (Y.std(axis=0) > 1e-6 * np.maximum(np.abs(mean), 1.0))
    )
    Y = np.where(good, 100.0 * (Y / np.where(good, mean, 1.0) - 1.0), 0.0)
    Y = np.nan_to_num(Y, nan=0.0, posinf=0.0, neginf=0.0)
    return signal.clean(
        Y,
        confounds=confounds,
        sample_mask=kept,
        t_r=tr,
        high_pass=high_pass,
        detrend=False,
        standardize=None,
        standardize_confounds=True,
    ), good


@pytest.mark.parametrize("kept", ["dummies", "scrubbed", "all"])
@pytest.mark.parametrize("high_pass", [0.01, None])
def test_clean_voxels_in_blocks_equals_one_nilearn_call(kept, high_pass):
    rng = np.random.default_rng(3)
    n, v = 120, 53
    raw = (
        1000 + 20 * rng.standard_normal((n, v)).cumsum(axis=0) / 10 + rng.standard_normal((n, v))
    ).astype(np.float32)
    raw[:, 4] = 500.0  # constant
    raw[7, 9] = np.nan  # not finite
    raw[:, 11] = 0.0  # zero mean
    confounds = rng.standard_normal((n, 5))
    kept = {
        "dummies": np.arange(3, n),
        "all": None,
        "scrubbed": np.setdiff1d(np.arange(2, n), [40, 41, 77]),
    }[kept]
    ref, ref_good = _one_call(raw, confounds, None if kept is None else kept.copy(), 2.0, high_pass)
    # 8 * 120 * 7 bytes: blocks of 7 voxels, the last one shorter
    Y, good = clean_voxels(
        raw,
        confounds,
        None if kept is None else kept.copy(),
        2.0,
        high_pass,
        max_block_bytes=8 * n * 7,
    )
    assert Y.shape == ref.shape and Y.dtype == np.float64
    np.testing.assert_array_equal(good, ref_good)
    assert not good[[4, 9, 11]].any()
    np.testing.assert_allclose(Y, ref, rtol=1e-12, atol=1e-12)


def _data(n=120, v=60, seed=0):
    rng = np.random.default_rng(seed)
    S = np.zeros((n, v))
    for j in range(v):
        S[rng.choice(np.arange(2, n - 12), 5, replace=False), j] = rng.uniform(1.0, 2.0, 5)
    labels = np.repeat([0, 3, 7], v // 3)
    return hrf_matrix(2.0, n) @ S + 0.15 * rng.standard_normal((n, v)), labels


@pytest.mark.parametrize(
    "options",
    [
        {"estimate_hrf": False},
        {"estimate_hrf": False, "n_surrogates": 3},
        {"estimate_hrf": False, "criterion": "mad"},
        {"estimate_hrf": False, "criterion": "ut"},
        {"estimate_hrf": False, "criterion": "mad", "block_model": True},  # one call
        {"estimate_hrf": True},
    ],
)
def test_estimate_sparse_batches_give_the_numbers_of_one_call(options):
    Y, labels = _data()
    names = {3: "a", 7: "b"}
    whole = estimate_sparse(Y, 2.0, labels, names, max_block_bytes=1e12, **options)
    # 8 * 120 * 6 bytes: batches of 6 voxels (a parcel of 20 in 4 batches)
    batched = estimate_sparse(Y, 2.0, labels, names, max_block_bytes=8 * 120 * 6, **options)
    assert whole.voxel_maps.keys() == batched.voxel_maps.keys()
    for key, value in whole.voxel_maps.items():
        np.testing.assert_allclose(
            batched.voxel_maps[key], value, rtol=1e-6, atol=1e-6, err_msg=key
        )
        assert np.count_nonzero(value) > 0, key
    np.testing.assert_array_equal(batched.hrfs, whole.hrfs)


def test_estimate_sparse_scan_maps_are_float32_and_group_penalty_still_works():
    Y, labels = _data(v=30)
    est = estimate_sparse(
        Y,
        2.0,
        labels,
        {},
        estimate_hrf=False,
        criterion="mad",
        group=0.5,
        max_block_bytes=8 * 120 * 4,
    )
    assert est.voxel_maps["desc-activity_bold"].dtype == np.float32
    assert est.voxel_maps["desc-denoised_bold"].dtype == np.float32
    assert est.voxel_maps["desc-sparse_stat-lambda_statmap"].dtype == np.float64
    # L2,1 over the voxels of a parcel: one lambda per parcel, whatever the batch size
    lam = est.voxel_maps["desc-sparse_stat-lambda_statmap"]
    for label in (3, 7):
        assert np.unique(lam[labels == label]).size == 1


def _traced_peak(n_vox: int, budget: float) -> tuple[int, int]:
    Y, labels = _data(n=100, v=n_vox, seed=1)
    tracemalloc.start()
    estimate_sparse(Y, 2.0, labels, {3: "a", 7: "b"}, estimate_hrf=False, max_block_bytes=budget)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, Y.nbytes


def test_estimate_sparse_memory_follows_the_batch_not_the_voxels():
    # 1,800 more voxels: the outputs (activity and fit, float32) grow by one Y's worth
    # (measured 1.4x with the labels and lambdas), the batches of 500 voxels do not
    small, y_small = _traced_peak(900, 4e5)
    large, y_large = _traced_peak(2700, 4e5)
    assert large - small < 1.6 * (y_large - y_small)
    # in one call the solvers' float64 copies of the data (H'Y, coefficients, fit,
    # debiasing) grow with it as well (measured 4.4x)
    small_whole, _ = _traced_peak(900, 1e12)
    large_whole, _ = _traced_peak(2700, 1e12)
    assert large_whole - small_whole > 3 * (y_large - y_small)


def test_release_free_memory_runs():
    assert release_free_memory() is sys.platform.startswith("linux")
    assert release_free_memory() is sys.platform.startswith("linux")  # cached lookup
