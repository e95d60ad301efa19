"""Participant-level wall time and peak memory of two code revisions, side by side in one run.

Used to show that a refactor left performance unchanged (issue 10): the same generated
dataset is run through every HRF method with the code of revision ``--before`` and of
revision ``--after`` (each checked out with ``git worktree`` into a temporary folder), and a
plain nilearn ``FirstLevelModel`` script as a fixed reference. Runs are interleaved
(before, after, nilearn, then the reverse order on the next repeat) so that all see the
same machine load; the figures that count are the ratios ``after / before`` and
``method / nilearn`` per repeat, not seconds.

Data: ``make_synthetic_dataset(size, n_subjects=1, n_runs=2, seed=0)``; the atlas it ships;
contrasts ``audio``, ``visual``, ``audio - visual``. Each bids-hrf run is
``python -m bids_hrf BIDS OUT participant --hrf-method M --nprocs 2 --no-report`` (a fresh
output and work folder each time). Peak memory: the summed RSS of the child process tree,
sampled every 0.1 s (psutil).

    python benchmarks/bench_revisions.py --before a5ce00b --after HEAD \
        [--size small|realistic] [--repeats 2] [--methods canonical fir jde-vem sparse] \
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
CONTRASTS = {"audio": "audio", "visual": "visual", "audioMinusVisual": "audio - visual"}

NILEARN_SCRIPT = r"""
import json, sys
from pathlib import Path
import pandas as pd
from nilearn.glm.first_level import FirstLevelModel
from nilearn.interfaces.fmriprep import load_confounds_strategy

spec = json.loads(Path(sys.argv[1]).read_text())
imgs, confounds, events = [], [], []
for run in spec["runs"]:
    conf, _ = load_confounds_strategy(run["bold"], denoise_strategy="simple")
    imgs.append(run["bold"])
    confounds.append(conf)
    events.append(pd.read_csv(run["events"], sep="\t"))
model = FirstLevelModel(t_r=spec["tr"], hrf_model="spm", noise_model="ar1",
                        drift_model="cosine", high_pass=0.01, mask_img=spec["mask"],
                        n_jobs=2, minimize_memory=True)
model.fit(imgs, events=events, confounds=confounds)
for name, expr in spec["contrasts"].items():
    model.compute_contrast(expr, output_type="all")["z_score"].to_filename(
        str(Path(spec["out"]) / f"{name}_z.nii.gz"))
"""


def make_data(root: Path, size: str) -> dict:
    """Generate the dataset once (with the current checkout's generator)."""
    from bids_hrf.datasets import make_synthetic_dataset

    bids = root / "bids"
    if not (bids / "dataset_description.json").exists():
        make_synthetic_dataset(bids, size=size, n_subjects=1, n_runs=2, seed=0)
    atlas = next((bids / "derivatives" / "atlas").glob("*_dseg.nii.gz"))
    func = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    runs = []
    for bold in sorted(func.glob("*_desc-preproc_bold.nii.gz")):
        run = bold.name.split("_run-")[1].split("_")[0]
        events = next((bids / "sub-01" / "func").glob(f"*_run-{run}_events.tsv"))
        runs.append({"bold": str(bold), "events": str(events)})
    mask = next(func.glob("*_run-1_*desc-brain_mask.nii.gz"))
    contrasts = root / "contrasts.json"
    contrasts.write_text(json.dumps(CONTRASTS))
    tr = json.loads(Path(runs[0]["bold"].replace(".nii.gz", ".json")).read_text())[
        "RepetitionTime"]
    return {"bids": str(bids), "atlas": str(atlas), "runs": runs, "mask": str(mask),
            "contrasts": str(contrasts), "tr": float(tr)}


def checkout(revision: str, root: Path) -> Path:
    """A detached worktree of ``revision`` under ``root`` (reused if present)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", revision],
                         capture_output=True, text=True, check=True).stdout.strip()
    tree = root / f"rev-{sha}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree),
                        sha], check=True, capture_output=True)
    return tree


def timed(cmd: list[str], env: dict, cwd: Path) -> dict:
    """Wall time and peak summed RSS (MiB) of a child process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            members = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in members))
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed:\n{err[-3000:]}")
    return {"wall_s": wall, "peak_mib": peak / 2**20}


def run_bids_hrf(tree: Path, data: dict, method: str, scratch: Path) -> dict:
    out, work = scratch / "out", scratch / "work"
    for folder in (out, work):
        shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "bids_hrf", data["bids"], str(out), "participant",
           "--atlas", data["atlas"], "--hrf-method", method, "--nprocs", "2",
           "--contrasts", data["contrasts"], "--no-report", "-w", str(work)]
    return timed(cmd, env, tree)


def run_nilearn(data: dict, scratch: Path) -> dict:
    out = scratch / "nilearn"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    spec = scratch / "nilearn.json"
    spec.write_text(json.dumps({**data, "contrasts": CONTRASTS, "out": str(out)}))
    script = scratch / "nilearn_glm.py"
    script.write_text(NILEARN_SCRIPT)
    return timed([sys.executable, str(script), str(spec)], dict(os.environ), scratch)


def summarise(rows: list[dict], methods: list[str]) -> list[dict]:
    """Median figures and ratios per method over the repeats."""
    table = []
    for method in methods:
        before = [r[method]["before"] for r in rows]
        after = [r[method]["after"] for r in rows]
        peer = [r["nilearn"] for r in rows]
        table.append({
            "method": method,
            "after_over_before_time": float(np.median(
                [a["wall_s"] / b["wall_s"] for a, b in zip(after, before, strict=True)])),
            "after_over_before_memory": float(np.median(
                [a["peak_mib"] / b["peak_mib"] for a, b in zip(after, before, strict=True)])),
            "before_over_nilearn": float(np.median(
                [b["wall_s"] / p["wall_s"] for b, p in zip(before, peer, strict=True)])),
            "after_over_nilearn": float(np.median(
                [a["wall_s"] / p["wall_s"] for a, p in zip(after, peer, strict=True)])),
            "before_peak_mib": float(np.median([b["peak_mib"] for b in before])),
            "after_peak_mib": float(np.median([a["peak_mib"] for a in after])),
        })
    return table


def markdown(table: list[dict]) -> str:
    lines = ["| method | time after/before | memory after/before | before/nilearn | "
             "after/nilearn | peak MiB before | peak MiB after |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in table:
        lines.append(
            f"| {row['method']} | {row['after_over_before_time']:.2f} | "
            f"{row['after_over_before_memory']:.2f} | {row['before_over_nilearn']:.2f} | "
            f"{row['after_over_nilearn']:.2f} | {row['before_peak_mib']:.0f} | "
            f"{row['after_peak_mib']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git revision measured first")
    parser.add_argument("--after", default="HEAD", help="git revision compared with it")
    parser.add_argument("--size", choices=("small", "realistic"), default="small")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--methods", nargs="+",
                        default=["canonical", "fir", "jde-vem", "sparse"])
    parser.add_argument("--root", type=Path,
                        default=Path(tempfile.gettempdir()) / "bids_hrf-bench-revisions")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    args.root.mkdir(parents=True, exist_ok=True)
    data = make_data(args.root / args.size, args.size)
    trees = {"before": checkout(args.before, args.root),
             "after": checkout(args.after, args.root)}
    scratch = args.root / "scratch"
    scratch.mkdir(exist_ok=True)
    rows = []
    for k in range(args.repeats):
        order = ("before", "after") if k % 2 == 0 else ("after", "before")
        row: dict = {"nilearn": run_nilearn(data, scratch)}
        print(f"repeat {k + 1}: nilearn {row['nilearn']}", flush=True)
        for method in args.methods:
            row[method] = {}
            for which in order:
                row[method][which] = run_bids_hrf(trees[which], data, method, scratch)
                print(f"repeat {k + 1}: {method} {which} {row[method][which]}", flush=True)
        rows.append(row)
    table = summarise(rows, args.methods)
    summary = {"machine": f"{platform.node()} ({os.cpu_count()} CPUs)",
               "load_average_at_end": os.getloadavg(), "size": args.size,
               "revisions": {k: str(v) for k, v in trees.items()}, "repeats": rows,
               "table": table}
    print(markdown(table))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
