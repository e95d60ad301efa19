"""File-level HRF estimation: one subject/session/task group of runs -> HRF table and maps.

All methods fill the same contract (:class:`bids_hrf.hrf.base.HRFEstimate`): the per-parcel
HRF table feeds the first-level GLM, and the method's voxel maps are written as NIfTI.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from nilearn import masking, signal

from bids_hrf.errors import DataError
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.io.events import read_events
from bids_hrf.steps.prepare import (
    load_img,
    open_img,
    read_confounds,
    read_labels_tsv,
    read_sample_mask,
)

LOGGER = logging.getLogger("bids_hrf")


@dataclass
class RunData:
    """Cleaned voxel data of one run, ready for an HRF method."""

    Y: np.ndarray  # (n_kept, n_voxels), percent signal change, confounds regressed out
    frame_times: np.ndarray  # (n_kept,)
    valid: np.ndarray  # (n_voxels,) bool: finite, non-constant voxels of the brain mask
    events: pd.DataFrame | None
    parcel_series: pd.DataFrame  # (n_kept, n_parcels)


def default_dt(tr: float) -> float:
    """Return an HRF sampling step that divides TR, close to 0.5 s (never above TR)."""
    n = max(1, int(round(tr / 0.5)))
    return tr / n


def load_run_data(bold: str, mask: str, confounds: str, sample_mask: str, events: str | None,
                  timeseries: str, tr: float, high_pass: float | None,
                  contiguous_only: bool = False) -> tuple[RunData, object]:
    """Load one run's voxels in the brain mask, scale to percent signal change, and clean.

    Parameters
    ----------
    contiguous_only : bool
        Keep every volume after the dummy scans (methods that need a regular time grid,
        such as sparse deconvolution); scrubbed volumes are then only regressed, not removed.

    Returns
    -------
    RunData, mask image
    """
    from bids_hrf.timeseries import masked_rows

    mask_img = load_img(mask, "brain mask")
    mask_bool = np.asarray(mask_img.dataobj) > 0
    Y = masked_rows(open_img(bold, "BOLD image"), mask_bool, Path(bold).name)
    Y = Y.astype(np.float64)
    n_vols = Y.shape[0]
    kept = read_sample_mask(sample_mask)
    n_dummy = json.loads(Path(sample_mask).read_text()).get("n_dummy", 0)
    if contiguous_only:
        kept = np.arange(n_dummy, n_vols) if n_dummy else None
    conf = read_confounds(confounds)
    mean = Y.mean(axis=0)
    good = np.isfinite(mean) & (np.abs(mean) > 1e-6) & np.isfinite(Y).all(axis=0) \
        & (Y.std(axis=0) > 1e-6 * np.maximum(np.abs(mean), 1.0))
    Y = np.where(good, 100.0 * (Y / np.where(good, mean, 1.0) - 1.0), 0.0)
    Y = np.nan_to_num(Y, nan=0.0, posinf=0.0, neginf=0.0)
    Y = signal.clean(Y, confounds=conf.to_numpy() if conf is not None else None,
                     sample_mask=kept, t_r=tr, high_pass=high_pass or None, detrend=False,
                     standardize=None, standardize_confounds=True)
    frame_times = (np.arange(n_vols) * tr)[kept] if kept is not None else np.arange(n_vols) * tr
    series = pd.read_csv(timeseries, sep="\t")
    if contiguous_only and len(series) != len(frame_times):
        series = pd.DataFrame(columns=series.columns)  # not used by the sparse method
    return RunData(Y=Y, frame_times=frame_times, valid=good, events=read_events(events),
                   parcel_series=series), mask_img


def _restrict(data: list[RunData], mask_img) -> tuple[list[RunData], object]:
    """Keep the voxels valid in every run; return the data and the effective mask."""
    valid = np.logical_and.reduce([d.valid for d in data])
    if not valid.any():
        raise DataError("no voxel of the brain mask has a finite, non-constant signal in "
                        "every run", fix="check the BOLD files and their masks")
    n_bad = int((~valid).sum())
    if n_bad:
        LOGGER.warning("%d voxel(s) with NaN/inf or constant signal left out of HRF "
                       "estimation", n_bad)
    for d in data:
        d.Y = d.Y[:, valid]
        d.valid = d.valid[valid]
    effective = masking.unmask(valid.astype(np.uint8), mask_img)
    return data, effective


def _voxel_parcels(atlas_bold: str, mask_img) -> np.ndarray:
    atlas_img = load_img(atlas_bold, "atlas")
    return np.rint(masking.apply_mask(atlas_img, mask_img)).astype(int)


def _voxel_ijk(mask_img) -> np.ndarray:
    return np.argwhere(np.asarray(mask_img.dataobj) > 0)


def estimate_hrf_step(runs: list[dict], atlas_bold: str, labels: str, method: str,
                      hrf_model: str, hrf_duration: float, hrf_dt: float | None,
                      high_pass: float, options: dict, contrasts: dict,
                      out_dir: str | Path, nprocs: int = 1) -> dict:
    """Estimate per-parcel HRFs over the runs of one subject/session/task.

    Parameters
    ----------
    runs : list of dict
        Per run: ``bold``, ``mask``, ``confounds``, ``sample_mask``, ``events``,
        ``timeseries``, ``tr``, ``name``.
    atlas_bold, labels : str
        Parcellation on the BOLD grid and its labels TSV (from the first run).
    method : {"canonical", "fir", "jde-vem", "sparse"}
    contrasts : dict
        Label -> weights over sorted condition names (JDE-VEM NRL contrasts).

    Returns
    -------
    dict
        ``hrf`` (TSV), ``hrf_variance`` (TSV or ""), ``maps`` (list of {fragment, path,
        run}), ``tables`` (list of {fragment, path}), ``parameters`` (dict).
    """
    out_dir = Path(out_dir)
    labels_map, _ = read_labels_tsv(labels)
    names = [labels_map[k] for k in labels_map]
    tr = float(runs[0]["tr"])
    dt = hrf_dt or default_dt(tr)
    maps: list[dict] = []
    if method == "canonical":
        from bids_hrf.hrf.basis import canonical_estimate

        estimate = canonical_estimate(names, hrf_model=hrf_model, dt=dt, duration=hrf_duration)
        mask_img = None
    elif method == "fir":
        from bids_hrf.hrf.fir.estimator import estimate_fir

        series, events, times = zip(*(_run_series(r) for r in runs), strict=True)
        estimate = estimate_fir([s[names].to_numpy() for s in series], list(events),
                                list(times), tr, names, fir_duration=hrf_duration,
                                high_pass=0.0, dt=hrf_dt)
        mask_img = None
    elif method == "jde-vem":
        estimate, mask_img = _jde(runs, atlas_bold, labels_map, options, contrasts, dt,
                                  hrf_duration, nprocs, high_pass=high_pass,
                                  hrf_model=hrf_model)
    elif method == "sparse":
        estimate, mask_img, maps, report = _sparse(runs, atlas_bold, labels_map, options,
                                                   hrf_model, dt, hrf_duration, high_pass,
                                                   nprocs, out_dir)
        return {**_save_estimate(estimate, mask_img, out_dir, maps), "sparse_report": report}
    else:  # pragma: no cover - the parser restricts the choices
        raise ValueError(f"unknown HRF method {method!r}")
    return _save_estimate(estimate, mask_img, out_dir, maps)


def _run_series(run: dict) -> tuple[pd.DataFrame, pd.DataFrame | None, np.ndarray]:
    """Cleaned parcel series of a run (kept volumes), its events and frame times."""
    series = pd.read_csv(run["timeseries"], sep="\t")
    kept = read_sample_mask(run["sample_mask"])
    n_vols = json.loads(Path(run["sample_mask"]).read_text())["n_volumes"]
    times = np.arange(n_vols) * float(run["tr"])
    times = times[kept] if kept is not None else times
    return series, read_events(run.get("events")), times


def _load(run: dict, high_pass: float | None, contiguous_only: bool = False):
    return load_run_data(run["bold"], run["mask"], run["confounds"], run["sample_mask"],
                         run.get("events"), run["timeseries"], float(run["tr"]), high_pass,
                         contiguous_only=contiguous_only)


def _check_same_grid(runs: list[dict]) -> None:
    import nibabel as nib

    shapes = {tuple(nib.load(r["mask"]).shape[:3]) for r in runs}
    if len(shapes) > 1:
        raise DataError(f"runs {', '.join(r['name'] for r in runs)} have different grids "
                        f"{sorted(shapes)}: HRFs shared across runs need one grid",
                        fix="resample the runs to one space/resolution (fMRIPrep "
                            "--output-spaces with res-)")


def _jde(runs, atlas_bold, labels_map, options, contrasts, dt, hrf_duration, nprocs,
         high_pass: float | None = 0.01, hrf_model: str = "spm"):
    """JDE-VEM over the runs of a group; ``high_pass`` (Hz, 0: constant only) sets the
    cosine drift of the model (the data are not filtered beforehand); ``hrf_model`` the
    canonical HRF (initial HRF, fixed HRF with ``--no-estimate-hrf``)."""
    from bids_hrf.hrf.jde.app import estimate_jde_vem

    _check_same_grid(runs)
    data, masks = zip(*(_load(r, None) for r in runs), strict=True)
    data, mask_img = _restrict(list(data), masks[0])
    parcels = _voxel_parcels(atlas_bold, mask_img)
    done = {"n": 0}

    def progress(n_done: int, total: int) -> None:
        if n_done == total or n_done - done["n"] >= max(1, total // 10):
            done["n"] = n_done
            LOGGER.info("JDE-VEM: %d/%d parcels done", n_done, total)

    estimate = estimate_jde_vem(
        [d.Y for d in data], [d.events for d in data], [d.frame_times for d in data],
        float(runs[0]["tr"]), parcels, labels_map, _voxel_ijk(mask_img),
        contrasts=contrasts or None, n_jobs=nprocs, progress=progress,
        dt=dt, hrf_duration=hrf_duration, beta=options.get("jde_beta", 1.0),
        sigma_h=options.get("jde_sigma_h", 0.1),
        hrf_hyperprior=options.get("jde_hrf_hyperprior"), hrf_model=hrf_model,
        n_iter_min=options.get("jde_iter_min", 5), n_iter_max=options.get("jde_iter_max", 100),
        zero_constraint=options.get("zero_constraint", True),
        estimate_hrf=options.get("estimate_hrf", True),
        drift_model="cosine" if high_pass else None, high_pass=high_pass or 0.01)
    return estimate, mask_img


def _sparse(runs, atlas_bold, labels_map, options, hrf_model, dt, hrf_duration, high_pass,
            nprocs, out_dir):
    from bids_hrf.errors import UsageError
    from bids_hrf.hrf.sparse.app import estimate_sparse, hrf_parameter_table
    from bids_hrf.reports.sparse_summary import summarise_sparse_run, write_sparse_summary

    criterion = options.get("sparse_criterion", "bic")
    if options.get("sparse_group", 0.0) > 0 and criterion in ("bic", "aic"):
        raise UsageError(f"--sparse-group {options['sparse_group']} needs a FISTA criterion, "
                         f"not --sparse-criterion {criterion} (LARS is voxel-wise)",
                         fix="add --sparse-criterion mad (or ut, lut, mad_update, ...)")
    if options.get("sparse_group", 0.0) > 1:
        raise UsageError(f"--sparse-group must be in [0, 1], got {options['sparse_group']}",
                         fix="give a weight between 0 (voxel-wise L1) and 1 (L2,1 only)")
    _check_same_grid(runs)
    estimates = []
    maps: list[dict] = []
    report: list[dict] = []  # what the report draws, so that it never reloads the BOLD
    mask_img = None
    for index, run in enumerate(runs):
        data, mask_img = _load(run, high_pass, contiguous_only=True)
        (data,), mask_img = _restrict([data], mask_img)
        parcels = _voxel_parcels(atlas_bold, mask_img)
        LOGGER.info("sparse deconvolution of %s (%d voxels)", run["name"], data.Y.shape[1])
        est = estimate_sparse(
            data.Y, float(run["tr"]), parcels, labels_map,
            criterion=criterion,
            group=options.get("sparse_group", 0.0),
            block_model=options.get("sparse_block", False),
            n_surrogates=options.get("stability_surrogates", 0),
            estimate_hrf=options.get("estimate_hrf", True),
            hrf_model=hrf_model.split("+")[0].strip(), dt=dt, hrf_duration=hrf_duration,
            high_pass=high_pass or 0.0, n_jobs=nprocs)
        estimates.append(est)
        if index < 2:
            kind = "innovation" if options.get("sparse_block", False) else "activity"
            summary = summarise_sparse_run(
                data.Y, est.voxel_maps[f"desc-{kind}_bold"], est.voxel_maps["desc-denoised_bold"],
                data.frame_times, data.events, parcels, labels_map, float(run["tr"]),
                kind="innovation" if kind == "innovation" else "activity-inducing")
            report.append({"run": index, "name": run["name"],
                           **write_sparse_summary(summary, mask_img, out_dir,
                                                  f"run{index}_report")})
        # Scan-wise maps get one volume per input volume (dummy scans: 0) so that volume i
        # is scan i of the input BOLD; the sidecar says how many leading volumes were zeroed.
        n_vols = json.loads(Path(run["sample_mask"]).read_text())["n_volumes"]
        n_lead = n_vols - data.Y.shape[0]
        for fragment, values in est.voxel_maps.items():
            if values.ndim == 2 and n_lead > 0:
                values = np.vstack([np.zeros((n_lead, values.shape[1])), values])
            item = _save_map(values, mask_img, out_dir, fragment, index)
            if values.ndim == 2:
                item["metadata"] = {"DummyVolumesZeroed": int(n_lead)}
            maps.append(item)
        for key, table in est.parcel_tables.items():
            path = out_dir / f"run{index}_{key}.tsv"
            table.to_csv(path, sep="\t", index=False)
            maps.append({"fragment": key, "path": str(path), "run": index, "kind": "table"})
    first = estimates[0]
    hrfs = np.mean([e.hrfs for e in estimates], axis=0)
    norms = np.linalg.norm(hrfs, axis=0)
    hrfs = hrfs / np.where(norms > 0, norms, 1.0)
    variance = (np.var([e.hrfs for e in estimates], axis=0) / len(estimates)
                if len(estimates) > 1 and options.get("estimate_hrf", True) else None)
    combined = HRFEstimate(time=first.time, hrfs=hrfs, labels=first.labels, method="sparse",
                           variance=variance,
                           parameters={**first.parameters, "n_runs_averaged": len(estimates)},
                           parcel_tables=(hrf_parameter_table(first.time, hrfs, first.labels)
                                          if len(estimates) > 1 else {}))
    return combined, mask_img, maps, report


def _save_map(values: np.ndarray, mask_img, out_dir: Path, fragment: str,
              run: int | None) -> dict:
    import nibabel as nib

    values = np.asarray(values, dtype=np.float32)
    img = masking.unmask(values, mask_img)
    tag = "all" if run is None else f"run{run}"
    path = out_dir / f"{tag}_{fragment}.nii.gz"
    nib.save(img, str(path))
    return {"fragment": fragment, "path": str(path), "run": run, "kind": "nifti"}


def _save_estimate(estimate: HRFEstimate, mask_img, out_dir: Path,
                   maps: list[dict] | None = None) -> dict:
    maps = list(maps or [])
    table = pd.DataFrame(estimate.hrfs, columns=estimate.labels)
    table.insert(0, "time", estimate.time)
    hrf_path = out_dir / "hrf.tsv"
    table.to_csv(hrf_path, sep="\t", index=False, float_format="%.8g")
    var_path = ""
    if estimate.variance is not None:
        var = pd.DataFrame(estimate.variance, columns=estimate.labels)
        var.insert(0, "time", estimate.time)
        var_path = str(out_dir / "hrf_variance.tsv")
        var.to_csv(var_path, sep="\t", index=False, float_format="%.8g")
    if mask_img is not None:
        for fragment, values in estimate.voxel_maps.items():
            maps.append(_save_map(values, mask_img, out_dir, fragment, None))
    tables = []
    for key, tab in estimate.parcel_tables.items():
        path = out_dir / f"table_{key}.tsv"
        tab.to_csv(path, sep="\t", index=False, float_format="%.8g")
        tables.append({"fragment": key, "path": str(path)})
    params_path = out_dir / "hrf_parameters.json"
    params_path.write_text(json.dumps({"method": estimate.method,
                                       "SamplingPeriod": estimate.sampling_period,
                                       "parameters": estimate.parameters}, default=str))
    return {"hrf": str(hrf_path), "hrf_variance": var_path, "maps": maps, "tables": tables,
            "parameters": str(params_path), "method": estimate.method}


def read_hrf_estimate(hrf_tsv: str | Path, method: str = "estimate") -> HRFEstimate:
    """Read an HRF table (``time`` then one column per parcel) as an :class:`HRFEstimate`."""
    table = pd.read_csv(hrf_tsv, sep="\t")
    labels = [str(c) for c in table.columns[1:]]
    return HRFEstimate(time=table["time"].to_numpy(), hrfs=table.iloc[:, 1:].to_numpy(),
                       labels=labels, method=method)
