"""Command-line parser (BIDS Apps convention).

Problems are collected and reported all at once, one line each, naming the argument or
file and the fix, before any work starts (with :func:`bids_hrf.io.checks.validate_config`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from bids_hrf import __version__
from bids_hrf.cli.hrf_options import (
    add_hrf_method_arguments,
    method_options_from_args,
    methods_help,
)
from bids_hrf.config import DEFAULT_ATLAS, DEFAULT_SPACE, Config, make_config
from bids_hrf.errors import BidsHrfError, NoInputError, UsageError
from bids_hrf.hrf.registry import method_names, resolved_method_options
from bids_hrf.io.checks import PLUGINS, validate_config


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except for flags and options whose help already says it."""

    def _get_help_string(self, action):
        if isinstance(action.default, bool) or action.default is None \
                or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` (exit 64) instead of exiting with 2."""

    def error(self, message: str):  # noqa: D102
        raise UsageError(message, fix="see 'bids-hrf --help'")


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def _nonneg_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the ``bids-hrf`` argument parser."""
    p = _Parser(
        prog="bids-hrf",
        description="Hemodynamic analysis of fMRIPrep derivatives: HRF estimation "
                    "(JDE-VEM, sparse deconvolution, canonical, FIR), GLM and group analysis, "
                    "written as BIDS-Derivatives with HTML reports.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("bids_dir", type=Path, help="the raw BIDS dataset (read only)")
    p.add_argument("output_dir", type=Path,
                   help="where derivatives are written (may be BIDS_DIR/derivatives/<name>)")
    p.add_argument("analysis_level", choices=["participant", "group"], help="level to run")
    p.add_argument("--version", action="version", version=f"bids-hrf {__version__}")

    g = p.add_argument_group("inputs")
    g.add_argument("--derivatives", nargs="+", type=Path, default=None, metavar="DIR",
                   help="fMRIPrep derivatives (default BIDS_DIR/derivatives/fmriprep)")
    g.add_argument("--participant-label", "--participant_label", nargs="+", default=None,
                   metavar="LABEL", help="participants to analyse (with or without 'sub-')")
    g.add_argument("--task", nargs="+", default=None, help="tasks to analyse (default: all)")
    g.add_argument("--space", default=DEFAULT_SPACE,
                   help="fMRIPrep output space: a volume template (MNI152NLin2009cAsym, "
                        "T1w...), fsaverage5|fsaverage6|fsaverage (GIFTI pairs, "
                        "--output-spaces fsaverage5) or fsLR (CIFTI grayordinates, "
                        "--cifti-output)")
    g.add_argument("--den", default=None, metavar="DENSITY",
                   help="with --space fsLR: grayordinate density of the CIFTI files "
                        "(91k or 170k; default: whichever is found)")
    g.add_argument("--bids-filter-file", type=Path, default=None, metavar="FILE",
                   help="JSON of pybids filters, e.g. {\"bold\": {\"acquisition\": \"mb\"}}")
    g.add_argument("--bids-database-dir", type=Path, default=None, metavar="DIR",
                   help="pybids database folder to reuse between runs")

    g = p.add_argument_group("parcellation")
    g.add_argument("--atlas", default=DEFAULT_ATLAS,
                   help="a label NIfTI file, a TemplateFlow atlas (e.g. "
                        "'Schaefer2018:400Parcels7Networks') or 'data-driven:N'")
    g.add_argument("--atlas-labels", type=Path, default=None, metavar="TSV",
                   help="labels of an atlas file (columns index, name[, network])")
    g.add_argument("--min-parcel-voxels", type=_positive_int, default=5,
                   help="parcels with fewer voxels in the brain mask are dropped")

    g = p.add_argument_group("denoising")
    g.add_argument("--confounds", default="simple",
                   help="preset (none, minimal, simple, scrubbing, compcor, motion24, gsr) "
                        "or a comma-separated list of confound columns")
    g.add_argument("--fd-threshold", type=_positive_float, default=0.5,
                   help="framewise displacement (mm) above which volumes are scrubbed")
    g.add_argument("--dummy-scans", default="auto",
                   help="non-steady-state volumes to drop: a number or 'auto'")
    g.add_argument("--high-pass", type=_nonneg_float, default=0.01, metavar="HZ",
                   help="high-pass cut-off (cosine drift model); 0 disables")
    g.add_argument("--smoothing-fwhm", type=_nonneg_float, default=None, metavar="MM",
                   help="spatial smoothing before the voxel-wise GLM")

    g = p.add_argument_group("HRF estimation")
    g.add_argument("--hrf-method", choices=method_names(), default="canonical",
                   help="how HRFs are obtained (" + methods_help() + ")")
    g.add_argument("--hrf-model", default="spm",
                   help="canonical HRF: spm, glover, spm+derivative, spm+derivative+dispersion, "
                        "glover+derivative, glover+derivative+dispersion")
    g.add_argument("--hrf-duration", type=_positive_float, default=25.0, metavar="S",
                   help="length of estimated HRFs (JDE-VEM, FIR, sparse)")
    g.add_argument("--hrf-dt", type=_positive_float, default=None, metavar="S",
                   help="HRF sampling step (default: a divisor of TR near 0.5 s)")
    g.add_argument("--noise-model", choices=["ar1", "ols"], default="ar1",
                   help="first-level noise model")
    # every method's own options (--jde-*, --sparse-*, ...) come from the HRF-method registry
    add_hrf_method_arguments(p, g)

    g = p.add_argument_group("GLM")
    g.add_argument("--events-csv", type=Path, default=None, metavar="PARADIGM.csv",
                   help="events from a PyHRF paradigm CSV (session \"condition\" onset "
                        "duration [amplitude]) instead of the BIDS events files: one session "
                        "for every run, or session k for the k-th run of each participant "
                        "and task")
    g.add_argument("--contrasts", type=Path, default=None, metavar="FILE.json",
                   help='contrasts as {"label": "expression over trial_type names"}')

    g = p.add_argument_group("group level")
    g.add_argument("--group-model", default=None,
                   help="one-sample (default), two-sample:COLUMN[:COV1,COV2], paired:COLUMN, "
                        "or a BIDS Stats Models-style JSON file")
    g.add_argument("--networks", type=Path, default=None, metavar="TSV",
                   help="parcel -> network table for connectivity summaries")
    g.add_argument("--group-permutations", type=int, default=0, metavar="N",
                   help="permutation inference (FWE-corrected voxel and cluster p values) "
                        "with N permutations; 0 disables")
    g.add_argument("--group-alpha", type=float, default=0.001,
                   help="height threshold of group maps (p value, see --height-control); "
                        "also the cluster-forming threshold of permutation inference")
    g.add_argument("--height-control", dest="group_height_control", default="fpr",
                   choices=["fpr", "fdr", "bonferroni"],
                   help="how --group-alpha is corrected when thresholding group maps")
    g.add_argument("--cluster-threshold", type=int, default=0, metavar="VOXELS",
                   help="minimum cluster size of thresholded group maps (voxels; mesh "
                        "vertices or grayordinates for surface data, connected on the mesh)")
    g.add_argument("--group-fdr", type=float, default=0.05,
                   help="FDR level of per-parcel HRF and per-edge connectivity comparisons")
    g.add_argument("--connectivity", default="correlation,partial-correlation,tangent",
                   metavar="KINDS",
                   help="comma-separated connectivity measures (correlation, "
                        "partial-correlation, tangent, covariance, precision) or 'none' "
                        "(default: correlation, partial-correlation, tangent)")
    g.add_argument("--connectivity-activity", action="store_true",
                   help="also compute connectivity on deconvolved activity "
                        "(--hrf-method sparse outputs)")
    g.add_argument("--connectivity-keep-task", dest="connectivity_task_regression",
                   action="store_false", default=True,
                   help="do not regress the task conditions (and shifted copies) out of "
                        "task runs before connectivity")

    g = p.add_argument_group("execution")
    g.add_argument("--nprocs", "--n-cpus", type=_positive_int, default=None,
                   help="processes (default: all CPUs)")
    g.add_argument("--omp-nthreads", type=_positive_int, default=None,
                   help="threads of the numerical libraries (BLAS, OpenMP) in each step "
                        "(default: CPUs / --nprocs)")
    g.add_argument("--mem-gb", type=_positive_float, default=None,
                   help="memory limit given to the scheduler")
    g.add_argument("--plugin", default=None, help=f"nipype plugin ({', '.join(PLUGINS)})")
    g.add_argument("--plugin-args", default=None, metavar="JSON",
                   help="nipype plugin arguments as JSON, e.g. '{\"sbatch_args\": \"-p short\"}'")
    g.add_argument("-w", "--work-dir", type=Path, default=None,
                   help="working directory (reused to resume an interrupted run)")
    g.add_argument("--no-report", dest="write_report", action="store_false", default=True,
                   help="skip the HTML reports")
    g.add_argument("--stop-on-first-crash", action="store_true",
                   help="stop at the first failing step")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="more messages (-vv: debug, with tracebacks)")
    return p


def _load_json_file(path: Path, what: str, errors: list[BidsHrfError]) -> Any:
    if not path.is_file():
        errors.append(NoInputError(f"{what} {path} does not exist", fix="give an existing file"))
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        errors.append(UsageError(f"{what} {path} is not valid JSON ({exc})",
                                 fix="fix the JSON syntax"))
        return None


def config_from_args(args: argparse.Namespace) -> Config:
    """Build and validate a :class:`Config` from parsed arguments (all problems at once)."""
    errors: list[BidsHrfError] = []
    bids_filters: dict = {}
    if args.bids_filter_file is not None:
        loaded = _load_json_file(args.bids_filter_file, "--bids-filter-file", errors)
        if loaded is not None and not isinstance(loaded, dict):
            errors.append(UsageError(f"--bids-filter-file {args.bids_filter_file} must hold a "
                                     "JSON object such as {\"bold\": {...}}"))
        elif loaded is not None:
            bids_filters = loaded
    contrasts: dict | list = {}
    if args.contrasts is not None:
        loaded = _load_json_file(args.contrasts, "--contrasts", errors)
        if loaded is not None:
            if isinstance(loaded, (dict, list)) and loaded:
                contrasts = loaded
            else:
                errors.append(UsageError(f"--contrasts {args.contrasts} must hold a non-empty "
                                         "JSON object {\"label\": \"expression\"}"))
    plugin_args: dict = {}
    if args.plugin_args:
        try:
            plugin_args = json.loads(args.plugin_args)
            if not isinstance(plugin_args, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            errors.append(UsageError(f"--plugin-args is not a JSON object ({exc})",
                                     fix="e.g. --plugin-args '{\"sbatch_args\": \"-p short\"}'"))
    # every registered option, given or with the chosen method's default (one default,
    # in the method's options class)
    method_options = resolved_method_options(args.hrf_method, method_options_from_args(args))
    nprocs = args.nprocs or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                else (os.cpu_count() or 1))
    config = make_config(
        args.bids_dir, args.output_dir, args.analysis_level,
        derivatives=args.derivatives, participant_label=args.participant_label,
        task=args.task, space=args.space, den=args.den, bids_filters=bids_filters,
        atlas=args.atlas, atlas_labels=args.atlas_labels,
        min_parcel_voxels=args.min_parcel_voxels, confounds=args.confounds,
        fd_threshold=args.fd_threshold, dummy_scans=args.dummy_scans,
        high_pass=args.high_pass, smoothing_fwhm=args.smoothing_fwhm or None,
        hrf_method=args.hrf_method, hrf_model=args.hrf_model,
        hrf_duration=args.hrf_duration, hrf_dt=args.hrf_dt, noise_model=args.noise_model,
        contrasts=contrasts, contrasts_file=args.contrasts, method_options=method_options,
        events_csv=args.events_csv,
        group_model=args.group_model, networks=args.networks, work_dir=args.work_dir,
        database_path=args.bids_database_dir, nprocs=nprocs, omp_nthreads=args.omp_nthreads,
        mem_gb=args.mem_gb, plugin=args.plugin, plugin_args=plugin_args,
        verbose=args.verbose, stop_on_first_crash=args.stop_on_first_crash,
        write_report=args.write_report,
        group_permutations=args.group_permutations, group_alpha=args.group_alpha,
        group_height_control=args.group_height_control,
        cluster_threshold=args.cluster_threshold, group_fdr=args.group_fdr,
        connectivity=tuple(k.strip() for k in args.connectivity.split(",") if k.strip()
                           and k.strip().lower() != "none"),
        connectivity_activity=args.connectivity_activity,
        connectivity_task_regression=args.connectivity_task_regression,
    )
    validate_config(config, errors)
    return config
