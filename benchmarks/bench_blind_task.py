"""Blind (paradigm-free) parcel HRFs on task runs vs JDE-VEM and FIR (issue 15's task check).

The demo's data (:func:`bids_hrf.datasets.make_synthetic_dataset`, ``size="small"``: 2
subjects x 2 runs of the localizer task, 10 parcels, the truth known) go through the
participant level three times: ``--hrf-method jde-vem``, ``--hrf-method fir`` (both use the
paradigm) and ``--hrf-method sparse --estimate-hrf`` (the blind estimator, paradigm ignored).
The time to peak of every parcel HRF (the task-level HRF tables, measured by
:func:`bids_hrf.hrf.params.hrf_parameters` on the curves, like the truth's) is compared in the
*active* parcels (a true amplitude > 0 for some condition in that subject): is the blind time
to peak within 0.5 s of JDE-VEM's and FIR's?

Usage::

    python benchmarks/bench_blind_task.py                  # the demo (80 scans per run)
    python benchmarks/bench_blind_task.py --n-scans 300    # longer runs, same design
    python benchmarks/bench_blind_task.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bids_hrf.cli.run import main as run_app
from bids_hrf.datasets import make_synthetic_dataset
from bids_hrf.hrf.params import hrf_parameters

METHODS = {"jde-vem": (["--hrf-method", "jde-vem"], "jdevem"),
           "fir": (["--hrf-method", "fir"], "fir"),
           "blind": (["--hrf-method", "sparse", "--estimate-hrf"], "sparse")}


def _ttp(table: Path) -> pd.Series:
    hrf = pd.read_csv(table, sep="\t")
    time = hrf.pop("time").to_numpy()
    par = hrf_parameters(hrf.to_numpy(), time)
    return pd.Series(par.time_to_peak, index=hrf.columns)


def run(root: Path, n_scans: int | None, nprocs: int) -> pd.DataFrame:
    ds = make_synthetic_dataset(root / "bids", size="small", n_subjects=2, n_runs=2, seed=1,
                                n_scans=n_scans)
    truth_dir = ds.bids_dir / "derivatives" / "truth"
    truth = _ttp(truth_dir / "truth_hrf.tsv")
    amp = pd.read_csv(truth_dir / "truth_amplitudes.tsv", sep="\t")
    rows = []
    found = {}
    for name, (options, desc) in METHODS.items():
        out = root / f"out-{name}"
        code = run_app([str(ds.bids_dir), str(out), "participant", "--atlas",
                        str(ds.atlas_img), "-w", str(root / f"work-{name}"), "--nprocs",
                        str(nprocs), "--no-report", *options])
        if code:
            raise RuntimeError(f"{name}: participant level exited with {code}")
        for table in out.glob(f"sub-*/func/*task-localizer_space-*_desc-{desc}_hrf.tsv"):
            if "_stat-" in table.name:  # the variance table
                continue
            found[(table.name.split("_")[0][4:], name)] = _ttp(table)
    for sub in ("01", "02"):
        active = amp[(amp.participant_id == f"sub-{sub}") & (amp.amplitude > 0)]
        active = set(active.parcel)
        for parcel in truth.index:
            row = {"subject": sub, "parcel": parcel, "active": parcel in active,
                   "truth": float(truth[parcel])}
            for name in METHODS:
                row[name] = float(found[(sub, name)][parcel])
            rows.append(row)
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame) -> dict:
    out = {}
    for subset, rows in (("active", table[table.active]), ("silent", table[~table.active])):
        s = {"n": len(rows)}
        for ref in ("jde-vem", "fir"):
            diff = (rows.blind - rows[ref]).abs()
            s[f"blind_vs_{ref}_median"] = float(diff.median())
            s[f"blind_within_0.5s_of_{ref}"] = float((diff <= 0.5).mean())
        for name in METHODS:
            s[f"{name}_vs_truth_median"] = float((rows[name] - rows.truth).abs().median())
        s["truth_ttp_range"] = [float(rows.truth.min()), float(rows.truth.max())]
        s["blind_ttp_range"] = [float(rows.blind.min()), float(rows.blind.max())]
        out[subset] = s
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-scans", type=int, default=None,
                        help="scans per run (default: the demo's 80)")
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        table = run(Path(tmp), args.n_scans, args.nprocs)
    pd.set_option("display.width", 160)
    print(table.round(2).to_string(index=False))
    summary = summarise(table)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"n_scans": args.n_scans or 80, "summary": summary,
                                         "parcels": table.to_dict(orient="records")},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
