"""The group report: ``group.html`` from the group steps' results (design, diagnostics,
maps, cluster tables, group HRFs, connectivity matrices and group differences)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

LOGGER = logging.getLogger("bids_hrf")


def _read(path: str | None) -> pd.DataFrame | None:
    if not path or not Path(path).is_file():
        return None
    return pd.read_csv(path, sep="\t")


def group_report_step(output_dir: str, config: dict, results: list[dict]) -> Path:
    """Build and write ``OUTPUT_DIR/group.html``.

    Parameters
    ----------
    output_dir : str
        OUTPUT_DIR.
    config : dict
        :meth:`bids_hrf.config.Config.to_dict`.
    results : list of dict
        Results of the group steps, each with a ``kind`` (``glm``, ``hrf``,
        ``connectivity``).
    """
    from bids_hrf.reports import Report

    report = Report("group", subtitle="bids-hrf group report", logger=LOGGER)
    report.add_metadata("Derivatives", output_dir)
    report.add_metadata("Group model", config.get("group_model") or "one-sample")
    report.add_metadata("Space", config["space"])
    for result in results:
        kind = result.get("kind", "glm" if "analyses" in result else None)
        if kind == "glm":
            _glm_section(report, result)
        elif kind == "hrf":
            _hrf_section(report, result)
        elif kind == "connectivity":
            _connectivity_section(report, result)
    from bids_hrf.reports.methods import add_methods_section

    add_methods_section(report, _methods_config(output_dir, config), "group")
    return report.write(Path(output_dir) / "group.html")


#: Settings of the group level; the others (confounds, HRF, GLM) come from the participant run.
_GROUP_KEYS = ("group_model", "group_permutations", "group_alpha", "group_height_control",
               "cluster_threshold", "group_fdr", "connectivity", "connectivity_activity",
               "connectivity_task_regression", "networks")


def _methods_config(output_dir: str, config: dict) -> dict:
    """The participant-level configuration (latest ``logs/config_*.json``) + the group's."""
    logs = Path(output_dir) / "logs"
    paths = sorted(logs.glob("config_*.json"), key=lambda q: q.stat().st_mtime, reverse=True)
    for path in paths:
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(previous, dict) and previous.get("analysis_level") == "participant":
            return {**previous, **{k: config[k] for k in _GROUP_KEYS if k in config}}
    return config


def _glm_section(report, result: dict) -> None:
    from bids_hrf.reports import figures as F

    sec = report.section("Second-level GLM")
    s = result.get("settings", {})
    report.add_text(sec, f"Model: {result.get('model')}. Inputs: each participant's "
                         "fixed-effects contrast maps (several sessions combined by "
                         "precision-weighted fixed effects). Maps are thresholded at "
                         f"{s.get('height_control', 'fpr')} p < {s.get('alpha', 0.001):g}"
                         + (f" with clusters of at least {s['cluster_threshold']} voxels"
                            if s.get("cluster_threshold") else "")
                         + (f"; permutation inference with {s['n_perm']} permutations"
                            if s.get("n_perm") else "") + ".")
    if not result.get("analyses"):
        report.add_text(sec, "No subject-level contrast maps were found.")
    for analysis in result.get("analyses", []):
        title = f"task-{analysis['task']} contrast-{analysis['contrast']}" + (
            f" ({analysis['desc']})" if analysis.get("desc") else "")
        asec = report.section(title, parent=sec)
        if analysis.get("missing"):
            report.add_warning(f"{title}: missing for "
                               + ", ".join(f"sub-{x}" for x in analysis["missing"]))
        if analysis.get("error"):
            report.add_warning(f"{title}: not analysed: {analysis['error']}")
            report.add_text(asec, f"Not analysed: {analysis['error']}")
            continue
        if analysis.get("dropped"):
            report.add_warning(f"{title}: left out: " + "; ".join(
                f"sub-{k} ({v})" for k, v in analysis["dropped"].items()))
        design = pd.read_csv(analysis["design"], sep="\t", index_col=0)
        report.add_figure(asec, F.plot_design_matrix, design,
                          caption=f"Design matrix ({len(design)} maps, "
                                  f"{design.shape[1]} columns)")
        report.add_table(asec, design.reset_index(), caption="Group design (one row per map)")
        diag = _read(analysis.get("diagnostics"))
        if diag is not None:
            report.add_table(asec, diag, caption="Model diagnostics: mean effect of each map "
                             "in the group mask, its robust z across maps (|z| > 3: "
                             "possible outlier) and its leverage")
            outliers = diag.loc[diag["robust_z_of_mean"].abs() > 3, "participant"].tolist()
            if outliers:
                report.add_warning(f"{title}: possible outliers {', '.join(outliers)}")
        for gname, paths in analysis["maps"].items():
            thr = paths.get("z_threshold", 3.09)
            thr = thr if thr is not None and np.isfinite(thr) else float(paths.get("max_z", 0)) + 1
            report.add_figure(asec, F.plot_stat_map, paths["z"], threshold=thr,
                              title=f"{gname} (z)",
                              caption=f"Group contrast {gname} ({paths.get('type', 't')}, "
                                      f"dof {paths.get('dof', 'n/a')}): z map, "
                                      f"{paths.get('threshold', 'p < 0.001 unc.')}")
            for name in ("logpFweVoxel", "logpFweClusterSize"):
                if paths.get(name):
                    report.add_figure(asec, F.plot_stat_map, paths[name],
                                      threshold=-np.log10(0.05), title=f"{gname} ({name})",
                                      caption=f"{gname}: -log10 FWE p ({name}), "
                                              "shown where p < 0.05")
            clusters = _read(paths.get("clusters"))
            if clusters is not None:
                report.add_table(asec, clusters, caption=f"Clusters of {gname}"
                                 + ("" if len(clusters) else ": none survive"))


def _hrf_section(report, result: dict) -> None:
    from bids_hrf.reports import figures as F

    if not result.get("analyses"):
        return
    sec = report.section("Group HRFs")
    report.add_text(sec, "Every subject's parcel HRFs (sessions averaged) with their time to "
                         "peak, FWHM and height; group means with +/- 1 sd across subjects; "
                         "per-parcel Welch t tests of each parameter between groups with "
                         f"Benjamini-Hochberg FDR across parcels (q < {result['fdr']:g}).")
    for analysis in result["analyses"]:
        title = f"task-{analysis['task']} {analysis.get('desc') or ''} HRFs"
        asec = report.section(title, parent=sec)
        summary = _read(analysis["summary"])
        params = _read(analysis["params"])
        report.add_figure(asec, F.plot_group_hrfs, summary,
                          caption=f"Mean HRF per parcel ({len(analysis['subjects'])} "
                                  "subjects), band: +/- 1 sd")
        groups = None
        if params is not None and "group" in params and params["group"].nunique() > 1:
            groups = sorted(g for g in params["group"].astype(str).unique() if g != "n/a")
        for parameter in ("time_to_peak", "fwhm", "height"):
            report.add_figure(asec, F.plot_hrf_parameter_comparison, params, parameter,
                              groups=groups, caption=f"{parameter} per subject and parcel")
        comp = _read(analysis.get("comparison"))
        if comp is not None:
            sig = comp[comp["significant"].astype(bool)]
            report.add_table(asec, sig if len(sig) else comp.nsmallest(10, "p"),
                             caption="Parcels whose HRF parameters differ between groups "
                                     "(FDR)" if len(sig) else
                                     "No parcel differs after FDR; smallest p values")


def _connectivity_section(report, result: dict) -> None:
    from bids_hrf.reports import figures as F

    if not result.get("analyses"):
        return
    sec = report.section("Connectivity")
    report.add_text(sec, "Connectivity matrices of every run (nilearn ConnectivityMeasure) "
                         "from the cleaned parcel series (task runs: conditions, shifted "
                         "copies and the other design columns regressed out first), "
                         "averaged per subject (correlations in Fisher z) then per group; "
                         "edge-wise Welch t tests between groups with Benjamini-Hochberg FDR "
                         f"(q < {result['fdr']:g}) and within/between-network means.")
    for analysis in result["analyses"]:
        title = (f"task-{analysis['task']} {analysis['measure']}"
                 + (" (deconvolved activity)" if analysis["source"] == "activity" else ""))
        asec = report.section(title, parent=sec)
        names = analysis["names"]
        nets = analysis.get("networks") or {}
        networks = [nets.get(n, "other") for n in names] if nets else None
        for level, path in analysis.get("means", {}).items():
            mat = _read(path)
            report.add_figure(asec, F.plot_connectivity_matrix, mat.to_numpy(), names,
                              networks, title=f"{analysis['measure']}: {level}",
                              caption=f"Mean {analysis['measure']} matrix ({level})")
        edges = _read(analysis.get("edges"))
        if edges is not None:
            report.add_figure(asec, F.plot_edge_differences, edges, names,
                              caption="Group difference per edge (t); circles: FDR-significant")
            sig = edges[edges["significant"].astype(bool)]
            report.add_table(asec, sig if len(sig) else edges.nsmallest(10, "p"),
                             caption="Edges that differ between groups (FDR)" if len(sig)
                             else "No edge differs after FDR; smallest p values")
        comp = _read(analysis.get("network_comparison"))
        if comp is not None:
            report.add_table(asec, comp, caption="Within/between-network connectivity "
                                                 "compared between groups")
        elif analysis.get("network_summary"):
            summ = _read(analysis["network_summary"])
            report.add_table(asec, summ.groupby(["network_a", "network_b", "kind"],
                                                as_index=False)["value"].mean(),
                             caption="Mean within/between-network connectivity (Fisher z for "
                                     "correlation-type measures)")
