"""PyHRF's ``pyhrf_jde_vem_analysis`` on non-BIDS files: read, fit JDE-VEM, write outputs.

File-level plumbing of ``bids-hrf-jde`` (see docs/pyhrf.md): a parcellation, a PyHRF
paradigm CSV and one BOLD file per session in, PyHRF's output files (``jde_vem_*.nii``) and
BIDS-like maps and tables out. The numerical work is
:func:`bids_hrf.hrf.jde.app.estimate_jde_vem`, the BIDS App's JDE-VEM core.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_hrf.errors import DataError
from bids_hrf.io.derivatives import write_json, write_nifti, write_tsv
from bids_hrf.io.paradigm import (
    check_contrast_conditions,
    paradigm_sessions,
    read_paradigm_csv,
    read_pyhrf_contrasts,
    session_events,
)

LOGGER = logging.getLogger("bids_hrf")

#: PyHRF's drifts: 4th-order polynomial, or a DCT basis with a 64 s cut-off period
DRIFTS = {"poly": {"drift_model": "polynomial", "drift_order": 4},
          "cos": {"drift_model": "cosine", "high_pass": 1.0 / 64.0}}


def pyhrf_default_dt(tr: float) -> float:
    """PyHRF's default HRF step: ``tr / trunc(tr)`` (1.2 s for TR 2.4 s); ``tr`` when TR < 1 s
    (where PyHRF divided by zero)."""
    return float(tr) / np.trunc(tr) if tr >= 1.0 else float(tr)


@dataclass
class JDEData:
    """Everything ``bids-hrf-jde`` fits: voxel series of the parcels and the paradigm."""

    parcel_img: nib.Nifti1Image  # the parcellation used (integers)
    mask: np.ndarray  # (x, y, z) bool: voxels analysed (non-zero label, valid in all runs)
    labels: np.ndarray  # (n_voxels,) parcel label of each analysed voxel
    runs: list[np.ndarray]  # (n_scans_r, n_voxels) percent signal change
    events: list[pd.DataFrame]
    frame_times: list[np.ndarray]
    sessions: list[int]
    contrasts: dict[str, np.ndarray] = field(default_factory=dict)
    contrast_expressions: dict[str, str] = field(default_factory=dict)


def _integer_labels(img, path: str) -> np.ndarray:
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"parcellation {path} is {data.ndim}-D, not a 3-D label volume",
                        fix="give a 3-D NIfTI of integer parcel labels (0 = background)")
    values = np.asarray(data, dtype=float)
    finite = np.isfinite(values)
    if not finite.all() or not np.allclose(values, np.rint(values)):
        raise DataError(f"parcellation {path} holds non-integer values (e.g. "
                        f"{values[finite & (values != np.rint(values))][:3].tolist()})",
                        fix="give a label image (integers, 0 = background), not a "
                            "probabilistic or resampled-with-interpolation map")
    labels = np.rint(values).astype(np.int64)
    if not (labels > 0).any():
        raise DataError(f"parcellation {path} has no parcel (every voxel is 0)",
                        fix="give a label image with parcels numbered from 1")
    return labels


def _load(path: str, what: str):
    from bids_hrf.steps.prepare import open_img

    return open_img(path, what)


def load_jde_data(tr: float, parcels_file: str, onsets_file: str, bold_files: list[str],
                  contrasts_file: str | None = None) -> JDEData:
    """Read and check the inputs of ``bids-hrf-jde``.

    The i-th BOLD file is matched to the i-th session of the paradigm (sessions sorted);
    grids must equal the parcellation's; the TR argument wins over the headers (warning).
    Voxel series are scaled to percent signal change of their run mean; voxels that are
    constant or not finite in any run are left out (warning).

    Raises
    ------
    bids_hrf.errors.DataError
        Non-integer parcellation, grid mismatch, too few sessions, a contrast naming an
        unknown condition (case-sensitive), unreadable files.
    """
    from bids_hrf.timeseries import masked_rows

    parcel_img = _load(parcels_file, "parcellation")
    labels3d = _integer_labels(parcel_img, parcels_file)
    paradigm = read_paradigm_csv(onsets_file)
    sessions = paradigm_sessions(paradigm)
    if len(bold_files) > len(sessions):
        raise DataError(
            f"{len(bold_files)} BOLD files for {len(sessions)} session(s) in the paradigm "
            f"{onsets_file} (sessions {', '.join(map(str, sessions))})",
            fix="give one BOLD file per session of the paradigm, in session order")
    if len(bold_files) < len(sessions):
        warnings.warn(f"paradigm {onsets_file} has sessions {sessions} for "
                      f"{len(bold_files)} BOLD file(s): sessions "
                      f"{sessions[len(bold_files):]} are not used", UserWarning, stacklevel=2)
    in_parcel = labels3d > 0
    runs, events, frame_times, valids = [], [], [], []
    for index, bold in enumerate(bold_files):
        img = _load(bold, "BOLD image")
        if len(img.shape) != 4:
            raise DataError(f"BOLD image {bold} is {len(img.shape)}-D, not 4-D",
                            fix="give the 4-D time series of one session")
        if img.shape[:3] != labels3d.shape or not np.allclose(img.affine, parcel_img.affine,
                                                             atol=1e-3):
            raise DataError(
                f"BOLD image {bold} (grid {img.shape[:3]}) and parcellation {parcels_file} "
                f"(grid {labels3d.shape}) are not on the same voxel grid",
                fix=f"resample the parcellation: bids-hrf-parcellation resample {parcels_file} "
                    f"{bold} -o parcellation_on_bold.nii.gz")
        header_tr = float(img.header.get_zooms()[3]) if len(img.header.get_zooms()) > 3 else 0
        units = img.header.get_xyzt_units()[1]
        if units == "msec":
            header_tr /= 1000.0
        if header_tr > 0 and not np.isclose(header_tr, tr, rtol=1e-3):
            warnings.warn(f"{Path(bold).name}: the header says TR {header_tr:g} s, the TR "
                          f"argument {tr:g} s is used", UserWarning, stacklevel=2)
        Y = masked_rows(img, in_parcel, Path(bold).name).astype(np.float64)
        mean = Y.mean(axis=0)
        valid = (np.isfinite(Y).all(axis=0) & (np.abs(mean) > 1e-6)
                 & (Y.std(axis=0) > 1e-6 * np.maximum(np.abs(mean), 1.0)))
        Y = np.where(valid, 100.0 * (Y / np.where(valid, mean, 1.0) - 1.0), 0.0)
        n_scans = Y.shape[0]
        runs.append(Y)
        valids.append(valid)
        frame_times.append(np.arange(n_scans) * tr)
        events.append(session_events(paradigm, sessions[index], onsets_file,
                                     duration=n_scans * tr))
    valid = np.logical_and.reduce(valids)
    if not valid.any():
        raise DataError("no voxel of the parcellation has a finite, non-constant BOLD signal",
                        fix="check that the parcellation covers the brain in the BOLD files")
    if (~valid).any():
        warnings.warn(f"{int((~valid).sum())} voxel(s) of the parcels with constant or "
                      "non-finite signal left out", UserWarning, stacklevel=2)
    runs = [Y[:, valid] for Y in runs]
    mask = np.zeros(labels3d.shape, dtype=bool)
    mask[in_parcel] = valid
    data = JDEData(parcel_img=nib.Nifti1Image(labels3d.astype(np.int32), parcel_img.affine),
                   mask=mask, labels=labels3d[mask], runs=runs, events=events,
                   frame_times=frame_times, sessions=sessions[:len(bold_files)])
    if contrasts_file:
        expressions = read_pyhrf_contrasts(contrasts_file)
        conditions = sorted({c for e in events for c in e["trial_type"]})
        data.contrasts = check_contrast_conditions(expressions, conditions, contrasts_file)
        data.contrast_expressions = expressions
    return data


def _volume(values: np.ndarray, mask: np.ndarray, affine, dtype=np.float32):
    """(n_voxels,) or (k, n_voxels) -> 3-D or 4-D image (0 outside the mask)."""
    values = np.asarray(values)
    if values.ndim == 1:
        out = np.zeros(mask.shape, dtype=dtype)
        out[mask] = values
    else:
        out = np.zeros(mask.shape + (values.shape[0],), dtype=dtype)
        out[mask] = values.T
    return nib.Nifti1Image(out, affine)


def _file_label(name: str) -> str:
    """Keep a condition/contrast name as PyHRF did, minus characters unsafe in file names."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name) or "unnamed"


def write_pyhrf_outputs(estimate, data: JDEData, out_dir: Path) -> dict[str, str]:
    """Write PyHRF's output files (``jde_vem_*.nii``) and return {file: what it holds}."""
    affine = data.parcel_img.affine
    mask = data.mask
    maps = estimate.voxel_maps
    conditions = list(estimate.parameters["conditions"])
    from bids_hrf.hrf.jde.app import bids_label, condition_label

    def vm(label, stat):
        return maps[f"contrast-{label}_desc-jdevem_stat-{stat}_statmap"]

    files: dict[str, str] = {}

    def put(name, img, what):
        write_nifti(out_dir / name, img)
        files[name] = what

    put("jde_vem_roi_mask.nii", data.parcel_img, "the parcellation used (parcel labels)")
    put("jde_vem_hrf_mapped.nii", _volume(maps["desc-jdevemHrf_bold"], mask, affine),
        f"HRF of each voxel's parcel (4th dimension: time, step {estimate.sampling_period:g} s)")
    if estimate.variance is not None:
        names = list(estimate.labels)
        col = {lab: names.index(str(lab)) for lab in np.unique(data.labels)}
        var = np.column_stack([estimate.variance[:, col[lab]] for lab in data.labels])
        put("jde_vem_hrf_variance_mapped.nii", _volume(var, mask, affine),
            "posterior variance of each HRF sample, mapped like jde_vem_hrf_mapped.nii")
    nrls = np.vstack([vm(condition_label(c), "effect") for c in conditions])
    put("jde_vem_nrls.nii", _volume(nrls, mask, affine),
        f"NRL (effect) maps, one volume per condition: {', '.join(conditions)}")
    labels = np.vstack([vm(condition_label(c), "labelproba") for c in conditions])
    put("jde_vem_labels.nii", _volume(labels, mask, affine),
        "posterior probability of the active class, one volume per condition")
    for c in conditions:
        put(f"jde_vem_ppm_a_nrl_{_file_label(c)}.nii",
            _volume(vm(condition_label(c), "ppm"), mask, affine),
            f"PPM of condition {c}: P(NRL > delta | data), delta where the active and "
            "inactive class densities intersect")
    names = list(data.contrasts)
    if names:
        mean = np.vstack([vm(bids_label(k), "effect") for k in names])
        var = np.vstack([vm(bids_label(k), "variance") for k in names])
        put("jde_vem_contrasts.nii", _volume(mean, mask, affine),
            f"contrast maps, one volume per contrast: {', '.join(names)}")
        put("jde_vem_contrasts_variance.nii", _volume(var, mask, affine),
            "posterior variance of each contrast")
        with np.errstate(divide="ignore", invalid="ignore"):
            ncon = np.where(var > 0, mean / np.sqrt(var), 0.0)
        put("jde_vem_ncontrasts.nii", _volume(ncon, mask, affine),
            "normalised contrasts: contrast / sqrt(variance)")
        for k in names:
            put(f"jde_vem_ppm_a_{_file_label(k)}.nii", _volume(vm(bids_label(k), "ppm"), mask,
                                                               affine),
                f"PPM of contrast {k}: P(contrast > 0 | data)")
    return files


def write_bids_like_outputs(estimate, data: JDEData, out_dir: Path,
                            prefix: str = "") -> dict[str, str]:
    """Write the BIDS App's names: ``<prefix>_<fragment>.nii.gz`` maps with JSON sidecars,
    the HRF table (``desc-jdevem_hrf.tsv``) and the parcel tables."""
    from bids_hrf.hrf.jde.app import map_metadata

    files: dict[str, str] = {}
    lead = f"{prefix}_" if prefix else ""
    for fragment, values in estimate.voxel_maps.items():
        name = f"{lead}{fragment}.nii.gz"
        write_nifti(out_dir / name, _volume(values, data.mask, data.parcel_img.affine))
        write_json(out_dir / name.replace(".nii.gz", ".json"),
                   map_metadata(fragment, estimate.parameters))
        files[name] = map_metadata(fragment, estimate.parameters)["Description"]
    table = pd.DataFrame(estimate.hrfs, columns=estimate.labels)
    table.insert(0, "time", estimate.time)
    name = f"{lead}desc-jdevem_hrf.tsv"
    write_tsv(out_dir / name, table)
    files[name] = "HRF of each parcel (columns), time after onset in s"
    for key, tab in estimate.parcel_tables.items():
        name = f"{lead}desc-jdevem_{key}.tsv"
        write_tsv(out_dir / name, tab)
        files[name] = f"parcel table: {key}"
    return files


def bids_prefix(bold_file: str) -> str:
    """``sub-X[_ses-Y][_task-Z]`` from a BIDS-like BOLD file name ("" when it has none)."""
    name = Path(bold_file).name
    found = [m.group(0) for key in ("sub", "ses", "task")
             for m in [re.search(rf"(?:^|_)({key}-[A-Za-z0-9]+)", name)] if m]
    return "_".join(f.lstrip("_") for f in found) if found and found[0].startswith(
        ("sub-", "_sub-")) else ""


def save_processing(path: Path, settings: dict) -> None:
    """Write the resolved settings of the run (PyHRF's ``--save-processing``)."""
    write_json(path, json.loads(json.dumps(settings, default=str)))
