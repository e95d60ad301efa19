"""bids-hrf on a real SLURM cluster (the single-node one `.ci/slurm.sh start` runs).

Two ways of using a cluster, both as documented in docs/hpc.md:

* the participant level through nipype's SLURM plugin (``--plugin SLURM``): every workflow
  step is a SLURM job; the job ids are read back from the job logs nipype asks SLURM to
  write, and each must have been accepted and completed with exit status 0 according to
  slurmctld's own log;
* the job-array script of the documentation, ``docs/slurm/participant_array.sbatch``, and
  the group script submitted with ``--dependency=afterok`` on the array -- the files
  themselves, with the resources overridden on the sbatch command line to fit the CI node.

Skipped only when BIDS_HRF_SLURM is not set (CI sets it after `.ci/slurm.sh start`); with it
set, a missing or broken cluster fails the tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("BIDS_HRF_SLURM"),
        reason="set BIDS_HRF_SLURM=1 after `bash .ci/slurm.sh start` to run the SLURM tests",
    ),
]

REPO = Path(__file__).resolve().parents[1]
ARRAY_SCRIPT = REPO / "docs" / "slurm" / "participant_array.sbatch"
GROUP_SCRIPT = REPO / "docs" / "slurm" / "group.sbatch"
SPACE = "MNI152NLin2009cAsym"
ATLAS = f"tpl-{SPACE}_atlas-Synthetic_dseg.nii.gz"
# Resources that fit the CI node (2 CPUs); SLURM_PARTITION overrides the partition.
PARTITION = os.environ.get("SLURM_PARTITION", "debug")
JOB_ARGS = ["-p", PARTITION, "--cpus-per-task=1", "--mem=1G", "--time=00:20:00"]
TIMEOUT_S = 900


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 60),
                          **kw)


def _bids_hrf_cmd() -> list[str]:
    script = Path(sys.executable).parent / "bids-hrf"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bids_hrf"]


def _slurmctld_log() -> Path:
    out = _run(["scontrol", "show", "config"]).stdout
    match = re.search(r"^SlurmctldLogFile\s*=\s*(\S+)", out, re.M)
    assert match, "scontrol show config names no SlurmctldLogFile"
    return Path(match.group(1))


def _evidence(line: str) -> None:
    """Print ``line`` and append it to $BIDS_HRF_EVIDENCE_FILE (shown at the end of CI)."""
    print(line)
    path = os.environ.get("BIDS_HRF_EVIDENCE_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _wait_for_jobs(job_ids: list[str], timeout: float = TIMEOUT_S) -> None:
    """Poll squeue until none of the jobs is queued or running; fail on a stuck dependency."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = _run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T %r"]).stdout
        lines = [ln for ln in out.splitlines() if ln.strip()]
        if not lines:
            return
        stuck = [ln for ln in lines if "DependencyNeverSatisfied" in ln]
        if stuck:
            _run(["scancel", *job_ids])
            pytest.fail(f"jobs whose dependency failed: {stuck}")
        time.sleep(2)
    _run(["scancel", *job_ids])
    pytest.fail(f"SLURM jobs {job_ids} still queued or running after {timeout} s")


@pytest.fixture(scope="module")
def cluster():
    """The running cluster: sinfo answers and the partition has a usable node."""
    if shutil.which("sbatch") is None:
        pytest.fail("BIDS_HRF_SLURM is set but sbatch is not on PATH: run .ci/slurm.sh start")
    info = _run(["sinfo", "-h", "-p", PARTITION, "-o", "%T"])
    assert info.returncode == 0, f"sinfo failed: {info.stderr}"
    states = info.stdout.split()
    assert any(s.startswith(("idle", "mix", "alloc")) for s in states), (
        f"no usable node in partition {PARTITION}: {states}; run `bash .ci/slurm.sh start`"
    )
    return _slurmctld_log()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two participants x two runs from the synthetic generator, atlas included."""
    root = tmp_path_factory.mktemp("slurm") / "bids"
    proc = _run([sys.executable, "-m", "bids_hrf.datasets", str(root), "--size", "small",
                 "--subjects", "2", "--runs", "2"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (root / "derivatives" / "atlas" / ATLAS).is_file()
    return root


def _check_participant_outputs(out: Path, label: str) -> None:
    func = out / f"sub-{label}" / "func"
    zmaps = sorted(func.glob(f"sub-{label}_task-localizer_space-{SPACE}_contrast-*_stat-z_"
                             "statmap.nii.gz"))
    assert zmaps, f"no fixed-effects z maps for sub-{label} in {func}"
    hrf = sorted(func.glob(f"sub-{label}_task-localizer_space-{SPACE}_seg-Synthetic_desc-*_"
                           "hrf.tsv"))
    assert hrf, f"no HRF table for sub-{label} in {func}"
    import nibabel as nib
    import numpy as np

    data = np.asarray(nib.load(zmaps[0]).dataobj)
    assert np.isfinite(data).any() and np.nanmax(np.abs(data)) > 0


def test_participant_level_through_nipype_slurm_plugin(cluster, dataset, tmp_path):
    """Every step of the participant workflow runs as a SLURM job, and the outputs appear."""
    out, work = tmp_path / "out", tmp_path / "work"
    plugin_args = {"sbatch_args": " ".join(JOB_ARGS)}
    env = {**os.environ, "LOGNAME": os.environ.get("LOGNAME", "ci")}
    log_before = cluster.stat().st_size if cluster.exists() else 0
    proc = _run([*_bids_hrf_cmd(), str(dataset), str(out), "participant",
                 "--participant-label", "01", "--atlas",
                 str(dataset / "derivatives" / "atlas" / ATLAS),
                 "--plugin", "SLURM", "--plugin-args", json.dumps(plugin_args),
                 "--no-report", "-w", str(work)], env=env, timeout=TIMEOUT_S)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # nipype asks for `-o <batch dir>/slurm-%j.out`: one file per job, named by its id.
    job_logs = sorted(work.rglob("slurm-*.out"))
    job_ids = sorted({int(re.fullmatch(r"slurm-(\d+)\.out", p.name).group(1))
                      for p in job_logs})
    _evidence(f"SLURM job ids of the participant workflow: {job_ids}")
    assert len(job_ids) >= 5, f"expected one SLURM job per workflow step, got {job_ids}"
    ctld = cluster.read_text(errors="replace")[log_before:]
    for job_id in job_ids:
        assert re.search(rf"_slurm_rpc_submit_batch_job: JobId={job_id}\b", ctld), (
            f"job {job_id} not submitted according to {cluster}")
        assert re.search(rf"_job_complete: JobId={job_id} WEXITSTATUS 0\b", ctld), (
            f"job {job_id} did not complete with exit status 0 according to {cluster}")
    assert (out / "dataset_description.json").is_file()
    _check_participant_outputs(out, "01")


def test_documented_array_and_group_scripts(cluster, dataset, tmp_path):
    """docs/slurm/participant_array.sbatch over both participants, then group.sbatch."""
    out, logs, scratch = tmp_path / "out", tmp_path / "logs", tmp_path / "scratch"
    logs.mkdir()
    env = {
        **os.environ,
        "BIDS_DIR": str(dataset),
        "OUTPUT_DIR": str(out),
        "WORK_ROOT": str(scratch),
        "BIDS_HRF_CMD": " ".join(_bids_hrf_cmd()),
        "BIDS_HRF_ARGS": f"--atlas {dataset / 'derivatives' / 'atlas' / ATLAS} --no-report",
    }
    array = _run(["sbatch", "--parsable", "--array=1-2", *JOB_ARGS,
                  f"--output={logs}/participant_%A_%a.log", str(ARRAY_SCRIPT)],
                 env=env, cwd=tmp_path)
    assert array.returncode == 0, array.stderr
    array_id = array.stdout.strip().split(";")[0]
    group = _run(["sbatch", "--parsable", f"--dependency=afterok:{array_id}", *JOB_ARGS,
                  f"--output={logs}/group_%j.log", str(GROUP_SCRIPT)], env=env, cwd=tmp_path)
    assert group.returncode == 0, group.stderr
    group_id = group.stdout.strip().split(";")[0]
    _evidence(f"SLURM jobs of docs/slurm/*.sbatch: participant array {array_id}, "
              f"group {group_id}")
    _wait_for_jobs([array_id, group_id])

    for task, label in ((1, "01"), (2, "02")):
        text = (logs / f"participant_{array_id}_{task}.log").read_text()
        print(text[-2000:])
        assert f"(array {array_id}_{task}) sub-{label}" in text
        assert f"sub-{label} finished with exit code 0" in text
        assert (scratch / "bids-hrf_work" / f"sub-{label}").is_dir()
        _check_participant_outputs(out, label)
    text = (logs / f"group_{group_id}.log").read_text()
    print(text[-2000:])
    assert f"job {group_id} group level" in text
    zmaps = list((out / "group").glob(f"task-localizer_space-{SPACE}_*stat-z_statmap.nii.gz"))
    assert zmaps, f"no group z maps in {out / 'group'}"
