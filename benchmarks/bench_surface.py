"""Participant level on surface and CIFTI data vs the volume, side by side (issue 12).

One participant, 2 runs x 300 scans, TR 2 s, generated in three spaces and a control:

* ``volume``: ``make_synthetic_dataset(size="realistic")`` (MNI152 brain at 3 mm, 200
  parcels; samples = voxels of the brain mask);
* ``fsaverage5``: ``make_surface_dataset(space="fsaverage5")`` (GIFTI pair on nilearn's
  mesh; samples = the 20484 vertices);
* ``fsLR``: ``make_surface_dataset(space="fsLR", full_density=True)`` (true-size 91k CIFTI;
  samples = the 91282 grayordinates);
* ``volume20k`` (a control): the volume dataset cut to fsaverage5's 20484 samples with 200
  parcels (see :func:`make_matched_volume`), so that fsaverage5 is also compared with a
  volume of its own size (fixed and per-parcel costs do not scale with the samples).

For each HRF method, the three spaces run one after the other (so they see the same load):
``bids-hrf BIDS OUT participant --hrf-method M --nprocs 2 --no-report`` in a child process,
whose process tree's resident memory (the CLI, nipype workers, joblib workers) is sampled
every 0.1 s (psutil). Reported: wall time, time per 1,000 samples relative to the volume
run, peak memory of the largest single process (the 2 GB target is per process) and of the
whole tree, and the load average around each run.

    python benchmarks/bench_surface.py --quick            # 2 x 100 scans, canonical + jde-vem
    python benchmarks/bench_surface.py --out results.json # 2 x 300 scans, all four methods

The figures are in benchmarks/README.md ("Surface and CIFTI data vs volume").
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
from datetime import datetime, timezone
from pathlib import Path

import psutil

METHODS = ("canonical", "fir", "jde-vem", "sparse")
QUICK_METHODS = ("canonical", "jde-vem")
SPACES = ("volume", "fsaverage5", "fsLR", "volume20k")
#: Samples of the "volume20k" control: fsaverage5's vertex count (see make_matched_volume).
MATCHED_SAMPLES = 20484
MIB = 1024**2
TARGET_MIB = 2048


def tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """Summed RSS of ``proc`` and its descendants, and the largest single one (bytes)."""
    total = largest = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            rss = p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += rss
        largest = max(largest, rss)
    return total, largest


def measure(cmd: list[str], env: dict, log: Path, interval: float = 0.1) -> dict:
    """Run ``cmd`` (output to ``log``); exit code, wall time, peak memory (MiB), load."""
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with log.open("w") as fh:
        popen = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        proc = psutil.Process(popen.pid)
        peak_total = peak_single = 0
        while popen.poll() is None:
            try:
                total, single = tree_rss(proc)
            except psutil.NoSuchProcess:
                break
            peak_total, peak_single = max(peak_total, total), max(peak_single, single)
            time.sleep(interval)
        popen.wait()
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    return {
        **log_times(text),
        "exit_code": popen.returncode,
        "wall_s": round(wall, 1),
        "peak_process_mib": round(peak_single / MIB),
        "peak_tree_mib": round(peak_total / MIB),
        "load_before": round(load0, 1),
        "load_after": round(os.getloadavg()[0], 1),
        "log_tail": text.strip().splitlines()[-3:],
    }


def log_times(text: str) -> dict:
    """From the app's log: seconds of the workflow (first step started to last step done)
    and of the sink step (done after every other step of the participant; from the step
    done before it), from the ``HH:MM:SS`` stamps (1 s resolution)."""
    import re

    stamps = []
    for line in text.splitlines():
        m = re.match(r"(\d\d):(\d\d):(\d\d) \[bids-hrf\] \w+: (.*)", line)
        if m:
            sec = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
            stamps.append((sec, m[4]))
    start = next((t for t, msg in stamps if msg.startswith("running ")), None)
    done = [(t, msg) for t, msg in stamps if re.match(r"\[\d+/\d+\] .* done", msg)]
    if start is None or not done:
        return {}
    sink = [i for i, (_, msg) in enumerate(done) if ".sink_" in msg]
    out = {"workflow_s": (done[-1][0] - start) % 86400}
    if sink and sink[0] > 0:
        out["sink_s"] = (done[sink[0]][0] - done[sink[0] - 1][0]) % 86400
    return out


def make_data(root: Path, n_scans: int) -> dict[str, dict]:
    """Generate (or reuse) the three datasets; per space: bids dir, atlas, CLI args, samples."""
    import nibabel as nib
    import numpy as np

    from bids_hrf.datasets import make_synthetic_dataset
    from bids_hrf.datasets.surface_sim import make_surface_dataset

    out = {}
    for space in SPACES:
        bids = root / f"{space}-{n_scans}" / "bids"
        done = bids.parent / "generated.json"
        if not done.exists():
            shutil.rmtree(bids.parent, ignore_errors=True)
            t0 = time.perf_counter()
            if space == "volume20k":
                source = root / f"volume-{n_scans}" / "bids"
                if not (source.parent / "generated.json").exists():
                    raise SystemExit("volume20k is made from the volume dataset: run with "
                                     "--spaces volume volume20k first")
                atlas, samples = make_matched_volume(source, bids)
            elif space == "volume":
                make_synthetic_dataset(
                    bids, size="realistic", n_subjects=1, n_runs=2, n_scans=n_scans, seed=0
                )
                atlas = next((bids / "derivatives" / "atlas").glob("*_dseg.nii.gz"))
                mask = next((bids / "derivatives" / "fmriprep").rglob("*run-1*brain_mask.nii*"))
                samples = int(np.count_nonzero(np.asanyarray(nib.load(str(mask)).dataobj)))
            else:
                ds = make_surface_dataset(
                    bids,
                    space=space,
                    n_subjects=1,
                    n_runs=2,
                    n_scans=n_scans,
                    n_parcels=200,
                    seed=0,
                    full_density=space == "fsLR",
                )
                atlas, samples = ds.atlas, len(ds.truth)
            info = {
                "atlas": str(atlas),
                "samples": samples,
                "generate_s": round(time.perf_counter() - t0, 1),
            }
            done.write_text(json.dumps(info))
            print(f"generated {space}: {samples} samples in {info['generate_s']} s", flush=True)
        info = json.loads(done.read_text())
        args = {
            "volume": [],
            "volume20k": [],
            "fsaverage5": ["--space", "fsaverage5"],
            "fsLR": ["--space", "fsLR", "--den", "91k"],
        }[space]
        out[space] = {
            "bids": bids,
            "atlas": info["atlas"],
            "args": args,
            "samples": info["samples"],
        }
    return out


def make_matched_volume(source: Path, bids: Path) -> tuple[Path, int]:
    """The volume dataset cut to fsaverage5's sample count, with as many parcels (200).

    Fixed costs (Python start-up, the BIDS query, nipype) and per-parcel costs (one design
    per parcel for FIR/JDE-VEM) do not scale with the samples, so time per sample of a run
    with 3.4x fewer samples is higher in any space; this control separates that from the
    cost of the space. Same BOLD files (hard links), brain masks cut to the
    ``MATCHED_SAMPLES`` in-brain voxels nearest to the mask's centre (a compact region),
    and an atlas of 200 parcels (k-means on the voxel coordinates, ~100 voxels each: the
    fsaverage5 parcels' size).
    """
    import nibabel as nib
    import numpy as np
    from sklearn.cluster import KMeans

    shutil.copytree(source, bids, copy_function=os.link)
    masks = sorted((bids / "derivatives" / "fmriprep").rglob("*_desc-brain_mask.nii.gz"))
    ref = nib.load(str(masks[0]))
    inside = np.argwhere(np.asanyarray(ref.dataobj) > 0)
    dist = np.linalg.norm(inside - inside.mean(axis=0), axis=1)
    kept = inside[np.argsort(dist, kind="stable")[:MATCHED_SAMPLES]]
    cut = np.zeros(ref.shape, dtype=np.uint8)
    cut[tuple(kept.T)] = 1
    for mask in masks:  # new files: the hard links to the source's masks are replaced
        mask.unlink()
        nib.save(nib.Nifti1Image(cut, ref.affine, ref.header), str(mask))
    labels = KMeans(n_clusters=200, n_init=1, random_state=0).fit_predict(kept.astype(float))
    atlas_data = np.zeros(ref.shape, dtype=np.int16)
    atlas_data[tuple(kept.T)] = labels + 1
    atlas = next((bids / "derivatives" / "atlas").glob("*_dseg.nii.gz"))
    atlas.unlink()
    atlas = atlas.with_name("space-MNI152NLin2009cAsym_atlas-Matched200_dseg.nii.gz")
    nib.save(nib.Nifti1Image(atlas_data, ref.affine), str(atlas))
    return atlas, int(cut.sum())


def table(results: dict) -> str:
    """Markdown table of the runs measured so far."""
    lines = [
        "| method | space | samples | wall s | s per 1,000 samples | per sample vs volume "
        "| vs volume20k | workflow s | of which sink s | peak process MiB | peak tree MiB "
        "| <= 2 GB per process | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for method, runs in results["runs"].items():
        vol, small = runs.get("volume"), runs.get("volume20k")
        for space, r in runs.items():
            per = 1000 * r["wall_s"] / r["samples"]
            vper = 1000 * vol["wall_s"] / vol["samples"] if vol else float("nan")
            sper = 1000 * small["wall_s"] / small["samples"] if small else float("nan")
            ok = "yes" if r["peak_process_mib"] <= TARGET_MIB else "**no**"
            bad = "" if r["exit_code"] == 0 else f" (exit {r['exit_code']})"
            lines.append(
                f"| {method} | {space}{bad} | {r['samples']} | {r['wall_s']:.0f} | {per:.2f} | "
                f"{per / vper:.2f} | {per / sper:.2f} | {r.get('workflow_s', '')} | "
                f"{r.get('sink_s', '')} | "
                f"{r['peak_process_mib']} | {r['peak_tree_mib']} | {ok} | "
                f"{r['load_before']}-{r['load_after']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="2 x 100 scans, canonical and jde-vem only"
    )
    parser.add_argument("--scans", type=int, default=None, help="scans per run (300)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None)
    parser.add_argument("--spaces", nargs="+", choices=SPACES, default=list(SPACES))
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(tempfile.gettempdir()) / "bids_hrf_bench_surface",
        help="datasets folder (generated once, reused)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results (updated per run)")
    args = parser.parse_args(argv)
    n_scans = args.scans or (100 if args.quick else 300)
    methods = args.methods or list(QUICK_METHODS if args.quick else METHODS)

    data = make_data(args.data, n_scans)
    env = {
        **os.environ,
        "NIPYPE_NO_ET": "1",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TEMPLATEFLOW_AUTOUPDATE": "0",
    }
    results = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 1024**3),
        },
        "scans_per_run": n_scans,
        "bold_runs": 2,
        "nprocs": args.nprocs,
        "runs": {},
    }
    for method in methods:
        results["runs"][method] = {}
        for space in args.spaces:
            d = data[space]
            scratch = Path(tempfile.mkdtemp(prefix=f"bench_surf_{method}_{space}_"))
            cmd = [
                sys.executable,
                "-m",
                "bids_hrf",
                str(d["bids"]),
                str(scratch / "out"),
                "participant",
                "--atlas",
                d["atlas"],
                "--hrf-method",
                method,
                "--nprocs",
                str(args.nprocs),
                "--no-report",
                "-w",
                str(scratch / "work"),
                *d["args"],
            ]
            res = measure(cmd, env, scratch / "log.txt")
            res["samples"] = d["samples"]
            results["runs"][method][space] = res
            print(
                f"{method:10s} {space:11s} exit {res['exit_code']} {res['wall_s']:7.1f} s "
                f"process {res['peak_process_mib']:5d} MiB tree {res['peak_tree_mib']:5d} MiB "
                f"load {res['load_before']}-{res['load_after']}",
                flush=True,
            )
            if res["exit_code"]:
                print("\n".join(res["log_tail"]), flush=True)
            else:
                shutil.rmtree(scratch, ignore_errors=True)
            if args.out:
                args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    return (
        0 if all(r["exit_code"] == 0 for m in results["runs"].values() for r in m.values()) else 1
    )


if __name__ == "__main__":
    sys.exit(main())
