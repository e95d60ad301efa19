"""Synthetic fMRIPrep-like *surface* derivatives with a known truth (issue 12).

:func:`make_surface_dataset` writes a raw BIDS dataset (events, task sidecar) and

* ``--space fsaverage5``: ``derivatives/fmriprep/sub-XX/func/sub-XX_task-loc_run-N_hemi-{L,R}
  _space-fsaverage5_bold.func.gii`` (one data array per volume, as fMRIPrep writes them),
  on nilearn's offline fsaverage5 mesh (10242 vertices per hemisphere);
* ``--space fsLR``: ``..._space-fsLR_den-91k_bold.dtseries.nii``: a *reduced* grayordinate
  set built with nibabel's CIFTI-2 axes (the fsaverage5 cortex vertices standing for the
  fsLR 32k ones, declared with 32492-vertex hemispheres, plus two subcortical structures
  of voxels), enough for tests and the demo without the fsLR meshes; with
  ``full_density=True`` a true-size 91k grayordinate set instead (:mod:`._fslr91k`: 29696 +
  29716 of 32492 vertices per hemisphere on a Fibonacci sphere lattice, a contiguous
  "medial wall" left out, and 31870 subcortical voxels in the 19 structures of the HCP 91k
  volume on its 2 mm grid: 91282 grayordinates), for benchmarks;

with the confounds TSV of each run, an atlas (``.label.gii`` pair or ``.dlabel.nii``) that
does *not* follow the truth's parcels, and ``derivatives/truth`` (truth per sample: active
condition, HRF time to peak; the true HRF of each region).

The truth: cortex split into contiguous regions (k-means of sphere coordinates, per
hemisphere); each region responds to one of two conditions or none, with its own double-
gamma HRF (time to peak 4-7 s); AR(1) noise, drifts, motion-coupled artefacts; a "medial
wall" cap of constant vertices (fMRIPrep's surface series carry no signal there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ._fslr91k import fslr91k_samples, fslr91k_sphere
from ._signals import double_gamma_hrf, hrf_time, make_events
from ._writers import derivative_description, write_json, write_tsv

CONDITIONS = ("A", "B")
_CORTEX = {"L": "CIFTI_STRUCTURE_CORTEX_LEFT", "R": "CIFTI_STRUCTURE_CORTEX_RIGHT"}
_SUBCORTEX = ("CIFTI_STRUCTURE_THALAMUS_LEFT", "CIFTI_STRUCTURE_THALAMUS_RIGHT")
FSLR_VERTICES = 32492


@dataclass
class SurfaceDataset:
    """Paths and truth of a generated surface dataset."""

    bids_dir: Path
    fmriprep_dir: Path
    atlas: Path  # hemi-L .label.gii or .dlabel.nii
    truth: pd.DataFrame  # per sample: structure, vertex, region, condition, ttp
    subjects: list[str]
    space: str


def _sphere() -> dict[str, np.ndarray]:
    from nilearn.datasets import load_fsaverage

    mesh = load_fsaverage("fsaverage5")["sphere"]
    return {h: np.asarray(mesh.parts[p].coordinates) for h, p in (("L", "left"), ("R", "right"))}


def _regions(coords: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Contiguous regions on a sphere: nearest of ``n`` random centres (0..n-1)."""
    unit = coords / np.linalg.norm(coords, axis=1, keepdims=True)
    centres = unit[rng.choice(unit.shape[0], n, replace=False)]
    return np.argmax(unit @ centres.T, axis=1)


def _truth(n_regions: int, rng: np.random.Generator) -> pd.DataFrame:
    """Per region: responding condition ('' none) and HRF time to peak."""
    conds = np.array([CONDITIONS[i % 2] if i % 3 != 2 else "" for i in range(n_regions)])
    return pd.DataFrame(
        {
            "region": np.arange(n_regions),
            "condition": rng.permutation(conds),
            "ttp": np.round(rng.uniform(4.0, 7.0, n_regions), 2),
        }
    )


def _samples(
    space: str, n_regions: int, rng, full_density: bool = False
) -> tuple[pd.DataFrame, dict]:
    """Every sample: structure, vertex (or voxel ijk), region (-1: medial wall / none)."""
    if full_density:
        return fslr91k_samples(n_regions, rng, _regions, _CORTEX)
    sphere = _sphere()
    rows = []
    per_hemi = n_regions // 2
    for k, hemi in enumerate("LR"):
        coords = sphere[hemi]
        region = _regions(coords, per_hemi, rng) + k * per_hemi
        unit = coords / np.linalg.norm(coords, axis=1, keepdims=True)
        medial = (unit[:, 0] * (1 if hemi == "L" else -1)) > 0.93  # a cap on the midline
        region[medial] = -1
        keep = ~medial if space == "fsLR" else np.ones(coords.shape[0], bool)  # CIFTI: no wall
        vert = np.flatnonzero(keep)
        rows.append(
            pd.DataFrame(
                {
                    "structure": _CORTEX[hemi],
                    "vertex": vert,
                    "i": -1,
                    "j": -1,
                    "k": -1,
                    "region": region[vert],
                }
            )
        )
    extra = {}
    if space == "fsLR":
        for s, name in enumerate(_SUBCORTEX):
            ijk = np.argwhere(np.ones((4, 4, 3), bool)) + [2 + 8 * s, 10, 6]
            rows.append(
                pd.DataFrame(
                    {
                        "structure": name,
                        "vertex": -1,
                        "i": ijk[:, 0],
                        "j": ijk[:, 1],
                        "k": ijk[:, 2],
                        "region": n_regions - 1 - s,
                    }
                )
            )
        extra = {
            "affine": np.diag([2.0, 2.0, 2.0, 1.0]) + np.c_[np.zeros((4, 3)), [-20, -20, -10, 0]],
            "shape": (24, 24, 16),
        }
    return pd.concat(rows, ignore_index=True), extra


def _bold(
    samples: pd.DataFrame,
    truth: pd.DataFrame,
    events: pd.DataFrame,
    n_scans: int,
    tr: float,
    snr: float,
    rng,
) -> tuple[np.ndarray, np.ndarray]:
    """(n_scans, n_samples) BOLD and the 6 motion parameters of a run."""
    fine = 0.1
    t_fine = np.arange(0, n_scans * tr, fine)
    onsets = {c: np.zeros(t_fine.size) for c in CONDITIONS}
    for row in events.itertuples():
        sl = (t_fine >= row.onset) & (t_fine < row.onset + row.duration)
        onsets[row.trial_type][sl] = 1.0
    frames = (np.arange(n_scans) * tr / fine).astype(int)
    response = np.zeros((n_scans, len(truth)))
    for r in truth.itertuples():
        if r.condition:
            h = double_gamma_hrf(r.ttp, np.arange(0, 32, fine))
            conv = np.convolve(onsets[r.condition], h)[: t_fine.size] * fine
            response[:, r.region] = conv[frames] / max(conv.max(), 1e-9)
    region = samples["region"].to_numpy()
    gain = rng.uniform(0.6, 1.4, region.size)
    signal = np.where(region >= 0, response[:, np.maximum(region, 0)] * gain, 0.0)
    noise = np.zeros_like(signal)
    eps = rng.standard_normal(signal.shape)
    for t in range(n_scans):
        noise[t] = (0.3 * noise[t - 1] if t else 0.0) + eps[t]
    # head motion: translations (mm) and rotations (rad) of a few hundredths of a mm per scan
    # (framewise displacement ~0.2 mm, as in compliant participants)
    steps = rng.normal(0, 1, (n_scans, 6)) * np.r_[[0.04] * 3, [0.0006] * 3]
    motion = np.cumsum(steps, axis=0)
    drift = np.linspace(-1, 1, n_scans)[:, None] * rng.normal(0, 0.5, region.size)
    artefact = motion[:, :1] * rng.normal(0, 2.0, region.size)
    baseline = 1000.0 * rng.uniform(0.8, 1.2, region.size)
    bold = baseline * (1 + 0.01 * (snr * signal + noise + drift + artefact))
    bold[:, region < 0] = np.where(
        samples["structure"].str.contains("CORTEX").to_numpy()[region < 0], 0.0, bold[:, region < 0]
    )
    return bold.astype(np.float32), motion


def _confounds(motion: np.ndarray) -> pd.DataFrame:
    names = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    table = pd.DataFrame(motion, columns=names)
    diff = np.vstack([np.zeros((1, 6)), np.diff(motion, axis=0)])
    fd = np.abs(diff[:, :3]).sum(1) + 50 * np.abs(diff[:, 3:]).sum(1)
    table["framewise_displacement"] = fd
    table.loc[0, "framewise_displacement"] = np.nan
    for c in names:
        table[f"{c}_derivative1"] = np.r_[np.nan, np.diff(table[c])]
    table["global_signal"] = 0.0 + np.random.default_rng(1).normal(0, 1, len(table))
    table["csf"] = np.random.default_rng(2).normal(0, 1, len(table))
    table["white_matter"] = np.random.default_rng(3).normal(0, 1, len(table))
    return table


def _brain_models(samples: pd.DataFrame, extra: dict) -> nib.cifti2.BrainModelAxis:
    axes = []
    for name, part in samples.groupby("structure", sort=False):
        if part["vertex"].iloc[0] >= 0:
            axes.append(
                nib.cifti2.BrainModelAxis.from_surface(
                    part["vertex"].to_numpy(), FSLR_VERTICES, name
                )
            )
        else:
            axes.append(
                nib.cifti2.BrainModelAxis.from_mask(
                    _mask(part[["i", "j", "k"]].to_numpy(), extra["shape"]), name, extra["affine"]
                )
            )
    out = axes[0]
    for a in axes[1:]:
        out = out + a
    return out


def _mask(ijk: np.ndarray, shape: tuple) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(ijk.T)] = True
    return mask


def _write_bold(
    func: Path,
    prefix: str,
    space: str,
    bold: np.ndarray,
    samples: pd.DataFrame,
    extra: dict,
    tr: float,
) -> None:
    if space == "fsLR":
        models = _brain_models(samples, extra)
        series = nib.cifti2.SeriesAxis(0.0, tr, bold.shape[0], "SECOND")
        nib.save(
            nib.cifti2.Cifti2Image(bold, header=(series, models)),
            str(func / f"{prefix}_space-fsLR_den-91k_bold.dtseries.nii"),
        )
        write_json(func / f"{prefix}_space-fsLR_den-91k_bold.json", {"RepetitionTime": tr})
        return
    for hemi in "LR":
        idx = np.flatnonzero(samples["structure"].to_numpy() == _CORTEX[hemi])
        img = nib.gifti.GiftiImage()
        for t in range(bold.shape[0]):
            img.add_gifti_data_array(
                nib.gifti.GiftiDataArray(
                    bold[t, idx], intent="NIFTI_INTENT_TIME_SERIES", datatype="NIFTI_TYPE_FLOAT32"
                )
            )
        name = f"{prefix}_hemi-{hemi}_space-{space}_bold"
        nib.save(img, str(func / f"{name}.func.gii"))
        write_json(func / f"{name}.json", {"RepetitionTime": tr})


def _write_atlas(
    atlas_dir: Path, space: str, samples: pd.DataFrame, extra: dict, n_parcels: int, rng
) -> Path:
    """An atlas of ``n_parcels`` contiguous parcels, drawn independently of the truth."""
    sphere = fslr91k_sphere() if extra.get("full_density") else _sphere()
    per_hemi = n_parcels // 2
    labels = {h: _regions(sphere[h], per_hemi, rng) + 1 + k * per_hemi for k, h in enumerate("LR")}
    names = {i: f"parcel{i:03d}" for i in range(1, 2 * per_hemi + 1)}
    if space != "fsLR":
        for hemi in "LR":
            img = nib.gifti.GiftiImage()
            table = nib.gifti.GiftiLabelTable()
            for key, name in {0: "???", **names}.items():
                lab = nib.gifti.GiftiLabel(key=key, red=0.5, green=0.5, blue=0.5, alpha=1.0)
                lab.label = name
                table.labels.append(lab)
            img.labeltable = table
            img.add_gifti_data_array(
                nib.gifti.GiftiDataArray(
                    labels[hemi].astype(np.int32),
                    intent="NIFTI_INTENT_LABEL",
                    datatype="NIFTI_TYPE_INT32",
                )
            )
            nib.save(
                img, str(atlas_dir / f"hemi-{hemi}_space-{space}_atlas-SurfSim_dseg.label.gii")
            )
        return atlas_dir / f"hemi-L_space-{space}_atlas-SurfSim_dseg.label.gii"
    structure = samples["structure"].to_numpy()
    vertex = samples["vertex"].to_numpy()
    subcortex = list(dict.fromkeys(structure[vertex < 0]))  # in order of the brain models
    values = np.zeros(len(samples))
    for hemi in "LR":
        sel = structure == _CORTEX[hemi]
        values[sel] = labels[hemi][vertex[sel]]
    for k, name in enumerate(subcortex):
        values[structure == name] = 2 * per_hemi + 1 + k
    names.update(
        {2 * per_hemi + 1 + k: n.split("_", 2)[2].lower() for k, n in enumerate(subcortex)}
    )
    table = {0: ("???", (0, 0, 0, 0))}
    table.update({k: (v, (0.5, 0.5, 0.5, 1.0)) for k, v in names.items()})
    axis = nib.cifti2.LabelAxis(["SurfSim"], [table])
    path = atlas_dir / "space-fsLR_den-91k_atlas-SurfSim_dseg.dlabel.nii"
    nib.save(
        nib.cifti2.Cifti2Image(
            np.asarray(values, np.float32)[None], header=(axis, _brain_models(samples, extra))
        ),
        str(path),
    )
    return path


def make_surface_dataset(
    path: str | Path,
    space: str = "fsaverage5",
    n_subjects: int = 2,
    n_runs: int = 2,
    n_scans: int = 120,
    tr: float = 2.0,
    snr: float = 2.0,
    n_regions: int = 12,
    n_parcels: int = 40,
    seed: int = 0,
    full_density: bool = False,
) -> SurfaceDataset:
    """Write a surface dataset (see the module docstring); ``space`` fsaverage5 or fsLR.

    ``full_density`` (fsLR only): the true-size 91k grayordinate set (91282 samples) instead
    of the reduced one of the tests and the demo.
    """
    if space not in ("fsaverage5", "fsLR"):
        raise ValueError(f"space must be fsaverage5 or fsLR, got {space!r}")
    if full_density and space != "fsLR":
        raise ValueError("full_density applies to space='fsLR' only (fsaverage5 is full size)")
    root = Path(path)
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} exists and is not empty")
    rng = np.random.default_rng(seed)
    samples, extra = _samples(space, n_regions, rng, full_density)
    truth = _truth(n_regions, rng)
    fmriprep = root / "derivatives" / "fmriprep"
    for d in (fmriprep, root / "derivatives" / "atlas", root / "derivatives" / "truth"):
        d.mkdir(parents=True, exist_ok=True)
    write_json(
        root / "dataset_description.json",
        {
            "Name": "bids_hrf synthetic surface localizer",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "License": "CC0",
        },
    )
    write_json(root / "task-loc_bold.json", {"RepetitionTime": tr, "TaskName": "loc"})
    write_json(
        fmriprep / "dataset_description.json",
        derivative_description(
            "fMRIPrep (simulated surface outputs)", {"Name": "fMRIPrep", "Version": "23.2.0"}
        ),
    )
    (root / ".bidsignore").write_text("derivatives/\n")
    subjects = [f"{i + 1:02d}" for i in range(n_subjects)]
    write_tsv(
        root / "participants.tsv",
        pd.DataFrame(
            {
                "participant_id": [f"sub-{s}" for s in subjects],
                "group": ["control", "patient"] * (n_subjects // 2)
                + ["control"] * (n_subjects % 2),
            }
        ),
    )
    for sub in subjects:
        func = fmriprep / f"sub-{sub}" / "func"
        raw = root / f"sub-{sub}" / "func"
        func.mkdir(parents=True)
        raw.mkdir(parents=True)
        for run in range(1, n_runs + 1):
            prefix = f"sub-{sub}_task-loc_run-{run}"
            events = make_events(CONDITIONS, n_scans, tr, 0, rng)
            write_tsv(raw / f"{prefix}_events.tsv", events)
            bold, motion = _bold(samples, truth, events, n_scans, tr, snr, rng)
            _write_bold(func, prefix, space, bold, samples, extra, tr)
            write_tsv(func / f"{prefix}_desc-confounds_timeseries.tsv", _confounds(motion))
    atlas = _write_atlas(root / "derivatives" / "atlas", space, samples, extra, n_parcels, rng)
    table = samples.merge(truth, how="left", left_on="region", right_on="region")
    table["condition"] = table["condition"].fillna("")
    write_tsv(root / "derivatives" / "truth" / "truth_samples.tsv", table)
    hrfs = pd.DataFrame({"time": hrf_time()})
    for r in truth.itertuples():
        hrfs[f"region{r.region:02d}"] = double_gamma_hrf(r.ttp)
    write_tsv(root / "derivatives" / "truth" / "truth_hrf.tsv", hrfs)
    return SurfaceDataset(
        bids_dir=root,
        fmriprep_dir=fmriprep,
        atlas=atlas,
        truth=table,
        subjects=subjects,
        space=space,
    )
