"""Peak memory of the participant level on the realistic demo size.

Generates (or reuses) the ``realistic`` synthetic dataset (MNI152 brain at 3 mm, 200
parcels, 300 volumes per run), runs ``bids-hrf ... participant`` in a subprocess for each
configuration, samples the resident memory of the whole process tree (the CLI and every
nipype worker) every 50 ms, and reports the peak of the tree's total and of the largest
single process, with the wall time.

    python benchmarks/bench_memory.py [--data DIR] [--out results.json]
        [--configs canonical-linear canonical-multiproc-4 ...]

The figures are in benchmarks/README.md (section "Memory of the participant level").
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

import psutil

CONFIGS = {
    # name: extra CLI arguments
    "canonical-linear": ["--hrf-method", "canonical", "--nprocs", "1"],
    "fir-linear": ["--hrf-method", "fir", "--nprocs", "1"],
    "canonical-multiproc-4": ["--hrf-method", "canonical", "--nprocs", "4"],
    "canonical-multiproc-4-mem-1gb": ["--hrf-method", "canonical", "--nprocs", "4",
                                      "--mem-gb", "1"],
}


def tree_rss(proc: psutil.Process) -> tuple[int, int, int]:
    """Total RSS of ``proc`` and its descendants, the largest one, and how many there are."""
    total = largest = count = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            rss = p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += rss
        largest = max(largest, rss)
        count += 1
    return total, largest, count


def measure(cmd: list[str], env: dict, interval: float = 0.05) -> dict:
    """Run ``cmd``; return its exit code, wall time and peak memory figures (MiB)."""
    t0 = time.perf_counter()
    popen = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    proc = psutil.Process(popen.pid)
    peak_total = peak_single = peak_count = 0
    while popen.poll() is None:
        try:
            total, single, count = tree_rss(proc)
        except psutil.NoSuchProcess:
            break
        peak_total = max(peak_total, total)
        peak_single = max(peak_single, single)
        peak_count = max(peak_count, count)
        time.sleep(interval)
    _, err = popen.communicate()
    wall = time.perf_counter() - t0
    mib = 1024 ** 2
    return {"exit_code": popen.returncode, "wall_s": round(wall, 1),
            "peak_tree_rss_mib": round(peak_total / mib), "peak_process_rss_mib":
            round(peak_single / mib), "max_processes": peak_count,
            "stderr_tail": err.strip().splitlines()[-3:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) /
                        "bids_hrf_bench_realistic", help="dataset folder (made if absent)")
    parser.add_argument("--runs", type=int, default=2, help="runs of the generated subject")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    bids = args.data / "bids"
    if not (bids / "dataset_description.json").exists():
        from bids_hrf.datasets import make_synthetic_dataset

        t0 = time.perf_counter()
        make_synthetic_dataset(bids, size="realistic", n_subjects=1, n_runs=args.runs, seed=0)
        print(f"generated {bids} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    atlas = bids / "derivatives" / "atlas" / "tpl-MNI152NLin2009cAsym_atlas-Synthetic_dseg.nii.gz"
    env = {**os.environ, "NIPYPE_NO_ET": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "TEMPLATEFLOW_AUTOUPDATE": "0"}
    bold = next((bids / "derivatives" / "fmriprep").rglob("*desc-preproc_bold.nii.gz"))
    import nibabel as nib

    shape = nib.load(str(bold)).shape
    results = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "memory_gib": round(psutil.virtual_memory().total / 1024 ** 3),
                           "load_1min": round(os.getloadavg()[0], 1)},
               "dataset": {"bold_shape": list(shape), "runs": args.runs,
                           "bold_float64_mib": round(8 * int(__import__("numpy").prod(shape))
                                                     / 1024 ** 2)},
               "configs": {}}
    for name in args.configs:
        scratch = Path(tempfile.mkdtemp(prefix=f"bench_{name}_"))
        cmd = [sys.executable, "-m", "bids_hrf", str(bids), str(scratch / "out"),
               "participant", "--atlas", str(atlas), "--no-report", "-w",
               str(scratch / "work"), *CONFIGS[name]]
        res = measure(cmd, env)
        res["args"] = CONFIGS[name]
        results["configs"][name] = res
        print(f"{name:32s} exit {res['exit_code']} {res['wall_s']:7.1f} s  peak tree "
              f"{res['peak_tree_rss_mib']:6d} MiB  largest process "
              f"{res['peak_process_rss_mib']:6d} MiB  processes {res['max_processes']}",
              flush=True)
        shutil.rmtree(scratch, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["exit_code"] == 0 for r in results["configs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
