"""Property-based tests (hypothesis) of the events, confounds and contrast parsers.

Whatever the input, a parser returns a well-formed result or raises the documented error
(``ValueError`` / :class:`bids_hrf.errors.BidsHrfError`) -- never anything else; valid input
round-trips.
"""

from __future__ import annotations

import json
import math
import string
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bids_hrf.confounds import PRESETS, parse_confounds_spec
from bids_hrf.confounds.table import check_columns
from bids_hrf.errors import BidsHrfError, DataError
from bids_hrf.glm.contrasts import expression_names, load_contrasts, parse_contrast
from bids_hrf.glm.design import check_events
from bids_hrf.io.events import read_events

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(
    lambda s: s not in {"and", "or", "not", "if", "else", "in", "is", "for", "lambda",
                        "def", "del", "as", "from", "with", "class", "try", "while",
                        "yield", "none", "true", "false", "pass", "break", "return",
                        "async", "await", "elif", "except", "global", "import", "raise",
                        "assert", "continue", "finally", "nonlocal"})
name_lists = st.lists(identifiers, min_size=1, max_size=5, unique=True)
small_ints = st.integers(min_value=-9, max_value=9)


# ---------------------------------------------------------------------------------------
# contrasts


@SETTINGS
@given(names=name_lists, data=st.data())
def test_contrast_round_trip(names, data):
    """Writing weights as an expression and parsing it gives the weights back."""
    weights = data.draw(st.lists(small_ints, min_size=len(names), max_size=len(names)))
    assume(any(weights))
    divisor = data.draw(st.sampled_from([1, 2, 4]))
    terms = [f"{w}*{n}" for w, n in zip(weights, names, strict=True) if w]
    expression = "(" + " + ".join(terms) + f") / {divisor}"
    got = parse_contrast(expression, names)
    np.testing.assert_allclose(got, np.asarray(weights, float) / divisor, atol=1e-12)


@SETTINGS
@given(names=name_lists, data=st.data())
def test_contrast_is_linear(names, data):
    """parse(a + b) == parse(a) + parse(b) and parse(-(a)) == -parse(a)."""
    a = data.draw(st.sampled_from(names))
    b = data.draw(st.sampled_from(names))
    k = data.draw(st.integers(1, 5))
    wa = parse_contrast(f"{k}*{a}", names)
    wb = parse_contrast(b, names)
    total = wa + wb
    assume(total.any())
    np.testing.assert_allclose(parse_contrast(f"({k}*{a}) + ({b})", names), total)
    np.testing.assert_allclose(parse_contrast(f"-({k}*{a})", names), -wa)


@SETTINGS
@given(names=name_lists, text=st.text(alphabet=string.printable, max_size=60))
def test_contrast_arbitrary_text_never_escapes(names, text):
    """Any text: finite non-zero weights over the names, or ValueError. Never executed."""
    try:
        weights = parse_contrast(text, names)
    except ValueError as exc:
        assert str(exc)
        return
    assert weights.shape == (len(names),)
    assert np.isfinite(weights).all() and weights.any()


@SETTINGS
@given(names=name_lists, payload=st.sampled_from([
    "__import__('os')", "open('x')", "().__class__", "lambda: 1", "[a for a in b]",
    "a if b else c", "a ** 2", "a @ b", "a < b", "f'{a}'", "'a'", "{a: 1}", "a.b", "a[0]",
]))
def test_contrast_code_is_refused(names, payload):
    expression = f"{names[0]} + {payload}"
    with pytest.raises(ValueError):
        parse_contrast(expression, names + ["a", "b", "c", "x"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@SETTINGS
@given(value=json_values)
def test_load_contrasts_accepts_or_raises_valueerror(value):
    """Any JSON document: a dict of specs with non-empty expressions, or ValueError."""
    try:
        specs = load_contrasts(value)
    except ValueError:
        return
    for label, spec in specs.items():
        assert label.isalnum() and label.isascii()
        assert spec.expressions and all(e.strip() for e in spec.expressions)
        assert spec.stat_type in ("t", "F")


@SETTINGS
@given(text=st.text(max_size=40))
def test_expression_names_total(text):
    try:
        names = expression_names(text)
    except ValueError:
        return
    assert len(names) == len(set(names))


# ---------------------------------------------------------------------------------------
# events


finite_times = st.floats(min_value=0, max_value=1e4, allow_nan=False, allow_infinity=False)
conditions = st.sampled_from(["audio", "visual", "motor left", "n/a"])


@st.composite
def event_tables(draw, valid: bool = True):
    n = draw(st.integers(1, 12))
    onset = draw(st.lists(finite_times, min_size=n, max_size=n))
    duration = draw(st.lists(st.floats(0, 30, allow_nan=False), min_size=n, max_size=n))
    trial = draw(st.lists(conditions, min_size=n, max_size=n))
    table = pd.DataFrame({"onset": onset, "duration": duration, "trial_type": trial})
    if not valid:
        cell = draw(st.sampled_from([np.nan, np.inf, -1.0, "soon", "", None]))
        column = draw(st.sampled_from(["onset", "duration"]))
        row = draw(st.integers(0, n - 1))
        table[column] = table[column].astype(object)
        table.loc[row, column] = cell
    return table


@SETTINGS
@given(table=event_tables())
def test_check_events_keeps_valid_rows(table):
    labelled = table[table["trial_type"] != "n/a"]
    if labelled.empty:
        with pytest.raises(ValueError):
            check_events(table)
        return
    with pytest.warns(UserWarning) if len(labelled) < len(table) else _no_warning():
        out = check_events(table)
    assert len(out) == len(labelled)
    np.testing.assert_allclose(out["onset"], labelled["onset"].to_numpy(float))
    np.testing.assert_allclose(out["duration"], labelled["duration"].to_numpy(float))
    assert list(out["trial_type"]) == list(labelled["trial_type"])


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@SETTINGS
@given(table=event_tables(valid=False))
def test_check_events_rejects_or_returns_clean(table):
    """A damaged table: ValueError naming the column, or only finite onsets/durations >= 0."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = check_events(table)
    except ValueError as exc:
        assert "onset" in str(exc) or "duration" in str(exc) or "events" in str(exc)
        return
    assert np.isfinite(out["onset"].to_numpy(float)).all()
    assert (out["duration"].to_numpy(float) >= 0).all()


@SETTINGS
@given(table=event_tables(valid=False), valid=event_tables())
def test_read_events_file_round_trip(table, valid):
    """TSV files as BIDS writes them: valid ones read back, damaged ones raise DataError."""
    import warnings

    with tempfile.TemporaryDirectory() as tmp:
        good = Path(tmp) / "good_events.tsv"
        valid.to_csv(good, sep="\t", index=False, na_rep="n/a")
        bad = Path(tmp) / "bad_events.tsv"
        table.to_csv(bad, sep="\t", index=False, na_rep="n/a")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = read_events(good)
            except DataError:
                assert (valid["trial_type"] == "n/a").all()
            else:
                kept = valid[valid["trial_type"] != "n/a"]
                np.testing.assert_allclose(out["onset"], kept["onset"], rtol=1e-12)
            try:
                read_events(bad)
            except DataError as exc:
                assert str(bad) in exc.one_line()


# ---------------------------------------------------------------------------------------
# confounds


@SETTINGS
@given(text=st.text(max_size=60))
def test_confounds_spec_total(text):
    """Any --confounds text: a preset, a list of valid unique names, or a usage error."""
    try:
        spec = parse_confounds_spec(text)
    except ValueError as exc:
        assert isinstance(exc, BidsHrfError) and exc.exit_code == 64
        return
    if isinstance(spec, str):
        assert spec in PRESETS
    else:
        assert spec and len(spec) == len(set(spec))
        assert all(name and "," not in name and name == name.strip() for name in spec)
        assert parse_confounds_spec(",".join(spec)) == spec


@SETTINGS
@given(names=st.lists(identifiers, min_size=1, max_size=6, unique=True))
def test_confounds_spec_list_round_trip(names):
    assume(not set(names) & set(PRESETS))
    text = " , ".join(names + names[:1])
    assert parse_confounds_spec(text) == names


@st.composite
def confound_tables(draw):
    n = draw(st.integers(4, 30))
    k = draw(st.integers(1, 4))
    values = draw(st.lists(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=n,
                                    max_size=n), min_size=k, max_size=k))
    table = pd.DataFrame({f"c{i}": col for i, col in enumerate(values)})
    damage = draw(st.sampled_from(["none", "nan-first", "nan-later", "inf", "text"]))
    if damage != "none":
        col = draw(st.sampled_from(list(table.columns)))
        row = 0 if damage == "nan-first" else draw(st.integers(1, n - 1))
        table[col] = table[col].astype(object)
        table.loc[row, col] = {"nan-first": np.nan, "nan-later": np.nan, "inf": math.inf,
                               "text": "oops"}[damage]
    return table


@SETTINGS
@given(table=confound_tables())
def test_check_columns_flags_exactly_the_bad_tables(table):
    numeric = table.apply(pd.to_numeric, errors="coerce").to_numpy(float)
    later_bad = ~np.isfinite(numeric[1:]).all()
    constant = any(np.ptp(c[np.isfinite(c)]) == 0 for c in numeric.T if np.isfinite(c).any())
    try:
        check_columns(table, list(table.columns), Path("x_desc-confounds_timeseries.tsv"))
    except DataError as exc:
        assert later_bad or constant, exc
        assert "x_desc-confounds_timeseries.tsv" in exc.one_line()
        return
    assert not later_bad and not constant


@SETTINGS
@given(table=confound_tables())
def test_load_run_confounds_explicit_columns(table):
    """Explicit columns from a TSV: the same columns back, finite and demeaned, or
    DataError for a damaged table."""
    from bids_hrf.confounds import load_run_confounds

    numeric = table.apply(pd.to_numeric, errors="coerce").to_numpy(float)
    with tempfile.TemporaryDirectory() as tmp:
        func = Path(tmp)
        tsv = func / "sub-01_task-x_desc-confounds_timeseries.tsv"
        table.to_csv(tsv, sep="\t", index=False, na_rep="n/a")
        (func / "sub-01_task-x_desc-confounds_timeseries.json").write_text(json.dumps({}))
        bold = func / "sub-01_task-x_space-MNI_desc-preproc_bold.nii.gz"
        try:
            res = load_run_confounds(bold, list(table.columns), dummy_scans=0,
                                     n_volumes=len(table))
        except DataError:
            bad = ~np.isfinite(numeric[1:]).all() or any(
                np.ptp(c[np.isfinite(c)]) == 0 for c in numeric.T if np.isfinite(c).any())
            assert bad or len(table) < 4
            return
    values = res.confounds.to_numpy(float)
    assert values.shape == table.shape
    assert np.isfinite(values).all()
    np.testing.assert_allclose(values.mean(axis=0), 0, atol=1e-6 * (1 + np.abs(numeric[1:]).max()))
    assert list(res.confounds.columns) == list(table.columns)
