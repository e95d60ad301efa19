"""The HRF-method registry: defaults written once, derived CLI/docs, and a toy method.

The toy method is registered from this test only: it becomes selectable on the command
line, documented by ``--help``, run by the workflow and drawn in the report, with no edit
outside the registry (issue 10).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bids_hrf.cli.hrf_options import MARKDOWN_BEGIN, MARKDOWN_END, options_markdown
from bids_hrf.cli.parser import build_parser, config_from_args
from bids_hrf.config import make_config
from bids_hrf.errors import BidsHrfError, UsageError
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.jde.method import JDEOptions
from bids_hrf.hrf.jde.vem import JDEVEM
from bids_hrf.hrf.registry import (
    HRFContext,
    MethodOptions,
    MethodSpec,
    ParcelRuns,
    get_method,
    method_names,
    option,
    register,
    unregister,
)
from bids_hrf.hrf.sparse.app import estimate_sparse
from bids_hrf.hrf.sparse.method import SparseOptions
from bids_hrf.options import HRFOptions
from tests.conftest import run_cli

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_builtin_methods_registered_in_cli_order():
    assert method_names()[:4] == ("canonical", "fir", "jde-vem", "sparse")
    with pytest.raises(UsageError, match="not one of"):
        get_method("nope")


def test_defaults_are_the_estimators_own():
    """Each default is written once, in the estimator: the options class reads it."""
    jde = inspect.signature(JDEVEM).parameters
    opts = JDEOptions()
    for name in ("beta", "sigma_h", "hrf_hyperprior", "n_iter_min", "n_iter_max",
                 "zero_constraint", "estimate_hrf"):
        assert getattr(opts, name) == jde[name].default, name
    sparse = inspect.signature(estimate_sparse).parameters
    for name in ("criterion", "group", "block_model", "n_surrogates"):
        assert getattr(SparseOptions(), name) == sparse[name].default, name
    # the one app-level choice: sparse keeps the canonical HRF unless asked
    assert SparseOptions().estimate_hrf is False and sparse["estimate_hrf"].default is True


def test_api_and_cli_share_one_default(tmp_path):
    """make_config(hrf_method='sparse') and the CLI's default agree (no blind estimate)."""
    api = HRFOptions.from_config(make_config(tmp_path, tmp_path / "o", "participant",
                                             hrf_method="sparse"))
    bids = tmp_path / "bids"
    (bids / "sub-01").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    cli = HRFOptions.from_config(config_from_args(build_parser().parse_args(
        [str(bids), str(tmp_path / "out"), "participant", "--hrf-method", "sparse",
         "--atlas", "data-driven:10"])))
    assert api.settings() == cli.settings()
    assert api.settings().estimate_hrf is False


def test_sparse_group_rule_checked_in_one_place():
    with pytest.raises(UsageError, match="needs a FISTA criterion"):
        SparseOptions(group=0.3, criterion="bic")
    assert SparseOptions(group=0.3, criterion="mad").group == 0.3
    with pytest.raises(BidsHrfError, match="out of range"):
        HRFOptions(space="x", method="sparse", method_options={"sparse_group": 2.0})


def test_unknown_method_option_names_the_closest():
    with pytest.raises(UsageError, match="did you mean 'jde_beta'"):
        HRFOptions(space="x", method="jde-vem", method_options={"jde_betta": 0.5})


def test_hrf_options_cross_nipype_as_plain_values():
    opts = HRFOptions(space="x", method="jde-vem", hrf_dt=0.5,
                      method_options={"jde_beta": 0.4, "zero_constraint": False},
                      nrl_contrasts={"a-b": [1.0, -1.0]})
    again = HRFOptions.from_dict(json.loads(json.dumps(opts.to_dict())))
    assert again == opts
    assert again.settings().beta == 0.4 and again.settings().zero_constraint is False


def test_usage_doc_table_is_generated_from_the_registry():
    text = (DOCS / "usage.md").read_text()
    block = text[text.index(MARKDOWN_BEGIN):text.index(MARKDOWN_END) + len(MARKDOWN_END)]
    assert block == options_markdown(), (
        "docs/usage.md is out of date: paste bids_hrf.cli.hrf_options.options_markdown()")
    assert (DOCS / "adding-an-hrf-method.md").is_file()


# --------------------------------------------------------------------------- toy method
@dataclass(frozen=True)
class ToyOptions(MethodOptions):
    peak: float = option(5.0, help="time to peak of the toy HRF (s)", metavar="S")

    def problems(self):
        return [] if self.peak > 0 else [UsageError("--toy-peak must be > 0")]


def _toy_estimate(data: ParcelRuns, context: HRFContext, options: ToyOptions) -> HRFEstimate:
    """A gamma HRF peaking at ``options.peak``, scaled by each parcel's signal SD."""
    time = np.arange(0.0, context.hrf_duration, context.dt)
    shape = (time / options.peak) ** 4 * np.exp(-4 * (time / options.peak - 1))
    spread = np.std(np.vstack(data.series), axis=0)
    hrfs = shape[:, None] * np.where(spread > 0, 1.0, 0.0)[None, :]
    hrfs = hrfs / np.linalg.norm(hrfs, axis=0, keepdims=True)
    return HRFEstimate(time=time, hrfs=hrfs, labels=context.names, method="toy-peak",
                       parameters={"peak": options.peak})


def _toy_describe(options: ToyOptions, context) -> str:
    return f"A toy gamma HRF peaking at {options.peak:g} s was used in every parcel."


@pytest.fixture
def toy_method():
    spec = register(MethodSpec(name="toy-peak", summary="a toy gamma HRF (test only)",
                               options=ToyOptions, estimate=_toy_estimate,
                               describe=_toy_describe, data="parcels", prefix="toy"))
    yield spec
    unregister("toy-peak")


def test_toy_method_in_help_and_docs(toy_method, capsys):
    from bids_hrf.cli.run import main

    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "toy-peak" in out and "--toy-peak" in out and "a toy gamma HRF" in out
    assert "`--toy-peak`" in options_markdown()


def test_toy_method_runs_through_workflow_and_report(toy_method, small_dataset, tmp_path):
    out = tmp_path / "out"
    code = run_cli(small_dataset.bids_dir, out, "participant", "--participant-label", "01",
                   "--hrf-method", "toy-peak", "--toy-peak", "4.5", "--nprocs", "1",
                   "--atlas", "data-driven:6", "-w", tmp_path / "work")
    assert code == 0
    tables = sorted(out.glob("sub-01/**/*desc-toypeak_hrf.tsv"))
    assert tables, "the toy method's HRF table was not written"
    table = pd.read_csv(tables[0], sep="\t")
    peaks = table["time"].to_numpy()[np.argmax(table.iloc[:, 1:].to_numpy(), axis=0)]
    assert np.allclose(peaks, 4.5, atol=0.5)
    sidecar = json.loads(tables[0].with_suffix(".json").read_text())
    assert sidecar["HRFMethod"] == "toy-peak" and sidecar["MethodParameters"]["peak"] == 4.5
    # the GLM used the toy HRFs (desc-<method>Hrf maps)
    assert list(out.glob("sub-01/**/*desc-toypeakHrf*_statmap.nii.gz"))
    html = (out / "sub-01.html").read_text()
    assert "A toy gamma HRF peaking at 4.5 s" in html and "HRF method: toy-peak" in html
    with pytest.raises(Exception, match="toy-peak must be > 0"):
        HRFOptions(space="x", method="toy-peak", method_options={"toy_peak": -1.0})
