"""Configuration files (bids_hrf.cli.config_file): TOML/JSON read into the parser's defaults,
command line wins, unknown keys with the closest valid key, resolved TOML round trip."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bids_hrf.cli.config_file import (
    apply_config,
    read_config_file,
    resolved_options,
    to_toml,
)
from bids_hrf.cli.hrf_options import method_options_from_args
from bids_hrf.cli.parser import build_parser
from bids_hrf.errors import NoInputError, UsageError, ValidationErrors
from bids_hrf.hrf.registry import option_keys, resolved_method_options

POS = ["/data", "/out", "participant"]


def _parse(values: dict, argv: list[str]):
    parser = build_parser()
    apply_config(parser, values, "c.toml")
    return parser, parser.parse_args(POS + argv)


def test_file_values_become_defaults_and_cli_wins():
    values = {"hrf-method": "fir", "hrf_duration": 20, "high-pass": 0.02,
              "participant-label": ["01", "02"], "no-estimate-hrf": True, "nprocs": 2}
    _, args = _parse(values, [])
    assert args.hrf_method == "fir" and args.hrf_duration == 20.0 and args.high_pass == 0.02
    assert args.participant_label == ["01", "02"] and args.estimate_hrf is False
    assert args.nprocs == 2
    _, args = _parse(values, ["--hrf-method", "canonical", "--participant-label", "03"])
    assert args.hrf_method == "canonical" and args.participant_label == ["03"]
    assert args.hrf_duration == 20.0  # the rest still from the file


def test_single_value_given_for_a_list_option():
    _, args = _parse({"task": "rest"}, [])
    assert args.task == ["rest"]


def test_unknown_keys_one_error_each_with_closest():
    parser = build_parser()
    with pytest.raises(ValidationErrors) as info:
        apply_config(parser, {"hrf-modle": "spm", "smoothing": 5, "zzz": 1}, "c.toml")
    lines = info.value.one_line().splitlines()
    assert len(lines) == 3
    assert "unknown option 'hrf-modle'" in lines[0] and "did you mean 'hrf-model'?" in lines[0]
    assert "did you mean 'smoothing-fwhm'?" in lines[1]
    assert "unknown option 'zzz'" in lines[2]
    assert info.value.exit_code == 64


@pytest.mark.parametrize("values, match", [
    ({"hrf-method": "magic"}, "not one of"),
    ({"high-pass": -1}, "invalid value"),
    ({"no-report": "yes"}, "true or false"),
    ({"atlas": ["a", "b"]}, "takes one value"),
])
def test_bad_values(values, match):
    with pytest.raises(ValidationErrors, match=match):
        apply_config(build_parser(), values, "c.toml")


def test_read_toml_json_and_errors(tmp_path):
    t = tmp_path / "c.toml"
    t.write_text('hrf-method = "fir"\nhigh-pass = 0.02\nno-report = true\n')
    assert read_config_file(t) == {"hrf-method": "fir", "high-pass": 0.02, "no-report": True}
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"hrf-method": "fir"}))
    assert read_config_file(j) == {"hrf-method": "fir"}
    t.write_text("hrf-method = fir\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        read_config_file(t)
    t.write_text('[hrf]\nmethod = "fir"\n')
    with pytest.raises(UsageError, match="tables"):
        read_config_file(t)
    with pytest.raises(NoInputError):
        read_config_file(tmp_path / "none.toml")


def test_resolved_round_trip_gives_the_same_namespace(tmp_path):
    parser = build_parser()
    argv = POS + ["--hrf-method", "jde-vem", "--high-pass", "0.0123456789", "--task", "a",
                  "b", "--no-estimate-hrf", "--plugin-args", '{"sbatch_args": "-p x"}',
                  "--bids-filter-file", str(tmp_path / "f.json")]
    args = parser.parse_args(argv)
    text = to_toml(resolved_options(parser, args), ["made by a test"])
    f = tmp_path / "config.toml"
    f.write_text(text)
    parser2 = build_parser()
    apply_config(parser2, read_config_file(f), str(f))
    args2 = parser2.parse_args(POS)
    # HRF-method options are written resolved (the method's defaults filled in): the
    # same method options, the rest identical
    keys = set(option_keys())
    assert ({k: v for k, v in vars(args2).items() if k not in keys}
            == {k: v for k, v in vars(args).items() if k not in keys})
    assert (resolved_method_options("jde-vem", method_options_from_args(args2))
            == resolved_method_options("jde-vem", method_options_from_args(args)))
    assert method_options_from_args(args2)["estimate_hrf"] is False
    assert text.startswith("# made by a test\n") and "high-pass = 0.0123456789\n" in text


def test_existing_relative_paths_written_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hrf.tsv").write_text("time\th\n0\t0\n1\t1\n")
    (tmp_path / "atlas.nii.gz").write_text("")
    parser = build_parser()
    args = parser.parse_args(POS + ["--hrf-model", "file:hrf.tsv", "--atlas", "atlas.nii.gz",
                                    "--atlas-labels", "labels.tsv"])
    values = resolved_options(parser, args)
    assert values["hrf-model"] == f"file:{tmp_path / 'hrf.tsv'}"
    assert values["atlas"] == str(tmp_path / "atlas.nii.gz")
    assert values["atlas-labels"] == str(Path(tmp_path / "labels.tsv"))
    assert values["space"] == args.space  # not a path: kept


def test_works_on_any_parser():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--flag", action="store_true")
    p.add_argument("--name", required=True)
    apply_config(p, {"n": 3, "flag": True, "name": "x"})
    assert vars(p.parse_args([])) == {"n": 3, "flag": True, "name": "x"}


# ----------------------------------------------------------------------------- bids-hrf


def _tree(out: Path) -> dict[str, Path]:
    skip = ("logs/",)
    return {str(p.relative_to(out)): p for p in sorted(out.rglob("*")) if p.is_file()
            and not str(p.relative_to(out)).startswith(skip) and p.suffix != ".html"
            and p.name not in ("config.toml", "group_config.toml")}


@pytest.mark.slow
def test_config_toml_reproduces_the_run_bit_for_bit(tmp_path, capsys):
    """A run, then ``--config OUT_OLD/config.toml`` into another folder: identical files."""
    import numpy as np

    from bids_hrf.cli.run import main
    from bids_hrf.datasets import make_synthetic_dataset

    ds = make_synthetic_dataset(tmp_path / "bids", n_subjects=1, n_runs=1, n_scans=60, seed=3)
    old, new = tmp_path / "old", tmp_path / "new"
    (tmp_path / "hrf.tsv").write_text("time\th\n0\t0\n2\t0.5\n4\t1\n6\t0.6\n10\t0\n")
    assert main([str(ds.bids_dir), str(old), "participant", "--hrf-method", "fir",
                 "--hrf-model", f"file:{tmp_path / 'hrf.tsv'}", "--high-pass", "0.02",
                 "--confounds", "minimal", "--no-report", "--nprocs", "1"]) == 0
    written = (old / "config.toml").read_text()
    assert 'hrf-method = "fir"' in written and "high-pass = 0.02" in written
    assert f'hrf-model = "file:{tmp_path / "hrf.tsv"}"' in written
    assert "*config.toml" in (old / ".bidsignore").read_text().split()
    assert main([str(ds.bids_dir), str(new), "participant", "--config",
                 str(old / "config.toml")]) == 0
    a, b = _tree(old), _tree(new)
    assert a.keys() == b.keys() and any(k.endswith(".nii.gz") for k in a)
    for name, path in a.items():
        if name.endswith(".nii.gz"):
            import nibabel as nib

            x, y = nib.load(path), nib.load(b[name])
            np.testing.assert_array_equal(np.asarray(x.dataobj), np.asarray(y.dataobj))
            assert x.header.binaryblock == y.header.binaryblock, name
        else:
            assert path.read_text().replace(str(old), str(new)) == b[name].read_text(), name
    # the command line overrides the file
    other = tmp_path / "other"
    assert main([str(ds.bids_dir), str(other), "participant", "--config",
                 str(old / "config.toml"), "--hrf-method", "canonical"]) == 0
    assert 'hrf-method = "canonical"' in (other / "config.toml").read_text()


def test_print_config_and_unknown_key_from_the_command_line(tmp_path, capsys):
    from bids_hrf.cli.run import main

    f = tmp_path / "c.toml"
    f.write_text('hrf-method = "jde-vem"\njde-iter-max = 7\n')
    assert main(["--print-config", "--config", str(f), "--jde-beta", "0.5"]) == 0
    out = capsys.readouterr().out
    assert 'hrf-method = "jde-vem"' in out and "jde-iter-max = 7" in out
    assert "jde-beta = 0.5" in out and out.startswith("# bids-hrf")
    f.write_text('hrf-metod = "fir"\nsmothing-fwhm = 5\n')
    assert main([str(tmp_path), str(tmp_path / "out"), "participant", "--config",
                 str(f)]) == 64
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "did you mean 'hrf-method'?" in err[0]
    assert "did you mean 'smoothing-fwhm'?" in err[1]
    assert not (tmp_path / "out").exists()


def test_python_api_run_writes_a_config_that_reproduces_it(tmp_path):
    """make_config + api.run write config.toml too (contrasts given as a dict are saved
    beside it); the command line with --config gives the same maps."""
    import nibabel as nib
    import numpy as np

    from bids_hrf.api import run
    from bids_hrf.cli.run import main
    from bids_hrf.config import make_config
    from bids_hrf.datasets import make_synthetic_dataset

    ds = make_synthetic_dataset(tmp_path / "bids", n_subjects=1, n_runs=1, n_scans=60, seed=4)
    api_out, cli_out = tmp_path / "api", tmp_path / "cli"
    run(make_config(ds.bids_dir, api_out, "participant", atlas="data-driven:4",
                    contrasts={"diff": "audio - visual"}, write_report=False, nprocs=1,
                    bids_filters={"bold": {"task": "localizer"}}))
    written = (api_out / "config.toml").read_text()
    assert 'atlas = "data-driven:4"' in written and "write-report = false" in written
    assert list((api_out / "logs").glob("contrasts_*.json"))
    assert list((api_out / "logs").glob("bids_filters_*.json"))
    assert main([str(ds.bids_dir), str(cli_out), "participant", "--config",
                 str(api_out / "config.toml")]) == 0
    maps = sorted(api_out.rglob("*contrast-diff_stat-z_statmap.nii.gz"))
    assert maps
    for path in maps:
        twin = cli_out / path.relative_to(api_out)
        np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj),
                                      np.asarray(nib.load(twin).dataobj))
