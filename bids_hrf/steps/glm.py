"""File-level first-level GLM per run and fixed effects across runs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn import image, masking

from bids_hrf.errors import DataError
from bids_hrf.glm.contrasts import (
    ContrastResult,
    default_contrasts,
    expression_names,
    load_contrasts,
)
from bids_hrf.glm.first_level import (
    CANONICAL,
    DesignSpec,
    FirstLevelFit,
    NoiseSpec,
    ParcelHRFs,
    fit_first_level,
)
from bids_hrf.glm.fixed_effects import fixed_effects
from bids_hrf.io.events import read_events
from bids_hrf.options import GLMOptions
from bids_hrf.steps.hrf import read_hrf_estimate
from bids_hrf.steps.prepare import (
    load_img,
    open_img,
    read_confounds,
    read_frame_times,
    read_labels_tsv,
    read_sample_mask,
)
from bids_hrf.steps.surface import read_geometry
from bids_hrf.surface.meshes import smooth_on_mesh
from bids_hrf.timeseries import masked_rows

LOGGER = logging.getLogger("bids_hrf")
STATS = ("effect", "variance", "stat", "z", "p")


def contrast_specs(user_contrasts: dict, conditions: list[str]) -> dict:
    """Return the contrasts to compute: one per condition, then the user's.

    User contrasts naming a condition absent from this run are left out with a warning
    (the fixed effects then use the runs that have it).
    """
    specs = dict(default_contrasts(conditions))
    if user_contrasts:
        for label, spec in load_contrasts(user_contrasts).items():
            missing = [n for n in _names_in(spec) if n not in conditions]
            if missing:
                LOGGER.warning("contrast %s names %s, absent from this run: skipped here",
                               label, ", ".join(missing))
                continue
            specs[label] = spec
    return specs


def _names_in(spec) -> list[str]:
    exprs = spec.expressions if hasattr(spec, "expressions") else [str(spec)]
    names: list[str] = []
    for expr in exprs:
        try:
            names += list(expression_names(expr))
        except ValueError:
            continue
    return names


def first_level_step(run: dict, prepared: dict, hrf_tsv: str, options: GLMOptions,
                     out_dir: str | Path, nprocs: int = 1) -> dict:
    """Fit the first-level GLM of one run and compute its contrasts.

    Parameters
    ----------
    run : dict
        The run's inputs (``bold``, ``mask``, ``events``).
    prepared : dict
        Outputs of :func:`bids_hrf.steps.prepare.prepare_run_step` (``confounds``,
        ``sample_mask`` with the run's frame times, ``atlas_bold``, ``labels``).
    hrf_tsv : str
        The HRF table of the run's group (empty: ``options.hrf_model`` everywhere).
    options : GLMOptions
        HRF method and model, contrasts, noise model, high-pass, smoothing.
    out_dir : path
        Working folder of the step.
    nprocs : int
        Processes of nilearn's AR(1) fit.

    Returns
    -------
    dict
        ``contrasts``: label -> {stat name -> NIfTI path, "type": "t"|"F"};
        ``design``: TSV path; ``design_parcel``: which design was saved; ``conditions``.
    """
    # surface runs: the samples their preparation wrote (see bids_hrf.steps.surface)
    bold, mask = prepared.get("bold", run["bold"]), prepared.get("mask", run["mask"])
    out_dir = Path(out_dir)
    mask_img = load_img(mask, "brain mask")
    geometry = read_geometry(prepared)
    Y = _bold_voxels(bold, mask, mask_img, None if geometry else options.smoothing_fwhm)
    if geometry is not None and options.smoothing_fwhm:
        Y = _smooth_samples(Y, mask_img, geometry, options.smoothing_fwhm)
    bad = _blank_unusable_voxels(Y, bold)
    ev = read_events(run["events"])
    if ev is None:
        raise DataError(f"no events for {Path(bold).name}: the GLM needs an events.tsv",
                        fix="add the events file or use --hrf-method sparse")
    frame_times = read_frame_times(prepared["sample_mask"])  # built once, in prepare
    if len(frame_times) != Y.shape[0]:
        raise DataError(f"BOLD {bold} has {Y.shape[0]} volumes but was prepared with "
                        f"{len(frame_times)}", fix="rerun with a new -w/--work-dir")
    kept = read_sample_mask(prepared["sample_mask"])
    fit = partial(fit_first_level, frame_times=frame_times, events=ev,
                  confounds=read_confounds(prepared["confounds"]), sample_mask=kept,
                  design=DesignSpec(high_pass=options.high_pass),
                  noise=NoiseSpec(noise_model=options.noise_model), n_jobs=nprocs)
    chunked = _fit_in_chunks(fit, Y, _glm_hrf(prepared, hrf_tsv, options, mask_img),
                             options.contrasts)
    results = {label: _write_contrast(label, entry, bad, mask_img, out_dir)
               for label, entry in chunked.contrasts.items()}
    design_key = CANONICAL if CANONICAL in chunked.designs else next(iter(chunked.designs))
    design_path = out_dir / "design.tsv"
    chunked.designs[design_key].to_csv(design_path, sep="\t", index=False, float_format="%.8g")
    r2_path = out_dir / "r_square.nii.gz"
    _save_map(np.concatenate(chunked.r_square, axis=-1), bad, mask_img, r2_path)
    summary = {"conditions": chunked.conditions, "design_key": design_key,
               "hrf_source": chunked.hrf_source, "n_chunks": chunked.n_chunks,
               "n_scans_kept": int(len(frame_times) if kept is None else len(kept))}
    (out_dir / "glm_summary.json").write_text(json.dumps(summary))
    return {"contrasts": results, "design": str(design_path), "design_parcel": design_key,
            "conditions": chunked.conditions, "r_square": str(r2_path), "mask": str(mask)}


def _bold_voxels(bold: str, mask: str, mask_img: nib.Nifti1Image,
                 smoothing_fwhm: float | None) -> np.ndarray:
    """The BOLD series inside the brain mask, (n_scans, n_voxels), NaN/inf kept."""
    if smoothing_fwhm:
        bold_img = image.smooth_img(load_img(bold, "BOLD image"), smoothing_fwhm)
        # ensure_finite=False: nilearn would silently turn NaN/inf into 0
        return masking.apply_mask(bold_img, mask_img, ensure_finite=False)
    # read in chunks of volumes: never the whole 4D array in memory
    bold_img = open_img(bold, "BOLD image")
    if bold_img.ndim != 4 or bold_img.shape[:3] != mask_img.shape[:3] or not np.allclose(
            bold_img.affine, mask_img.affine, atol=1e-3):
        raise DataError(f"brain mask {mask} is not on the grid of the BOLD {bold}",
                        fix="use the brain mask fMRIPrep wrote for this run")
    return masked_rows(bold_img, np.asarray(mask_img.dataobj) > 0, str(bold))


def _smooth_samples(Y: np.ndarray, mask_img, geometry, fwhm: float) -> np.ndarray:
    """Smooth surface samples along the cortical mesh (never along the array grid)."""
    kept = np.flatnonzero(np.asarray(mask_img.dataobj).ravel() > 0)
    full = np.zeros((Y.shape[0], geometry.n_samples))
    full[:, kept] = np.nan_to_num(Y)
    smoothed, _ = smooth_on_mesh(full, geometry, fwhm)
    return smoothed[:, kept].astype(np.float32)


def _blank_unusable_voxels(Y: np.ndarray, bold: str) -> np.ndarray:
    """Set voxels with NaN/inf values or no variance to 0 in place; return their mask."""
    finite = np.isfinite(Y).all(axis=0)
    flat = finite & (np.ptp(np.where(np.isfinite(Y), Y, 0.0), axis=0) == 0)
    bad = ~finite | flat
    if bad.all():
        raise DataError(f"BOLD {bold} has no finite, varying voxel inside its brain mask",
                        fix="check the file and its brain mask")
    if bad.any():
        LOGGER.warning("%s: %d voxel(s) with NaN/inf values and %d constant voxel(s) left "
                       "out of the GLM (their maps are 0)", Path(bold).name,
                       int((~finite).sum()), int(flat.sum()))
        Y[:, bad] = 0.0
    return bad


def _glm_hrf(prepared: dict, hrf_tsv: str, options: GLMOptions,
             mask_img: nib.Nifti1Image) -> str | ParcelHRFs:
    """The HRF of the GLM: the canonical model, or the parcels' HRFs of ``hrf_tsv``."""
    if not options.estimated_hrfs or not hrf_tsv:
        return options.hrf_model
    labels_map, _ = read_labels_tsv(prepared["labels"])
    atlas_img = load_img(prepared["atlas_bold"], "atlas")
    parcels = np.rint(masking.apply_mask(atlas_img, mask_img)).astype(int)
    return ParcelHRFs(read_hrf_estimate(hrf_tsv, options.hrf_method), parcels, labels_map,
                      fallback=options.hrf_model)


@dataclass
class _ChunkedFit:
    """What the fits of the voxel chunks of one run give, gathered."""

    conditions: list[str] = field(default_factory=list)
    contrasts: dict[str, dict] = field(default_factory=dict)
    designs: dict[str, pd.DataFrame] = field(default_factory=dict)
    hrf_source: dict[str, str] = field(default_factory=dict)
    r_square: list[np.ndarray] = field(default_factory=list)
    n_chunks: int = 0

    def add(self, fit: FirstLevelFit, specs: dict, n_voxels: int) -> None:
        """Gather one chunk's fit and its contrasts ``specs``."""
        self.n_chunks += 1
        for key, table in fit.design_matrices.items():
            self.designs.setdefault(key, table)
        self.hrf_source.update(fit.hrf_source)
        self.r_square.append(np.asarray(fit.r_square, dtype=np.float32))
        for label, spec in specs.items():
            res = fit.compute_contrast(spec)
            entry = self.contrasts.setdefault(label, {"type": res.contrast_type, "dof": [],
                                                      **{stat: [] for stat in STATS}})
            for stat in STATS:
                entry[stat].append(np.asarray(getattr(res, stat)))
            entry["dof"].append((np.asarray(res.dof, dtype=np.float32), n_voxels))


def _fit_in_chunks(fit: Callable[..., FirstLevelFit], Y: np.ndarray, hrf: str | ParcelHRFs,
                   user_contrasts: dict | list) -> _ChunkedFit:
    """Fit ``Y`` in chunks of voxels and compute the contrasts of each chunk.

    Voxels are independent in the GLM (OLS, or AR(1) with per-voxel coefficients), so the
    fit runs on chunks of voxels: memory stays ~ Y + a few copies of one chunk. With one
    HRF per parcel, each parcel is fitted once as a whole: chunks are made of whole
    parcels (voxels grouped by parcel, results put back in voxel order), as when the run
    fits in one chunk. Chunks of consecutive voxels split parcels, and each part paid the
    parcel's fixed costs again (its design, and one pseudo-inverse per AR bin).
    """
    out = _ChunkedFit()
    specs: dict = {}
    if isinstance(hrf, ParcelHRFs):
        chunks, order = parcel_chunks(hrf.voxel_parcels, Y.shape[0])
    else:
        chunks, order = voxel_chunks(Y.shape[0], Y.shape[1]), None
    for chunk in chunks:
        chunk_hrf = hrf.subset(chunk) if isinstance(hrf, ParcelHRFs) else hrf
        result = fit(Y[:, chunk], hrf=chunk_hrf)
        if not specs:
            out.conditions = list(result.conditions)
            specs = contrast_specs(user_contrasts, out.conditions)
        n = chunk.stop - chunk.start if isinstance(chunk, slice) else len(chunk)
        out.add(result, specs, n)
    if order is not None:
        _to_voxel_order(out, order)
    return out


def parcel_chunks(voxel_parcels: np.ndarray, n_scans: int,
                  chunk_bytes: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Chunks of whole parcels: voxel indices grouped by parcel (label order, each parcel
    in voxel order), cut between parcels once a chunk reaches the size of
    :func:`voxel_chunks` (a larger parcel is a chunk of its own). Returns the chunks and
    the voxel order they follow."""
    size = max(1000, int((chunk_bytes or GLM_CHUNK_BYTES) // (8 * max(1, n_scans))))
    order = np.argsort(np.asarray(voxel_parcels), kind="stable")
    sorted_labels = np.asarray(voxel_parcels)[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    bounds = [0]
    for start in starts[1:]:
        if start - bounds[-1] >= size:
            bounds.append(int(start))
    bounds.append(len(order))
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)], order


def _to_voxel_order(out: _ChunkedFit, order: np.ndarray) -> None:
    """Put the per-voxel results gathered in ``order`` back in voxel order (in place)."""
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    out.r_square = [np.concatenate(out.r_square)[inverse]]
    for entry in out.contrasts.values():
        for stat in STATS:
            entry[stat] = [np.concatenate(entry[stat], axis=-1)[..., inverse]]
        dof = _join_dof(entry["dof"])
        entry["dof"] = [(dof if dof.ndim == 0 else dof[inverse], order.size)]


def _save_map(values: np.ndarray, bad: np.ndarray, mask_img: nib.Nifti1Image,
              path: Path) -> None:
    """Write one value per voxel (0 at the unusable ones) as a float32 NIfTI."""
    values = np.where(bad, 0.0, values) if values.ndim == 1 else values
    nib.save(masking.unmask(np.asarray(values, dtype=np.float32), mask_img), str(path))


def _write_contrast(label: str, entry: dict, bad: np.ndarray, mask_img: nib.Nifti1Image,
                    out_dir: Path) -> dict:
    """Write the maps of one contrast (gathered over chunks); return their paths."""
    paths = {"type": entry["type"]}
    for stat in STATS:
        path = out_dir / f"{label}_{stat}.nii.gz"
        _save_map(np.concatenate(entry[stat], axis=-1), bad, mask_img, path)
        paths[stat] = str(path)
    dof_path = out_dir / f"{label}_dof.npy"
    np.save(dof_path, _join_dof(entry["dof"]))
    paths["dof"] = str(dof_path)
    return paths


GLM_CHUNK_BYTES = 32 * 1024 ** 2


def voxel_chunks(n_scans: int, n_voxels: int,
                 chunk_bytes: int | None = None) -> list[slice]:
    """Slices of voxels whose float64 time series take at most ``chunk_bytes`` each."""
    size = max(1000, int((chunk_bytes or GLM_CHUNK_BYTES) // (8 * max(1, n_scans))))
    return [slice(i, min(i + size, n_voxels)) for i in range(0, n_voxels, size)]


def _join_dof(parts: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Degrees of freedom of the chunks: as fitted when all agree, else one per voxel."""
    first = parts[0][0]
    if len(parts) == 1 or (first.ndim == 0 and all(p.ndim == 0 and p == first
                                                   for p, _ in parts)):
        return first
    return np.concatenate([np.broadcast_to(p, (n,)) if p.ndim == 0 else p
                           for p, n in parts]).astype(np.float32)


def fixed_effects_step(run_results: list[dict], out_dir: str | Path) -> dict:
    """Combine each t contrast over runs (precision-weighted fixed effects).

    Parameters
    ----------
    run_results : list of dict
        Outputs of :func:`first_level_step`, one per run.

    Returns
    -------
    dict
        ``contrasts``: label -> {stat -> path, "n_runs": int}.
    """
    out_dir = Path(out_dir)
    masks = [load_img(r["mask"], "brain mask") for r in run_results]
    mask_img = masking.intersect_masks(masks, threshold=1, connected=False) \
        if len(masks) > 1 else masks[0]
    labels = sorted({lab for r in run_results for lab in r["contrasts"]})
    out: dict[str, dict] = {}
    for label in labels:
        entries = [r["contrasts"][label] for r in run_results if label in r["contrasts"]]
        if entries[0]["type"] != "t":
            continue
        res = []
        for e in entries:
            eff = masking.apply_mask(nib.load(e["effect"]), mask_img)
            var = masking.apply_mask(nib.load(e["variance"]), mask_img)
            dof_img = np.load(e["dof"])
            dof = float(np.nanmedian(dof_img)) if dof_img.size else 1.0
            res.append(ContrastResult.from_effects(eff, np.maximum(var, 1e-12), dof, "t"))
        combined = fixed_effects(res)
        paths = {"type": "t", "n_runs": len(entries)}
        for stat in STATS:
            path = out_dir / f"{label}_{stat}.nii.gz"
            values = np.asarray(getattr(combined, stat), dtype=np.float32)
            nib.save(masking.unmask(values, mask_img), str(path))
            paths[stat] = str(path)
        out[label] = paths
    if not out:
        LOGGER.warning("no t contrast to combine across runs")
    return {"contrasts": out}
