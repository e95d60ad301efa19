"""File-level group steps: second-level GLM per contrast over participants' outputs.

The participant outputs already written are read back (never recomputed): each subject's
fixed-effects contrast maps (sessions combined by fixed effects, or kept apart for paired
models), then nilearn's second-level OLS model (:mod:`bids_hrf.glm.second_level`),
thresholded maps, cluster tables and, optionally, permutation inference.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from bids_hrf.errors import UsageError
from bids_hrf.io.derivatives import bids_label
from bids_hrf.io.surface import load_surface_map
from bids_hrf.options import GroupOptions
from bids_hrf.steps.sink import output
from bids_hrf.surface.clusters import graph_clusters
from bids_hrf.surface.meshes import sample_graph
from bids_hrf.surface.samples import SampleGeometry, sample_image, sample_values

LOGGER = logging.getLogger("bids_hrf")
GROUP_STATS = ("effect", "variance", "stat", "z", "p")
def inventory_frame(records: list[dict]) -> pd.DataFrame:
    """Inventory rows (as passed between nodes) back into a table, None for missing."""
    inv = pd.DataFrame(records)
    for col in ("sub", "ses", "task", "acq", "run", "echo", "space", "seg", "contrast",
                "stat", "desc", "suffix", "extension", "path"):
        if col not in inv.columns:
            inv[col] = None
    return inv.astype(object).where(inv.notna(), None)


def clean(value):
    """None for missing values (NaN, None, empty), else the value."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return None
    return value


def read_participants(path: str | Path | None) -> pd.DataFrame | None:
    """Read a participants.tsv (None when not given or absent)."""
    if not path or not Path(path).is_file():
        return None
    return pd.read_csv(path, sep="\t", dtype={"participant_id": str}, na_values=["n/a"])


def load_group_model(group_model):
    """``--group-model``: a JSON file's content (BIDS Stats Models) or the string itself."""
    if isinstance(group_model, str) and group_model.lower().endswith(".json"):
        path = Path(group_model)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--group-model {path} cannot be read as JSON: {exc}",
                             fix="give a BIDS Stats Models JSON file", path=str(path)) from exc
    return group_model


def parse_model(group_model, participants: pd.DataFrame | None):
    """Parse ``--group-model`` against participants.tsv (user errors as UsageError)."""
    from bids_hrf.glm.group_design import parse_group_model

    try:
        return parse_group_model(load_group_model(group_model), participants)
    except ValueError as exc:
        raise UsageError(f"--group-model: {exc}", fix="see 'bids-hrf --help'") from exc


def subject_groups(spec, participants: pd.DataFrame | None) -> pd.Series | None:
    """Subject -> group label for two-sample models (None otherwise)."""
    if spec.kind != "two-sample" or participants is None:
        return None
    table = participants.dropna(subset=[spec.group])
    labels = table["participant_id"].astype(str).str.replace(r"^sub-", "", regex=True)
    groups = pd.Series(table[spec.group].astype(str).to_numpy(), index=labels.to_numpy())
    return groups[groups.isin(spec.levels)]


def subject_maps(inv: pd.DataFrame, space: str) -> dict[tuple, dict[str, dict]]:
    """Subject-level (fixed-effects, no run entity) contrast maps per (task, desc, contrast).

    Returns
    -------
    dict
        (task, desc, contrast) -> subject -> {"effect": [paths], "variance": [paths],
        "sessions": [labels or None]}, one entry per session.
    """
    sel = inv[(inv["suffix"] == "statmap") & inv["run"].isna() & (inv["space"] == space)
              & inv["stat"].isin(["effect", "variance"])]
    if "hemi" in sel.columns:  # GIFTI pairs: the hemi-L file stands for the pair
        sel = sel[sel["hemi"].isna() | (sel["hemi"] == "L")]
    out: dict[tuple, dict[str, dict]] = {}
    if sel.empty:
        return out
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


def load_map(path: str):
    """A subject-level map: NIfTI as it is; surface maps (GIFTI pair, dscalar) as surface
    NIfTI of samples (:mod:`bids_hrf.surface.samples`)."""
    if str(path).endswith((".gii", ".dscalar.nii")):
        return load_surface_map(path)[0]
    return nib.load(path)


def map_geometry(subjects: dict) -> SampleGeometry | None:
    """The sample geometry of surface maps (None for volume maps)."""
    first = next(iter(subjects.values()))["effect"][0]
    if str(first).endswith((".gii", ".dscalar.nii")):
        return load_surface_map(first)[1]
    return None


def _combine_sessions(entry: dict):
    from bids_hrf.glm.second_level import combine_sessions

    if len(entry["effect"]) == 1:
        return load_map(entry["effect"][0]), load_map(entry["variance"][0])
    effects = [load_map(p) for p in entry["effect"]]
    variances = [load_map(p) for p in entry["variance"]]
    return combine_sessions(effects, variances)


def _inputs(subjects: dict[str, dict], paired: bool) -> tuple[list, dict, dict]:
    """Map labels, their effect images and how many sessions each combines."""
    labels, maps, n_sessions = [], {}, {}
    for sub in sorted(subjects):
        entry = subjects[sub]
        if paired:
            for eff, ses in zip(entry["effect"], entry["sessions"], strict=True):
                key = f"{sub}:{ses}"
                labels.append(key)
                maps[key] = load_map(eff)
                n_sessions[key] = 1
        else:
            labels.append(sub)
            maps[sub] = _combine_sessions(entry)[0]
            n_sessions[sub] = len(entry["effect"])
    return labels, maps, n_sessions


def group_glm_step(inv_records: list[dict], options: GroupOptions, out_dir: str | Path,
                   nprocs: int = 1) -> tuple[dict, list[dict]]:
    """Second-level model of every subject-level contrast.

    Parameters
    ----------
    inv_records : list of dict
        :func:`bids_hrf.io.outputs.inventory` rows.
    options : GroupOptions
        participants.tsv, ``--group-model``, space and thresholds (``alpha``,
        ``height_control``, ``cluster_threshold``, ``n_perm``).
    out_dir : path
        Working folder of the step.
    nprocs : int
        Processes of the permutation inference.

    Returns
    -------
    result : dict
        ``kind: "glm"``, the model, and per analysis: contrast, design, used, dropped
        and missing subjects, maps, diagnostics.
    records : list
        Files for OUTPUT_DIR/group.
    """
    from bids_hrf.glm.group_design import build_group_design

    s = {"alpha": options.alpha, "height_control": options.height_control,
         "cluster_threshold": options.cluster_threshold, "n_perm": options.n_perm,
         "fdr": options.fdr, "nprocs": nprocs}
    space = options.space
    out_dir = Path(out_dir)
    inv = inventory_frame(inv_records)
    participants = read_participants(options.participants)
    spec = parse_model(options.group_model, participants)
    analyses = []
    records: list[dict] = []
    all_subjects = sorted({s_ for s_ in inv["sub"].dropna()})
    geometry_path = ""
    for (task, desc, contrast), subjects in sorted(subject_maps(inv, space).items()):
        geometry = map_geometry(subjects)
        if geometry is not None and not geometry_path:
            geometry_path = str(geometry.save(out_dir / "geometry.npz"))
        missing = [x for x in all_subjects if x not in subjects]
        if missing:
            LOGGER.warning("group: contrast %s of task %s missing for %s: they are left out",
                           contrast, task, ", ".join(f"sub-{x}" for x in missing))
        labels, maps_in, n_sessions = _inputs(subjects, spec.kind == "paired")
        base = {"task": task, "desc": desc, "contrast": contrast, "missing": missing}
        try:
            design, used, dropped = build_group_design(spec, labels, participants)
        except ValueError as exc:
            LOGGER.warning("group: contrast %s of task %s not analysed: %s", contrast, task, exc)
            analyses.append({**base, "error": str(exc), "subjects": labels})
            continue
        for sub, why in dropped.items():
            LOGGER.warning("group: sub-%s left out of %s: %s", sub, contrast, why)
        analysis, recs = _analyse(_GroupFit(
            spec=spec, design=design, used=[str(u) for u in used], dropped=dropped,
            maps=[maps_in[str(u)] for u in used], n_sessions=n_sessions, base=base,
            space=space, out_dir=out_dir, settings=s, geometry=geometry))
        analyses.append(analysis)
        records.extend(recs)
    (out_dir / "group_glm.json").write_text(json.dumps(analyses, default=str))
    return {"kind": "glm", "analyses": analyses, "model": spec.kind,
            "settings": s, "geometry": geometry_path}, records


@dataclass(frozen=True)
class _GroupFit:
    """One contrast's second-level analysis: its inputs, settings and output folder."""

    spec: Any  # the parsed --group-model
    design: pd.DataFrame
    used: list[str]  # participants (or participant:session) in the design, in row order
    dropped: dict  # participant -> why it was left out
    maps: list  # the subject-level maps, in ``used`` order
    n_sessions: dict  # participant -> sessions combined into its map
    base: dict  # task, desc, contrast, missing
    space: str
    out_dir: Path
    settings: dict  # alpha, height_control, cluster_threshold, n_perm, fdr, nprocs
    geometry: SampleGeometry | None = None  # surface maps: where each sample is


@dataclass(frozen=True)
class _MapNaming:
    """How the maps of one group contrast are named and described."""

    tag: str  # file-name stem in the step folder
    glabel: str  # BIDS label of the group contrast (``model-``)
    ents: dict  # output entities
    meta: dict  # sidecar metadata shared by the contrast's maps


def _analyse(fit: _GroupFit) -> tuple[dict, list[dict]]:
    from bids_hrf.glm.second_level import fit_second_level

    spec, design, used, dropped = fit.spec, fit.design, fit.used, fit.dropped
    maps_used, n_sessions, base, out_dir = fit.maps, fit.n_sessions, fit.base, fit.out_dir
    space = fit.space
    task, desc, contrast = base["task"], base["desc"], base["contrast"]
    mask = _common_mask(maps_used)
    results = fit_second_level(maps_used, design, mask_img=mask)
    tag = f"task-{task}_contrast-{contrast}" + (f"_desc-{desc}" if desc else "")
    design_path = out_dir / f"{tag}_design.tsv"
    design.to_csv(design_path, sep="\t", index_label="participant")
    ents = {"task": task, "space": space, "contrast": contrast, "desc": desc or None}
    meta_base = {"GroupModel": spec.kind, "Subjects": [f"sub-{u}" for u in used],
                 "DroppedSubjects": {f"sub-{k}": v for k, v in dropped.items()},
                 "MissingSubjects": [f"sub-{x}" for x in base["missing"]],
                 "SessionsCombined": {f"sub-{u}": n_sessions[u] for u in used},
                 "Design": list(design.columns)}
    records = [output(design_path, "group_design",
                      {k: v for k, v in ents.items() if k in ("task", "contrast", "desc")},
                      {**meta_base, "Description": "second-level design matrix (one row "
                                                   "per map, 'participant' first)"},
                      datatype=None)]
    diagnostics = _diagnostics(design, maps_used, mask, used, n_sessions)
    diag_path = out_dir / f"{tag}_diagnostics.tsv"
    diagnostics.to_csv(diag_path, sep="\t", index=False)
    group_maps = {}
    for gname, res in results.items():
        glabel = bids_label(gname)
        paths = {"type": res.stat_type, "dof": res.dof,
                 "weights": np.asarray(res.weights).tolist()}
        meta = {**meta_base, "GroupContrast": gname, "ContrastType": res.stat_type,
                "Weights": np.asarray(res.weights).tolist(), "DegreesOfFreedom": res.dof}
        for stat in GROUP_STATS:
            name = res.stat_type if stat == "stat" else stat
            path = out_dir / f"{tag}_{glabel}_{name}.nii.gz"
            nib.save(getattr(res, stat), str(path))
            paths[name] = str(path)
            records.append(output(path, "statmap", {**ents, "model": glabel, "stat": name},
                                  {**meta, "Statistic": name}, datatype=None))
        naming = _MapNaming(tag=tag, glabel=glabel, ents=ents, meta=meta)
        recs, extra = _threshold(fit, res, naming)
        records.extend(recs)
        paths.update(extra)
        if fit.settings["n_perm"] and res.stat_type == "t":
            recs, extra = _permutations(fit, res, mask, naming)
            records.extend(recs)
            paths.update(extra)
        paths["max_z"] = float(np.nanmax(np.abs(np.asarray(res.z.dataobj))))
        group_maps[gname] = paths
    return {**base, "design": str(design_path), "diagnostics": str(diag_path),
            "used": used, "dropped": dropped, "maps": group_maps}, records


def _threshold(fit: _GroupFit, res, naming: _MapNaming) -> tuple[list[dict], dict]:
    from bids_hrf.glm.second_level import threshold_and_clusters

    s, out_dir = fit.settings, fit.out_dir
    tag, glabel, ents, meta = naming.tag, naming.glabel, naming.ents, naming.meta

    two_sided = res.stat_type == "t"
    what = (f"{s['height_control']} p < {s['alpha']:g}"
            + (f", clusters >= {s['cluster_threshold']} voxels" if s["cluster_threshold"]
               else ""))
    try:
        if fit.geometry is not None:
            thr_img, clusters = _surface_threshold(res.z, fit, two_sided)
        else:
            with warnings.catch_warnings():  # "threshold exceeds the maximum": none survive
                warnings.filterwarnings("ignore", message=r".*must not exceed.*")
                thr_img, clusters = threshold_and_clusters(
                    res.z, alpha=s["alpha"], height_control=s["height_control"],
                    cluster_threshold=int(s["cluster_threshold"]), two_sided=two_sided)
    except Exception as exc:  # a thresholded map is a summary, not a result
        LOGGER.warning("group: no thresholded map for %s: %s", tag, exc)
        return [], {}
    z_thr = float(clusters.attrs.get("threshold", np.inf))
    tdesc = bids_label(f"{ents['desc']} thresholded") if ents.get("desc") else "thresholded"
    tpath = out_dir / f"{tag}_{glabel}_zthr.nii.gz"
    nib.save(thr_img, str(tpath))
    cpath = out_dir / f"{tag}_{glabel}_clusters.tsv"
    clusters.to_csv(cpath, sep="\t", index=False)
    tmeta = {**meta, "Threshold": what, "ZThreshold": z_thr if np.isfinite(z_thr) else None,
             "TwoSided": two_sided}
    records = [
        output(tpath, "statmap", {**ents, "model": glabel, "stat": "z", "desc": tdesc},
               {**tmeta, "Description": "z map, values below the threshold set to 0"},
               datatype=None),
        output(cpath, "clusters", {**ents, "model": glabel},
               {**tmeta, "Description": "clusters of the thresholded z map (nilearn)"},
               datatype=None),
    ]
    return records, {"zthr": str(tpath), "clusters": str(cpath), "z_threshold": z_thr,
                     "threshold": what, "n_clusters": int(len(clusters))}


def _surface_threshold(z_img, fit: _GroupFit, two_sided: bool):
    """Height threshold over the samples with data, clusters measured on the mesh graph."""
    from bids_hrf.glm.second_level import threshold_and_clusters

    s = fit.settings
    z = sample_values(z_img).astype(float)
    inside = np.flatnonzero(np.isfinite(z) & (z != 0))
    _, heights = threshold_and_clusters(z[inside], alpha=s["alpha"],
                                        height_control=s["height_control"],
                                        two_sided=two_sided)
    thr = float(heights.attrs["threshold"])
    values, clusters = graph_clusters(z, sample_graph(fit.geometry), thr,
                                      int(s["cluster_threshold"]), two_sided)
    peak = clusters["Peak sample"].to_numpy(dtype=int)
    clusters["Structure"] = fit.geometry.structure[peak]
    clusters["Vertex"] = fit.geometry.vertex[peak]
    clusters.attrs["threshold"] = thr
    return sample_image(values), clusters


def _permutations(fit: _GroupFit, res, mask, naming: _MapNaming) -> tuple[list[dict], dict]:
    from bids_hrf.glm.second_level import permutation_inference

    maps, design, s, out_dir = fit.maps, fit.design, fit.settings, fit.out_dir
    tag, glabel, ents, meta = naming.tag, naming.glabel, naming.ents, naming.meta

    # surface samples: nilearn's cluster statistics would join neighbours of the array
    # grid; there nilearn gives the per-sample correction and clusters are tested on the
    # mesh graph (_mesh_cluster_permutations)
    cluster_alpha = s["alpha"] if s["height_control"] == "fpr" else 0.001
    threshold = None if fit.geometry is not None else cluster_alpha
    try:
        perm = permutation_inference(maps, design, np.asarray(res.weights), mask_img=mask,
                                     n_perm=int(s["n_perm"]), two_sided=True,
                                     threshold=threshold, random_state=0,
                                     n_jobs=int(s["nprocs"]))
    except Exception as exc:  # noqa: BLE001 - inference must not stop the other outputs
        LOGGER.warning("group: permutation inference of %s failed: %s", tag, exc)
        return [], {}
    records, paths = [], {}
    names = {"logp_max_t": "logpFweVoxel", "logp_max_size": "logpFweClusterSize",
             "logp_max_mass": "logpFweClusterMass"}
    for key, name in names.items():
        img = perm.get(key)
        if img is None:
            continue
        path = out_dir / f"{tag}_{glabel}_{name}.nii.gz"
        nib.save(img, str(path))
        paths[name] = str(path)
        records.append(output(path, "statmap", {**ents, "model": glabel, "stat": name}, {
            **meta, "Statistic": name, "Permutations": int(s["n_perm"]),
            "Description": "-log10 family-wise-error-corrected p value (max statistic "
                           "permutation test, nilearn non_parametric_inference)"
                           + ("; cluster-forming p < " + f"{s['alpha']:g}"
                              if "Cluster" in name else "")}, datatype=None))
    if fit.geometry is not None:
        recs, extra = _mesh_cluster_permutations(fit, res, mask, naming, cluster_alpha)
        records.extend(recs)
        paths.update(extra)
    return records, paths


def _mesh_cluster_permutations(fit: _GroupFit, res, mask, naming: _MapNaming,
                               alpha: float) -> tuple[list[dict], dict]:
    """Cluster-size FWE p values of surface maps, clusters measured on the mesh graph."""
    from bids_hrf.glm.graph_permutation import graph_cluster_permutation

    s, tag, glabel = fit.settings, naming.tag, naming.glabel
    inside = sample_values(mask) > 0
    Y = np.vstack([np.where(inside, np.nan_to_num(sample_values(m)), 0.0) for m in fit.maps])
    try:
        perm = graph_cluster_permutation(
            Y, fit.design.to_numpy(dtype=float), np.asarray(res.weights, dtype=float).ravel(),
            sample_graph(fit.geometry), alpha=alpha, n_perm=int(s["n_perm"]), random_state=0)
    except ValueError as exc:
        LOGGER.warning("group: mesh cluster permutations of %s failed: %s", tag, exc)
        return [], {}
    name = "logpFweClusterSize"
    path = fit.out_dir / f"{tag}_{glabel}_{name}.nii.gz"
    nib.save(sample_image(perm.logp_cluster), str(path))
    meta = {**naming.meta, "Statistic": name, "Permutations": int(s["n_perm"]),
            "ClusterFormingThreshold": {"p": alpha, "t": perm.t_threshold},
            "Description": "-log10 family-wise-error-corrected p value of the size of each "
                           "sample's cluster, clusters measured on the mesh graph (sign "
                           "flips without nuisance regressors, Freedman-Lane permutations "
                           "otherwise; bids_hrf.glm.graph_permutation)"}
    return [output(path, "statmap", {**naming.ents, "model": glabel, "stat": name}, meta,
                   datatype=None)], {name: str(path)}


def _diagnostics(design: pd.DataFrame, maps, mask, used, n_sessions) -> pd.DataFrame:
    """Per map: mean and sd of the effect in the group mask, and its leverage."""
    from nilearn.masking import apply_mask

    data = apply_mask(maps, mask)
    x = design.to_numpy(dtype=float)
    leverage = np.einsum("ij,jk,ik->i", x, np.linalg.pinv(x.T @ x), x)
    mean = data.mean(axis=1)
    centre, spread = np.median(mean), np.median(np.abs(mean - np.median(mean))) * 1.4826
    robust_z = (mean - centre) / spread if spread > 0 else np.zeros_like(mean)
    return pd.DataFrame({"participant": [f"sub-{u}" if ":" not in u else
                                         "sub-" + u.replace(":", "_ses-") for u in used],
                         "sessions_combined": [n_sessions[u] for u in used],
                         "mean_effect": mean, "sd_effect": data.std(axis=1),
                         "robust_z_of_mean": robust_z, "leverage": leverage})


def _common_mask(imgs):
    from nilearn import masking

    masks = []
    for img in imgs:
        data = np.asarray(img.dataobj)
        masks.append(nib.Nifti1Image((np.isfinite(data) & (data != 0)).astype(np.uint8),
                                     img.affine))
    return masking.intersect_masks(masks, threshold=1, connected=False)
