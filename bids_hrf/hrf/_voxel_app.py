"""From voxel arrays to the HRF contract for the voxel-wise methods (rfir, r1glm, library).

One function, :func:`estimate_voxelwise`, shared by the three methods: it builds the FIR
design, fits the method's estimator, and fills an :class:`~bids_hrf.hrf.base.HRFEstimate`:

- ``hrfs``: per parcel, the mean of its voxels' unit-peak HRFs weighted by their fit
  (R^2, clipped at 0), scaled to unit norm (the table every method writes, used by the
  parcel-level GLM step);
- ``voxel_maps``: the voxel HRFs as a 4-D map (``desc-<tag>Hrf_bold``, time after onset
  as the 4th axis, sampling period in the sidecar); HRF parameter maps
  (``desc-<tag>_stat-{ttp,fwhm,height,undershoot}_statmap``, with ``*sd`` maps where the
  method has a posterior variance); fit maps (``stat-r2``, and ``stat-heldoutr2`` for the
  cross-validated library); and, per condition and contrast, the effect and z maps of a
  first-level GLM whose regressors use each voxel's own HRF
  (``contrast-<c>_desc-<tag>_stat-{effect,variance,z}_statmap``);
- ``parcel_tables["ttphist"]``: per parcel, the number of voxels whose time to peak falls
  in each 0.5 s bin (columns ``<start>-<end>``).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from bids_hrf.hrf._voxel import (
    make_event_design,
    pool_hrfs,
    voxel_glm,
    voxel_hrf_parameters,
)
from bids_hrf.hrf.base import HRFEstimate

__all__ = ["estimate_voxelwise", "voxel_map_metadata"]

_STATS = {
    "ttp": ("time to peak of the voxel's HRF", "s"),
    "fwhm": ("full width at half maximum of the voxel's HRF", "s"),
    "height": ("peak of the voxel's HRF (data units per unit event)", "arbitrary"),
    "undershoot": ("depth of the post-peak undershoot relative to the peak", "ratio"),
    "ttpsd": ("posterior standard deviation of the time to peak", "s"),
    "fwhmsd": ("posterior standard deviation of the FWHM", "s"),
    "heightsd": ("posterior standard deviation of the peak", "arbitrary"),
    "r2": ("in-sample R^2 of the voxel's HRF model (drifts removed)", "ratio"),
    "heldoutr2": ("held-out R^2 of the chosen HRF (leave one run out, pooled)", "ratio"),
    "effect": ("amplitude in a GLM using the voxel's own HRF (unit peak)", "arbitrary"),
    "variance": ("variance of the amplitude in the GLM using the voxel's own HRF",
                 "arbitrary"),
    "z": ("z statistic of a GLM using the voxel's own HRF", "z"),
}


def _label(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", str(name)) or "x"


def estimate_voxelwise(
    tag: str,
    estimator,
    runs: list[np.ndarray],
    events: list,
    frame_times: list[np.ndarray],
    tr: float,
    parcels: np.ndarray,
    parcel_names: dict[int, str],
    dt: float | None = None,
    fir_duration: float = 24.0,
    high_pass: float = 0.01,
    contrasts: dict | None = None,
    n_draws: int = 100,
    glm_hrf: str = "voxel",
) -> HRFEstimate:
    """Fit a voxel-wise HRF estimator and assemble maps, tables and the voxel GLM.

    Parameters
    ----------
    tag : str
        Method name in file names (``rfir``, ``r1glm``, ``library``).
    estimator : RegularizedFIR, RankOneGLM or HRFLibrary
        Unfitted estimator.
    runs : list of ndarray (n_scans_r, n_voxels)
        Voxel series of each run (same voxels in every run).
    events, frame_times : lists, one per run
    tr : float
    parcels : ndarray (n_voxels,) of int
        Parcel label of each voxel (0 = none).
    parcel_names : dict int -> str
    dt : float, optional
        Knot spacing (default: TR).
    fir_duration : float
        HRF length (s).
    high_pass : float
        Cosine drift cut-off (Hz); 0: a constant only.
    contrasts : dict of str to weights over the sorted conditions, optional
    n_draws : int
        Monte-Carlo draws for the parameter SDs (rfir).
    glm_hrf : {"voxel", "parcel"}
        HRF of each voxel's GLM regressors (effect and z maps): its own (``"voxel"``) or
        its parcel's R^2-weighted mean of the voxel HRFs (``"parcel"``; voxels outside
        the named parcels keep their own). At low SNR the parcel's detects better: a
        voxel's own HRF also fits the noise of silent voxels (benchmarks/README.md).

    Returns
    -------
    HRFEstimate
    """
    if glm_hrf not in ("voxel", "parcel"):
        raise ValueError(f"glm_hrf must be 'voxel' or 'parcel', got {glm_hrf!r}")
    design = make_event_design(events, frame_times, dt=dt, fir_duration=fir_duration,
                               high_pass=high_pass or 0.01,
                               drift_model="cosine" if high_pass else None)
    parcels = np.asarray(parcels).ravel()
    if tag == "library":
        estimator.fit(runs, design, parcels=parcels)
    else:
        estimator.fit(runs, design)
    variance = None
    if tag == "rfir":
        h, variance = estimator.voxel_hrf()
    else:
        h = estimator.hrfs_
    time = design.time
    pars = voxel_hrf_parameters(h, time, variance=variance, n_draws=n_draws)
    maps: dict[str, np.ndarray] = {f"desc-{tag}Hrf_bold": h}
    for key, name in (("time_to_peak", "ttp"), ("fwhm", "fwhm"), ("height", "height"),
                      ("undershoot", "undershoot"), ("time_to_peak_sd", "ttpsd"),
                      ("fwhm_sd", "fwhmsd"), ("height_sd", "heightsd")):
        if key in pars:
            maps[f"desc-{tag}_stat-{name}_statmap"] = pars[key]
    r2 = estimator.insample_r2_ if tag == "library" else estimator.r2_
    maps[f"desc-{tag}_stat-r2_statmap"] = r2
    if tag == "library" and estimator.heldout_r2_ is not None:
        maps[f"desc-{tag}_stat-heldoutr2_statmap"] = estimator.heldout_r2_
    peak = np.max(np.abs(h), axis=0)
    unit = np.divide(h, peak, out=np.zeros_like(h), where=peak > 0)
    contrasts = {k: np.asarray(v, float) for k, v in (contrasts or {}).items()}
    regressor_hrfs = unit
    if glm_hrf == "parcel":
        named = np.isin(parcels, list(parcel_names))
        regressor_hrfs = unit.copy()
        regressor_hrfs[:, named] = pool_hrfs(unit[:, named], parcels[named],
                                             np.clip(np.nan_to_num(r2), 0, None)[named])[2]
    glm = voxel_glm(runs, design, regressor_hrfs, rho=estimator.rho_, contrasts=contrasts)
    for i, name in enumerate(glm["names"]):
        base = f"contrast-{_label(name)}_desc-{tag}_stat-"
        maps[base + "effect_statmap"] = glm["beta"][i]
        maps[base + "variance_statmap"] = glm["variance"][i]
        maps[base + "z_statmap"] = glm["z"][i]
    edges = np.arange(0.0, float(time[-1]) + 0.5, 0.5)
    hist_cols = [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    hist_rows = []
    labels, names, table = [], [], []
    weight = np.clip(np.nan_to_num(r2), 0, None)
    for lab, name in parcel_names.items():
        sel = parcels == lab
        if not sel.any():
            continue
        w = weight[sel] if weight[sel].sum() > 0 else np.ones(sel.sum())
        mean = unit[:, sel] @ w / w.sum()
        norm = np.linalg.norm(mean)
        table.append(mean / norm if norm > 0 else mean)
        labels.append(lab)
        names.append(str(name))
        ttp = pars["time_to_peak"][sel]
        hist_rows.append(np.histogram(ttp[np.isfinite(ttp)], bins=edges)[0])
    hist = pd.DataFrame(np.array(hist_rows, dtype=int).reshape(-1, len(hist_cols)),
                        columns=hist_cols)
    hist.insert(0, "parcel", names)
    parameters = dict(estimator.__dict__)
    parameters = {k: v for k, v in parameters.items()
                  if not k.endswith("_") and k != "library"}
    parameters.update(tr=float(tr), dt=float(design.dt), fir_duration=float(time[-1]),
                      conditions=list(design.conditions),
                      contrasts={k: v.tolist() for k, v in contrasts.items()},
                      glm_dof=int(glm["dof"]), glm_hrf=glm_hrf,
                      parcel_hrf="mean of the voxels' unit-peak HRFs weighted by R^2, "
                                 "unit norm")
    return HRFEstimate(time=time, hrfs=np.column_stack(table), labels=names, method=tag,
                       parameters=parameters, voxel_maps=maps,
                       parcel_tables={"ttphist": hist})


def voxel_map_metadata(fragment: str, parameters: dict) -> dict:
    """Sidecar fields of one voxel-wise map, from its name fragment.

    Parameters
    ----------
    fragment : str
        A key of ``HRFEstimate.voxel_maps`` made by :func:`estimate_voxelwise`.
    parameters : dict
        ``HRFEstimate.parameters`` (``dt``, conditions, contrasts).

    Returns
    -------
    dict
        ``Description`` and ``Units``; ``SamplingPeriod`` for the 4-D HRF map;
        ``Contrast`` and ``ContrastWeights`` for condition and contrast maps.
    """
    ents = dict(part.split("-", 1) for part in fragment.split("_") if "-" in part)
    if fragment.endswith("_bold"):
        return {"Description": "HRF of each voxel (unit: data units per unit event); the "
                               "4th dimension is the time after stimulus onset, from 0 s",
                "SamplingPeriod": parameters.get("dt"), "Units": "arbitrary"}
    text, units = _STATS.get(ents.get("stat", ""), (fragment, "arbitrary"))
    meta = {"Description": text, "Units": units}
    label = ents.get("contrast")
    if label is not None:
        conditions = list(parameters.get("conditions", []))
        contrasts = dict(parameters.get("contrasts", {}))
        names = {_label(c): c for c in conditions} | {_label(k): k for k in contrasts}
        name = names.get(label, label)
        meta["Contrast"] = name
        if name in contrasts:
            meta["ContrastWeights"] = list(contrasts[name])
        elif name in conditions:
            meta["ContrastWeights"] = [float(c == name) for c in conditions]
        meta["Conditions"] = conditions
    return meta
