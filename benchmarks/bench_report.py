"""Participant run with its report vs a plain nilearn script, side by side in one run.

Data: the ``realistic`` synthetic dataset (MNI152 brain at 3 mm, 300 volumes per run),
1 participant, 2 runs, its 200-parcel atlas merged pairwise into 100 parcels. Two programs,
each in its own child process (Python start and imports included), alternated ``--repeats``
times so that both see the same machine load:

- **bids-hrf**: ``bids-hrf BIDS OUT participant --atlas atlas100 --hrf-method canonical
  --nprocs 2 --contrasts three.json`` (a fresh work directory each time, report included);
  the report step's own time is read from its nipype result (``runtime.duration``).
- **nilearn**: ``load_confounds_strategy(bold, "simple")`` for each run, one
  ``FirstLevelModel(noise_model="ar1", hrf_model="spm", n_jobs=2)`` fitted on both runs,
  ``compute_contrast(..., output_type="all")`` for the same three contrasts.

    python benchmarks/bench_report.py [--data DIR] [--repeats 2] [--out results.json]

Targets (issue 11): whole bids-hrf run <= 1.3x nilearn's wall time, report step <= 20 % of
the bids-hrf run. Figures in benchmarks/README.md ("Report speed").
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

CONTRASTS = {"audio": "audio", "visual": "visual", "audioMinusVisual": "audio - visual"}

NILEARN_SCRIPT = r"""
import json, sys
from pathlib import Path
import pandas as pd
from nilearn.glm.first_level import FirstLevelModel
from nilearn.interfaces.fmriprep import load_confounds_strategy

spec = json.loads(Path(sys.argv[1]).read_text())
imgs, confounds, events, masks = [], [], [], []
for run in spec["runs"]:
    conf, sample_mask = load_confounds_strategy(run["bold"], denoise_strategy="simple")
    imgs.append(run["bold"])
    confounds.append(conf)
    events.append(pd.read_csv(run["events"], sep="\t"))
model = FirstLevelModel(t_r=spec["tr"], hrf_model="spm", noise_model="ar1",
                        drift_model="cosine", high_pass=0.01, mask_img=spec["mask"],
                        n_jobs=2, minimize_memory=True)
model.fit(imgs, events=events, confounds=confounds)
for name, expr in spec["contrasts"].items():
    out = model.compute_contrast(expr, output_type="all")
    for kind, img in out.items():
        img.to_filename(str(Path(spec["out"]) / f"{name}_{kind}.nii.gz"))
"""


def make_data(root: Path) -> dict:
    """The realistic dataset (made once) and its atlas merged into 100 parcels."""
    import nibabel as nib
    import numpy as np
    import pandas as pd

    from bids_hrf.datasets import make_synthetic_dataset

    bids = root / "bids"
    if not (bids / "dataset_description.json").exists():
        make_synthetic_dataset(bids, size="realistic", n_subjects=1, n_runs=2, seed=0)
    atlas_dir = root / "atlas100"
    atlas = atlas_dir / "tpl-MNI152NLin2009cAsym_atlas-Merged100_dseg.nii.gz"
    if not atlas.exists():
        atlas_dir.mkdir(parents=True, exist_ok=True)
        src = next((bids / "derivatives" / "atlas").glob("*_dseg.nii.gz"))
        img = nib.load(src)
        labels = np.asarray(img.dataobj).astype(np.int16)
        merged = np.where(labels > 0, (labels + 1) // 2, 0).astype(np.int16)
        nib.save(nib.Nifti1Image(merged, img.affine), atlas)
        n = int(merged.max())
        pd.DataFrame({"index": np.arange(1, n + 1),
                      "name": [f"parcel{i:03d}" for i in range(1, n + 1)]}).to_csv(
            atlas.with_name(atlas.name.replace(".nii.gz", ".tsv")), sep="\t", index=False)
    func = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    runs = []
    for bold in sorted(func.glob("*_desc-preproc_bold.nii.gz")):
        run = bold.name.split("_run-")[1].split("_")[0]
        events = next((bids / "sub-01" / "func").glob(f"*_run-{run}_events.tsv"))
        runs.append({"bold": str(bold), "events": str(events)})
    mask = next(func.glob("*_run-1_*desc-brain_mask.nii.gz"))
    contrasts = root / "three_contrasts.json"
    contrasts.write_text(json.dumps(CONTRASTS))
    return {"bids": str(bids), "atlas": str(atlas), "runs": runs, "mask": str(mask),
            "contrasts": str(contrasts), "tr": 2.0}


def run_bids_hrf(data: dict, scratch: Path) -> dict:
    from nipype.utils.filemanip import loadpkl

    out, work = scratch / "out", scratch / "work"
    for d in (out, work):
        shutil.rmtree(d, ignore_errors=True)
    cmd = [sys.executable, "-m", "bids_hrf", data["bids"], str(out), "participant",
           "--atlas", data["atlas"], "--hrf-method", "canonical", "--nprocs", "2",
           "--contrasts", data["contrasts"], "-w", str(work)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"bids-hrf failed: {proc.stderr[-3000:]}")
    result = next(work.rglob("report/result_report.pklz"))
    report = float(loadpkl(result).runtime.duration)
    return {"wall_s": wall, "report_s": report}


def run_nilearn(data: dict, scratch: Path) -> dict:
    out = scratch / "nilearn"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    spec = scratch / "nilearn.json"
    spec.write_text(json.dumps({**data, "contrasts": CONTRASTS, "out": str(out)}))
    script = scratch / "nilearn_glm.py"
    script.write_text(NILEARN_SCRIPT)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), str(spec)], capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"nilearn script failed: {proc.stderr[-3000:]}")
    return {"wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir())
                        / "bids_hrf-bench-report")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    data = make_data(args.data)
    scratch = args.data / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(args.repeats):
        order = (run_bids_hrf, run_nilearn) if k % 2 == 0 else (run_nilearn, run_bids_hrf)
        row = {}
        for func in order:
            name = "bids_hrf" if func is run_bids_hrf else "nilearn"
            row[name] = func(data, scratch)
            print(f"repeat {k + 1}: {name} {row[name]}", flush=True)
        rows.append(row)
    import numpy as np

    ours = np.median([r["bids_hrf"]["wall_s"] for r in rows])
    peer = np.median([r["nilearn"]["wall_s"] for r in rows])
    report = np.median([r["bids_hrf"]["report_s"] for r in rows])
    ratios = [r["bids_hrf"]["wall_s"] / r["nilearn"]["wall_s"] for r in rows]
    shares = [r["bids_hrf"]["report_s"] / r["bids_hrf"]["wall_s"] for r in rows]
    summary = {
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs), load {os.getloadavg()}",
        "repeats": rows,
        "median_wall_bids_hrf_s": ours, "median_wall_nilearn_s": peer,
        "median_report_s": report,
        "ratio_per_repeat": ratios, "median_ratio": float(np.median(ratios)),
        "report_share_per_repeat": shares, "median_report_share": float(np.median(shares)),
    }
    print(json.dumps(summary, indent=1, default=float))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
