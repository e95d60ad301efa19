"""--bids-filter-file: every query (bold, mask, confounds, events) is applied; unknown
queries and entities are rejected with one clear line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bids_hrf.config import make_config
from bids_hrf.errors import UsageError
from bids_hrf.io.inputs import FILTER_QUERIES, check_bids_filters, collect_runs


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """One subject, two runs, with alternative masks, confounds and events beside the
    fMRIPrep ones (as a second preprocessing or a re-coded paradigm would leave)."""
    from bids_hrf.datasets import make_synthetic_dataset

    ds = make_synthetic_dataset(tmp_path_factory.mktemp("filters") / "bids", size="small",
                                n_subjects=1, n_runs=2, seed=3)
    func = ds.fmriprep_dir / "sub-01" / "func"
    for mask in func.glob("*_desc-brain_mask.nii.gz"):
        shutil.copy(mask, mask.with_name(mask.name.replace("desc-brain", "desc-tight")))
    for conf in func.glob("*_desc-confounds_timeseries.tsv"):
        table = pd.read_csv(conf, sep="\t")
        table["trans_x"] = table["trans_x"] + np.linspace(0.0, 1.0, len(table))
        alt = conf.with_name(conf.name.replace("desc-confounds", "desc-confoundsalt"))
        table.to_csv(alt, sep="\t", index=False, na_rep="n/a")
    raw = ds.bids_dir / "sub-01" / "func"
    for events in raw.glob("*_events.tsv"):
        shutil.copy(events, events.with_name(events.name.replace("_run-", "_acq-recoded_run-")))
    return ds


def _runs(ds, filters, tmp_path):
    config = make_config(ds.bids_dir, tmp_path / "out", "participant",
                         derivatives=[ds.fmriprep_dir], bids_filters=filters,
                         atlas=str(ds.atlas_img))
    return collect_runs(config)[0]


def test_each_query_filter_is_applied(dataset, tmp_path):
    plain = _runs(dataset, {}, tmp_path)
    assert len(plain) == 2
    assert all("desc-brain_mask" in r.mask.name for r in plain)
    assert all("desc-confounds_timeseries" in r.confounds.name for r in plain)

    filters = {"bold": {"run": 2}, "mask": {"desc": "tight"},
               "confounds": {"desc": "confoundsalt"},
               "events": {"acquisition": "recoded"}}
    runs = _runs(dataset, filters, tmp_path)
    assert [r.run for r in runs] == ["2"]
    (run,) = runs
    assert run.mask.name.endswith("_run-2_space-MNI152NLin2009cAsym_desc-tight_mask.nii.gz")
    assert run.confounds.name == "sub-01_task-localizer_run-2_desc-confoundsalt_timeseries.tsv"
    assert run.events.name == "sub-01_task-localizer_acq-recoded_run-2_events.tsv"


def test_filtered_confounds_reach_the_regressors(dataset, tmp_path):
    """The confounds file a filter selects is the one whose columns are regressed out."""
    from bids_hrf.confounds import load_run_confounds

    (run,) = _runs(dataset, {"bold": {"run": 1}, "confounds": {"desc": "confoundsalt"}},
                   tmp_path)
    alt = load_run_confounds(run.bold, "minimal", confounds_file=run.confounds)
    default = load_run_confounds(run.bold, "minimal")
    assert alt.confounds_file == str(run.confounds)
    assert not np.allclose(alt.confounds["trans_x"], default.confounds["trans_x"])


def test_filter_selecting_no_mask_names_the_filter(dataset, tmp_path):
    with pytest.raises(Exception) as info:
        _runs(dataset, {"mask": {"desc": "nosuch"}}, tmp_path)
    text = str(info.value)
    assert "brain mask" in text and "--bids-filter-file 'mask'" in text


def test_star_and_null(dataset, tmp_path):
    # Unfiltered, a BOLD without acquisition never takes an acq-<label> events file
    # (BIDS inheritance lets a file omit an entity of the BOLD, never add one).
    assert all("acq-" not in r.events.name for r in _runs(dataset, {}, tmp_path))
    # "*": any value (so the entity must be present); null: the entity must be absent.
    runs = _runs(dataset, {"events": {"acquisition": "*"}}, tmp_path)
    assert all("_acq-recoded_" in r.events.name for r in runs)
    with pytest.raises(Exception, match="no events.tsv"):
        _runs(dataset, {"events": {"run": None}}, tmp_path)


def test_unknown_entity_is_a_usage_error(dataset, tmp_path):
    with pytest.raises(UsageError) as info:
        _runs(dataset, {"confounds": {"colour": "blue"}}, tmp_path)
    assert "--bids-filter-file query 'confounds'" in info.value.one_line()


@pytest.mark.parametrize("filters, needle", [
    ({"t1w": {"desc": "preproc"}}, "unknown query 't1w'"),
    ({"bold": ["run-1"]}, "query 'bold' must map entities"),
    ({"mask": {"subject": "01"}}, "query 'mask' sets subject"),
    (["bold"], "must hold a JSON object"),
])
def test_bad_filters_are_rejected(filters, needle):
    problems = check_bids_filters(filters)
    assert len(problems) == 1 and needle in problems[0]


def test_known_queries_accepted():
    assert check_bids_filters({q: {"desc": "x"} for q in FILTER_QUERIES}) == []


def test_cli_rejects_unknown_query_with_other_problems(tmp_path):
    from bids_hrf.cli.parser import build_parser, config_from_args
    from bids_hrf.errors import ValidationErrors

    bids = tmp_path / "bids"
    (bids / "sub-01").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    filt = tmp_path / "filter.json"
    filt.write_text(json.dumps({"bold": {"run": 1}, "fmap": {"acquisition": "x"}}))
    args = build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant",
                                      "--bids-filter-file", str(filt),
                                      "--dummy-scans", "x"])
    with pytest.raises(ValidationErrors) as info:
        config_from_args(args)
    text = str(info.value)
    assert "--bids-filter-file: unknown query 'fmap'" in text and "--dummy-scans" in text
