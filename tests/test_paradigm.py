"""PyHRF paradigm CSV and contrasts JSON reading (bids_hrf.io.paradigm)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bids_hrf.errors import DataError, NoInputError, UsageError
from bids_hrf.io.paradigm import (
    check_contrast_conditions,
    paradigm_sessions,
    parse_paradigm,
    read_paradigm_csv,
    read_pyhrf_contrasts,
    session_events,
)

# as in PyHRF's datafiles/paradigm_loc.csv: whitespace, quoted names, amplitudes "1."
PYHRF_STYLE = """0 "calculaudio" 35.400000 0.000000 1.
0 "calculaudio" 44.700000 0.000000 1.
0 "clicDvideo" 2.400000 0.000000 1.
1 "clicDaudio" 0.5 2. 0.5
"""
# as in PyHRF's paradigm_loc_av_comma.csv: commas, no amplitude
COMMA_STYLE = '0,"audio",15.000000,0.000000\n0,"video",20.7,0.\n\n1,"audio",3,1\n'


def test_whitespace_with_trailing_point_amplitudes():
    p = parse_paradigm(PYHRF_STYLE)
    assert list(p.columns) == ["session", "trial_type", "onset", "duration", "modulation"]
    assert p["session"].tolist() == [0, 0, 0, 1]
    assert p["trial_type"].tolist() == ["calculaudio", "calculaudio", "clicDvideo",
                                        "clicDaudio"]
    np.testing.assert_allclose(p["onset"], [35.4, 44.7, 2.4, 0.5])
    np.testing.assert_allclose(p["duration"], [0, 0, 0, 2.0])
    np.testing.assert_allclose(p["modulation"], [1, 1, 1, 0.5])


def test_comma_separated_without_amplitude():
    p = parse_paradigm(COMMA_STYLE)
    assert paradigm_sessions(p) == [0, 1]
    assert p["trial_type"].tolist() == ["audio", "video", "audio"]
    np.testing.assert_allclose(p["modulation"], 1.0)
    np.testing.assert_allclose(p["duration"], [0, 0, 1])


def test_quoted_names_keep_spaces_and_commas_tabs_accepted():
    p = parse_paradigm('2\t"left hand, fast"\t1.5\t0\n2 right 3 0 2\n')
    assert p["trial_type"].tolist() == ["left hand, fast", "right"]
    np.testing.assert_allclose(p["modulation"], [1, 2])


def test_session_events_sorted_and_modulation_only_when_needed():
    p = parse_paradigm(PYHRF_STYLE)
    ev0 = session_events(p, 0)
    assert list(ev0.columns) == ["onset", "duration", "trial_type"]
    np.testing.assert_allclose(ev0["onset"], [2.4, 35.4, 44.7])
    ev1 = session_events(p, 1)
    assert ev1["modulation"].tolist() == [0.5]


def test_unknown_session_lists_known_ones():
    p = parse_paradigm(PYHRF_STYLE)
    with pytest.raises(DataError, match=r"no session 3 \(sessions in the file: 0, 1\)"):
        session_events(p, 3, source="par.csv")


def test_events_after_run_end():
    p = parse_paradigm(PYHRF_STYLE)
    with pytest.raises(DataError, match="after the end of the run"):
        session_events(p, 1, duration=0.4)


@pytest.mark.parametrize("text, match", [
    ("session condition onset duration\n0 a 1 0\n", "not an integer .a header line"),
    ('0 "a" 1\n', "3 field"),
    ('0 "a" 1 0 1 7\n', "6 field"),
    ('0 "a" one 0\n', "onset 'one' is not a number"),
    ('0 "a" 1 -2\n', "negative duration"),
    ('0 "a 1 0\n', "line 1: No closing quotation"),
    ('0 "a" 1 0 nan\n', "amplitude 'nan'"),
    ("\n# only a comment\n", "no event"),
])
def test_bad_lines_name_file_and_line(text, match):
    with pytest.raises(DataError, match=match) as info:
        parse_paradigm(text, "my.csv")
    assert "my.csv" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(NoInputError, match="cannot be read"):
        read_paradigm_csv(tmp_path / "nope.csv")


def test_read_file(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text(PYHRF_STYLE)
    assert len(read_paradigm_csv(f)) == 4


def test_contrasts_case_sensitive_with_hint(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"Audio-Video": "clicDaudio-clicDvideo"}))
    spec = read_pyhrf_contrasts(f)
    w = check_contrast_conditions(spec, ["clicDaudio", "clicDvideo", "other"])
    np.testing.assert_allclose(w["Audio-Video"], [1, -1, 0])
    with pytest.raises(UsageError, match=r"'clicdaudio'.*case-sensitive.*'clicdaudio' -> "
                                         r"'clicDaudio'"):
        check_contrast_conditions({"A-V": "clicdaudio - clicDvideo"},
                                  ["clicDaudio", "clicDvideo"], str(f))
    with pytest.raises(UsageError, match="'typo'.*exactly as written"):
        check_contrast_conditions({"A": "typo"}, ["clicDaudio"])


def test_contrasts_file_errors(tmp_path):
    f = tmp_path / "c.json"
    f.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        read_pyhrf_contrasts(f)
    f.write_text(json.dumps({"a": 1}))
    with pytest.raises(UsageError, match="map each contrast name"):
        read_pyhrf_contrasts(f)
    with pytest.raises(NoInputError):
        read_pyhrf_contrasts(tmp_path / "none.json")


# ------------------------------------------------------------- --events-csv (BIDS App)


def test_paradigm_ref_read_as_events(tmp_path):
    from bids_hrf.io.events import is_paradigm_ref, paradigm_ref, read_events

    f = tmp_path / "p.csv"
    f.write_text(PYHRF_STYLE)
    ref = paradigm_ref(f, 1)
    assert is_paradigm_ref(ref) and not is_paradigm_ref(f)
    ev = read_events(ref)
    assert ev["trial_type"].tolist() == ["clicDaudio"] and ev["modulation"].tolist() == [0.5]
    assert read_events(paradigm_ref(f, 0))["onset"].tolist() == [2.4, 35.4, 44.7]
    with pytest.raises(DataError, match="no session 5"):
        read_events(paradigm_ref(f, 5))


def test_sessions_matched_to_runs():
    from types import SimpleNamespace

    from bids_hrf.io.inputs import _paradigm_refs

    def bold(path, task, run, session=None):
        return SimpleNamespace(path=path, entities={"task": task, "run": run,
                                                    "session": session})

    bolds = [bold("b2", "loc", 2), bold("b10", "loc", 10), bold("b1", "loc", 1),
             bold("r1", "rest", 1)]
    refs = _paradigm_refs(bolds, "/p.csv", [3, 7])
    assert str(refs["b1"]).endswith("#session=3") and str(refs["b2"]).endswith("#session=7")
    assert refs["b10"] is None  # a third run, two sessions
    assert str(refs["r1"]).endswith("#session=3")  # each task counts its own runs
    refs = _paradigm_refs(bolds, "/p.csv", [0])
    assert all(str(r).endswith("#session=0") for r in refs.values())


@pytest.mark.slow
def test_bids_app_events_csv_same_results_as_bids_events(tmp_path, capsys):
    """The BIDS events rewritten as a PyHRF paradigm (session k = run k, whitespace, quoted
    names, amplitudes "1."): every statistical map equals the BIDS-events run's."""
    import nibabel as nib
    import pandas as pd

    from bids_hrf.cli.run import main
    from bids_hrf.datasets import make_synthetic_dataset

    ds = make_synthetic_dataset(tmp_path / "bids", n_subjects=1, n_runs=2, n_scans=60,
                                seed=5)
    lines = []
    for k, run in enumerate((1, 2)):
        ev = pd.read_csv(next(ds.bids_dir.rglob(f"*run-{run}_events.tsv")), sep="\t")
        lines += [f'{k} "{t}" {o:.6f} {d:.6f} 1.' for t, o, d in
                  zip(ev["trial_type"], ev["onset"], ev["duration"], strict=True)]
    csv = tmp_path / "paradigm.csv"
    csv.write_text("\n".join(lines) + "\n")
    common = ["participant", "--no-report", "--nprocs", "1", "--hrf-method", "canonical"]
    assert main([str(ds.bids_dir), str(tmp_path / "a"), *common]) == 0
    assert main([str(ds.bids_dir), str(tmp_path / "b"), *common, "--events-csv",
                 str(csv)]) == 0
    maps = sorted((tmp_path / "a").rglob("*_statmap.nii.gz"))
    assert maps
    for path in maps:
        other = tmp_path / "b" / path.relative_to(tmp_path / "a")
        np.testing.assert_allclose(np.asarray(nib.load(other).dataobj),
                                   np.asarray(nib.load(path).dataobj), rtol=1e-6, atol=1e-9)
    capsys.readouterr()
    code = main([str(ds.bids_dir), str(tmp_path / "c"), *common, "--events-csv",
                 str(tmp_path / "missing.csv")])
    assert code == 66 and "missing.csv" in capsys.readouterr().err
