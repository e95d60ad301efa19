"""Concurrency: several participant jobs writing into one OUTPUT_DIR at once (as a SLURM
array does) leave ``dataset_description.json`` and every file intact.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests._hostile import ROOT, make_dataset, partial_files


def _hammer(out: str, seed: int, n: int, queue) -> None:
    """Initialise OUTPUT_DIR and rewrite a shared file ``n`` times, reading it back each time."""
    from bids_hrf.io.derivatives import init_output_dir, write_json

    bad = 0
    for i in range(n):
        init_output_dir(out, f"{seed:04x}aaaa", ["bids"])
        write_json(Path(out) / "logs" / "shared.json", {"writer": seed, "i": i,
                                                       "payload": list(range(2000))})
        for name in ("dataset_description.json", "logs/shared.json"):
            try:
                json.loads((Path(out) / name).read_text())
            except (ValueError, FileNotFoundError):
                bad += 1
    queue.put(bad)


def test_init_output_dir_and_writes_are_atomic_under_contention(tmp_path):
    """8 processes x 40 rounds: readers never see a partial file, nothing is left over."""
    out = tmp_path / "out"
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(str(out), i, 40, queue)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sum(queue.get(timeout=10) for _ in procs) == 0
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    ignore = (out / ".bidsignore").read_text().split()
    assert len(ignore) == len(set(ignore))
    assert not partial_files(out)


def _env() -> dict:
    return {**os.environ, "NIPYPE_NO_ET": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "TEMPLATEFLOW_AUTOUPDATE": "0"}


@pytest.mark.slow
@pytest.mark.parametrize("shared_work", [False, True], ids=["own-work-dirs", "shared-work-dir"])
def test_participant_jobs_into_one_output_dir(tmp_path, shared_work):
    """One job per participant started at once, like ``sbatch --array``."""
    ds = make_dataset(tmp_path, n_subjects=3)
    out = tmp_path / "out"
    procs = []
    for sub in ds.subjects:
        work = tmp_path / ("work" if shared_work else f"work_{sub}")
        args = [str(ds.bids), str(out), "participant", "--participant-label", sub,
                "--atlas", str(ds.atlas), "--nprocs", "1", "--no-report", "-w", str(work)]
        procs.append(subprocess.Popen([sys.executable, "-m", "bids_hrf", *args],
                                      cwd=str(ROOT), env=_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=500)
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err

    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "bids_hrf"
    ignore = (out / ".bidsignore").read_text().split()
    assert len(ignore) == len(set(ignore)) and "*_statmap.nii.gz" in ignore
    assert not partial_files(out)

    names = {}
    for sub in ds.subjects:
        files = sorted(p.name.replace(f"sub-{sub}", "sub-X")
                       for p in (out / f"sub-{sub}").rglob("*") if p.is_file())
        assert files, f"no outputs for sub-{sub}"
        names[sub] = files
    assert all(files == names[ds.subjects[0]] for files in names.values())

    for path in out.rglob("*"):
        if not path.is_file():
            continue
        if path.name.endswith(".nii.gz"):
            data = np.asarray(nib.load(str(path)).dataobj)
            assert data.size and np.isfinite(data).all(), path
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".tsv":
            assert len(pd.read_csv(path, sep="\t")) > 0, path
