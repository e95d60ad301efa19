"""Command line: ``python -m bids_hrf.datasets OUT_DIR [--size small|realistic] ...``."""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial

from .multiecho_sim import ECHO_TIMES_MS, make_multiecho_dataset
from .synthetic import SIZES, make_synthetic_dataset


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bids_hrf.datasets",
        description="Write a synthetic BIDS dataset with fMRIPrep-like derivatives, an "
        "MNI-space atlas and the simulation ground truth.",
    )
    p.add_argument("out_dir", help="BIDS root to create (must be absent or empty)")
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--subjects", type=int, default=2, help="number of participants")
    p.add_argument("--sessions", type=int, default=1, help="sessions per participant")
    p.add_argument("--runs", type=int, default=2, help="task runs per session")
    p.add_argument("--scans", type=int, default=None, help="volumes per run")
    p.add_argument("--tr", type=float, default=2.0, help="repetition time (s)")
    p.add_argument("--snr", type=float, default=2.0, help="response peak / noise SD")
    p.add_argument("--rest", action="store_true", help="also write a task-rest run")
    p.add_argument("--no-groups", action="store_true", help="no groups, no group effects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--echo-times",
        type=lambda text: tuple(float(t) for t in text.split(",")),
        default=None,
        metavar="TE1,TE2,...",
        help="write a multi-echo dataset with these echo times (ms), e.g. "
        + ",".join(f"{t:g}" for t in ECHO_TIMES_MS)
        + " (fMRIPrep --me-output-echos files; datasets/multiecho_sim.py)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the generator; return the exit code (64 for bad arguments)."""
    args = _parser().parse_args(argv)
    start = time.perf_counter()
    try:
        make = make_synthetic_dataset
        if args.echo_times:
            make = partial(make_multiecho_dataset, echo_times=args.echo_times)
        ds = make(
            args.out_dir,
            size=args.size,
            n_subjects=args.subjects,
            n_sessions=args.sessions,
            n_runs=args.runs,
            n_scans=args.scans,
            tr=args.tr,
            snr=args.snr,
            rest_task=args.rest,
            groups=None if args.no_groups else ("control", "patient"),
            seed=args.seed,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 64
    print(
        f"wrote {ds.bids_dir} ({len(ds.subjects)} subjects, derivatives in {ds.fmriprep_dir}, "
        f"atlas {ds.atlas_img.name}) in {time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
