"""Parcel-level JDE-VEM driver: fit every parcel and assemble an :class:`HRFEstimate`.

Voxel maps (masked-voxel space, shape ``(n_voxels,)`` or ``(n_samples, n_voxels)``):
background voxels (label 0) and voxels of skipped or failed parcels hold 0 in effect, PPM,
label-probability and HRF maps, and NaN in variance and HRF-parameter maps.

Parcel tables: ``convergence`` (parcel, iteration, free_energy, converged) and
``hrfparams`` (parcel, time_to_peak, fwhm, height and their Monte-Carlo SDs, max_ppm over
the parcel's voxels and conditions, class_separation = max over conditions of
``|mu1| / sqrt(v0 + v1)`` of the fitted NRL mixture (both descriptive), response_p = the
p-value that the parcel responds to the paradigm (``JDEVEM.response_pvalue_``),
response_q = its Benjamini-Hochberg adjustment over the parcels, silent = response_q >
:data:`SILENT_FDR`, hrf_tempering, n_iter, converged).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import norm

from bids_hrf.conditions import clean_label
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.jde import _design as design
from bids_hrf.hrf.jde._evidence import fdr_bh
from bids_hrf.hrf.jde.vem import JDEVEM
from bids_hrf.hrf.params import hrf_parameters

__all__ = [
    "estimate_jde_vem", "bids_label", "condition_label", "map_metadata", "SILENT_FDR",
]

#: a parcel is flagged silent when the FDR-adjusted p-value of its response exceeds this
SILENT_FDR = 0.05


def bids_label(name: str) -> str:
    """Make a BIDS entity value (alphanumeric only) from a condition or contrast name."""
    out = re.sub(r"[^A-Za-z0-9]", "", str(name))
    if not out:
        raise ValueError(f"name {name!r} has no letter or digit to make a BIDS label from")
    return out


def condition_label(name: str) -> str:
    """BIDS label of a condition's maps: the first-level GLM's (``face_happy`` ->
    ``faceHappy``), so that ``desc-jdevem`` and ``desc-jdevemHrf`` maps of a condition
    share their ``contrast-`` entity."""
    return clean_label(name)


def _fit_parcel(label, Ys, events, frame_times, neighbours, tr, params):
    """Fit one parcel; ``neighbours``: its voxels' grid coordinates or sample graph."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = JDEVEM(tr=tr, **params)
        if sparse.issparse(neighbours):
            adj = sparse.csr_matrix(neighbours, dtype=float) if neighbours.shape[0] > 1 \
                else None
        else:
            adj = design.grid_adjacency(neighbours) if neighbours.shape[0] > 1 else None
        try:
            est.fit(Ys, events, frame_times, adj)
        except ValueError as exc:
            raise ValueError(f"parcel {label}: {exc}") from exc
    return label, est, [str(w.message) for w in caught]


def _summary(est: JDEVEM) -> dict:
    return {
        k: getattr(est, k)
        for k in ("hrf_", "hrf_var_", "hrf_time_", "nrls_", "nrls_var_", "nrls_cov_",
                  "ppm_", "labels_proba_", "free_energy_", "conditions_", "converged_",
                  "n_iter_", "mixture_", "response_pvalue_", "hrf_tempering_")
    }


def estimate_jde_vem(
    runs: list[np.ndarray],
    events: list[pd.DataFrame],
    frame_times: list[np.ndarray],
    tr: float,
    parcel_labels: np.ndarray,
    parcel_names: dict[int, str],
    voxel_ijk: np.ndarray,
    contrasts: dict[str, np.ndarray] | None = None,
    n_jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
    adjacency: sparse.spmatrix | None = None,
    **jde_params,
) -> HRFEstimate:
    """Fit JDE-VEM in every parcel.

    Parameters
    ----------
    runs : list of ndarray (n_scans_r, n_voxels)
    events : list of DataFrame
        One per run: onset, duration, trial_type[, modulation].
    frame_times : list of ndarray
        Scan times (s), one array per run.
    tr : float
    parcel_labels : ndarray (n_voxels,) of int
        0 = background (ignored).
    parcel_names : dict int -> str
        Names of the parcels; labels absent from ``parcel_labels`` are skipped with a
        warning, labels without a name are named by their number.
    voxel_ijk : ndarray (n_voxels, 3) of int
        Grid coordinates (6-connectivity neighbour graph per parcel).
    contrasts : dict str -> ndarray, optional
        Weight vectors over the sorted condition names.
    n_jobs : int
        Parcels fitted in parallel (joblib processes).
    progress : callable (done, total), optional
    adjacency : scipy.sparse matrix (n_voxels, n_voxels), optional
        Neighbourhood graph of the samples (mesh vertices of surface data); replaces the
        6-connectivity of ``voxel_ijk``.
    **jde_params
        Passed to :class:`~bids_hrf.hrf.jde.vem.JDEVEM`.

    Returns
    -------
    HRFEstimate
        ``method="jde-vem"``; see the module docstring for the voxel maps.
    """
    problem = _check_inputs(runs, events, frame_times, parcel_labels, parcel_names,
                            voxel_ijk, contrasts)
    if adjacency is not None:
        if adjacency.shape != (problem.n_voxels, problem.n_voxels):
            raise ValueError(f"adjacency must be ({problem.n_voxels}, {problem.n_voxels}), "
                             f"got {adjacency.shape}")
        problem = replace(problem, graph=sparse.csr_matrix(adjacency))
    jde_params.setdefault("random_state", 0)
    probe = JDEVEM(tr=tr, **jde_params)
    results = _fit_parcels(problem, events, frame_times, tr, jde_params, n_jobs, progress)
    _warn_not_converged(results, probe.n_iter_max)
    present, names = problem.present, problem.names
    time = results[present[0]]["hrf_time_"]
    hrfs = np.column_stack([results[lab]["hrf_"] for lab in present])
    var = np.column_stack([results[lab]["hrf_var_"] for lab in present])
    par = hrf_parameters(hrfs, time, variance=var, random_state=0)
    maps, ppm, convergence = _voxel_maps(problem, results, par, time)
    parameters = probe.get_params()
    parameters.update(tr=float(tr), dt=float(time[1] - time[0]),
                      conditions=problem.conditions,
                      contrasts={k: np.asarray(w, float).tolist()
                                 for k, w in problem.contrasts.items()},
                      n_parcels=len(present))
    return HRFEstimate(
        time=time, hrfs=hrfs, labels=names, method="jde-vem", variance=var,
        parameters=parameters, voxel_maps=maps,
        parcel_tables={"convergence": convergence,
                       "hrfparams": _parcel_table(problem, results, par, ppm)},
    )


@dataclass(frozen=True)
class _Problem:
    """The checked inputs of :func:`estimate_jde_vem`."""

    runs: list  # (n_scans_r, n_voxels) per run
    ijk: np.ndarray  # (n_voxels, 3)
    present: list[int]  # parcels with voxels, sorted
    names: list[str]  # their names, same order
    idx: dict  # parcel -> its voxel indices
    conditions: list[str]
    contrasts: dict  # label -> weights over ``conditions``
    graph: sparse.csr_matrix | None = None  # sample graph replacing the grid's

    @property
    def n_voxels(self) -> int:
        """Voxels of the data (all parcels and background)."""
        return self.ijk.shape[0]


def _check_inputs(runs, events, frame_times, parcel_labels, parcel_names, voxel_ijk,
                  contrasts) -> _Problem:
    runs = [np.asarray(r) for r in runs]  # sliced per parcel, converted there
    labels = np.asarray(parcel_labels).astype(int).ravel()
    ijk = np.asarray(voxel_ijk)
    n_vox = labels.size
    if any(r.ndim != 2 or r.shape[1] != n_vox for r in runs):
        raise ValueError(
            f"every run must be (n_scans, {n_vox}) to match parcel_labels; got "
            f"{[r.shape for r in runs]}"
        )
    if ijk.shape != (n_vox, 3):
        raise ValueError(f"voxel_ijk must be ({n_vox}, 3), got {ijk.shape}")
    if not (len(runs) == len(events) == len(frame_times)) or not runs:
        raise ValueError("give one events table and one frame_times array per run")
    present = sorted(int(x) for x in np.unique(labels[labels != 0]))
    for lab in sorted(set(parcel_names) - set(present)):
        warnings.warn(f"parcel {lab} ({parcel_names[lab]}) has no voxel: skipped",
                      RuntimeWarning, stacklevel=3)
    if not present:
        raise ValueError("no parcel: every voxel has label 0")
    names = [str(parcel_names.get(lab, lab)) for lab in present]
    ev_valid = [design.validate_events(e, r) for r, e in enumerate(events)]
    conditions = design.condition_names(ev_valid)
    labels_of = [condition_label(c) for c in conditions]
    if len(set(labels_of)) < len(labels_of):
        raise ValueError(f"conditions {conditions} do not give distinct BIDS labels "
                         f"({labels_of}); rename the trial types")
    contrasts = dict(contrasts or {})
    for key, w in contrasts.items():
        if np.asarray(w).size != len(conditions):
            raise ValueError(
                f"contrast {key!r} has {np.asarray(w).size} weights for conditions "
                f"{conditions}; give one weight per condition in this (sorted) order"
            )
    return _Problem(runs=runs, ijk=ijk, present=present, names=names,
                    idx={lab: np.flatnonzero(labels == lab) for lab in present},
                    conditions=conditions, contrasts=contrasts)


def _neighbours(problem: _Problem, members: np.ndarray):
    """What defines a parcel's neighbourhoods: its sample graph, or its grid coordinates."""
    if problem.graph is not None:
        return problem.graph[members][:, members]
    return problem.ijk[members]


def _fit_parcels(problem: _Problem, events, frame_times, tr, jde_params, n_jobs,
                 progress) -> dict[int, dict]:
    """Fit every parcel (joblib processes); parcel -> the fitted attributes it keeps."""
    from joblib import Parallel, delayed

    idx = problem.idx
    tasks = (
        delayed(_fit_parcel)(lab, [r[:, idx[lab]] for r in problem.runs], events,
                             frame_times, _neighbours(problem, idx[lab]), tr, jde_params)
        for lab in problem.present
    )
    results: dict[int, dict] = {}
    total = len(problem.present)
    gen = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks)
    for done, (lab, est, msgs) in enumerate(gen, start=1):
        results[lab] = _summary(est)
        for msg in dict.fromkeys(msgs):
            if "did not converge" not in msg:
                warnings.warn(f"parcel {lab}: {msg}", RuntimeWarning, stacklevel=3)
        if progress is not None:
            progress(done, total)
    return results


def _warn_not_converged(results: dict[int, dict], n_iter_max: int) -> None:
    not_converged = [lab for lab, res in results.items() if not res["converged_"]]
    if not_converged:
        warnings.warn(
            f"JDE-VEM did not converge in {n_iter_max} iterations in "
            f"{len(not_converged)} of {len(results)} parcel(s) "
            f"({sorted(not_converged)[:10]}...); "
            "their estimates are used as they are; raise n_iter_max to go further",
            RuntimeWarning, stacklevel=3,
        )


def _voxel_maps(problem: _Problem, results: dict[int, dict], par, time: np.ndarray
                ) -> tuple[dict[str, np.ndarray], np.ndarray, pd.DataFrame]:
    """NRL, PPM, label-probability, contrast, HRF and HRF-parameter maps; the PPMs (for the
    parcel table) and the convergence table."""
    conditions, contrasts, n_vox = problem.conditions, problem.contrasts, problem.n_voxels
    M = len(conditions)
    eff = np.zeros((M, n_vox))
    vvar = np.full((M, n_vox), np.nan)
    ppm = np.zeros((M, n_vox))
    lproba = np.zeros((M, n_vox))
    hrf_map = np.zeros((time.size, n_vox))
    con_maps = {k: (np.zeros(n_vox), np.full(n_vox, np.nan), np.zeros(n_vox))
                for k in contrasts}
    pmaps = {k: np.full(n_vox, np.nan) for k in ("ttp", "fwhm", "height")}
    rows = []
    for p, lab in enumerate(problem.present):
        res, sel = results[lab], problem.idx[lab]
        # map the parcel's conditions (a subset when runs share none) onto the global list
        cidx = [conditions.index(c) for c in res["conditions_"]]
        eff[np.ix_(cidx, sel)] = res["nrls_"]
        vvar[np.ix_(cidx, sel)] = res["nrls_var_"]
        ppm[np.ix_(cidx, sel)] = res["ppm_"]
        lproba[np.ix_(cidx, sel)] = res["labels_proba_"][..., 1]
        hrf_map[:, sel] = res["hrf_"][:, None]
        for key, w in contrasts.items():
            wl = np.asarray(w, dtype=float).ravel()[cidx]
            e = wl @ res["nrls_"]
            v = np.einsum("jmn,m,n->j", res["nrls_cov_"], wl, wl)
            con_maps[key][0][sel] = e
            con_maps[key][1][sel] = v
            con_maps[key][2][sel] = norm.sf(-e / np.sqrt(np.maximum(v, 1e-300)))
        pmaps["ttp"][sel] = par.time_to_peak[p]
        pmaps["fwhm"][sel] = par.fwhm[p]
        pmaps["height"][sel] = par.height[p]
        fe = res["free_energy_"]
        rows.append(pd.DataFrame({"parcel": problem.names[p],
                                  "iteration": np.arange(1, fe.size + 1),
                                  "free_energy": fe, "converged": res["converged_"]}))
    maps: dict[str, np.ndarray] = {}
    for m, c in enumerate(conditions):
        tag = f"contrast-{condition_label(c)}_desc-jdevem_stat-"
        maps[tag + "effect_statmap"] = eff[m]
        maps[tag + "variance_statmap"] = vvar[m]
        maps[tag + "ppm_statmap"] = ppm[m]
        maps[tag + "labelproba_statmap"] = lproba[m]
    for key, (e, v, pp) in con_maps.items():
        tag = f"contrast-{bids_label(key)}_desc-jdevem_stat-"
        maps[tag + "effect_statmap"] = e
        maps[tag + "variance_statmap"] = v
        maps[tag + "ppm_statmap"] = pp
    maps["desc-jdevemHrf_bold"] = hrf_map
    for k, v in pmaps.items():
        maps[f"desc-jdevem_stat-{k}_statmap"] = v
    return maps, ppm, pd.concat(rows, ignore_index=True)


def _parcel_table(problem: _Problem, results: dict[int, dict], par,
                  ppm: np.ndarray) -> pd.DataFrame:
    """``hrfparams``: HRF parameters and the evidence that each parcel responds."""
    present, conditions = problem.present, problem.conditions
    hp = par.to_frame(problem.names)
    # evidence that the HRF is data-driven: a calibrated test that the parcel responds to
    # the paradigm (JDEVEM.response_pvalue_), FDR-controlled over the parcels. The max PPM
    # and the class separation are descriptive only: a degenerate mixture gives PPMs near 1
    # to noise voxels, and at low SNR the classes of an active parcel overlap.
    max_ppm, separation = np.zeros(len(present)), np.zeros(len(present))
    for p, lab in enumerate(present):
        res = results[lab]
        cidx = [conditions.index(c) for c in res["conditions_"]]
        mix = res["mixture_"]
        sep = np.abs(mix["mean"][:, 1]) / np.sqrt(np.maximum(mix["var"].sum(1), 1e-300))
        top = ppm[np.ix_(cidx, problem.idx[lab])].max(1) if cidx else np.zeros(0)
        max_ppm[p] = top.max() if top.size else 0.0
        separation[p] = sep.max() if sep.size else 0.0
    hp["max_ppm"] = max_ppm
    hp["class_separation"] = separation
    hp["response_p"] = [results[lab]["response_pvalue_"] for lab in present]
    hp["response_q"] = fdr_bh(hp["response_p"].to_numpy())
    hp["silent"] = hp["response_q"] > SILENT_FDR
    hp["hrf_tempering"] = [float(results[lab]["hrf_tempering_"]) for lab in present]
    hp["n_iter"] = [int(results[lab]["n_iter_"]) for lab in present]
    hp["converged"] = [bool(results[lab]["converged_"]) for lab in present]
    return hp

_STAT_TEXT = {
    "effect": ("posterior mean of the neural response level (NRL)", "percent signal change "
               "per unit of the unit-norm HRF"),
    "variance": ("posterior variance of the NRL", "squared NRL units"),
    "ppm": ("posterior probability map: P(NRL beyond the point where the densities of the "
            "active and inactive classes cross | data) for a condition, P(contrast > 0 | "
            "data) for a contrast", "probability"),
    "labelproba": ("posterior probability of the active class of the label field",
                   "probability"),
    "ttp": ("time to peak of the voxel's parcel HRF", "s"),
    "fwhm": ("full width at half maximum of the voxel's parcel HRF", "s"),
    "height": ("peak height of the voxel's unit-norm parcel HRF", "arbitrary"),
}


def map_metadata(fragment: str, parameters: dict) -> dict:
    """Sidecar metadata of one JDE-VEM voxel map, from its name fragment.

    Parameters
    ----------
    fragment : str
        A key of :attr:`HRFEstimate.voxel_maps` made by :func:`estimate_jde_vem`, e.g.
        ``"contrast-audio_desc-jdevem_stat-ppm_statmap"`` or ``"desc-jdevemHrf_bold"``.
    parameters : dict
        :attr:`HRFEstimate.parameters` of the same estimate (conditions, contrasts, dt).

    Returns
    -------
    dict
        ``Description``, ``Units`` and, for condition/contrast maps, ``Contrast`` (the
        condition or contrast name as given) and ``ContrastWeights`` (over ``conditions``).
    """
    ents = dict(part.split("-", 1) for part in fragment.split("_") if "-" in part)
    if fragment.endswith("_bold"):
        return {"Description": "HRF of each voxel's parcel (JDE-VEM posterior mean, unit "
                               "norm); the 4th dimension is the time after stimulus onset",
                "SamplingPeriod": parameters.get("dt"), "Units": "arbitrary"}
    stat = ents.get("stat", "")
    text, units = _STAT_TEXT.get(stat, (f"JDE-VEM map {fragment}", "arbitrary"))
    meta = {"Description": f"JDE-VEM {text}", "Units": units}
    label = ents.get("contrast")
    if label is not None:
        conditions = list(parameters.get("conditions", []))
        names = {condition_label(c): c for c in conditions}
        contrasts = dict(parameters.get("contrasts", {}))
        names.update({bids_label(k): k for k in contrasts})
        name = names.get(label, label)
        meta["Contrast"] = name
        if name in contrasts:
            meta["ContrastWeights"] = list(contrasts[name])
        elif name in conditions:
            meta["ContrastWeights"] = [float(c == name) for c in conditions]
        meta["Conditions"] = conditions
    return meta
