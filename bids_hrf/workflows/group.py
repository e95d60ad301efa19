"""Group-level nipype workflow (``init_group_wf``); :mod:`bids_hrf.api` runs it."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_hrf.config import Config
from bids_hrf.interfaces.group import GroupConnectivity, GroupGLM, GroupHRF, GroupReport
from bids_hrf.interfaces.steps import DerivativesSink
from bids_hrf.options import GroupOptions


def init_group_wf(config: Config, inventory: list[dict], errors_dir: str) -> pe.Workflow:
    """Group workflow: second-level GLMs, group HRFs and connectivity, then the sink and
    ``group.html``."""
    wf = pe.Workflow(name="bids_hrf_group_wf")
    common = {"inventory": inventory, "options": GroupOptions.from_config(config).to_dict(),
              "errors_dir": errors_dir}
    glm = pe.Node(GroupGLM(**common, nprocs=config.nprocs), name="group_glm")
    hrf = pe.Node(GroupHRF(**common), name="group_hrf")
    conn = pe.Node(GroupConnectivity(**common), name="group_connectivity")
    merge = pe.Node(niu.Merge(3), name="merge_records")
    results = pe.Node(niu.Merge(3), name="merge_results")
    sink = pe.Node(DerivativesSink(output_dir=str(config.output_dir), errors_dir=errors_dir),
                   name="sink")
    for k, node in enumerate((glm, hrf, conn), start=1):
        wf.connect([(node, merge, [("records", f"in{k}")]),
                    (node, results, [("result", f"in{k}")])])
    wf.connect([(merge, sink, [("out", "records")]),
                (glm, sink, [("result", "prepared")])])  # surface maps: their geometry
    if config.write_report:
        report = pe.Node(GroupReport(output_dir=str(config.output_dir),
                                     config=config.to_dict(), errors_dir=errors_dir),
                         name="report", n_procs=max(1, config.nprocs))
        wf.connect([(results, report, [("out", "results")]),
                    (sink, report, [("written", "written")])])
    return wf
