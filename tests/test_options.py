"""Typed stage options: validated in their constructors, one plain dict across nipype."""

from __future__ import annotations

import json

import pytest

from bids_hrf.config import make_config
from bids_hrf.errors import UsageError, ValidationErrors
from bids_hrf.options import GLMOptions, GroupOptions, PrepareOptions


@pytest.mark.parametrize("cls, kwargs", [
    (PrepareOptions, {"space": "MNI", "confounds": "compcor", "dummy_scans": "4",
                      "high_pass": None}),
    (GLMOptions, {"space": "MNI", "hrf_method": "fir", "contrasts": ["a - b"],
                  "noise_model": "ols", "smoothing_fwhm": 6.0}),
    (GroupOptions, {"space": "MNI", "group_model": "two-sample:group",
                    "connectivity": ("correlation",), "n_perm": 100}),
])
def test_round_trip_through_a_plain_dict(cls, kwargs):
    options = cls(**kwargs)
    data = json.loads(json.dumps(options.to_dict()))  # what a nipype trait carries
    assert cls.from_dict(data) == options


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValidationErrors) as info:
        GroupOptions(space="MNI", alpha=2.0, fdr=0.0, n_perm=-1, connectivity=("nope",))
    text = " ".join(e.one_line() for e in info.value.errors)
    for option in ("--group-alpha", "--group-fdr", "--group-permutations", "--connectivity"):
        assert option in text
    with pytest.raises(UsageError, match="--dummy-scans"):
        PrepareOptions(space="MNI", dummy_scans="some")
    with pytest.raises(UsageError, match="--confounds"):
        PrepareOptions(space="MNI", confounds="no_such_preset_or_column!")
    with pytest.raises(UsageError, match="--noise-model"):
        GLMOptions(space="MNI", noise_model="ar3")
    with pytest.raises(UsageError, match="--hrf-model"):
        GLMOptions(space="MNI", hrf_model="no-such-model")


def test_built_once_from_the_configuration(tmp_path):
    (tmp_path / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tA\n")
    config = make_config(tmp_path, tmp_path / "out", "group", group_fdr=0.1,
                         connectivity=("tangent",), confounds="minimal", noise_model="ols")
    group = GroupOptions.from_config(config)
    assert group.participants == str(tmp_path / "participants.tsv")
    assert group.fdr == 0.1 and group.connectivity == ("tangent",)
    assert PrepareOptions.from_config(config).confounds == "minimal"
    assert GLMOptions.from_config(config).noise_model == "ols"


def test_cli_reports_group_option_problems_before_any_work(tmp_path):
    from bids_hrf.cli.run import main

    (tmp_path / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9"}')
    code = main([str(tmp_path), str(tmp_path / "derivatives" / "out"), "group",
                 "--group-fdr", "1.5", "--group-permutations", "-3"])
    assert code == 64
    assert not (tmp_path / "derivatives" / "out").exists()
