"""Run a nipype workflow the bids-hrf way, for both analysis levels.

One place for what running involves: nipype's settings (quiet, resumable, crash files in
the work directory), the plugin and its arguments (``--nprocs``, ``--mem-gb``,
``--plugin``), the threads of each step (``--omp-nthreads``), progress lines, and
turning the errors the steps wrote into ``errors_dir`` into one
:class:`~bids_hrf.errors.BidsHrfError` (or :class:`ValidationErrors`).

>>> runner = WorkflowRunner(config, "participant")  # doctest: +SKIP
>>> wf = build_my_workflow(errors_dir=str(runner.errors_dir))  # doctest: +SKIP
>>> runner.run(wf)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from nipype import config as nipype_config
from nipype import logging as nipype_logging
from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from bids_hrf.config import Config
from bids_hrf.errors import BidsHrfError, OutputError, ValidationErrors

LOGGER = logging.getLogger("bids_hrf")


class WorkflowRunner:
    """Run workflows of one analysis level with the execution settings of a ``Config``.

    Parameters
    ----------
    config : Config
        Execution settings: work directory, ``nprocs``, ``mem_gb``, ``plugin``,
        ``plugin_args``, ``stop_on_first_crash``, ``verbose``.
    level : str
        Name of the level (``participant`` or ``group``), used in the errors folder name.

    Attributes
    ----------
    work_dir : pathlib.Path
        nipype's working directory (created, nipype configured, on construction).
    errors_dir : pathlib.Path
        Folder the interfaces write user errors into (pass it to the workflow factory);
        removed after :meth:`run`.
    """

    def __init__(self, config: Config, level: str) -> None:
        self.config = config
        self.work_dir = config.effective_work_dir
        prefix = "" if level == "participant" else f"{level}_"
        self.errors_dir = (self.work_dir / "errors"
                           / f"{prefix}{os.getpid()}_{int(time.time())}")
        configure_nipype(config, self.work_dir)

    def run(self, wf: pe.Workflow) -> str:
        """Run ``wf`` in the work directory; return the plugin used.

        Raises
        ------
        BidsHrfError
            The steps' user errors in one line (several: :class:`ValidationErrors`), or a
            pointer to the crash files when a step failed without one.
        """
        wf.base_dir = str(self.work_dir)
        set_omp_nthreads(wf, omp_nthreads(self.config))
        n_nodes = count_steps(wf)
        plugin, plugin_args = plugin_settings(self.config, n_nodes)
        LOGGER.info("running %d steps with nipype's %s plugin (work dir %s)", n_nodes, plugin,
                    self.work_dir)
        try:
            wf.run(plugin=plugin, plugin_args=plugin_args)
        except RuntimeError as exc:
            raise_workflow_errors(self.errors_dir, exc, self.work_dir)
        finally:
            shutil.rmtree(self.errors_dir, ignore_errors=True)
        return plugin


def configure_nipype(config: Config, work: Path) -> None:
    """Quiet, resumable nipype settings with crash files in the work directory."""
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the work directory {work}: {exc.strerror}",
                          fix="give a writable -w/--work-dir") from exc
    level = "INFO" if config.verbose >= 2 else "CRITICAL"
    nipype_config.update_config({
        "execution": {"crashdump_dir": str(work / "crashes"), "crashfile_format": "txt",
                      "stop_on_first_crash": str(config.stop_on_first_crash).lower(),
                      "remove_unnecessary_outputs": "false",
                      # Files are known by path, size and modification time (nipype's
                      # default, as in fMRIPrep): content hashing read every input in full
                      # at each node (a 91k x 300 CIFTI run: ~17 s of a 2-minute run).
                      "hash_method": "timestamp",
                      "create_report": "false", "poll_sleep_duration": 0.2,
                      "local_hash_check": "true"},
        "monitoring": {"enabled": "false"},
        # nipype logs a failing node with its traceback at ERROR level; bids-hrf reports
        # the failure in one line itself, so nipype only speaks with -vv.
        "logging": {"workflow_level": level, "interface_level": level, "utils_level": level,
                    "log_to_file": "false"},
    })
    nipype_logging.update_logging(nipype_config)


def plugin_settings(config: Config, n_nodes: int) -> tuple[str, dict]:
    """nipype plugin name and arguments for ``config`` (with a progress callback)."""
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
        args["status_callback"] = _progress_callback(plugin, n_nodes)
    return plugin, args


def _progress_callback(plugin: str, n_nodes: int):
    state = {"done": 0, "started": set()}

    def status(node, status_name):
        # nipype's Linear plugin also reports "end" for nodes skipped after a failure
        if status_name == "start":
            state["started"].add(node.fullname)
        elif status_name == "end" and node.fullname in state["started"]:
            state["done"] += 1
            LOGGER.info("[%d/%d] %s done%s", state["done"], n_nodes, _short(node.fullname),
                        _peak_memory(plugin))
        elif status_name == "exception":
            LOGGER.error("step %s failed", _short(node.fullname))

    return status


def _short(fullname: str) -> str:
    return fullname.replace("bids_hrf_wf.", "")


def _peak_memory(plugin: str) -> str:
    """`` (peak memory so far X GB)`` when steps run in this process (Linear plugin)."""
    if plugin != "Linear":
        return ""
    try:
        import resource  # POSIX only: imported where used

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return ""
    return f" (peak memory so far {kib / 1024 ** 2:.2f} GB)"


def available_cpus() -> int:
    """CPUs this process may use (its affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def omp_nthreads(config: Config) -> int:
    """``--omp-nthreads``, or the CPUs shared among the ``--nprocs`` processes."""
    if config.omp_nthreads:
        return int(config.omp_nthreads)
    return max(1, available_cpus() // max(1, config.nprocs))


def set_omp_nthreads(wf: pe.Workflow, n_threads: int | None) -> None:
    """Give ``--omp-nthreads`` to every step that takes it (threadpoolctl limits applied in
    whichever process or cluster node runs the step)."""
    for node in wf._get_all_nodes():
        if "omp_nthreads" in node.inputs.copyable_trait_names():
            node.inputs.omp_nthreads = int(n_threads or 0)


def count_steps(wf: pe.Workflow) -> int:
    """Nodes that really run (nipype drops identity nodes before running)."""
    return sum(not isinstance(n.interface, IdentityInterface) for n in wf._get_all_nodes())


def collect_errors(errors_dir: Path) -> list[dict]:
    """The error records the steps wrote into ``errors_dir`` (oldest first)."""
    out = []
    for path in sorted(errors_dir.glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out


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


def raise_workflow_errors(errors_dir: Path, exc: Exception, work: Path) -> None:
    """Raise the steps' errors found in ``errors_dir`` (or a crash-file pointer)."""
    unique: list[dict] = []
    for item in map(_explain, collect_errors(errors_dir)):
        if item["message"] not in [u["message"] for u in unique]:
            unique.append(item)
    errs = []
    for item in unique:
        err = BidsHrfError(item["message"])
        err.exit_code = item.get("exit_code", 1)
        errs.append(err)
    if len(errs) == 1:
        raise errs[0] from exc
    if errs:
        raise ValidationErrors(errs) from exc
    raise BidsHrfError(f"some steps failed ({str(exc).splitlines()[0]})",
                       fix=f"see the crash files in {work / 'crashes'} or rerun with -vv") \
        from exc
