"""Command-line parsing, configuration and the Python API (fast: no workflow runs)."""

from __future__ import annotations

import json

import pytest

from bids_hrf.cli.parser import build_parser, config_from_args
from bids_hrf.cli.run import main
from bids_hrf.config import make_config
from bids_hrf.errors import EXIT_NOINPUT, EXIT_USAGE, UsageError


def _config(tmp_path, *extra):
    bids = tmp_path / "bids"
    for sub in ("sub-01", "sub-02"):
        (bids / sub).mkdir(parents=True, exist_ok=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    args = build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant",
                                      "--atlas", "data-driven:20", *extra])
    return config_from_args(args)


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert "bids-hrf" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "--hrf-method" in capsys.readouterr().out


def test_usage_error_exit_code(capsys):
    assert main(["only-one-arg"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("bids-hrf: error:") and "Traceback" not in err


def test_participant_label_prefix_removed(tmp_path):
    cfg = _config(tmp_path, "--participant-label", "sub-01", "02")
    assert cfg.participant_label == ("01", "02")


def test_config_hash_ignores_execution_settings(tmp_path):
    a = _config(tmp_path, "--nprocs", "1")
    b = _config(tmp_path, "--nprocs", "2", "--participant-label", "01")
    c = _config(tmp_path, "--high-pass", "0.02")
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_all_problems_reported_at_once(tmp_path, capsys):
    bids = tmp_path / "bids"
    bids.mkdir()
    code = main([str(bids), str(bids), "participant", "--atlas", "nonsense atlas!",
                 "--dummy-scans", "many", "--contrasts", str(tmp_path / "missing.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_NOINPUT  # the first problem: no dataset_description.json
    assert len(err) >= 4
    assert all(line.startswith("bids-hrf: error:") for line in err)
    text = "\n".join(err)
    for needle in ("dataset_description.json", "never writes into the raw dataset",
                   "missing.json", "--dummy-scans", "--atlas"):
        assert needle in text


def test_bad_json_options(tmp_path):
    bad = tmp_path / "f.json"
    bad.write_text("{not json")
    with pytest.raises(Exception) as info:
        _config(tmp_path, "--bids-filter-file", str(bad))
    assert "not valid JSON" in str(info.value)
    with pytest.raises(Exception) as info:
        _config(tmp_path, "--plugin-args", "[1, 2]")
    assert "--plugin-args" in str(info.value)


def test_contrasts_file_loaded(tmp_path):
    con = tmp_path / "c.json"
    con.write_text(json.dumps({"a_vs_b": "a - b"}))
    cfg = _config(tmp_path, "--contrasts", str(con))
    assert cfg.contrasts == {"a_vs_b": "a - b"}


def test_make_config_rejects_unknown_option(tmp_path):
    with pytest.raises(TypeError, match="unknown configuration option"):
        make_config(tmp_path, tmp_path / "out", "participant", not_an_option=1)


def test_method_options_recorded(tmp_path):
    cfg = _config(tmp_path, "--hrf-method", "jde-vem", "--jde-beta", "0.5",
                  "--no-zero-constraint", "--jde-iter-max", "20")
    assert cfg.method_options["jde_beta"] == 0.5
    assert cfg.method_options["zero_constraint"] is False
    assert cfg.method_options["jde_iter_max"] == 20


def test_iter_min_above_max_is_usage_error(tmp_path):
    with pytest.raises(Exception) as info:
        _config(tmp_path, "--jde-iter-min", "50", "--jde-iter-max", "10")
    assert getattr(info.value, "exit_code", None) == EXIT_USAGE


def test_estimate_hrf_default_depends_on_method(tmp_path):
    assert _config(tmp_path, "--hrf-method", "jde-vem").method_options["estimate_hrf"] is True


def test_jde_hrf_hyperprior_default_is_data_driven(tmp_path):
    opts = _config(tmp_path, "--hrf-method", "jde-vem").method_options
    assert opts["jde_hrf_hyperprior"] is None  # chosen from the data (docs/jde-vem.md)
    auto = _config(tmp_path, "--hrf-method", "jde-vem", "--jde-hrf-hyperprior", "auto")
    assert auto.method_options["jde_hrf_hyperprior"] is None
    fixed = _config(tmp_path, "--hrf-method", "jde-vem", "--jde-hrf-hyperprior", "1000")
    assert fixed.method_options["jde_hrf_hyperprior"] == 1000.0
    for bad in ("-3", "smooth"):
        with pytest.raises(UsageError, match="jde-hrf-hyperprior"):
            _config(tmp_path, "--hrf-method", "jde-vem", "--jde-hrf-hyperprior", bad)
    assert _config(tmp_path, "--hrf-method", "sparse").method_options["estimate_hrf"] is False
    sparse_est = _config(tmp_path, "--hrf-method", "sparse", "--estimate-hrf")
    assert sparse_est.method_options["estimate_hrf"] is True


def test_sparse_group_needs_fista_criterion(tmp_path):
    with pytest.raises(Exception) as info:
        _config(tmp_path, "--hrf-method", "sparse", "--sparse-group", "0.3")
    assert "--sparse-criterion mad" in str(info.value)
    assert getattr(info.value, "exit_code", None) == EXIT_USAGE


def test_relative_atlas_file_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "atlas").mkdir()
    (tmp_path / "atlas" / "a_dseg.nii.gz").write_bytes(b"")
    cfg = make_config("bids", "out", "participant", atlas="atlas/a_dseg.nii.gz")
    assert cfg.atlas == str(tmp_path / "atlas" / "a_dseg.nii.gz")
    assert make_config("bids", "out", "participant", atlas="data-driven:50").atlas == \
        "data-driven:50"
    assert make_config("bids", "out", "participant",
                       atlas="Schaefer2018:400Parcels7Networks").atlas == \
        "Schaefer2018:400Parcels7Networks"


def test_unknown_participant_reported_with_other_problems(tmp_path, capsys):
    bids = tmp_path / "bids"
    (bids / "sub-01").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    code = main([str(bids), str(tmp_path / "out"), "participant", "--participant-label", "99",
                 "--atlas", str(tmp_path / "nope.nii.gz")])
    err = capsys.readouterr().err
    assert code != 0
    assert "participant '99'" in err and "choose from: 01" in err and "nope.nii.gz" in err
