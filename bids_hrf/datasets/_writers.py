"""Writers for the synthetic dataset: BIDS names, JSON/TSV/NIfTI files, top-level files."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

BIDS_VERSION = "1.9.0"
SPACE = "MNI152NLin2009cAsym"
FMRIPREP_VERSION = "23.2.1"


def write_json(path: Path, content: dict) -> Path:
    """Write ``content`` as indented JSON, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, sort_keys=False) + "\n")
    return path


def write_tsv(path: Path, table: pd.DataFrame, float_format: str | None = None) -> Path:
    """Write ``table`` as a BIDS TSV (tab separated, ``n/a`` for missing values)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format=float_format)
    return path


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, tr: float | None = None) -> Path:
    """Write a NIfTI-1 image in MNI space (qform/sform code 4) with mm/s units."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, code=4)
    img.header.set_sform(affine, code=4)
    if tr is not None and data.ndim == 4:
        zooms = img.header.get_zooms()
        img.header.set_zooms((*zooms[:3], float(tr)))
    nib.save(img, path)
    return path


def to_volume(values: np.ndarray, mask: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Put brain-voxel values (n_voxels,) or (n_scans, n_voxels) back into the grid.

    Voxels are in C order of ``mask``; a 4D result is Fortran-contiguous so that
    nibabel writes it without a transposed copy.
    """
    values = np.asarray(values)
    if values.ndim == 1:
        out = np.zeros(mask.shape, dtype=dtype)
        out[mask] = values
        return out
    index = np.zeros(mask.shape, dtype=np.int64)
    index[mask] = np.arange(int(mask.sum()))
    mask_t = mask.T
    out = np.zeros((values.shape[0], *mask_t.shape), dtype=dtype)  # (t, z, y, x)
    out[:, mask_t] = values[:, index.T[mask_t]]
    return out.T  # (x, y, z, t), Fortran-contiguous


def bids_prefix(subject: str, session: str | None, task: str, run: int | None) -> str:
    """``sub-X[_ses-Y]_task-T[_run-N]``."""
    parts = [f"sub-{subject}"]
    if session is not None:
        parts.append(f"ses-{session}")
    parts.append(f"task-{task}")
    if run is not None:
        parts.append(f"run-{run}")
    return "_".join(parts)


def func_dir(root: Path, subject: str, session: str | None) -> Path:
    """``root/sub-X[/ses-Y]/func``."""
    base = root / f"sub-{subject}"
    if session is not None:
        base = base / f"ses-{session}"
    return base / "func"


def write_raw_toplevel(
    bids_dir: Path,
    participants: pd.DataFrame,
    tasks: dict[str, bool],
    tr: float,
    groups: tuple[str, ...] | None,
) -> None:
    """dataset_description, README, CHANGES, participants and inherited task sidecars."""
    write_json(
        bids_dir / "dataset_description.json",
        {
            "Name": "bids_hrf synthetic localizer",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["bids_hrf developers"],
            "HowToAcknowledge": "Simulated data made by bids_hrf.datasets; no real participants.",
        },
    )
    (bids_dir / "README").write_text(
        "Synthetic fMRI dataset made by bids_hrf.datasets.make_synthetic_dataset.\n\n"
        "Simulated BOLD series with known hemodynamic response functions, activations and\n"
        "group effects. derivatives/fmriprep holds fMRIPrep-like outputs, derivatives/atlas\n"
        "the parcellation and derivatives/truth the simulation ground truth.\n"
    )
    (bids_dir / "CHANGES").write_text("1.0.0 2026-01-01\n  - Synthetic dataset generated.\n")
    write_tsv(bids_dir / "participants.tsv", participants)
    levels = {g: f"participant in the {g} group" for g in (groups or ())}
    write_json(
        bids_dir / "participants.json",
        {
            "participant_id": {"Description": "Unique participant identifier"},
            "group": {"Description": "Simulated group", **({"Levels": levels} if levels else {})},
            "age": {"Description": "Age of the participant", "Units": "year"},
            "sex": {
                "Description": "Sex of the participant",
                "Levels": {"M": "male", "F": "female"},
            },
        },
    )
    for task, has_events in tasks.items():
        write_json(
            bids_dir / f"task-{task}_bold.json",
            {
                "RepetitionTime": tr,
                "TaskName": task,
                "SliceTimingCorrected": False,
                "Manufacturer": "Simulated",
            },
        )
        if has_events:
            write_json(
                bids_dir / f"task-{task}_events.json",
                {
                    "trial_type": {"Description": "Condition of the stimulus"},
                    "modulation": {
                        "Description": "Parametric modulation of the response (1.0 = none)"
                    },
                },
            )
    (bids_dir / ".bidsignore").write_text("derivatives/\n")


def derivative_description(name: str, generated_by: dict, source: str = "../..") -> dict:
    """dataset_description.json of a derivative dataset."""
    return {
        "Name": name,
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": [{"URL": source}],
    }


def write_atlas(
    atlas_dir: Path, atlas_img: nib.Nifti1Image, names: list[str], networks: list[str]
) -> tuple[Path, Path]:
    """Write ``tpl-<space>_atlas-Synthetic_dseg.nii.gz`` and its label table."""
    from bids_hrf import __version__

    write_json(
        atlas_dir / "dataset_description.json",
        derivative_description(
            "Synthetic atlas", {"Name": "bids_hrf.datasets", "Version": __version__}
        ),
    )
    stem = f"tpl-{SPACE}_atlas-Synthetic"
    img_path = atlas_dir / f"{stem}_dseg.nii.gz"
    atlas_dir.mkdir(parents=True, exist_ok=True)
    nib.save(atlas_img, img_path)
    table = pd.DataFrame(
        {"index": np.arange(1, len(names) + 1), "name": names, "network": networks}
    )
    tsv_path = write_tsv(atlas_dir / f"{stem}_dseg.tsv", table)
    return img_path, tsv_path
