"""The README's demo command, with a relative folder as a new user would type it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_both_levels_from_a_relative_path(tmp_path, monkeypatch, capsys):
    from bids_hrf.cli.demo import main

    monkeypatch.chdir(tmp_path)
    assert main(["./demo", "--subjects", "2", "--nprocs", "1"]) == 0
    out = tmp_path / "demo" / "bids" / "derivatives" / "bids_hrf"
    for name in ("sub-01.html", "sub-02.html", "group.html"):
        assert (out / name).is_file(), name
    assert "group.html" in capsys.readouterr().out
    group = (out / "group.html").read_text()  # one-sample model: no group test is claimed
    assert "no group comparison" in group and "Welch" not in group
    assert list((out / "group").glob("*_stat-z_statmap.nii.gz"))
