"""File-level connectivity step: per-run connectivity matrices from the cleaned parcel time
series (and optionally deconvolved activity), group means, edge-wise and network-level
group comparisons."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bids_hrf.io.derivatives import bids_label
from bids_hrf.io.events import event_conditions, read_events
from bids_hrf.options import GroupOptions
from bids_hrf.steps.group import (
    clean,
    inventory_frame,
    parse_model,
    read_participants,
    subject_groups,
)
from bids_hrf.steps.sink import output

LOGGER = logging.getLogger("bids_hrf")
_FISHER = ("correlation", "partial correlation")
_RUN_ENTITIES = ("sub", "ses", "task", "acq", "run", "echo")


def _runs(inv: pd.DataFrame, space: str, source: str) -> dict[tuple, pd.DataFrame]:
    """Per-run inputs per (task, seg): the cleaned parcel series or activity maps."""
    if source == "timeseries":
        sel = inv[(inv["suffix"] == "timeseries") & (inv["stat"] == "mean")
                  & inv["desc"].isna() & inv["sub"].notna() & inv["seg"].notna()]
    else:
        sel = inv[(inv["suffix"] == "bold") & (inv["desc"].isin(["activity", "innovation"]))
                  & inv["sub"].notna() & inv["stat"].isna()]
    sel = sel[sel["space"] == space]
    out = {}
    if sel.empty:
        return out
    for (task, seg), rows in sel.groupby(["task", sel["seg"].fillna("")]):
        if not seg:  # activity maps: name them after the subjects' parcellation
            segs = inv.loc[(inv["suffix"] == "dseg") & (inv["task"] == task), "seg"].dropna()
            seg = str(segs.iloc[0]) if len(segs) else ""
        out[(task, seg)] = rows.sort_values("path")
    return out


def _activity_series(row: pd.Series, inv: pd.DataFrame) -> pd.DataFrame | None:
    """Parcel means of a deconvolved activity map, with the subject's parcellation."""
    from nilearn.maskers import NiftiLabelsMasker

    dseg = inv[(inv["suffix"] == "dseg") & (inv["sub"] == row["sub"])
               & (inv["task"] == row["task"]) & (inv["extension"] == ".nii.gz")]
    if clean(row["ses"]) is not None:
        dseg = dseg[dseg["ses"] == row["ses"]]
    labels = inv[(inv["suffix"] == "dseg") & (inv["extension"] == ".tsv")
                 & (inv["sub"] == row["sub"]) & (inv["task"] == row["task"])]
    if dseg.empty or labels.empty:
        return None
    table = pd.read_csv(labels["path"].iloc[0], sep="\t")
    masker = NiftiLabelsMasker(dseg["path"].iloc[0], standardize=False, keep_masked_labels=False)
    data = masker.fit_transform(row["path"])
    sidecar = Path(str(row["path"]).replace(".nii.gz", ".json"))
    try:  # leading dummy volumes are written as zeros: leave them out
        n_lead = int(json.loads(sidecar.read_text()).get("DummyVolumesZeroed", 0))
    except (OSError, ValueError):
        n_lead = 0
    data = data[n_lead:]
    names = dict(zip(table["index"].astype(int), table["name"].astype(str), strict=True))
    cols = [names.get(int(v), str(v)) for v in masker.labels_ if int(v) != 0]
    return pd.DataFrame(data[:, -len(cols):], columns=cols)


def _networks_of(inv: pd.DataFrame, seg: str, networks_tsv: str | None) -> dict | None:
    """Parcel name -> network: ``--networks`` or the atlas label table's network column."""
    from bids_hrf.connectivity import read_networks_tsv

    if networks_tsv:
        return read_networks_tsv(networks_tsv)
    sel = inv[(inv["suffix"] == "dseg") & (inv["extension"] == ".tsv") & (inv["seg"] == seg)]
    for path in sel["path"]:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        if {"name", "network"} <= set(table.columns):
            table = table[table["network"].str.strip().ne("") & table["network"].ne("n/a")]
            if table["network"].nunique() > 1:
                return dict(zip(table["name"], table["network"], strict=True))
    return None


def _subject_mean(stack: np.ndarray, kind: str) -> np.ndarray:
    """Average runs of one subject (in Fisher z for correlations)."""
    if kind in _FISHER:
        from bids_hrf.connectivity import fisher_z

        return np.tanh(fisher_z(stack).mean(axis=0))
    return stack.mean(axis=0)


def _write_matrix(path: Path, matrix: np.ndarray, names: list[str]) -> None:
    pd.DataFrame(matrix, columns=names).to_csv(path, sep="\t", index=False,
                                               float_format="%.8g")


def connectivity_step(inv_records: list[dict], options: GroupOptions,
                      out_dir: str | Path) -> tuple[dict, list[dict]]:
    """Connectivity of every run, group means and group comparisons.

    Parameters
    ----------
    inv_records : list of dict
        :func:`bids_hrf.io.outputs.inventory` rows.
    options : GroupOptions
        participants.tsv, ``--group-model`` (two-sample models give the groups compared),
        space, ``connectivity`` (measures), ``fdr``, ``networks`` (a TSV path or None),
        ``activity`` (also use deconvolved activity), ``task_regression``, ``bids_dir``.
    out_dir : path
        Working folder.

    Returns
    -------
    result : dict
        ``kind: "connectivity"`` with, per (task, atlas, source, measure), the paths of the
        group means, edge and network comparisons.
    records : list
        Per-run ``_relmat.tsv`` (subject folders) and group files.
    """
    s = {"kinds": options.connectivity, "fdr": options.fdr, "networks": options.networks,
         "activity": options.activity, "task_regression": options.task_regression,
         "bids_dir": options.bids_dir}
    space = options.space
    kinds = tuple(s["kinds"])
    out_dir = Path(out_dir)
    result = {"kind": "connectivity", "analyses": [], "fdr": s["fdr"]}
    if not kinds:
        return result, []
    inv = inventory_frame(inv_records)
    participants = read_participants(options.participants)
    spec = parse_model(options.group_model, participants)
    groups = subject_groups(spec, participants)
    records: list[dict] = []
    sources = ["timeseries"] + (["activity"] if s["activity"] else [])
    context = _Context(inv=inv, kinds=kinds, groups=groups, space=space, out_dir=out_dir,
                       settings=s)
    for source in sources:
        for (task, seg), rows in sorted(_runs(inv, space, source).items()):
            analyses, recs = _analyse(context, rows, task, seg, source)
            result["analyses"].extend(analyses)
            records.extend(recs)
    if not result["analyses"]:
        LOGGER.info("connectivity: no parcel time series in space %s", space)
    return result, records


def _task_columns(design_path: Path, bids_dir: str | None) -> list[str]:
    """Design columns of the run's conditions (``trial_type`` values of its events)."""
    import json

    sidecar = design_path.with_name(design_path.name[: -len(".tsv")] + ".json")
    try:
        sources = json.loads(sidecar.read_text()).get("Sources", [])
    except (OSError, ValueError):
        return []
    conditions: set[str] = set()
    for src in sources:
        if src.startswith("bids:raw:") and src.endswith("_events.tsv") and bids_dir:
            path = Path(bids_dir) / src[len("bids:raw:"):]
            if path.is_file():
                conditions |= set(event_conditions(read_events(path)))
    columns = pd.read_csv(design_path, sep="\t", nrows=0).columns
    return [c for c in columns if c in conditions]


def regress_task(series: pd.DataFrame, design: pd.DataFrame, task_columns: list[str],
                 lags: tuple[int, ...] = (-1, 1, 2, 3)) -> pd.DataFrame:
    """Residuals of parcel series after the task regressors, shifted copies and the
    other design columns (confounds, drifts).

    Shifted copies (``lags`` in samples) absorb responses faster or slower than the
    design's HRF, so that evoked co-activation is not read as connectivity ("background"
    connectivity of task runs).
    """
    if len(design) != len(series):
        raise ValueError(f"design has {len(design)} rows, the time series {len(series)}")
    task = design[task_columns].to_numpy(dtype=float)
    blocks = [task]
    for lag in lags:
        shifted = np.zeros_like(task)
        if lag > 0:
            shifted[lag:] = task[:-lag]
        else:
            shifted[:lag] = task[-lag:]
        blocks.append(shifted)
    # the other design columns too (confounds, drifts): the series were cleaned of the
    # confounds without the task, which leaves (I - P_confounds) task in them
    others = design.drop(columns=task_columns).to_numpy(dtype=float)
    blocks.append(np.column_stack([others, np.ones(len(design))]))
    x = np.column_stack(blocks)
    y = series.to_numpy(dtype=float)
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    return pd.DataFrame(y - x @ beta, columns=series.columns)


def _design_of(inv: pd.DataFrame, row: pd.Series) -> Path | None:
    sel = inv[(inv["suffix"] == "design") & (inv["extension"] == ".tsv")]
    for ent in ("sub", "ses", "task", "acq", "run", "echo"):
        value = clean(row.get(ent))
        sel = sel[sel[ent].isna()] if value is None else sel[sel[ent] == value]
    return Path(sel["path"].iloc[0]) if len(sel) else None


def _load_series(inv, rows, source, task_regression=False, bids_dir=None):
    series, keys = [], []
    for _, row in rows.iterrows():
        if source == "timeseries":
            table = pd.read_csv(row["path"], sep="\t")
            design = _design_of(inv, row) if task_regression else None
            columns = _task_columns(design, bids_dir) if design is not None else []
            if columns:
                try:
                    table = regress_task(table, pd.read_csv(design, sep="\t"), columns)
                    row = row.copy()
                    row["task_regressed"] = columns
                except ValueError as exc:
                    LOGGER.warning("connectivity: task not regressed out of %s: %s",
                                   Path(row["path"]).name, exc)
        else:
            table = _activity_series(row, inv)
            if table is None:
                LOGGER.warning("connectivity: no parcellation for %s", row["path"])
                continue
        series.append(table)
        keys.append(row)
    return series, keys


@dataclass(frozen=True)
class _Context:
    """What every connectivity analysis of the group step shares."""

    inv: pd.DataFrame  # the participant outputs (io/outputs.py inventory)
    kinds: tuple[str, ...]  # connectivity measures
    groups: pd.Series | None  # participant -> group (None: one group)
    space: str
    out_dir: Path
    settings: dict  # fdr, networks, activity, task_regression, bids_dir


@dataclass(frozen=True)
class _Measure:
    """One measure of one (task, atlas, source): how its files are named and described."""

    kind: str
    label: str  # BIDS label of the measure (``meas-``)
    base: dict  # output entities
    meta: dict  # sidecar metadata
    tag: str  # file-name stem in the step folder
    names: list[str]  # parcels (matrix rows and columns)
    networks: dict | None  # parcel -> network


def _analyse(context: _Context, rows, task, seg, source) -> tuple[list[dict], list[dict]]:
    from bids_hrf.connectivity import connectivity_matrices

    inv, kinds, groups, space = context.inv, context.kinds, context.groups, context.space
    out_dir, s = context.out_dir, context.settings

    series, keys = _load_series(inv, rows, source, s["task_regression"], s["bids_dir"])
    if not series:
        return [], []
    names = [c for c in series[0].columns if all(c in t.columns for t in series)]
    partial = sorted(set().union(*(set(t.columns) for t in series)) - set(names))
    if partial:
        LOGGER.warning("connectivity: parcel(s) %s missing in some runs: left out",
                       ", ".join(map(str, partial)))
    arrays = [t[names].to_numpy(dtype=float) for t in series]
    usable = [i for i, a in enumerate(arrays) if np.all(np.isfinite(a)) and len(a) > 3
              and np.all(a.std(axis=0) > 0)]
    if len(usable) < len(arrays):
        LOGGER.warning("connectivity: run(s) %s left out (constant or non-finite series)",
                       ", ".join(Path(keys[i]["path"]).name for i in range(len(arrays))
                                 if i not in usable))
    arrays, keys = [arrays[i] for i in usable], [keys[i] for i in usable]
    kinds_ok = [k for k in kinds if k != "tangent" or len(arrays) >= 2]
    if not arrays or not kinds_ok:
        return [], []
    mats = connectivity_matrices(arrays, kinds=kinds_ok)
    networks = _networks_of(inv, seg, s["networks"])
    subjects = [k["sub"] for k in keys]
    order = list(dict.fromkeys(subjects))
    analyses, records = [], []
    for kind in kinds_ok:
        label = bids_label(kind)
        base = {"task": task, "space": space, "seg": seg or None,
                "desc": "deconvolved" if source == "activity" else None}
        meta = {"Measure": kind, "Source": "deconvolved activity" if source == "activity"
                else "cleaned parcel mean time series", "NodeNames": names,
                "Estimator": "nilearn ConnectivityMeasure"
                             + (" (tangent space relative to the mean of all runs)"
                                if kind == "tangent" else "")}
        for i, key in enumerate(keys):
            path = out_dir / f"{Path(key['path']).name.split('.')[0]}_{label}_relmat.tsv"
            _write_matrix(path, mats[kind][i], names)
            ents = {e: clean(key.get(e)) for e in _RUN_ENTITIES}
            regressed = key.get("task_regressed")
            records.append(output(path, "connectivity", {**base, **ents, "meas": label}, {
                **meta, "Sources": [Path(key["path"]).name],
                "TaskRegressors": list(regressed) if isinstance(regressed, list) else [],
                "TaskRegression": "conditions, their shifts by -1, 1, 2, 3 volumes and the "
                                  "other design columns regressed out"
                                  if isinstance(regressed, list) else "none"}))
        per_sub = np.stack([_subject_mean(mats[kind][[i for i, x in enumerate(subjects)
                                                      if x == sub]], kind) for sub in order])
        analysis = {"task": task, "seg": seg, "source": source, "measure": kind,
                    "names": names, "subjects": order, "networks": networks}
        tag = f"task-{task}_seg-{seg}_{source}_{label}"
        means = {"all": per_sub}
        sub_groups = groups.reindex(order) if groups is not None else None
        if sub_groups is not None:
            for level in sorted(sub_groups.dropna().unique()):
                means[level] = per_sub[(sub_groups == level).to_numpy()]
        analysis["means"] = {}
        for level, stack in means.items():
            if not len(stack):
                continue
            path = out_dir / f"{tag}_{bids_label(level)}_mean.tsv"
            _write_matrix(path, _subject_mean(stack, kind), names)
            desc = bids_label(f"{base['desc'] or ''} {'mean' if level == 'all' else level}")
            records.append(output(path, "connectivity", {**base, "meas": label, "desc": desc}, {
                **meta, "Description": f"mean over the subjects of {level} (subjects: runs "
                                       "averaged first; correlations averaged in Fisher z)",
                "Subjects": [f"sub-{x}" for x, g in zip(order, sub_groups if sub_groups
                                                         is not None else order, strict=True)
                             if level == "all" or g == level]}, datatype=None))
            analysis["means"][level] = str(path)
        measure = _Measure(kind=kind, label=label, base=base, meta=meta, tag=tag,
                           names=names, networks=networks)
        analysis.update(_compare(context, measure, per_sub, order, sub_groups, records))
        analyses.append(analysis)
    return analyses, records


def _compare(context: _Context, measure: _Measure, per_sub: np.ndarray, order: list[str],
             sub_groups: pd.Series | None, records: list[dict]) -> dict:
    from bids_hrf.connectivity import compare_edges, compare_networks, network_summary

    out_dir, s = context.out_dir, context.settings
    kind, label, base, meta = measure.kind, measure.label, measure.base, measure.meta
    tag, names, networks = measure.tag, measure.names, measure.networks

    out: dict = {}
    fisher = kind in _FISHER
    summary = None
    if networks:
        known = {k: v for k, v in networks.items() if str(k) in names}
        if known:
            summary = network_summary(per_sub, known, names=names, subjects=order,
                                      fisher_z=fisher)
            if sub_groups is not None:
                summary.insert(1, "group", summary["subject"].map(sub_groups).fillna("n/a"))
            path = out_dir / f"{tag}_networks.tsv"
            summary.assign(subject="sub-" + summary["subject"]).to_csv(
                path, sep="\t", index=False, na_rep="n/a")
            records.append(output(path, "network_connectivity", {**base, "meas": label}, {
                **meta, "Description": "mean connectivity within and between networks per "
                                       "subject" + (" (Fisher z)" if fisher else "")},
                datatype=None))
            out["network_summary"] = str(path)
    if sub_groups is None or sub_groups.dropna().nunique() != 2:
        return out
    keep = sub_groups.notna().to_numpy()
    if min(sub_groups.value_counts()) < 2:
        LOGGER.warning("connectivity: fewer than 2 subjects in a group: no comparison")
        return out
    levels = sorted(sub_groups.dropna().unique())
    cmeta = {**meta, "Test": "Welch t test" + (" on Fisher z" if fisher else ""),
             "Groups": levels, "Difference": f"{levels[1]} - {levels[0]}",
             "MultipleComparisons": f"Benjamini-Hochberg FDR, q < {s['fdr']:g}"}
    edges = compare_edges(per_sub[keep], sub_groups[keep].to_numpy(), alpha=s["fdr"],
                          names=names, fisher_z=fisher)
    path = out_dir / f"{tag}_edges.tsv"
    edges.to_csv(path, sep="\t", index=False, na_rep="n/a")
    records.append(output(path, "edges", {**base, "meas": label}, {
        **cmeta, "Description": "group comparison of every edge"}, datatype=None))
    out["edges"] = str(path)
    for _, row in edges[edges["significant"]].iterrows():
        LOGGER.info("connectivity (%s): edge %s - %s differs (q = %.3g)", kind, row["name_i"],
                    row["name_j"], row["p_fdr"])
    if summary is not None:
        sub = summary[summary["subject"].isin(sub_groups.dropna().index)]
        comp = compare_networks(sub.drop(columns="group"), sub_groups.dropna(),
                                alpha=s["fdr"])
        path = out_dir / f"{tag}_networkcomparison.tsv"
        comp.to_csv(path, sep="\t", index=False, na_rep="n/a")
        desc = bids_label(f"{base['desc'] or ''} group comparison")
        records.append(output(path, "network_connectivity", {**base, "meas": label, "desc": desc}, {
            **cmeta, "Description": "group comparison of within/between-network means"},
            datatype=None))
        out["network_comparison"] = str(path)
    return out
