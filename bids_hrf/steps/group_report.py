"""The group report: ``group.html`` from the group steps' results."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

LOGGER = logging.getLogger("bids_hrf")


def group_report_step(output_dir: str, config: dict, results: list[dict]) -> Path:
    """Build and write ``OUTPUT_DIR/group.html``.

    Parameters
    ----------
    results : list of dict
        Results of the group steps; each has a ``kind`` or the keys of
        :func:`bids_hrf.steps.group.group_glm_step`'s result.
    """
    from bids_hrf.reports import Report
    from bids_hrf.reports import figures as F

    report = Report("group", subtitle="bids-hrf group report", logger=LOGGER)
    report.add_metadata("Derivatives", output_dir)
    report.add_metadata("Group model", config.get("group_model") or "one-sample")
    report.add_metadata("Space", config["space"])
    for result in results:
        if "analyses" not in result:
            continue
        sec = report.section("Second-level GLM")
        report.add_text(sec, f"Model: {result.get('model')}. Inputs: each participant's "
                             "fixed-effects contrast maps (sessions combined by fixed "
                             "effects). Maps thresholded at p < 0.001 uncorrected for display.")
        for analysis in result["analyses"]:
            title = f"task-{analysis['task']} contrast-{analysis['contrast']}" + (
                f" ({analysis['desc']})" if analysis.get("desc") else "")
            asec = report.section(title, parent=sec)
            if analysis.get("error"):
                report.add_warning(f"{title}: not analysed: {analysis['error']}")
                report.add_text(asec, f"Not analysed: {analysis['error']}")
                continue
            if analysis.get("missing"):
                report.add_warning(f"{title}: missing for "
                                   + ", ".join(f"sub-{s}" for s in analysis["missing"]))
            design = pd.read_csv(analysis["design"], sep="\t")
            report.add_table(asec, design, caption="Group design (one row per participant)")
            for gname, paths in analysis["maps"].items():
                report.add_figure(asec, F.plot_stat_map, paths["z"], threshold=3.09,
                                  title=f"{gname} (z)",
                                  caption=f"Group contrast {gname}: z map, p < 0.001 unc.")
                if paths.get("clusters"):
                    clusters = pd.read_csv(paths["clusters"], sep="\t")
                    report.add_table(asec, clusters, caption=f"Clusters of {gname}")
    return report.write(Path(output_dir) / "group.html")
