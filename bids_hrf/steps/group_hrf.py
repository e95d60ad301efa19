"""File-level group HRF step: every subject's parcel HRFs, their parameters, group means
and group comparisons (read from the participant outputs, never recomputed)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

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


def subject_hrf_tables(inv: pd.DataFrame, space: str) -> dict[tuple, dict[str, list[str]]]:
    """HRF tables per (task, seg, desc): subject -> paths (one per session).

    Only subject-level HRF tables (``*_desc-<method>_hrf.tsv``, no ``run`` or ``stat``).
    """
    sel = inv[(inv["suffix"] == "hrf") & (inv["extension"] == ".tsv") & inv["stat"].isna()
              & inv["run"].isna() & inv["sub"].notna() & (inv["space"] == space)]
    out: dict[tuple, dict[str, list[str]]] = {}
    for _, row in sel.sort_values("path").iterrows():
        key = (row["task"], clean(row["seg"]) or "", clean(row["desc"]) or "")
        out.setdefault(key, {}).setdefault(row["sub"], []).append(row["path"])
    return out


def _subject_table(paths: list[str]) -> pd.DataFrame:
    """One HRF table per subject: sessions averaged on their common parcels."""
    tables = [pd.read_csv(p, sep="\t") for p in paths]
    if len(tables) == 1:
        return tables[0]
    common = [c for c in tables[0].columns if all(c in t.columns for t in tables)]
    times = [t["time"].to_numpy() for t in tables]
    if any(len(t) != len(times[0]) or not np.allclose(t, times[0]) for t in times):
        LOGGER.warning("group HRFs: sessions sampled differently (%s); first session used",
                       paths[0])
        return tables[0]
    mean = sum(t[common].to_numpy(dtype=float) for t in tables) / len(tables)
    out = pd.DataFrame(mean, columns=common)
    out["time"] = times[0]
    return out


def group_hrf_step(inv_records: list[dict], options: GroupOptions,
                   out_dir: str | Path) -> tuple[dict, list[dict]]:
    """Gather every subject's HRFs, summarise them and compare groups per parcel.

    Parameters
    ----------
    inv_records : list of dict
        :func:`bids_hrf.io.outputs.inventory` rows.
    options : GroupOptions
        participants.tsv, ``--group-model`` (two-sample models give the groups compared),
        space, ``fdr`` (FDR level across parcels).
    out_dir : path
        Working folder.

    Returns
    -------
    result : dict
        ``kind: "hrf"`` and per analysis the paths of the subject HRFs (long table),
        parameters, summary and comparison tables.
    records : list
        Files for OUTPUT_DIR/group.
    """
    from bids_hrf.hrf_comparison import (
        PARAMETERS,
        compare_hrf_parameters,
        gather_hrf_tables,
        group_hrf_summary,
        hrf_parameters_long,
    )

    fdr = float(options.fdr)
    space = options.space
    out_dir = Path(out_dir)
    inv = inventory_frame(inv_records)
    participants = read_participants(options.participants)
    spec = parse_model(options.group_model, participants)
    groups = subject_groups(spec, participants)
    analyses, records = [], []
    for (task, seg, desc), per_subject in sorted(subject_hrf_tables(inv, space).items()):
        tables = {}
        for sub, paths in sorted(per_subject.items()):
            table = _subject_table(paths)
            tables[sub] = table[["time", *[c for c in table.columns if c != "time"]]]
        parcels = sorted(set.intersection(*(set(t.columns[1:]) for t in tables.values())),
                         key=list(tables[next(iter(tables))].columns).index)
        partial = sorted(set().union(*(set(t.columns[1:]) for t in tables.values()))
                         - set(parcels))
        if partial:
            LOGGER.warning("group HRFs: parcel(s) %s missing for some subjects (dropped in "
                           "their subject-level analysis): left out", ", ".join(partial))
        tables = {s: t[["time", *parcels]] for s, t in tables.items()}
        tag = "_".join(x for x in (f"task-{task}", f"seg-{seg}" if seg else "",
                                   f"desc-{desc}" if desc else "") if x)
        ents = {"task": task, "space": space, "seg": seg or None, "desc": desc or None}
        sub_groups = None
        if groups is not None:
            sub_groups = groups.reindex(list(tables)).dropna()
            absent = [s for s in tables if s not in sub_groups.index]
            if absent:
                LOGGER.warning("group HRFs: %s not in any group of %s: left out of the "
                               "comparison", ", ".join(f"sub-{s}" for s in absent), spec.group)
        long = gather_hrf_tables(tables)
        params = hrf_parameters_long(tables)
        group_col = (params["subject"].map(sub_groups) if sub_groups is not None
                     else pd.Series("all", index=params.index))
        params.insert(1, "group", group_col.fillna("n/a"))
        long.insert(1, "group", long["subject"].map(sub_groups) if sub_groups is not None
                    else "all")
        summary = group_hrf_summary(long.drop(columns="group"),
                                    sub_groups if sub_groups is not None
                                    and sub_groups.nunique() > 0 else None)
        meta = {"Subjects": [f"sub-{s}" for s in tables], "HRFMethod": desc,
                "GroupModel": spec.kind, "Parcels": parcels}
        long_out = long.assign(subject="sub-" + long["subject"])
        params_out = params.assign(subject="sub-" + params["subject"])
        paths = {"hrf": out_dir / f"{tag}_hrf.tsv", "params": out_dir / f"{tag}_hrfparams.tsv",
                 "summary": out_dir / f"{tag}_hrfsummary.tsv"}
        long_out.to_csv(paths["hrf"], sep="\t", index=False, na_rep="n/a")
        params_out.to_csv(paths["params"], sep="\t", index=False, na_rep="n/a")
        summary.to_csv(paths["summary"], sep="\t", index=False, na_rep="n/a")
        records += [
            output(paths["hrf"], "group_hrfs", ents, {
                **meta, "Description": "every subject's parcel HRF (sessions averaged), "
                                       "long format", "time": {"Units": "s"}},
                datatype=None),
            output(paths["params"], "group_hrf_parameters", ents, {
                **meta, "Description": "HRF shape parameters of every subject and parcel",
                "time_to_peak": {"Units": "s"}, "fwhm": {"Units": "s"},
                "height": {"Units": "HRF units"}}, datatype=None),
            output(paths["summary"], "group_hrf_summary", ents, {
                **meta, "Description": "mean HRF per parcel (and group) with sd, sem and "
                                       "number of subjects"}, datatype=None),
        ]
        analysis = {"task": task, "seg": seg, "desc": desc, "subjects": list(tables),
                    **{k: str(v) for k, v in paths.items()}}
        if sub_groups is not None and sub_groups.nunique() == 2:
            comparisons = []
            for parameter in PARAMETERS:
                try:
                    comp = compare_hrf_parameters(params, sub_groups, parameter, alpha=fdr)
                except ValueError as exc:
                    LOGGER.warning("group HRFs: %s not compared: %s", parameter, exc)
                    continue
                comparisons.append(comp.assign(parameter=parameter))
            if comparisons:
                comp = pd.concat(comparisons, ignore_index=True)
                comp = comp[["parameter", *[c for c in comp.columns if c != "parameter"]]]
                cpath = out_dir / f"{tag}_hrfcomparison.tsv"
                comp.to_csv(cpath, sep="\t", index=False, na_rep="n/a")
                levels = sorted(sub_groups.unique())
                records.append(output(cpath, "group_hrf_comparison", ents, {
                    **meta, "Test": "Welch t test per parcel", "Groups": levels,
                    "Difference": f"{levels[1]} - {levels[0]}",
                    "MultipleComparisons": f"Benjamini-Hochberg FDR across parcels, "
                                           f"q < {fdr:g} (per parameter)"}, datatype=None))
                analysis["comparison"] = str(cpath)
                for _, row in comp[comp["significant"]].iterrows():
                    LOGGER.info("group HRFs: %s of %s differs (%s %+.2f, q = %.3g)",
                                row["parameter"], row["parcel"], "difference",
                                row["difference"], row["p_fdr"])
        analyses.append(analysis)
    if not analyses:
        LOGGER.info("group HRFs: no subject-level HRF tables in space %s", space)
    return {"kind": "hrf", "analyses": analyses, "fdr": fdr}, records
