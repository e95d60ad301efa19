"""File-level group steps: second-level GLM per contrast over participants' outputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_hrf.io.derivatives import bids_label
from bids_hrf.steps.sink import record

LOGGER = logging.getLogger("bids_hrf")
GROUP_STATS = ("effect", "variance", "stat", "z", "p")


def read_participants(bids_dir: str | Path) -> pd.DataFrame | None:
    """Read participants.tsv of the raw dataset (None when absent)."""
    path = Path(bids_dir) / "participants.tsv"
    if not path.is_file():
        return None
    return pd.read_csv(path, sep="\t", dtype={"participant_id": str}, na_values=["n/a"])


def subject_maps(inv: pd.DataFrame, space: str) -> dict[tuple, dict[str, dict]]:
    """Subject-level (fixed-effects, no run entity) t-contrast maps per (task, desc, contrast).

    Returns
    -------
    dict
        (task, desc, contrast) -> subject -> {"effect": path, "variance": path, "sessions": [...]}
        where several sessions of a subject are listed to be combined.
    """
    sel = inv[(inv["suffix"] == "statmap") & inv["run"].isna() & (inv["space"] == space)
              & inv["stat"].isin(["effect", "variance"])]
    out: dict[tuple, dict[str, dict]] = {}
    for (task, desc, contrast, sub), rows in sel.groupby(
            ["task", sel["desc"].fillna(""), "contrast", "sub"], dropna=False):
        entry = out.setdefault((task, desc, contrast), {}).setdefault(
            sub, {"effect": [], "variance": [], "sessions": []})
        for ses, srows in rows.groupby(rows["ses"].fillna(""), dropna=False):
            eff = srows[srows["stat"] == "effect"]["path"].tolist()
            var = srows[srows["stat"] == "variance"]["path"].tolist()
            if eff and var:
                entry["effect"].append(eff[0])
                entry["variance"].append(var[0])
                entry["sessions"].append(ses or None)
    return out


def _combine_sessions(entry: dict):
    from bids_hrf.glm.second_level import combine_sessions

    if len(entry["effect"]) == 1:
        return nib.load(entry["effect"][0]), nib.load(entry["variance"][0])
    effects = [nib.load(p) for p in entry["effect"]]
    variances = [nib.load(p) for p in entry["variance"]]
    return combine_sessions(effects, variances)


def group_glm_step(inv_records: list[dict], participants_tsv: str | None, group_model,
                   space: str, out_dir: str | Path) -> tuple[dict, list[dict]]:
    """Second-level model of every subject-level contrast.

    Returns
    -------
    result : dict
        Per analysis: contrast, design path, used and dropped subjects, maps.
    records : list
        Files for OUTPUT_DIR/group.
    """
    from bids_hrf.glm.group_design import build_group_design, parse_group_model
    from bids_hrf.glm.second_level import fit_second_level, threshold_and_clusters

    out_dir = Path(out_dir)
    inv = pd.DataFrame(inv_records)
    participants = (pd.read_csv(participants_tsv, sep="\t", dtype={"participant_id": str},
                                na_values=["n/a"]) if participants_tsv else None)
    spec = parse_group_model(group_model, participants)
    analyses = []
    records: list[dict] = []
    all_subjects = sorted({s for s in inv["sub"].dropna()})
    for (task, desc, contrast), subjects in sorted(subject_maps(inv, space).items()):
        missing = [s for s in all_subjects if s not in subjects]
        if missing:
            LOGGER.warning("group: contrast %s of task %s missing for %s: they are left out",
                           contrast, task, ", ".join(f"sub-{s}" for s in missing))
        labels = sorted(subjects)
        maps_in = []
        for sub in labels:
            eff, _ = _combine_sessions(subjects[sub])
            maps_in.append(eff)
        try:
            design, used, dropped = build_group_design(spec, labels, participants)
        except ValueError as exc:
            LOGGER.warning("group: contrast %s of task %s not analysed: %s", contrast, task, exc)
            analyses.append({"task": task, "desc": desc, "contrast": contrast,
                             "error": str(exc), "subjects": labels})
            continue
        for sub, why in dropped.items():
            LOGGER.warning("group: sub-%s left out of %s: %s", sub, contrast, why)
        maps_used = [maps_in[labels.index(str(u))] for u in used]
        mask = _common_mask(maps_used)
        results = fit_second_level(maps_used, design, mask_img=mask)
        tag = f"task-{task}_contrast-{contrast}" + (f"_desc-{desc}" if desc else "")
        design_path = out_dir / f"{tag}_design.tsv"
        design.to_csv(design_path, sep="\t", index_label="participant")
        ents = {"task": task, "space": space, "contrast": contrast, "desc": desc or None}
        meta_base = {"GroupModel": spec.kind, "Subjects": [f"sub-{u}" for u in used],
                     "DroppedSubjects": {f"sub-{k}": v for k, v in dropped.items()},
                     "MissingSubjects": [f"sub-{s}" for s in missing],
                     "Design": list(design.columns)}
        records.append(record(design_path, "groupdesign", {k: v for k, v in ents.items()
                                                            if k in ("task", "contrast",
                                                                     "desc")},
                              meta_base, datatype=None))
        group_maps = {}
        for gname, res in results.items():
            glabel = bids_label(gname)
            paths = {}
            for stat in GROUP_STATS:
                img = getattr(res, stat)
                name = res.stat_type if stat == "stat" else stat
                path = out_dir / f"{tag}_{glabel}_{name}.nii.gz"
                nib.save(img, str(path))
                paths[name] = str(path)
                records.append(record(path, f"model-{glabel}_stat-{name}_statmap", ents, {
                    **meta_base, "GroupContrast": gname, "ContrastType": res.stat_type,
                    "Weights": np.asarray(res.weights).tolist(),
                    "DegreesOfFreedom": res.dof}, datatype=None))
            try:
                thr_img, clusters = threshold_and_clusters(res.z, alpha=0.001,
                                                           height_control="fpr",
                                                           cluster_threshold=0)
                cpath = out_dir / f"{tag}_{glabel}_clusters.tsv"
                clusters.to_csv(cpath, sep="\t", index=False)
                records.append(record(cpath, f"model-{glabel}_clusters", ents, {
                    **meta_base, "Threshold": "z, p < 0.001 uncorrected"}, datatype=None))
                paths["clusters"] = str(cpath)
            except Exception as exc:  # a cluster table is a summary, not a result
                LOGGER.warning("group: no cluster table for %s %s: %s", contrast, gname, exc)
            group_maps[gname] = paths
        analyses.append({"task": task, "desc": desc, "contrast": contrast,
                         "design": str(design_path), "used": [str(u) for u in used],
                         "dropped": dropped, "missing": missing, "maps": group_maps})
    (out_dir / "group_glm.json").write_text(json.dumps(analyses, default=str))
    return {"analyses": analyses, "model": spec.kind}, records


def _common_mask(imgs):
    from nilearn import masking

    masks = []
    for img in imgs:
        data = np.asarray(img.dataobj)
        masks.append(nib.Nifti1Image((np.isfinite(data) & (data != 0)).astype(np.uint8),
                                     img.affine))
    return masking.intersect_masks(masks, threshold=1, connected=False)
