"""Shared fixtures: a generated dataset and one participant + group run of the CLI on it.

Session-scoped so that every end-to-end test reads the same outputs (each pytest-xdist
worker makes its own copy).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("NIPYPE_NO_ET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TEMPLATEFLOW_AUTOUPDATE", "0")


def _worker_cpus() -> int | None:
    """The CPUs of one pytest-xdist worker (``-n N``): the process's CPUs shared among the
    N workers; None outside xdist."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 1:
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // workers)


@pytest.fixture(scope="session", autouse=True)
def _share_cpus_among_xdist_workers():
    """Under ``-n N``, each worker's BLAS and the in-process CLI runs use their share of the
    CPUs. Otherwise every worker runs BLAS with all CPUs and the busy-waiting threads of the
    workers fight. Measured on 2 cores with ``-n 2``: a SPLORA test of 0.6 s alone took 33 s
    in a full run, and eight numerical test files took 36.3 s instead of 29.5 s. Only the
    thread count changes, not what is computed (the output manifest pins
    ``--omp-nthreads 1`` anyway)."""
    share = _worker_cpus()
    if share is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    from bids_hrf.workflows import runner

    with threadpool_limits(limits=share), pytest.MonkeyPatch.context() as mp:
        real = runner.available_cpus
        mp.setattr(runner, "available_cpus", lambda: min(real(), share))
        yield


@dataclass
class CLIRun:
    """Outputs of one CLI run."""

    dataset: object
    output_dir: Path
    work_dir: Path
    code: int
    group_code: int | None = None
    bids_before: dict | None = None
    bids_after: dict | None = None


def run_cli(*args: str) -> int:
    """Run ``bids-hrf`` in-process and return its exit code."""
    from bids_hrf.cli.run import main

    return main([str(a) for a in args])


def _read_only(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = Path(root) / name
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def validator_executable() -> str:
    """bids-validator-deno of this environment (a test dependency: never skipped)."""
    import shutil
    import sys

    local = Path(sys.executable).parent / "bids-validator-deno"
    found = str(local) if local.exists() else shutil.which("bids-validator-deno")
    assert found, "bids-validator-deno missing: pip install '.[test]'"
    return found


def snapshot(path: Path) -> dict[str, float]:
    """Modification times of every file below ``path`` (to prove nothing was written)."""
    return {str(p): p.stat().st_mtime for p in Path(path).rglob("*") if p.is_file()}


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """A small generated dataset: 2 subjects (control, patient) x 2 runs, 2 conditions."""
    from bids_hrf.datasets import make_synthetic_dataset

    root = tmp_path_factory.mktemp("data") / "bids"
    return make_synthetic_dataset(root, size="small", n_subjects=2, n_runs=2, seed=1)


@pytest.fixture(scope="session")
def canonical_run(small_dataset, tmp_path_factory) -> CLIRun:
    """Participant then group level with the canonical HRF on :func:`small_dataset`.

    The output goes under BIDS_DIR/derivatives (allowed) while BIDS_DIR's own files are
    checked untouched by the tests.
    """
    out = small_dataset.bids_dir / "derivatives" / "bids_hrf"
    work = tmp_path_factory.mktemp("work")
    before = _raw_snapshot(small_dataset.bids_dir)
    code = run_cli(small_dataset.bids_dir, out, "participant", "--atlas",
                   small_dataset.atlas_img, "-w", work, "--nprocs", "1",
                   "--contrasts", _contrasts_file(tmp_path_factory))
    group_code = run_cli(small_dataset.bids_dir, out, "group", "-w", work) if code == 0 \
        else None
    return CLIRun(small_dataset, out, work, code, group_code, before,
                  _raw_snapshot(small_dataset.bids_dir))


def _raw_snapshot(bids_dir: Path) -> dict[str, float]:
    """Files of BIDS_DIR outside derivatives/bids_hrf, with their modification times."""
    own = bids_dir / "derivatives" / "bids_hrf"
    return {k: v for k, v in snapshot(bids_dir).items() if not k.startswith(str(own))}


def _contrasts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("contrasts") / "contrasts.json"
    path.write_text('{"audio - visual": "audio - visual", "both": "0.5*audio + 0.5*visual"}')
    return path
