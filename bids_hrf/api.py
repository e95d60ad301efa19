"""Python API mirroring the command line: build a :class:`~bids_hrf.config.Config`, run a level.

Examples
--------
>>> from bids_hrf.config import make_config
>>> from bids_hrf.api import run
>>> config = make_config("ds/", "ds/derivatives/bids_hrf", "participant",
...                      participant_label=["01"], atlas="data-driven:50")  # doctest: +SKIP
>>> run(config)  # doctest: +SKIP
"""

from __future__ import annotations

import logging

import numpy as np
from nipype.pipeline import engine as pe

from bids_hrf.config import Config
from bids_hrf.errors import BidsHrfError, OutputError, UsageError, ValidationErrors
from bids_hrf.glm.contrasts import load_contrasts, parse_contrast
from bids_hrf.io.checks import validate_config
from bids_hrf.io.config_record import write_config_record
from bids_hrf.io.derivatives import existing_config_hash, init_output_dir, write_json
from bids_hrf.io.inputs import collect_runs, group_runs
from bids_hrf.io.outputs import inventory
from bids_hrf.workflows.group import init_group_wf
from bids_hrf.workflows.participant import init_participant_wf
from bids_hrf.workflows.runner import WorkflowRunner

LOGGER = logging.getLogger("bids_hrf")


def run(config: Config) -> dict:
    """Run the analysis level of ``config``; return a summary (reports, outputs, skipped)."""
    validate_config(config)
    if config.analysis_level == "participant":
        summary = run_participant(config)
    elif config.analysis_level == "group":
        summary = run_group(config)
    else:
        raise UsageError(f"unknown analysis level {config.analysis_level!r}",
                         fix="use participant or group")
    write_config_record(config)  # OUTPUT_DIR/config.toml: --config reproduces the run
    return summary


def _check_contrasts(config: Config, runs) -> tuple[list[str], dict]:
    """Check user contrasts against the conditions of the events files (before any work).

    The conditions are those :func:`bids_hrf.io.inputs.collect_runs` read from each run's
    events. Returns the sorted conditions and the NRL contrast weights for JDE-VEM.
    """
    errors: list[BidsHrfError] = []
    conditions = {c for run in runs for c in run.conditions}
    names = sorted(conditions)
    weights: dict = {}
    if config.contrasts and names:
        for label, spec in load_contrasts(config.contrasts).items():
            try:
                rows = [parse_contrast(e, names) for e in spec.expressions]
            except ValueError as exc:
                errors.append(UsageError(f"--contrasts {config.contrasts_file}: contrast "
                                         f"'{label}': {exc}",
                                         fix=f"conditions in the events files: "
                                             f"{', '.join(names)}"))
                continue
            if len(rows) == 1:
                weights[label] = np.asarray(rows[0], dtype=float).tolist()
    if errors:
        raise errors[0] if len(errors) == 1 else ValidationErrors(errors)
    return names, weights


def run_participant(config: Config) -> dict:
    """Run the participant level: query inputs, build and run the nipype workflow."""
    LOGGER.info("bids-hrf participant level: %s -> %s", config.bids_dir, config.output_dir)
    runs, skipped = collect_runs(config)
    for subject, problems in skipped.items():
        for problem in problems:
            LOGGER.warning("skipping sub-%s: %s", subject, problem)
    conditions, nrl_contrasts = _check_contrasts(config, runs)
    subjects = sorted({r.subject for r in runs})
    LOGGER.info("%d run(s) of %d participant(s): %s; conditions: %s", len(runs),
                len(subjects), ", ".join(f"sub-{s}" for s in subjects),
                ", ".join(conditions) or "none (paradigm-free)")

    _init_outputs(config)
    runner = WorkflowRunner(config, "participant")
    wf = pe.Workflow(name="bids_hrf_wf")
    n_groups = len(group_runs(runs))  # HRF steps of the whole run, shared out by --nprocs
    for subject in subjects:
        wf.add_nodes([init_participant_wf(subject, [r for r in runs if r.subject == subject],
                                          config, str(runner.errors_dir), nrl_contrasts,
                                          n_parallel=n_groups)])
    plugin = runner.run(wf)
    if plugin == "SLURMGraph":
        LOGGER.info("jobs submitted to SLURM; outputs appear as they finish")
    reports = [str(config.output_dir / f"sub-{s}.html") for s in subjects
               if (config.output_dir / f"sub-{s}.html").exists()]
    for report in reports:
        LOGGER.info("report: %s", report)
    LOGGER.info("participant level finished: outputs in %s", config.output_dir)
    return {"subjects": subjects, "reports": reports, "skipped": skipped}


def _init_outputs(config: Config) -> None:
    previous = existing_config_hash(config.output_dir)
    if previous and previous != config.config_hash():
        LOGGER.warning("%s was made with another configuration (hash %s, now %s): files of "
                       "this run replace those with the same names", config.output_dir,
                       previous, config.config_hash())
    sources = [str(config.bids_dir)] + [str(d) for d in config.fmriprep_dirs]
    init_output_dir(config.output_dir, config.config_hash(), sources)
    log_dir = config.output_dir / "logs"
    try:
        log_dir.mkdir(exist_ok=True)
        write_json(log_dir / f"config_{config.config_hash()}.json", config.to_dict())
    except OSError as exc:
        raise OutputError(f"cannot write into {log_dir}: {exc.strerror}",
                          fix="choose a writable OUTPUT_DIR") from exc


def run_group(config: Config) -> dict:
    """Run the group level on the participant outputs already in OUTPUT_DIR."""
    LOGGER.info("bids-hrf group level on %s", config.output_dir)
    inv = inventory(config.output_dir)
    subjects = sorted({s for s in inv["sub"] if s})
    LOGGER.info("participant outputs of %d subject(s): %s", len(subjects),
                ", ".join(f"sub-{s}" for s in subjects))
    runner = WorkflowRunner(config, "group")
    runner.run(init_group_wf(config, inv.to_dict(orient="records"), str(runner.errors_dir)))
    report = config.output_dir / "group.html"
    if report.exists():
        LOGGER.info("report: %s", report)
    LOGGER.info("group level finished: outputs in %s", config.output_dir / "group")
    return {"subjects": subjects, "reports": [str(report)] if report.exists() else []}
