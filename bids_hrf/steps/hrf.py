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
from nilearn import masking

from bids_hrf.confounds.voxels import clean_voxels
from bids_hrf.errors import DataError
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.registry import HRFContext, ParcelRuns, VoxelRuns
from bids_hrf.io.events import read_events
from bids_hrf.options import HRFOptions
from bids_hrf.reports.sparse_summary import summarise_sparse_run, write_sparse_summary
from bids_hrf.steps.prepare import (
    load_img,
    open_img,
    read_confounds,
    read_frame_times,
    read_labels_tsv,
    read_sample_mask,
)
from bids_hrf.steps.surface import read_geometry
from bids_hrf.surface.meshes import sample_graph

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


def load_run_data(
    run: dict, high_pass: float | None, contiguous_only: bool = False
) -> tuple[RunData, object]:
    """Load one run's voxels in the brain mask, scale to percent signal change, and clean.

    Parameters
    ----------
    run : dict
        The prepared run: ``bold``, ``mask``, ``confounds``, ``sample_mask``, ``events``
        (or None), ``timeseries``, ``tr``.
    high_pass : float or None
        High-pass cut-off (Hz) of the cleaning; None: not filtered.
    contiguous_only : bool
        Keep every volume after the dummy scans (methods that need a regular time grid,
        such as sparse deconvolution); scrubbed volumes are then only regressed, not removed.

    Returns
    -------
    RunData, mask image
    """
    from bids_hrf.timeseries import masked_rows

    bold, mask, sample_mask = run["bold"], run["mask"], run["sample_mask"]
    tr = float(run["tr"])
    mask_img = load_img(mask, "brain mask")
    mask_bool = np.asarray(mask_img.dataobj) > 0
    raw = masked_rows(open_img(bold, "BOLD image"), mask_bool, Path(bold).name)  # float32
    n_vols = raw.shape[0]
    kept = read_sample_mask(sample_mask)
    n_dummy = json.loads(Path(sample_mask).read_text()).get("n_dummy", 0)
    if contiguous_only:
        kept = np.arange(n_dummy, n_vols) if n_dummy else None
    conf = read_confounds(run["confounds"])
    Y, good = clean_voxels(raw, conf.to_numpy() if conf is not None else None, kept, tr, high_pass)
    del raw
    times = read_frame_times(sample_mask)  # built once, in the preparation step
    frame_times = times[kept] if kept is not None else times
    series = pd.read_csv(run["timeseries"], sep="\t")
    if contiguous_only and len(series) != len(frame_times):
        series = pd.DataFrame(columns=series.columns)  # not used by the sparse method
    return RunData(
        Y=Y,
        frame_times=frame_times,
        valid=good,
        events=read_events(run.get("events")),
        parcel_series=series,
    ), mask_img


def _restrict(data: list[RunData], mask_img) -> tuple[list[RunData], object]:
    """Keep the voxels valid in every run; return the data and the effective mask."""
    valid = np.logical_and.reduce([d.valid for d in data])
    if not valid.any():
        raise DataError(
            "no voxel of the brain mask has a finite, non-constant signal in every run",
            fix="check the BOLD files and their masks",
        )
    n_bad = int((~valid).sum())
    if n_bad:
        LOGGER.warning(
            "%d voxel(s) with NaN/inf or constant signal left out of HRF estimation", n_bad
        )
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


def estimate_hrf_step(
    runs: list[dict],
    atlas_bold: str,
    labels: str,
    options: HRFOptions,
    out_dir: str | Path,
    nprocs: int = 1,
) -> dict:
    """Estimate per-parcel HRFs over the runs of one subject/session/task.

    The method comes from the HRF-method registry (:mod:`bids_hrf.hrf.registry`): this
    step loads the data of the kind it declares, calls its estimator and writes what it
    returns; a method's report panels may add what the report draws (``_PANEL_DATA``).

    Parameters
    ----------
    runs : list of dict
        Per run: ``bold``, ``mask``, ``confounds``, ``sample_mask``, ``events``,
        ``timeseries``, ``tr``, ``name``.
    atlas_bold, labels : str
        Parcellation on the BOLD grid and its labels TSV (from the first run).
    options : HRFOptions
        The method and its options.
    out_dir : path
        The step's folder.
    nprocs : int
        Processes the method may use.

    Returns
    -------
    dict
        ``hrf`` (TSV), ``hrf_variance`` (TSV or ""), ``maps`` (list of {fragment, path,
        run}), ``tables`` (list of {fragment, path}), ``parameters`` (JSON path),
        ``method``, and what the method's report panels saved.
    """
    out_dir = Path(out_dir)
    spec = options.spec
    labels_map, _ = read_labels_tsv(labels)
    tr = float(runs[0]["tr"])
    context = HRFContext(
        tr=tr,
        labels=labels_map,
        dt=options.hrf_dt or default_dt(tr),
        hrf_duration=options.hrf_duration,
        hrf_model=options.hrf_model,
        high_pass=options.high_pass,
        hrf_dt=options.hrf_dt,
        contrasts=options.nrl_contrasts,
        n_jobs=nprocs,
        progress=_progress(spec.name),
    )
    data, mask_img = _LOADERS[spec.data](runs, atlas_bold, labels_map, options.high_pass)
    estimate = spec.estimate(data, context, options.settings())
    run_maps = _pop_run_outputs(estimate)
    result = _save_estimate(
        estimate, mask_img, out_dir, _save_run_maps(run_maps, mask_img, runs, out_dir)
    )
    for panel in spec.report_panels:
        if panel in _PANEL_DATA:
            result.update(_PANEL_DATA[panel](data, run_maps, mask_img, context, out_dir))
    return result


def _progress(name: str):
    done = {"n": 0}

    def progress(n_done: int, total: int) -> None:
        if n_done == total or n_done - done["n"] >= max(1, total // 10):
            done["n"] = n_done
            LOGGER.info("%s: %d/%d parcels done", name, n_done, total)

    return progress


def _run_series(run: dict) -> tuple[pd.DataFrame, pd.DataFrame | None, np.ndarray]:
    """Cleaned parcel series of a run (kept volumes), its events and frame times."""
    series = pd.read_csv(run["timeseries"], sep="\t")
    kept = read_sample_mask(run["sample_mask"])
    times = read_frame_times(run["sample_mask"])
    times = times[kept] if kept is not None else times
    return series, read_events(run.get("events")), times


def _no_data(runs, atlas_bold, labels_map, high_pass):
    return None, None


def _parcel_data(runs, atlas_bold, labels_map, high_pass) -> tuple[ParcelRuns, None]:
    names = [labels_map[k] for k in labels_map]
    series, events, times = zip(*(_run_series(r) for r in runs), strict=True)
    return ParcelRuns(
        series=[s[names].to_numpy() for s in series], events=list(events), frame_times=list(times)
    ), None


def _voxel_data(runs, atlas_bold, high_pass, contiguous_only: bool) -> tuple[VoxelRuns, object]:
    """Voxels valid in every run (one grid for all runs), cleaned as the method needs."""
    _check_same_grid(runs)
    multi_echo = contiguous_only and all(r.get("echoes") for r in runs)
    loader = load_echoes_data if multi_echo else load_run_data
    data, masks = zip(*(loader(r, high_pass, contiguous_only) for r in runs), strict=True)
    data, mask_img = _restrict(list(data), masks[0])
    return VoxelRuns(
        Y=[d.Y for d in data],
        events=[d.events for d in data],
        frame_times=[d.frame_times for d in data],
        parcels=_voxel_parcels(atlas_bold, mask_img),
        ijk=_voxel_ijk(mask_img),
        graph=_sample_graph(runs[0], mask_img),
        echo_times=[[float(te) for _, te in r["echoes"]] for r in runs] if multi_echo else None,
    ), mask_img


def load_echoes_data(
    run: dict, high_pass: float | None, contiguous_only: bool = True
) -> tuple[RunData, object]:
    """:func:`load_run_data` of each echo of a multi-echo run (``run["echoes"]``: per-echo
    BOLD and TE), stacked along time: each echo is scaled to percent signal change and
    cleaned with the run's confounds, dummy scans and high-pass exactly as a single-echo
    run; the voxels kept are those valid in every echo."""
    echoes = [
        load_run_data({**run, "bold": bold}, high_pass, contiguous_only)
        for bold, _ in run["echoes"]
    ]
    first, mask_img = echoes[0]
    valid = np.logical_and.reduce([d.valid for d, _ in echoes])
    Y = np.vstack([np.where(valid, d.Y, 0.0) for d, _ in echoes])
    return RunData(
        Y=Y,
        frame_times=first.frame_times,
        valid=valid,
        events=first.events,
        parcel_series=first.parcel_series,
    ), mask_img


def _sample_graph(run: dict, mask_img):
    """Surface runs: the mesh graph between the samples kept (None for volume runs)."""
    geometry = read_geometry(run)
    if geometry is None:
        return None
    kept = np.flatnonzero(np.asarray(mask_img.dataobj).ravel() > 0)
    return sample_graph(geometry)[kept][:, kept].tocsr()


def _voxels_scrubbed(runs, atlas_bold, labels_map, high_pass):
    # not filtered: these methods model the drift themselves (high_pass sets their model)
    return _voxel_data(runs, atlas_bold, None, contiguous_only=False)


def _voxels_contiguous(runs, atlas_bold, labels_map, high_pass):
    return _voxel_data(runs, atlas_bold, high_pass, contiguous_only=True)


#: How each data kind of :data:`bids_hrf.hrf.registry.DATA_KINDS` is loaded.
_LOADERS = {
    "none": _no_data,
    "parcels": _parcel_data,
    "voxels-scrubbed": _voxels_scrubbed,
    "voxels-contiguous": _voxels_contiguous,
}


def _check_same_grid(runs: list[dict]) -> None:
    import nibabel as nib

    shapes = {tuple(nib.load(r["mask"]).shape[:3]) for r in runs}
    if len(shapes) > 1:
        raise DataError(
            f"runs {', '.join(r['name'] for r in runs)} have different grids "
            f"{sorted(shapes)}: HRFs shared across runs need one grid",
            fix="resample the runs to one space/resolution (fMRIPrep --output-spaces with res-)",
        )


def _run_key(key: str) -> tuple[int | None, str]:
    """``"run<i>:<fragment>"`` -> (i, fragment); other keys -> (None, key)."""
    head, sep, rest = key.partition(":")
    if sep and head.startswith("run") and head[3:].isdigit():
        return int(head[3:]), rest
    return None, key


def _pop_run_outputs(estimate: HRFEstimate) -> dict[int, dict]:
    """Take the per-run maps and tables (``run<i>:`` keys) out of ``estimate``.

    Returns
    -------
    dict
        Run index -> ``{"maps": {fragment: values}, "tables": {fragment: table}}``, in
        the order the method gave them.
    """
    out: dict[int, dict] = {}
    for attr in ("maps", "tables"):
        source = estimate.voxel_maps if attr == "maps" else estimate.parcel_tables
        for key in list(source):
            index, fragment = _run_key(key)
            if index is not None:
                out.setdefault(index, {"maps": {}, "tables": {}})[attr][fragment] = source.pop(key)
    return dict(sorted(out.items()))


def _save_run_maps(
    run_maps: dict[int, dict], mask_img, runs: list[dict], out_dir: Path
) -> list[dict]:
    """Write the per-run maps and tables of :func:`_pop_run_outputs`.

    Scan-wise maps get one volume per input volume (dummy scans: 0) so that volume i is
    scan i of the input BOLD; the sidecar says how many leading volumes were zeroed.
    """
    maps: list[dict] = []
    for index, outputs in run_maps.items():
        n_vols = json.loads(Path(runs[index]["sample_mask"]).read_text())["n_volumes"]
        for fragment, values in outputs["maps"].items():
            n_lead = n_vols - values.shape[0] if values.ndim == 2 else 0
            if n_lead > 0:
                values = np.vstack([np.zeros((n_lead, values.shape[1]), values.dtype), values])
            item = _save_map(values, mask_img, out_dir, fragment, index)
            if values.ndim == 2:
                item["metadata"] = {"DummyVolumesZeroed": int(n_lead)}
            maps.append(item)
        for fragment, table in outputs["tables"].items():
            path = out_dir / f"run{index}_{fragment}.tsv"
            table.to_csv(path, sep="\t", index=False)
            maps.append({"fragment": fragment, "path": str(path), "run": index, "kind": "table"})
    return maps


def _sparse_fit_summaries(
    data: VoxelRuns, run_maps: dict[int, dict], mask_img, context: HRFContext, out_dir: Path
) -> dict:
    """What the report's sparse-fits panel draws (first two runs), so it never reloads."""
    report = []
    for index in list(run_maps)[:2]:
        maps = run_maps[index]["maps"]
        kind = "innovation" if "desc-innovation_bold" in maps else "activity"
        Y, denoised = _report_echo(data, index, maps)
        summary = summarise_sparse_run(
            Y,
            maps[f"desc-{kind}_bold"],
            denoised,
            data.frame_times[index],
            data.events[index],
            data.parcels,
            dict(context.labels),
            context.tr,
            kind="innovation" if kind == "innovation" else "activity-inducing",
        )
        report.append(
            {"run": index, **write_sparse_summary(summary, mask_img, out_dir, f"run{index}_report")}
        )
    return {"sparse_report": report}


def _report_echo(data: VoxelRuns, index: int, maps: dict) -> tuple[np.ndarray, np.ndarray]:
    """Data and fit the report draws: the run's, or of a multi-echo run its middle echo."""
    if not data.echo_times:
        return data.Y[index], maps["desc-denoised_bold"]
    k = len(data.echo_times[index]) // 2
    n = data.Y[index].shape[0] // len(data.echo_times[index])
    return data.Y[index][k * n : (k + 1) * n], maps[f"echo-{k + 1}_desc-denoised_bold"]


#: What a report panel (:attr:`MethodSpec.report_panels`) needs saved by the HRF step.
_PANEL_DATA = {"sparse-fits": _sparse_fit_summaries}


def _save_map(values: np.ndarray, mask_img, out_dir: Path, fragment: str, run: int | None) -> dict:
    import nibabel as nib

    values = np.asarray(values, dtype=np.float32)
    img = masking.unmask(values, mask_img)
    tag = "all" if run is None else f"run{run}"
    path = out_dir / f"{tag}_{fragment}.nii.gz"
    nib.save(img, str(path))
    return {"fragment": fragment, "path": str(path), "run": run, "kind": "nifti"}


def _save_estimate(
    estimate: HRFEstimate, mask_img, out_dir: Path, maps: list[dict] | None = None
) -> dict:
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
    params_path.write_text(
        json.dumps(
            {
                "method": estimate.method,
                "SamplingPeriod": estimate.sampling_period,
                "parameters": estimate.parameters,
            },
            default=str,
        )
    )
    return {
        "hrf": str(hrf_path),
        "hrf_variance": var_path,
        "maps": maps,
        "tables": tables,
        "parameters": str(params_path),
        "method": estimate.method,
    }


def read_hrf_estimate(hrf_tsv: str | Path, method: str = "estimate") -> HRFEstimate:
    """Read an HRF table (``time`` then one column per parcel) as an :class:`HRFEstimate`."""
    table = pd.read_csv(hrf_tsv, sep="\t")
    labels = [str(c) for c in table.columns[1:]]
    return HRFEstimate(
        time=table["time"].to_numpy(),
        hrfs=table.iloc[:, 1:].to_numpy(),
        labels=labels,
        method=method,
    )
