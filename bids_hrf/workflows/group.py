"""Group-level nipype workflow (``init_group_wf``) and its runner."""

from __future__ import annotations

import logging
import os
import time

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_hrf.config import Config
from bids_hrf.interfaces.group import GroupConnectivity, GroupGLM, GroupHRF, GroupReport
from bids_hrf.interfaces.steps import DerivativesSink

LOGGER = logging.getLogger("bids_hrf")


def init_group_wf(config: Config, inventory: list[dict], errors_dir: str) -> pe.Workflow:
    """Group workflow: second-level GLMs, group HRFs and connectivity, then the sink and
    ``group.html``."""
    wf = pe.Workflow(name="bids_hrf_group_wf")
    participants = config.bids_dir / "participants.tsv"
    common = {"inventory": inventory, "space": config.space,
              "participants": str(participants) if participants.is_file() else "",
              "group_model": config.group_model, "errors_dir": errors_dir}
    glm = pe.Node(GroupGLM(**common, nprocs=config.nprocs, settings={
        "alpha": config.group_alpha, "height_control": config.group_height_control,
        "cluster_threshold": config.cluster_threshold,
        "n_perm": config.group_permutations}), name="group_glm")
    hrf = pe.Node(GroupHRF(**common, settings={"fdr": config.group_fdr}), name="group_hrf")
    conn = pe.Node(GroupConnectivity(**common, settings={
        "kinds": list(config.connectivity), "fdr": config.group_fdr,
        "networks": str(config.networks) if config.networks else None,
        "activity": config.connectivity_activity,
        "task_regression": config.connectivity_task_regression,
        "bids_dir": str(config.bids_dir)}), name="group_connectivity")
    merge = pe.Node(niu.Merge(3), name="merge_records")
    results = pe.Node(niu.Merge(3), name="merge_results")
    sink = pe.Node(DerivativesSink(output_dir=str(config.output_dir), errors_dir=errors_dir),
                   name="sink")
    for k, node in enumerate((glm, hrf, conn), start=1):
        wf.connect([(node, merge, [("records", f"in{k}")]),
                    (node, results, [("result", f"in{k}")])])
    wf.connect([(merge, sink, [("out", "records")])])
    if config.write_report:
        report = pe.Node(GroupReport(output_dir=str(config.output_dir),
                                     config=config.to_dict(), errors_dir=errors_dir),
                         name="report")
        wf.connect([(results, report, [("out", "results")]),
                    (sink, report, [("written", "written")])])
    return wf


def run_group(config: Config) -> dict:
    """Run the group level on the participant outputs already in OUTPUT_DIR."""
    import shutil

    from bids_hrf.api import _configure_nipype, _count_steps, _plugin, _raise_workflow_errors
    from bids_hrf.io.outputs import inventory

    LOGGER.info("bids-hrf group level on %s", config.output_dir)
    inv = inventory(config.output_dir)
    subjects = sorted({s for s in inv["sub"] if s})
    LOGGER.info("participant outputs of %d subject(s): %s", len(subjects),
                ", ".join(f"sub-{s}" for s in subjects))
    work = config.effective_work_dir
    errors_dir = work / "errors" / f"group_{os.getpid()}_{int(time.time())}"
    _configure_nipype(config, work)
    wf = init_group_wf(config, inv.to_dict(orient="records"), str(errors_dir))
    wf.base_dir = str(work)
    n_nodes = _count_steps(wf)
    plugin, plugin_args = _plugin(config, n_nodes)
    try:
        wf.run(plugin=plugin, plugin_args=plugin_args)
    except RuntimeError as exc:
        _raise_workflow_errors(errors_dir, exc, work)
    finally:
        shutil.rmtree(errors_dir, ignore_errors=True)
    report = config.output_dir / "group.html"
    if report.exists():
        LOGGER.info("report: %s", report)
    LOGGER.info("group level finished: outputs in %s", config.output_dir / "group")
    return {"subjects": subjects, "reports": [str(report)] if report.exists() else []}
