"""Multi-echo sparse deconvolution from the CLI vs one echo and the optimal combination.

For each seed: a generated multi-echo dataset (``make_multiecho_dataset``: one participant,
one task run, TEs 14/30/46 ms, per-voxel S0 and T2*, thermal noise per echo), deconvolved
by ``bids-hrf --hrf-method sparse`` three ways: ``--multi-echo`` (echoes jointly), the
middle echo alone (30 ms, as the run's BOLD) and the optimally combined BOLD. Score: the
mean event-locked response (SD units, :func:`bids_hrf.hrf.sparse.app.detect_events`) of the
truly active parcels' activity, and the median over inactive parcels.

    PYTHONPATH=$PWD python benchmarks/bench_multiecho.py --seeds 0 1 2 3 \
        --out benchmarks/results/bench_multiecho.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_multiecho_e2e import ATLAS, PREFIX, _active_response  # noqa: E402


def run_seed(seed: int, root: Path, snr: float) -> dict:
    """The three variants on the dataset of ``seed``: {variant: (active, inactive)}."""
    from bids_hrf.cli.run import main as bids_hrf
    from bids_hrf.datasets.multiecho_sim import make_multiecho_dataset

    bids = root / "bids"
    make_multiecho_dataset(bids, n_subjects=1, n_runs=1, groups=None, seed=seed, snr=snr)
    single = root / "single"
    shutil.copytree(bids, single)
    func = single / "derivatives" / "fmriprep" / "sub-01" / "func"
    shutil.copy(
        next(func.glob("*_echo-2_*desc-preproc_bold.nii.gz")),
        func / f"{PREFIX}_desc-preproc_bold.nii.gz",
    )
    for path in func.glob("*_echo-*"):
        path.unlink()
    scores = {}
    for name, data, extra in (
        ("joint", bids, ["--multi-echo"]),
        ("echo2", single, []),
        ("optcom", bids, []),
    ):
        out = root / f"out_{name}"
        start = time.perf_counter()
        code = bids_hrf(
            [
                str(data),
                str(out),
                "participant",
                "--atlas",
                str(bids / ATLAS),
                "--hrf-method",
                "sparse",
                "--no-report",
                *extra,
                "-w",
                str(root / f"work_{name}"),
            ]
        )
        if code != 0:
            raise RuntimeError(f"bids-hrf failed ({name}, seed {seed})")
        active, inactive = _active_response(bids, out / "sub-01" / "func")
        scores[name] = {
            "active": active,
            "inactive": inactive,
            "seconds": time.perf_counter() - start,
        }
    return scores


def main(argv: list[str] | None = None) -> int:
    """Run the seeds, print a table and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--snr", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    results = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            results[seed] = run_seed(seed, Path(tmp), args.snr)
        print(seed, {k: round(v["active"], 3) for k, v in results[seed].items()}, flush=True)
    summary = {
        name: {
            "active_mean": float(np.mean([r[name]["active"] for r in results.values()])),
            "inactive_median": float(np.median([r[name]["inactive"] for r in results.values()])),
        }
        for name in ("joint", "echo2", "optcom")
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(
            json.dumps({"seeds": results, "summary": summary, "snr": args.snr}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
