"""The one nipype runner of both levels: threads per step, error collection, no cycle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from nipype.interfaces.base import traits
from nipype.pipeline import engine as pe

from bids_hrf.config import make_config
from bids_hrf.errors import BidsHrfError, DataError, ValidationErrors
from bids_hrf.interfaces.steps import _Step, _StepInputSpec
from bids_hrf.workflows.runner import WorkflowRunner


class _ProbeInputSpec(_StepInputSpec):
    out = traits.Str(mandatory=True)
    fail = traits.Str("", usedefault=True)


class _Probe(_Step):
    """Write the numerical libraries' thread counts seen inside the step, or fail."""

    input_spec = _ProbeInputSpec

    def _step(self, cwd):
        from threadpoolctl import threadpool_info

        if self.inputs.fail:
            raise DataError(self.inputs.fail, fix="nothing to fix")
        threads = sorted({pool["num_threads"] for pool in threadpool_info()})
        Path(self.inputs.out).write_text(json.dumps(threads))
        return {"threads": threads}, []


def _run(tmp_path, name, omp_nthreads=None, fails=()):
    config = make_config(tmp_path, tmp_path / "out", "participant", nprocs=1,
                         omp_nthreads=omp_nthreads, work_dir=tmp_path / f"work_{name}")
    runner = WorkflowRunner(config, "participant")
    wf = pe.Workflow(name=f"wf_{name}")
    out = tmp_path / f"{name}.json"
    nodes = [pe.Node(_Probe(out=str(out), errors_dir=str(runner.errors_dir)), name="probe")]
    for k, message in enumerate(fails):
        nodes.append(pe.Node(_Probe(out=str(out), fail=message,
                                    errors_dir=str(runner.errors_dir)), name=f"fail{k}"))
    wf.add_nodes(nodes)
    runner.run(wf)
    return json.loads(out.read_text())


def test_omp_nthreads_limits_the_threads_inside_every_step(tmp_path):
    import numpy  # noqa: F401 - loads BLAS so that its pool is seen
    from threadpoolctl import threadpool_info

    if not threadpool_info():  # pragma: no cover - numpy always brings a BLAS
        pytest.skip("no threadpool to limit")
    assert _run(tmp_path, "one", omp_nthreads=1) == [1]
    assert _run(tmp_path, "three", omp_nthreads=3) == [3]


def test_step_errors_come_back_as_one_error_or_all_of_them(tmp_path):
    with pytest.raises(BidsHrfError, match="bad events") as one:
        _run(tmp_path, "a", fails=["bad events"])
    assert not isinstance(one.value, ValidationErrors)
    with pytest.raises(ValidationErrors) as several:
        _run(tmp_path, "b", fails=["bad events", "bad mask"])
    assert sorted(e.message.split(" -- ")[0] for e in several.value.errors) == ["bad events",
                                                                           "bad mask"]


def test_api_and_workflows_import_no_command_line_code():
    code = ("import sys, bids_hrf.api, bids_hrf.workflows.group, bids_hrf.workflows.runner; "
            "print([m for m in sys.modules if m.startswith('bids_hrf.cli')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_omp_nthreads_default_shares_the_cpus_among_processes(tmp_path, monkeypatch):
    from bids_hrf.workflows import runner

    monkeypatch.setattr(runner, "available_cpus", lambda: 8)
    config = make_config(tmp_path, tmp_path / "out", "participant", nprocs=2)
    assert config.omp_nthreads is None
    assert runner.omp_nthreads(config) == 4
    assert runner.omp_nthreads(make_config(tmp_path, tmp_path / "o", "participant",
                                           nprocs=16)) == 1
    assert runner.omp_nthreads(make_config(tmp_path, tmp_path / "o", "participant",
                                           nprocs=2, omp_nthreads=3)) == 3
