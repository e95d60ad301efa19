"""Interruption: ``kill -9`` in the middle of a participant run, then the same command with the
same work directory completes, produces the same outputs (identical data arrays, identical
tables and sidecars) as an uninterrupted run, and leaves no partial file behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests._hostile import ROOT, files_below, make_dataset, partial_files, run_cli

pytestmark = pytest.mark.slow


def _env() -> dict:
    return {**os.environ, "NIPYPE_NO_ET": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "TEMPLATEFLOW_AUTOUPDATE": "0"}


def _args(ds, out: Path, work: Path) -> list[str]:
    return [str(ds.bids), str(out), "participant", "--atlas", str(ds.atlas), "--nprocs", "1",
            "--no-report", "-w", str(work)]


def _outputs(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*")
            if p.is_file() and "logs" not in p.relative_to(root).parts}


def assert_same_outputs(reference: Path, other: Path) -> None:
    """Same files; NIfTI data arrays and affines identical; text files identical."""
    ref, got = _outputs(reference), _outputs(other)
    assert sorted(got) == sorted(ref)
    for name, path in ref.items():
        if name.endswith(".nii.gz"):
            a, b = nib.load(str(path)), nib.load(str(got[name]))
            da, db = np.asarray(a.dataobj), np.asarray(b.dataobj)
            assert da.dtype == db.dtype and da.shape == db.shape, name
            assert da.tobytes() == db.tobytes(), f"{name}: data arrays differ"
            assert np.array_equal(a.affine, b.affine), name
        elif name.endswith("config.toml"):
            # the resolved configuration records the run's own output and work folders
            assert _without_run_dirs(path, reference) == _without_run_dirs(got[name], other), (
                f"{name} differs")
        else:
            assert path.read_bytes() == got[name].read_bytes(), f"{name} differs"


def _without_run_dirs(config: Path, out: Path) -> str:
    """The text of ``config`` with the run's output folder and sibling work folder masked."""
    work = out.with_name(out.name.replace("out", "work"))
    return config.read_text().replace(str(work), "WORK_DIR").replace(str(out), "OUTPUT_DIR")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A dataset (1 subject, 2 runs) and its uninterrupted outputs."""
    tmp = tmp_path_factory.mktemp("interrupt")
    ds = make_dataset(tmp, n_runs=2)
    out, work = tmp / "ref_out", tmp / "ref_work"
    result = run_cli(*_args(ds, out, work))
    assert result.code == 0, result.stderr[-3000:]
    return ds, out


def _kill_when(ds, out: Path, work: Path, ready, timeout: float = 240.0) -> int:
    """Start a run; ``kill -9`` its process group as soon as ``ready()``; return its status."""
    proc = subprocess.Popen([sys.executable, "-m", "bids_hrf", *_args(ds, out, work)],
                            cwd=str(ROOT), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            if ready():
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def _node_done(work: Path, prefix: str):
    def ready() -> bool:
        return any(work.glob(f"bids_hrf_wf/sub_01_wf/{prefix}*/result_*.pklz"))
    return ready


def _writing_outputs(out: Path):
    def ready() -> bool:
        func = out / "sub-01" / "func"
        return func.is_dir() and any(func.iterdir())
    return ready


@pytest.mark.parametrize("stage", ["after-prepare", "while-writing-outputs"])
def test_kill_9_then_rerun_gives_same_outputs(reference, tmp_path, stage):
    ds, ref_out = reference
    out, work = tmp_path / "out", tmp_path / "work"
    ready = (_node_done(work, "prepare_run1") if stage == "after-prepare"
             else _writing_outputs(out))
    status = _kill_when(ds, out, work, ready)
    assert status == -signal.SIGKILL, f"the run was not interrupted (status {status})"
    done_before = {p: p.stat().st_mtime_ns
                   for p in work.glob("bids_hrf_wf/sub_01_wf/*/result_*.pklz")}
    assert done_before, "nothing finished before the kill"

    bids_before = files_below(ds.bids)
    result = run_cli(*_args(ds, out, work))
    assert result.code == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # finished steps were reused, not recomputed
    for path, mtime in done_before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.parent.name} was rerun"
    assert files_below(ds.bids) == bids_before
    assert not partial_files(out), partial_files(out)
    assert_same_outputs(ref_out, out)
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"


def test_stale_part_files_of_a_killed_writer_are_removed(tmp_path):
    """A ``.part`` file of a dead process on this host goes; a live writer's stays."""
    from bids_hrf.io.derivatives import atomic_path, remove_stale_parts

    folder = tmp_path / "sub-01" / "func"
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with atomic_path(folder / "a_bold.nii.gz") as live:
        live.write_bytes(b"half")
        stale = folder / live.name.replace(f"-{os.getpid()}.", f"-{dead}.")
        stale.write_bytes(b"half")
        removed = remove_stale_parts(tmp_path)
        assert removed == [stale]
        assert live.exists()
    assert (folder / "a_bold.nii.gz").read_bytes() == b"half"
    assert sorted(p.name for p in folder.iterdir()) == ["a_bold.nii.gz"]
