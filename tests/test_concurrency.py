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


@pytest.mark.parametrize("plugin, expected", [
    ("MultiProc", {"memory_gb": 3.0, "n_procs": 4}),
    ("SLURM", {"sbatch_args": "--mem=3072M"}),
])
def test_mem_gb_reaches_the_scheduler(tmp_path, plugin, expected):
    """--mem-gb becomes nipype's memory budget (MultiProc) or the sbatch request (SLURM)."""
    from bids_hrf.config import make_config
    from bids_hrf.workflows.runner import plugin_settings

    config = make_config(tmp_path, tmp_path / "out", "participant", nprocs=4, mem_gb=3.0,
                         plugin=plugin)
    name, args = plugin_settings(config, n_nodes=10)
    assert name == plugin
    for key, value in expected.items():
        assert args[key] == value


def _sleeper(x, log):
    import os
    import time

    t0 = time.time()
    time.sleep(1.0)
    with open(log, "a") as fh:
        fh.write(f"{t0} {time.time()} {os.getpid()}\n")
    return x


def test_multiproc_keeps_within_mem_gb(tmp_path):
    """With --mem-gb 3, MultiProc never runs two 2-GB steps at the same time."""
    from nipype.interfaces.utility import Function
    from nipype.pipeline import engine as pe

    log = tmp_path / "intervals.txt"
    wf = pe.Workflow(name="mem", base_dir=str(tmp_path))
    for i in range(3):
        node = pe.Node(Function(input_names=["x", "log"], output_names=["x"],
                                function=_sleeper), name=f"step{i}", mem_gb=2.0)
        node.inputs.x = i
        node.inputs.log = str(log)
        wf.add_nodes([node])
    wf.config["execution"] = {"poll_sleep_duration": 0.1, "crashdump_dir": str(tmp_path)}
    wf.run(plugin="MultiProc", plugin_args={"n_procs": 3, "memory_gb": 3.0,
                                            "raise_insufficient": False})
    spans = sorted(tuple(map(float, line.split()[:2])) for line in log.read_text().split("\n")
                   if line)
    assert len(spans) == 3
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end - 0.05, f"two 2-GB steps overlapped under a 3-GB budget: {spans}"


def test_participant_steps_declare_memory(small_bold_run):
    """The heavy steps of the participant workflow carry a memory estimate for the
    scheduler that grows with the BOLD size."""
    from bids_hrf.workflows.participant import _mem

    small, large = small_bold_run
    assert _mem(large, 4.0) > _mem(small, 4.0) >= 0.25


@pytest.fixture
def small_bold_run(tmp_path):
    from bids_hrf.io.inputs import RunInputs

    runs = []
    for name, shape in (("small", (40, 40, 40, 100)), ("large", (97, 115, 97, 600))):
        # only a header with the wanted shape (the data are never read)
        hdr = nib.Nifti1Header()
        hdr.set_data_shape(shape)
        hdr.set_data_dtype(np.float32)
        path = tmp_path / f"{name}_bold.nii"
        with open(path, "wb") as fh:
            fh.write(hdr.binaryblock + b"\x00" * 4)
        runs.append(RunInputs(subject="01", session=None, task="t", run=None, bold=path,
                              mask=path, confounds=path, events=None, tr=2.0,
                              n_volumes=shape[3]))
    return runs


def test_first_level_in_voxel_chunks_matches_one_piece(tmp_path, monkeypatch):
    """The GLM fitted on chunks of voxels (bounded memory) gives the maps of one fit."""
    from bids_hrf.options import GLMOptions, PrepareOptions
    from bids_hrf.steps import glm
    from bids_hrf.steps.prepare import prepare_run_step, resolve_atlas_step
    from tests._hostile import SPACE

    ds = make_dataset(tmp_path)
    bold, mask = str(ds.bold()), str(ds.mask())
    (tmp_path / "atlas").mkdir()
    atlas = resolve_atlas_step(str(ds.atlas), None, SPACE, {"bold": bold, "mask": mask},
                               tmp_path / "atlas")
    (tmp_path / "prep").mkdir()
    run = {"bold": bold, "mask": mask, "events": str(ds.events()), "tr": 2.0}
    prep = prepare_run_step(run, atlas, PrepareOptions(space=SPACE), tmp_path / "prep")
    outs = {}
    for name, chunk_bytes in (("one", 10 ** 12), ("chunks", 1)):
        monkeypatch.setattr(glm, "GLM_CHUNK_BYTES", chunk_bytes)
        out = tmp_path / name
        out.mkdir()
        outs[name] = glm.first_level_step(
            run, prep, "", GLMOptions(space=SPACE, contrasts={"av": "audio - visual"}), out)
    n_chunks = json.loads((tmp_path / "chunks" / "glm_summary.json").read_text())["n_chunks"]
    assert n_chunks >= 2
    for label, paths in outs["one"]["contrasts"].items():
        for stat in ("effect", "variance", "z", "p"):
            a = np.asarray(nib.load(paths[stat]).dataobj)
            b = np.asarray(nib.load(outs["chunks"]["contrasts"][label][stat]).dataobj)
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=f"{label} {stat}")


def test_multiproc_after_joblib_in_the_same_session(tmp_path):
    """A Python session that used joblib, then runs bids_hrf with --nprocs 2: the forked
    nipype workers must not inherit the session's joblib executor (it hung forever in the
    first parallel step: the data-driven atlas)."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "session.py"
    script.write_text(textwrap.dedent(f"""
        from joblib import Parallel, delayed
        Parallel(n_jobs=2)(delayed(abs)(i) for i in range(4))  # a live executor
        from bids_hrf.cli.run import main
        from bids_hrf.datasets import make_synthetic_dataset
        ds = make_synthetic_dataset({str(tmp_path / "bids")!r}, size="small", n_subjects=1,
                                    n_runs=1, seed=2)
        raise SystemExit(main([str(ds.bids_dir), {str(tmp_path / "out")!r}, "participant",
                               "--atlas", "data-driven:4", "--nprocs", "2", "--no-report",
                               "-w", {str(tmp_path / "work")!r}]))
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, str(script)], env=env, timeout=300,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
