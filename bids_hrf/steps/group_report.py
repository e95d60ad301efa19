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


#: Words for the height thresholds of ``--height-control``.
_HEIGHT_WORDS = {
    "fpr": "p < {alpha:g} for each {one}, not corrected for the number of {many}",
    "fdr": "a false discovery rate below {alpha:g} across the {many} of the map",
    "bonferroni": "a family-wise error rate below {alpha:g} (Bonferroni over the {many})",
}


def _height_words(control: str, alpha: float) -> str:
    from bids_hrf.reports.figures_surface import sample_noun

    return _HEIGHT_WORDS.get(control, control + " p < {alpha:g}").format(
        alpha=alpha, one=sample_noun(singular=True), many=sample_noun())


def threshold_words(settings: dict, z_threshold: float | None) -> str:
    """What the height threshold of a group map means, in words.

    Parameters
    ----------
    settings : dict
        Group settings (``height_control``, ``alpha``, ``cluster_threshold``).
    z_threshold : float or None
        The |z| threshold used (None or inf when no voxel survives).

    Returns
    -------
    str
        E.g. "shown where |z| > 3.29, i.e. p < 0.001 for each voxel, not corrected for the
        number of voxels".
    """
    from bids_hrf.reports.figures_surface import sample_noun

    words = _height_words(str(settings.get("height_control", "fpr")),
                          float(settings.get("alpha", 0.001)))
    if z_threshold is None or not np.isfinite(z_threshold):
        text = f"no {sample_noun(singular=True)} reaches {words}, so none is shown"
    else:
        text = f"shown where |z| > {z_threshold:.2f}, i.e. {words}"
    if settings.get("cluster_threshold"):
        text += (f", in clusters of at least {int(settings['cluster_threshold'])} "
                 f"{sample_noun()}")
    return text


def _dof_text(dof) -> str:
    try:
        value = float(dof)
    except (TypeError, ValueError):
        return "n/a"
    return f"{value:.0f}" if value == round(value) else f"{value:.1f}"


def _participant_label(value) -> str:
    text = str(value)
    return text if text.startswith("sub-") else f"sub-{text}"


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
    from bids_hrf.reports.figures_surface import set_surface_geometry
    from bids_hrf.surface.samples import SampleGeometry

    geometry = next((r.get("geometry") for r in results if r and r.get("geometry")), None)
    set_surface_geometry(SampleGeometry.load(geometry) if geometry else None)
    report = Report("group", subtitle="bids-hrf group report", logger=LOGGER,
                    n_procs=max(1, int(config.get("nprocs") or 1)))
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
    from bids_hrf.reports.figures_surface import sample_noun

    sec = report.section("Second-level GLM")
    s = result.get("settings", {})
    words = _height_words(str(s.get("height_control", "fpr")), float(s.get("alpha", 0.001)))
    report.add_text(sec, f"Model: {result.get('model')}. Inputs: each participant's "
                         "fixed-effects contrast maps (several sessions combined by "
                         f"precision-weighted fixed effects). Maps show the {sample_noun()} "
                         f"that reach {words}"
                         + (f", in clusters of at least {s['cluster_threshold']} {sample_noun()}"
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
        design = pd.read_csv(analysis["design"], sep="\t", index_col=0,
                             dtype={"participant": str})
        design.index = [_participant_label(x) for x in design.index]
        design.index.name = "participant"
        report.add_figure(asec, F.plot_design_matrix, design, row_label="participant",
                          row_names=list(design.index),
                          caption=f"Design matrix: one row per participant's map "
                                  f"({len(design)} maps), {design.shape[1]} column(s), each "
                                  "scaled to its largest magnitude")
        report.add_table(asec, design.reset_index(),
                         caption="Group design (one row per participant's map)")
        diag = _read(analysis.get("diagnostics"))
        if diag is not None:
            report.add_table(asec, diag, caption="Model diagnostics: mean effect of each map "
                             "in the group mask, its robust z across maps (|z| > 3: "
                             "possible outlier) and its leverage")
            outliers = diag.loc[diag["robust_z_of_mean"].abs() > 3, "participant"].tolist()
            if outliers:
                report.add_warning(f"{title}: possible outliers {', '.join(outliers)}")
        background = ("Background: MNI152 template cropped to the data's field of view"
                      if sample_noun() == "voxels" else "Views of the inflated cortical mesh "
                      "(values per sample in file order when no mesh of the space is offline)")
        for gname, paths in analysis["maps"].items():
            z_thr = paths.get("z_threshold", 3.09)
            thr = (z_thr if z_thr is not None and np.isfinite(z_thr)
                   else float(paths.get("max_z", 0)) + 1)
            test = "F" if str(paths.get("type", "t")).upper() == "F" else "t"
            report.add_figure(asec, F.plot_stat_map, paths["z"], threshold=thr,
                              title=gname,
                              caption=f"Group contrast {gname}: z map of the {test} test "
                                      f"with {_dof_text(paths.get('dof'))} degrees of "
                                      f"freedom, {threshold_words(s, z_thr)}. {background}")
            for name in ("logpFweVoxel", "logpFweClusterSize"):
                if paths.get(name):
                    report.add_figure(asec, F.plot_stat_map, paths[name],
                                      threshold=-np.log10(0.05), title=f"{gname} ({name})",
                                      stat="-log10 p",
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
    compared = any(a.get("comparison") for a in result["analyses"])
    report.add_text(sec, "Every subject's parcel HRFs (sessions averaged) with their time to "
                         "peak, FWHM and height; group means with +/- 1 sd across subjects"
                         + ("; per-parcel Welch t tests of each parameter between groups "
                            "with Benjamini-Hochberg FDR across parcels "
                            f"(q < {result['fdr']:g})" if compared else
                            " (no group comparison: the group model has one group)") + ".")
    for analysis in result["analyses"]:
        title = f"task-{analysis['task']} {analysis.get('desc') or ''} HRFs"
        asec = report.section(title, parent=sec)
        summary = _read(analysis["summary"])
        params = _read(analysis["params"])
        report.add_figure(asec, F.plot_group_hrfs, summary,
                          caption=f"Mean HRF per parcel ({len(analysis['subjects'])} "
                                  "participants), band: +/- 1 sd")
        if _fixed_hrfs(params):
            report.add_text(asec, "Every participant has the same HRF in every parcel (the "
                                  "HRF was fixed, not estimated: "
                                  f"{analysis.get('desc') or 'canonical'}), so HRF "
                                  "parameters cannot differ between participants or groups: "
                                  "no parameter figure or comparison is shown. Estimate HRFs "
                                  "(e.g. --hrf-method jde-vem) to compare them.")
            continue
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


def _fixed_hrfs(params: pd.DataFrame | None) -> bool:
    """Whether every participant has the same HRF parameters in each parcel (fixed HRF)."""
    if params is None or not len(params) or "parcel" not in params:
        return False
    cols = [c for c in ("time_to_peak", "fwhm", "height") if c in params]
    if not cols:
        return False
    spread = params.groupby("parcel")[cols].agg(lambda v: np.nanmax(v) - np.nanmin(v)
                                               if np.isfinite(v).any() else 0.0)
    return bool(np.all(np.abs(spread.to_numpy(dtype=float)) <= 1e-9))


#: Measures averaged and tested in Fisher z (their section uses Fisher z throughout).
_FISHER = ("correlation", "partial correlation")


def _in_unit(matrix: np.ndarray, fisher: bool) -> np.ndarray:
    from bids_hrf.connectivity import fisher_z

    return fisher_z(matrix) if fisher else matrix


def _is_zero(matrix: np.ndarray) -> bool:
    """Whether the off-diagonal values are numerically zero (e.g. the tangent mean of all)."""
    off = matrix[~np.eye(matrix.shape[0], dtype=bool)]
    return bool(off.size == 0 or np.nanmax(np.abs(off)) < 1e-6)


def _edges_in_unit(edges: pd.DataFrame, means: dict[str, np.ndarray], fisher: bool):
    """The edge table with group means (and their difference) in the section's unit."""
    if not fisher:
        return edges
    out = edges.copy()
    i, j = out["i"].to_numpy(dtype=int), out["j"].to_numpy(dtype=int)
    levels = [c.removeprefix("mean_") for c in out.columns if c.startswith("mean_")]
    for level in levels:
        if level in means:
            out[f"mean_{level}"] = _in_unit(means[level], True)[i, j]
    if len(levels) == 2 and all(lv in means for lv in levels):
        out["difference"] = out[f"mean_{levels[1]}"] - out[f"mean_{levels[0]}"]
    return out


def _connectivity_section(report, result: dict) -> None:
    from bids_hrf.reports import figures as F

    if not result.get("analyses"):
        return
    sec = report.section("Connectivity")
    grouped = any(len(a.get("means") or {}) > 1 for a in result["analyses"])
    tests = ("averaged per participant then per group; edge-wise Welch t tests between "
             f"groups with Benjamini-Hochberg FDR (q < {result['fdr']:g}) and "
             "within/between-network means. " if grouped else
             "averaged per participant then over participants (one group: no group "
             "comparison), and within/between-network means. ")
    report.add_text(sec, "Connectivity matrices of every run (nilearn ConnectivityMeasure) "
                         "from the cleaned parcel series (task runs: conditions, shifted "
                         "copies and the other design columns regressed out first), "
                         + tests +
                         "Correlation and partial correlation are averaged and tested in "
                         "Fisher z (z = arctanh r), and every figure and table of their "
                         "sections is in Fisher z; tangent values are in tangent-space units "
                         "(the log of the matrix whitened by the group's mean covariance).")
    for analysis in result["analyses"]:
        title = (f"task-{analysis['task']} {analysis['measure']}"
                 + (" (deconvolved activity)" if analysis["source"] == "activity" else ""))
        asec = report.section(title, parent=sec)
        names = analysis["names"]
        nets = analysis.get("networks") or {}
        networks = [nets.get(n, "other") for n in names] if nets else None
        fisher = analysis["measure"] in _FISHER
        unit = "Fisher z" if fisher else "tangent-space units"
        means = {}
        for level, path in analysis.get("means", {}).items():
            means[level] = _read(path).to_numpy(dtype=float)
            if _is_zero(means[level]):
                report.add_text(asec, f"The mean {analysis['measure']} matrix of {level} is "
                                      "zero (below 1e-6 everywhere): "
                                      + ("tangent matrices are taken at the mean of these "
                                         "same participants, so their average vanishes by "
                                         "construction. " if analysis["measure"] == "tangent"
                                         else "") + "It is not drawn.")
                continue
            report.add_figure(asec, F.plot_connectivity_matrix,
                              _in_unit(means[level], fisher), names, networks,
                              title=f"{analysis['measure']}: {level}", unit=unit,
                              caption=f"Mean {analysis['measure']} matrix ({level}), in "
                                      f"{unit}")
        edges = _read(analysis.get("edges"))
        if edges is not None:
            edges = _edges_in_unit(edges, means, fisher)
            report.add_figure(asec, F.plot_edge_differences, edges, names,
                              caption="Group difference per edge (Welch t statistic; "
                                      "circles: FDR-significant)")
            sig = edges[edges["significant"].astype(bool)]
            shown = (sig if len(sig) else edges.nsmallest(10, "p")).drop(
                columns=["i", "j"], errors="ignore")
            report.add_table(asec, shown,
                             caption=(f"Edges that differ between groups (FDR); means and "
                                      f"difference in {unit}" if len(sig) else
                                      f"No edge differs after FDR; smallest p values; means "
                                      f"and difference in {unit}"))
        comp = _read(analysis.get("network_comparison"))
        if comp is not None:
            report.add_table(asec, comp, caption="Within/between-network connectivity "
                                                 f"compared between groups, in {unit}")
        elif analysis.get("network_summary"):
            summ = _read(analysis["network_summary"])
            report.add_table(asec, summ.groupby(["network_a", "network_b", "kind"],
                                                as_index=False)["value"].mean(),
                             caption=f"Mean within/between-network connectivity, in {unit}")
