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

import json
import logging
import os
import shutil
import time
from pathlib import Path

from bids_hrf.config import Config
from bids_hrf.errors import BidsHrfError, UsageError, ValidationErrors
from bids_hrf.io.derivatives import existing_config_hash, init_output_dir

LOGGER = logging.getLogger("bids_hrf")


def run(config: Config) -> dict:
    """Run the analysis level of ``config``; return a summary (reports, outputs, skipped)."""
    from bids_hrf.cli.parser import validate_config

    validate_config(config)
    if config.analysis_level == "participant":
        return run_participant(config)
    if config.analysis_level == "group":
        from bids_hrf.workflows.group import run_group

        return run_group(config)
    raise UsageError(f"unknown analysis level {config.analysis_level!r}",
                     fix="use participant or group")


def _check_contrasts(config: Config, runs) -> tuple[list[str], dict]:
    """Check user contrasts against the conditions of the events files (before any work).

    Returns the sorted conditions and the NRL contrast weights for JDE-VEM.
    """
    import numpy as np

    from bids_hrf.glm.contrasts import load_contrasts, parse_contrast
    from bids_hrf.steps.hrf import read_events

    conditions: set[str] = set()
    errors: list[BidsHrfError] = []
    for run in runs:
        if run.events is None:
            continue
        try:
            events = read_events(run.events)
        except BidsHrfError as exc:
            errors.append(exc)
            continue
        if events is not None and "trial_type" in events.columns:
            conditions |= set(events["trial_type"].astype(str))
    if errors:
        raise errors[0] if len(errors) == 1 else ValidationErrors(errors)
    names = sorted(conditions)
    weights: dict = {}
    if config.contrasts and names:
        raw = config.contrasts.get("__list__", config.contrasts)
        for label, spec in load_contrasts(raw).items():
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


def _plugin(config: Config, n_nodes: int) -> tuple[str, dict]:
    plugin = config.plugin or ("MultiProc" if config.nprocs > 1 else "Linear")
    args = dict(config.plugin_args)
    if plugin == "MultiProc":
        args.setdefault("n_procs", config.nprocs)
        if config.mem_gb:
            args.setdefault("memory_gb", config.mem_gb)
        args.setdefault("raise_insufficient", False)
    if plugin in ("SLURM", "SLURMGraph"):
        os.environ.setdefault("LOGNAME", os.environ.get("USER", "bids_hrf"))
        if config.mem_gb and "sbatch_args" not in args:
            args["sbatch_args"] = f"--mem={int(config.mem_gb * 1024)}M"
    if plugin in ("Linear", "MultiProc"):
        state = {"done": 0, "t0": time.time(), "started": set()}

        def status(node, status_name):
            # nipype's Linear plugin also reports "end" for nodes skipped after a failure
            if status_name == "start":
                state["started"].add(node.fullname)
            elif status_name == "end" and node.fullname in state["started"]:
                state["done"] += 1
                LOGGER.info("[%d/%d] %s done%s", state["done"], n_nodes,
                            node.fullname.replace("bids_hrf_wf.", ""), _peak_memory(plugin))
            elif status_name == "exception":
                LOGGER.error("step %s failed", node.fullname.replace("bids_hrf_wf.", ""))

        args["status_callback"] = status
    return plugin, args


def _peak_memory(plugin: str) -> str:
    """`` (peak memory so far X GB)`` when steps run in this process (Linear plugin)."""
    if plugin != "Linear":
        return ""
    try:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return ""
    return f" (peak memory so far {kib / 1024 ** 2:.2f} GB)"


def _count_steps(wf) -> int:
    """Nodes that really run (nipype drops identity nodes before running)."""
    from nipype.interfaces.utility import IdentityInterface

    return sum(not isinstance(n.interface, IdentityInterface) for n in wf._get_all_nodes())


def _collect_errors(errors_dir: Path) -> list[dict]:
    out = []
    for path in sorted(errors_dir.glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out


def _configure_nipype(config: Config, work: Path) -> None:
    """Quiet, resumable nipype settings with crash files in the work directory."""
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from bids_hrf.errors import OutputError

        raise OutputError(f"cannot create the work directory {work}: {exc.strerror}",
                          fix="give a writable -w/--work-dir") from exc
    nipype_config.update_config({
        "execution": {"crashdump_dir": str(work / "crashes"), "crashfile_format": "txt",
                      "stop_on_first_crash": str(config.stop_on_first_crash).lower(),
                      "remove_unnecessary_outputs": "false", "hash_method": "content",
                      "create_report": "false", "poll_sleep_duration": 0.2,
                      "local_hash_check": "true"},
        "monitoring": {"enabled": "false"},
        # nipype logs a failing node with its traceback at ERROR level; bids-hrf reports
        # the failure in one line itself, so nipype only speaks with -vv.
        "logging": {"workflow_level": "INFO" if config.verbose >= 2 else "CRITICAL",
                    "interface_level": "INFO" if config.verbose >= 2 else "CRITICAL",
                    "utils_level": "INFO" if config.verbose >= 2 else "CRITICAL",
                    "log_to_file": "false"},
    })
    nipype_logging.update_logging(nipype_config)


def run_participant(config: Config) -> dict:
    """Run the participant level: query inputs, build and run the nipype workflow."""
    from nipype.pipeline import engine as pe

    from bids_hrf.io.inputs import collect_runs
    from bids_hrf.workflows.participant import init_participant_wf

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
    work = config.effective_work_dir
    errors_dir = work / "errors" / f"{os.getpid()}_{int(time.time())}"
    _configure_nipype(config, work)
    wf = pe.Workflow(name="bids_hrf_wf", base_dir=str(work))
    for subject in subjects:
        wf.add_nodes([init_participant_wf(subject, [r for r in runs if r.subject == subject],
                                          config, str(errors_dir), nrl_contrasts)])
    n_nodes = _count_steps(wf)
    plugin, plugin_args = _plugin(config, n_nodes)
    LOGGER.info("running %d steps with nipype's %s plugin (work dir %s)", n_nodes, plugin,
                work)
    try:
        wf.run(plugin=plugin, plugin_args=plugin_args)
    except RuntimeError as exc:
        _raise_workflow_errors(errors_dir, exc, work)
    finally:
        shutil.rmtree(errors_dir, ignore_errors=True)
    if plugin == "SLURMGraph":
        LOGGER.info("jobs submitted to SLURM; outputs appear as they finish")
    reports = [str(config.output_dir / f"sub-{s}.html") for s in subjects
               if (config.output_dir / f"sub-{s}.html").exists()]
    for report in reports:
        LOGGER.info("report: %s", report)
    LOGGER.info("participant level finished: outputs in %s", config.output_dir)
    return {"subjects": subjects, "reports": reports, "skipped": skipped}


def _explain(item: dict) -> dict:
    """Make a non-user error from a step (out of memory) actionable."""
    message = str(item.get("message", ""))
    if message.startswith("MemoryError"):
        step = Path(str(item.get("node", ""))).name or "a step"
        return {**item, "exit_code": 1,
                "message": f"out of memory in step {step} -- lower --nprocs, give --mem-gb "
                           "with the memory available to the job, or use a machine with more "
                           "memory; rerun with the same -w/--work-dir to resume"}
    return item


def _raise_workflow_errors(errors_dir: Path, exc: Exception, work: Path) -> None:
    found = [_explain(item) for item in _collect_errors(errors_dir)]
    if found:
        unique = []
        for item in found:
            if item["message"] not in [u["message"] for u in unique]:
                unique.append(item)
        if len(unique) == 1:
            err = BidsHrfError(unique[0]["message"])
            err.exit_code = unique[0].get("exit_code", 1)
            raise err from exc
        errs = []
        for item in unique:
            err = BidsHrfError(item["message"])
            err.exit_code = item.get("exit_code", 1)
            errs.append(err)
        raise ValidationErrors(errs) from exc
    raise BidsHrfError(f"some steps failed ({str(exc).splitlines()[0]})",
                       fix=f"see the crash files in {work / 'crashes'} or rerun with -vv") \
        from exc


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
        from bids_hrf.io.derivatives import write_json

        write_json(log_dir / f"config_{config.config_hash()}.json", config.to_dict())
    except OSError as exc:
        from bids_hrf.errors import OutputError

        raise OutputError(f"cannot write into {log_dir}: {exc.strerror}",
                          fix="choose a writable OUTPUT_DIR") from exc
