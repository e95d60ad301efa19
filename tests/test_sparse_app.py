"""The app driver estimate_sparse and the low-rank + sparse decomposition."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bids_hrf.hrf._hrf_matrix import canonical_hrf, hrf_matrix
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.sparse.app import estimate_sparse
from bids_hrf.hrf.sparse.splora import LowRankPlusSparse


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
    # the blind estimator's uncertainty and identifiability reach the parameter table
    table = est.parcel_tables["hrfparams"]
    assert {"time_to_peak_sd", "fwhm_sd", "n_events", "identifiable"} <= set(table.columns)
    assert np.all(table["time_to_peak_sd"] > 0) and np.all(table["fwhm_sd"] > 0)
    assert "ParcelBlindHRF" in est.parameters["blind_estimator"]


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


def test_detect_events_known_answer():
    from bids_hrf.hrf.sparse.app import detect_events

    n, tr = 100, 2.0
    frame_times = 4.0 + tr * np.arange(n)  # two dummy scans dropped: the clock starts at 4 s
    onsets = np.array([10.3, 40.0, 81.9, 150.0])  # nearest scans 3, 18, 39, 73
    labels = np.array([1, 1, 1, 2, 2, 5])
    A = np.zeros((n, labels.size))
    # Parcel 1: 2 of 3 voxels active one scan after each onset but the last.
    for scan in (3, 18, 39):
        A[scan + 1, :2] = 1.0
    # Parcel 2: activity far from every onset (scans 50, 60).
    A[[50, 60], 3] = 2.0
    # Parcel 5: constant activity (nothing stands out).
    A[:, 5] = 0.5
    table = detect_events(A, frame_times, onsets, labels, {1: "one", 2: "two"}, window=1)
    rows = table.set_index("parcel")
    assert list(table["parcel"]) == ["one", "5", "two"]  # sorted by response
    assert rows.loc["one", "detected"] == pytest.approx(3 / 4)
    assert rows.loc["one", "chance"] == pytest.approx(9 / n)  # 3 events x 3 scans each
    assert rows.loc["one", "lag"] == 1
    a = A[:, :3].mean(axis=1)
    z = (a - a.mean()) / a.std()
    assert rows.loc["one", "response"] == pytest.approx(np.mean(z[[4, 19, 40, 74]]))
    assert rows.loc["two", "detected"] == 0 and rows.loc["two", "chance"] == pytest.approx(6 / n)
    assert rows.loc["two", "response"] < 0
    assert rows.loc["5", "detected"] == 0 and rows.loc["5", "response"] == 0
    assert set(rows["n_onsets"]) == {4}
    # Window 0: the activity one scan late no longer counts; a high threshold: nothing active.
    strict = detect_events(A, frame_times, onsets, labels, window=0).set_index("parcel")
    assert strict.loc["1", "detected"] == 0
    high = detect_events(A, frame_times, onsets, labels, threshold=100).set_index("parcel")
    assert high.loc["1", "detected"] == 0 and high.loc["1", "chance"] == 0
    # Onsets outside the run are left out.
    out = detect_events(A, frame_times, np.array([-50.0, 10.3, 900.0]), labels)
    assert set(out["n_onsets"]) == {1}
    with pytest.raises(ValueError, match="n_scans, n_voxels"):
        detect_events(A[:, :4], frame_times, onsets, labels)


def test_map_metadata():
    from bids_hrf.hrf.sparse.app import map_metadata

    params = {"criterion": "mad", "block_model": True, "estimate_hrf": False,
              "n_surrogates": 10, "group": 0.3, "time_convention": "coefficient i = scan i"}
    act = map_metadata("desc-innovation_bold", params)
    assert "innovation" in act["Description"] and act["Criterion"] == "mad"
    assert act["BlockModel"] is True and act["HRFEstimated"] is False
    assert act["TimeConvention"] == "coefficient i = scan i" and act["GroupWeight"] == 0.3
    auc = map_metadata("desc-sparse_stat-auc_bold", params)
    assert auc["NumberOfSurrogates"] == 10 and "[0, 1]" in auc["Units"]
    lam = map_metadata("desc-sparse_stat-lambda_statmap", params)
    assert "lambda" in lam["Description"] and "TimeConvention" not in lam
    assert "denoised" in map_metadata("desc-denoised_bold", params)["Description"]


@pytest.mark.slow
def test_splora_nuclear_norm_separates_global_signal():
    """Published SPLORA (nuclear norm by proximal splitting): the low-rank part captures a
    global signal shared by the voxels, its singular values are shrunk (not truncated), the
    objective decreases, and the activity is better recovered than without the low-rank term."""
    from bids_hrf.hrf.sparse.splora import SPLORA

    rng = np.random.default_rng(4)
    n, v = 120, 40
    H = hrf_matrix(2.0, n)
    S = np.zeros((n, v))
    for j in range(v):
        pos = rng.choice(np.arange(2, n - 12), 4, replace=False)
        S[pos, j] = rng.uniform(1.5, 2.5, 4)
    drift = np.sin(np.linspace(0, 6 * np.pi, n))[:, None] * rng.uniform(2, 3, v)[None]
    Y = H @ S + drift + 0.1 * rng.standard_normal((n, v))
    m = SPLORA(2.0).fit(Y)
    assert 1 <= m.rank_ <= 3
    assert np.corrcoef(m.low_rank_.ravel(), drift.ravel())[0, 1] > 0.9
    # soft (not hard) thresholding: the kept singular value is below the data's
    sv_low = np.linalg.svd(m.low_rank_, compute_uv=False)[0]
    assert sv_low < np.linalg.svd(drift, compute_uv=False)[0] + m.rho_
    obj = np.array(m.objective_)
    assert obj[-1] <= obj[len(obj) // 2] < obj[0]  # FISTA is not monotone step by step
    without = SPLORA(2.0, rho_factor=1e6).fit(Y)  # nuclear norm so large that L = 0
    assert without.rank_ == 0
    assert (np.corrcoef(m.coef_.ravel(), S.ravel())[0, 1]
            > max(0.8, np.corrcoef(without.coef_.ravel(), S.ravel())[0, 1]))
    np.testing.assert_allclose(m.fitted_, H @ m.coef_ + m.low_rank_)
    with pytest.raises(ValueError, match="rho_factor"):
        SPLORA(2.0, rho_factor=-1).fit(Y)


def test_runs_averaged_blind_table_combines_the_runs_uncertainty():
    """--estimate-hrf over several runs: the averaged hrfparams table carries the SD of the
    mean of the runs' estimates, their summed events and the identifiability rule."""
    import pandas as pd

    from bids_hrf.hrf.sparse.method import _combine_blind_columns

    runs = [pd.DataFrame({"time_to_peak_sd": [1.2, 0.6], "fwhm_sd": [0.8, 0.4],
                          "n_events": [5, 30], "identifiable": [False, True]}),
            pd.DataFrame({"time_to_peak_sd": [1.6, 0.8], "fwhm_sd": [0.6, 0.3],
                          "n_events": [2, 25], "identifiable": [False, True]})]
    table = pd.DataFrame({"parcel": ["a", "b"], "time_to_peak": [5.0, 6.0]})
    _combine_blind_columns(table, runs)
    np.testing.assert_allclose(table["time_to_peak_sd"], [1.0, 0.5])
    np.testing.assert_allclose(table["fwhm_sd"], [0.5, 0.25])
    assert table["n_events"].tolist() == [7, 55]
    assert table["identifiable"].tolist() == [False, True]
