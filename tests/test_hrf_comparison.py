"""Group HRF tables, shape parameters and group comparisons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bids_hrf.hrf_comparison as gh
from bids_hrf.hrf_comparison import (
    compare_hrf_parameters,
    gather_hrf_tables,
    group_hrf_summary,
    hrf_parameters_long,
    welch_t,
)

TIME = np.arange(0.0, 25.0, 0.5)
PARCELS = [f"p{i}" for i in range(12)]
SHIFTED = "p3"


def _double_gamma(t, shift=0.0):
    t = np.clip(t - shift, 0, None)
    return stats.gamma.pdf(t, 6) - stats.gamma.pdf(t, 16) / 6.0


def _cohort(n_per_group=12, shift=1.5, seed=0):
    """HRF tables of controls and patients; patients' SHIFTED parcel peaks ``shift`` later."""
    rng = np.random.default_rng(seed)
    tables, groups = {}, {}
    for g, label in enumerate(("control", "patient")):
        for i in range(n_per_group):
            sub = f"{label[0]}{i:02d}"
            cols = {"time": TIME}
            for p in PARCELS:
                jitter = rng.normal(0, 0.4)
                extra = shift if (g == 1 and p == SHIFTED) else 0.0
                cols[p] = _double_gamma(TIME, jitter + extra) + rng.normal(0, 0.002, TIME.size)
            tables[sub] = pd.DataFrame(cols)
            groups[f"sub-{sub}"] = label
    return tables, pd.Series(groups)


def test_gather_hrf_tables_long_format():
    t = pd.DataFrame({"time": [0.0, 1.0, 2.0], "a": [0.0, 1.0, 0.5], "b": [1.0, 2.0, 3.0]})
    long = gather_hrf_tables({"01": t, "02": t.assign(a=t["a"] * 2)})
    assert list(long.columns) == ["subject", "parcel", "time", "value"]
    assert len(long) == 12
    row = long[(long.subject == "02") & (long.parcel == "a") & (long.time == 1.0)]
    assert row["value"].item() == 2.0
    with pytest.raises(ValueError, match="start with a 'time' column"):
        gather_hrf_tables({"01": t[["a", "time"]]})
    with pytest.raises(ValueError, match="increase strictly"):
        gather_hrf_tables({"01": t.iloc[::-1]})


def test_group_summary_matches_numpy():
    tables, groups = _cohort(n_per_group=4)
    long = gather_hrf_tables(tables)
    summary = group_hrf_summary(long)
    assert len(summary) == len(PARCELS) * TIME.size
    values = np.stack([tables[s]["p5"].to_numpy() for s in tables])
    rows = summary[summary.parcel == "p5"].sort_values("time")
    np.testing.assert_allclose(rows["mean"], values.mean(0))
    np.testing.assert_allclose(rows["sd"], values.std(0, ddof=1))
    np.testing.assert_allclose(rows["sem"], values.std(0, ddof=1) / np.sqrt(8))
    assert (rows["n"] == 8).all()
    by_group = group_hrf_summary(long, groups)
    pat = by_group[(by_group.group == "patient") & (by_group.parcel == "p5")].sort_values("time")
    np.testing.assert_allclose(pat["mean"], values[4:].mean(0))
    assert (pat["n"] == 4).all()


@pytest.mark.parametrize("which", ["local", "shared"])
def test_parameters_of_known_shapes(which, monkeypatch):
    if which == "local":
        monkeypatch.setattr(gh, "_shared_parameters", lambda: None)
    elif gh._shared_parameters() is None:
        pytest.skip("bids_hrf.hrf.params not available")
    sigma, peak, amp = 1.5, 6.2, 2.0
    gauss = amp * np.exp(-0.5 * ((TIME - peak) / sigma) ** 2)
    negative = -gauss
    table = pd.DataFrame({"time": TIME, "g": gauss, "neg": negative, "dg": _double_gamma(TIME)})
    out = hrf_parameters_long({"01": table}).set_index("parcel")
    assert out.loc["g", "time_to_peak"] == pytest.approx(peak, abs=0.02)
    assert out.loc["g", "height"] == pytest.approx(amp, rel=0.01)
    assert out.loc["g", "fwhm"] == pytest.approx(2 * np.sqrt(2 * np.log(2)) * sigma, rel=0.02)
    assert np.isnan(out.loc["neg", "time_to_peak"]) and np.isnan(out.loc["neg", "fwhm"])
    fine = np.linspace(0, 25, 25001)
    dg = _double_gamma(fine)
    assert out.loc["dg", "time_to_peak"] == pytest.approx(fine[np.argmax(dg)], abs=0.05)
    above = fine[dg >= dg.max() / 2]
    assert out.loc["dg", "fwhm"] == pytest.approx(above[-1] - above[0], abs=0.1)


def test_custom_params_fn_is_used():
    def params(time, hrfs):
        return {"time_to_peak": time[np.argmax(hrfs, 0)], "fwhm": np.ones(hrfs.shape[1]),
                "height": hrfs.max(0)}

    table = pd.DataFrame({"time": TIME, "a": _double_gamma(TIME, 1.0)})
    out = hrf_parameters_long({"x": table}, params_fn=params)
    assert out["fwhm"].item() == 1.0
    assert out["time_to_peak"].item() == TIME[np.argmax(table["a"])]


def test_planted_time_to_peak_difference_is_found():
    tables, groups = _cohort()
    params = hrf_parameters_long(tables)
    result = compare_hrf_parameters(params, groups, "time_to_peak").set_index("parcel")
    assert result.loc[SHIFTED, "significant"]
    assert result.loc[SHIFTED, "difference"] == pytest.approx(1.5, abs=0.4)
    assert result.loc[SHIFTED, "p_fdr"] < 0.01
    others = result.drop(index=SHIFTED)
    assert not others["significant"].any()
    assert (result["n_control"] == 12).all() and (result["n_patient"] == 12).all()
    assert (result["p_fdr"] >= result["p"] - 1e-15).all()
    # permutation test agrees on what is significant
    perm = compare_hrf_parameters(params, groups, "time_to_peak", test="permutation",
                                  n_perm=499).set_index("parcel")
    assert perm.loc[SHIFTED, "significant"] and not perm.drop(index=SHIFTED)["significant"].any()
    np.testing.assert_allclose(perm["t"], result["t"])
    # heights do not differ between groups
    assert not compare_hrf_parameters(params, groups, "height")["significant"].any()


@pytest.mark.golden
def test_welch_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (9, 6)), rng.normal(0.5, 2, (14, 6))
    a[2, 1] = np.nan
    t, p = welch_t(a, b)
    for j in range(6):
        ref = stats.ttest_ind(b[:, j], a[:, j], equal_var=False, nan_policy="omit")
        assert t[j] == pytest.approx(ref.statistic, rel=1e-10)
        assert p[j] == pytest.approx(ref.pvalue, rel=1e-8)


def test_compare_errors_and_missing_values():
    tables, groups = _cohort(n_per_group=3)
    params = hrf_parameters_long(tables)
    three = groups.copy()
    three.iloc[0] = "other"
    with pytest.raises(ValueError, match="exactly two groups, found 3"):
        compare_hrf_parameters(params, three)
    with pytest.raises(ValueError, match="test must be"):
        compare_hrf_parameters(params, groups, test="mann-whitney")
    with pytest.raises(ValueError, match="not in table columns"):
        compare_hrf_parameters(params, groups, parameter="latency")
    with pytest.raises(ValueError, match="several rows for one subject"):
        compare_hrf_parameters(pd.concat([params, params.iloc[:1]]), groups)
    params.loc[params.parcel == "p0", "time_to_peak"] = np.nan
    params.loc[(params.parcel == "p1") & (params.subject == "c00"), "time_to_peak"] = np.nan
    out = compare_hrf_parameters(params, groups).set_index("parcel")
    assert np.isnan(out.loc["p0", "p"]) and not out.loc["p0", "significant"]
    assert out.loc["p1", "n_control"] == 2 and np.isfinite(out.loc["p1", "p"])
