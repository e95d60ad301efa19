"""make_design / check_events: nilearn's design with validation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import make_first_level_design_matrix

from bids_hrf.glm import check_events, make_design
from bids_hrf.hrf.basis import canonical_hrf, sampled_hrf_model

FT = np.arange(60) * 2.0


def _events(**extra):
    ev = pd.DataFrame({"onset": [10.0, 30.0, 50.0, 70.0], "duration": [2.0, 2.0, 0.0, 2.0],
                       "trial_type": ["a", "b", "a", "b"]})
    for k, v in extra.items():
        ev[k] = v
    return ev


@pytest.mark.parametrize("hrf", ["spm", "glover + derivative", "spm + derivative + dispersion"])
def test_same_as_nilearn(hrf):
    conf = pd.DataFrame({"motion": np.sin(FT / 7.0)})
    ours = make_design(FT, _events(response_time=1.0), hrf, conf, high_pass=0.008)
    ref = make_first_level_design_matrix(FT, _events(), hrf_model=hrf, high_pass=0.008,
                                         add_regs=conf)
    pd.testing.assert_frame_equal(ours, ref)


def test_aliases_fir_and_polynomial():
    a = make_design(FT, _events(), "Glover+Derivative", None)
    b = make_design(FT, _events(), "glover + derivative", None)
    pd.testing.assert_frame_equal(a, b)
    fir = make_design(FT, _events(), "fir", None, fir_delays=[0, 1, 2])
    assert [c for c in fir.columns if c.startswith("a_")] == ["a_delay_0", "a_delay_1",
                                                              "a_delay_2"]
    poly = make_design(FT, _events(), "spm", None, drift_model="polynomial", drift_order=2)
    assert {"drift_1", "drift_2", "constant"} <= set(poly.columns)
    with pytest.raises(ValueError, match="fir_delays"):
        make_design(FT, _events(), "fir", None)


def test_callable_columns_are_condition_names():
    t, h = canonical_hrf("spm", dt=0.1, duration=32.0)
    d = make_design(FT, _events(), sampled_hrf_model(t, h, name="myhrf"), None)
    ref = make_design(FT, _events(), "spm", None)
    assert list(d.columns) == list(ref.columns)
    np.testing.assert_allclose(d[["a", "b"]].to_numpy(), ref[["a", "b"]].to_numpy(), atol=2e-3)


def test_validation_messages():
    with pytest.raises(ValueError, match="negative durations in rows 1, 3"):
        make_design(FT, _events().assign(duration=[1.0, -1.0, 0.0, -2.0]), "spm", None)
    with pytest.raises(ValueError, match="lacks the column"):
        make_design(FT, _events().drop(columns="onset"), "spm", None)
    with pytest.raises(ValueError, match="'onset' has missing or non-numeric values in rows 2"):
        make_design(FT, _events().assign(onset=[1.0, 2.0, "x", 4.0]), "spm", None)
    with pytest.raises(ValueError, match=r"confounds have 10 rows but the run has 60"):
        make_design(FT, _events(), "spm", pd.DataFrame({"m": np.zeros(10)}))
    with pytest.raises(ValueError, match=r"column\(s\) \['m'\]"):
        make_design(FT, _events(), "spm", pd.DataFrame({"m": np.r_[np.nan, np.zeros(59)]}))
    with pytest.raises(ValueError, match="same name as event conditions"):
        make_design(FT, _events(), "spm", pd.DataFrame({"a": np.zeros(60)}))
    with pytest.raises(ValueError, match="drift_model"):
        make_design(FT, _events(), "spm", None, drift_model="linear")
    with pytest.raises(ValueError, match="Unknown HRF model"):
        make_design(FT, _events(), "canonical", None)


def test_warnings_late_onsets_and_missing_trial_types():
    ev = _events().assign(onset=[10.0, 30.0, 500.0, 70.0])
    with pytest.warns(UserWarning, match="rows 2 start after the last scan"):
        make_design(FT, ev, "spm", None)
    ev = _events().assign(trial_type=["a", "n/a", "a", None])
    with pytest.warns(UserWarning, match="rows 1, 3 have no trial_type"):
        out = check_events(ev)
    assert list(out["trial_type"]) == ["a", "a"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_events(_events(response_time=[1, 2, 3, 4]))  # extra columns dropped silently
