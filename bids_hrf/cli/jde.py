"""``bids-hrf-jde``: PyHRF's ``pyhrf_jde_vem_analysis`` command, on the BIDS App's JDE-VEM.

    bids-hrf-jde TR PARCELS ONSETS BOLD [BOLD ...] [options]

Same positional arguments, options and defaults as PyHRF 0.5 (see docs/pyhrf.md); several
BOLD files are several sessions of the paradigm CSV, in session order.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bids_hrf.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    BidsHrfError,
    DataError,
    OutputError,
    UsageError,
)

LOGGER = logging.getLogger("bids_hrf")
PROG = "bids-hrf-jde"
LOG_LEVELS = ("DEBUG", "10", "INFO", "20", "WARNING", "30", "ERROR", "40", "CRITICAL", "50")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102 - exit 64 with one line, as bids-hrf
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: PyHRF's ``pyhrf_jde_vem_analysis`` options and defaults."""
    p = _Parser(prog=PROG, description=(
        "Run an fMRI analysis using the JDE-VEM framework (PyHRF's pyhrf_jde_vem_analysis "
        "on bids_hrf's JDE-VEM). Several BOLD files are several sessions."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("tr", type=_positive(float), help="repetition time of the fMRI data (s); "
                   "wins over the BOLD headers")
    p.add_argument("parcels_file", help="NIfTI integer file defining the parcels")
    p.add_argument("onsets_file", help="paradigm CSV: session \"condition\" onset duration "
                   "[amplitude]")
    p.add_argument("bold_data_file", nargs="+", help="4-D NIfTI BOLD file(s), one per session")
    p.add_argument("-c", "--def_contrasts_file", default=None,
                   help='JSON file defining the contrasts: {"name": "condA - condB"}')
    p.add_argument("-d", "--dt", type=_positive(float), default=None,
                   help="time resolution of the HRF (default: TR / trunc(TR), as PyHRF)")
    p.add_argument("-l", "--hrf-duration", type=_positive(float), default=25.0,
                   help="time length of the HRF (s)")
    p.add_argument("-o", "--output", dest="output_dir", default=os.getcwd(),
                   help="output directory (created if needed)")
    p.add_argument("--nb-iter-min", type=_positive(int), default=5,
                   help="minimum number of VEM iterations")
    p.add_argument("--nb-iter-max", type=_positive(int), default=100,
                   help="maximum number of VEM iterations")
    p.add_argument("--beta", type=float, default=1.0,
                   help="initial Ising interaction of the activation labels")
    p.add_argument("--hrf-hyperprior", type=float, default=1000,
                   help="rate of the exponential hyperprior on the HRF prior scale")
    p.add_argument("--sigma-h", type=_positive(float), default=0.1,
                   help="initial HRF prior scale")
    p.add_argument("--estimate-hrf", action="store_true", default=True,
                   help="estimate the HRF of each parcel")
    p.add_argument("--no-estimate-hrf", action="store_false", dest="estimate_hrf",
                   help="keep the canonical HRF")
    p.add_argument("--zero-constraint", action="store_true", default=True,
                   help="HRF starts and ends at 0")
    p.add_argument("--no-zero-constraint", action="store_false", dest="zero_constraint",
                   help="free HRF end points")
    p.add_argument("--drifts-type", choices=("poly", "cos"), default="poly",
                   help="drifts: 4th-order polynomial or cosines up to 1/64 Hz")
    p.add_argument("-v", "--log-level", default="WARNING", choices=LOG_LEVELS,
                   help="logging level")
    p.add_argument("-p", "--parallel", action="store_true", default=True,
                   help="fit parcels on all CPUs")
    p.add_argument("--no-parallel", action="store_false", dest="parallel",
                   help="fit parcels one at a time")
    p.add_argument("--save-processing", action="store_true", default=True,
                   dest="save_processing_config",
                   help="write the settings of the run to jde_vem_processing.json")
    p.add_argument("--no-save-processing", action="store_false",
                   dest="save_processing_config")
    p.add_argument("--no-report", action="store_false", dest="report",
                   help="do not write the HTML report jde_vem_report.html")
    return p


def _setup_logging(level: str) -> None:
    numeric = int(level) if level.isdigit() else getattr(logging, level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s [{PROG}] %(levelname)s: %(message)s",
                                           "%H:%M:%S"))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(numeric)
    LOGGER.propagate = False
    logging.captureWarnings(True)
    pywarn = logging.getLogger("py.warnings")
    pywarn.handlers[:] = [handler]
    pywarn.setLevel(min(numeric, logging.WARNING))
    pywarn.propagate = False


def _log_warning(message, category, filename, lineno, file=None, line=None):
    LOGGER.warning("%s", message)


def run(args: argparse.Namespace) -> dict:
    """Run the analysis described by parsed ``args``; return {output file: description}."""
    from bids_hrf.hrf.jde.app import estimate_jde_vem
    from bids_hrf.steps.pyhrf_jde import (
        DRIFTS,
        bids_prefix,
        load_jde_data,
        pyhrf_default_dt,
        save_processing,
        write_bids_like_outputs,
        write_pyhrf_outputs,
    )

    start = time.time()
    out_dir = Path(args.output_dir).absolute()
    data = load_jde_data(args.tr, args.parcels_file, args.onsets_file,
                         list(args.bold_data_file), args.def_contrasts_file)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"output directory {out_dir} cannot be created ({exc.strerror})",
                          fix="give a writable -o/--output") from exc
    if not os.access(out_dir, os.W_OK):
        raise OutputError(f"output directory {out_dir} is not writable",
                          fix="give a writable -o/--output")
    dt = args.dt or pyhrf_default_dt(args.tr)
    n_jobs = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else (os.cpu_count() or 1)) if args.parallel else 1
    LOGGER.info("JDE-VEM on %d parcel(s), %d voxel(s), %d session(s), dt %.3g s",
                len(set(data.labels.tolist())), data.labels.size, len(data.runs), dt)
    settings = dict(dt=dt, hrf_duration=args.hrf_duration, beta=args.beta,
                    sigma_h=args.sigma_h, hrf_hyperprior=float(args.hrf_hyperprior),
                    n_iter_min=args.nb_iter_min, n_iter_max=args.nb_iter_max,
                    zero_constraint=args.zero_constraint, estimate_hrf=args.estimate_hrf,
                    **DRIFTS[args.drifts_type])
    names = {int(x): str(int(x)) for x in sorted(set(data.labels.tolist()))}
    try:
        estimate = estimate_jde_vem(data.runs, data.events, data.frame_times, args.tr,
                                    data.labels, names, np.argwhere(data.mask),
                                    contrasts=data.contrasts or None, n_jobs=n_jobs,
                                    **settings)
    except ValueError as exc:
        raise DataError(f"JDE-VEM cannot run on {args.parcels_file}: {exc}",
                        fix="check the paradigm, TR and parcellation") from exc
    files = write_pyhrf_outputs(estimate, data, out_dir)
    bids_dir = out_dir / "bids"
    bids_dir.mkdir(exist_ok=True)
    files.update({f"bids/{k}": v for k, v in write_bids_like_outputs(
        estimate, data, bids_dir, bids_prefix(args.bold_data_file[0])).items()})
    if args.save_processing_config:
        resolved = {k: v for k, v in vars(args).items()}
        resolved.update(
            bold_data_file=[str(Path(b).absolute()) for b in args.bold_data_file],
            parcels_file=str(Path(args.parcels_file).absolute()),
            onsets_file=str(Path(args.onsets_file).absolute()),
            def_contrasts_file=(str(Path(args.def_contrasts_file).absolute())
                                if args.def_contrasts_file else None),
            output_dir=str(out_dir), dt=dt, sessions=data.sessions,
            conditions=estimate.parameters["conditions"],
            contrasts=data.contrast_expressions, jde_parameters=estimate.parameters)
        save_processing(out_dir / "jde_vem_processing.json", resolved)
        files["jde_vem_processing.json"] = "the settings of this run"
    if args.report:
        from bids_hrf.reports.pyhrf_jde import write_jde_report

        write_jde_report(out_dir / "jde_vem_report.html", estimate, data, args, files)
        files["jde_vem_report.html"] = "HTML report"
    LOGGER.info("done in %.1f s: %d files in %s", time.time() - start, len(files), out_dir)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bids-hrf-jde``; returns the exit code."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        _setup_logging(args.log_level)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _log_warning
            run(args)
    except BidsHrfError as exc:
        print(f"{PROG}: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if LOGGER.level <= logging.DEBUG:
            raise
        print(f"{PROG}: error: unexpected {type(exc).__name__}: {exc} -- rerun with "
              "-v DEBUG for the traceback and report it", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        logging.captureWarnings(False)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
