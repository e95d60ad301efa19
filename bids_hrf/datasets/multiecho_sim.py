"""Multi-echo synthetic datasets: fMRIPrep's per-echo outputs with known echo times.

:func:`make_multiecho_dataset` writes a dataset with :func:`make_synthetic_dataset` and turns
each preprocessed run into echoes. The simulated fractional signal change ``f(t)`` of a voxel
(task responses, fluctuations, drifts, motion...) is taken as BOLD at a reference echo time
``TE_ref``, ``f = -TE_ref * dR2*(t)``; echo ``k`` of the voxel is then::

    S_k(t) = S0 * exp(-TE_k / T2*) * (1 - TE_k * dR2*(t)) + thermal noise

with ``S0`` and ``T2*`` drawn per voxel, and white thermal noise of the same SD at every echo
(``thermal_noise`` percent of the voxel's signal at ``TE_ref``): later echoes carry more
BOLD contrast and less signal, so no single echo has all the information. The combined
``desc-preproc_bold`` is replaced by the T2*-weighted (optimal) combination of the echoes,
as fMRIPrep writes it. Per-echo files are named as fMRIPrep's ``--me-output-echos``:
``sub-01_task-x_run-1_echo-<k>_space-S_desc-preproc_bold.nii.gz`` with ``EchoTime`` (s) in
their sidecar. The truth (echo times, ``S0`` and ``T2*`` maps) is in ``derivatives/truth``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np

from ._writers import write_json, write_nifti
from .synthetic import SyntheticDataset, make_synthetic_dataset

#: Echo times (ms) of a typical 3-echo EPI at 3 T.
ECHO_TIMES_MS = (14.0, 30.0, 46.0)


def make_multiecho_dataset(
    path: str | os.PathLike,
    echo_times: tuple[float, ...] = ECHO_TIMES_MS,
    te_ref: float = 30.0,
    thermal_noise: float = 1.5,
    t2star_range: tuple[float, float] = (30.0, 60.0),
    seed: int = 0,
    **kwargs,
) -> SyntheticDataset:
    """Write a multi-echo synthetic dataset (see the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        The BIDS root to create.
    echo_times : tuple of float
        Echo times (ms), increasing.
    te_ref : float
        Echo time (ms) at which the single-echo simulation's signal change is the BOLD one.
    thermal_noise : float
        SD of the white thermal noise of every echo, in percent of the voxel's mean signal
        at ``te_ref``.
    t2star_range : tuple of float
        Range (ms) of the voxels' T2*, drawn uniformly.
    seed : int
        Seed of the single-echo simulation and of the echo draws.
    **kwargs
        Passed to :func:`make_synthetic_dataset`.

    Returns
    -------
    SyntheticDataset
    """
    tes = np.asarray(echo_times, dtype=float)
    if tes.size < 2 or np.any(tes <= 0) or np.any(np.diff(tes) <= 0):
        raise ValueError(f"echo_times must be >= 2 increasing positive values (ms), got {tes}")
    if thermal_noise < 0 or not 0 < t2star_range[0] < t2star_range[1]:
        raise ValueError("thermal_noise must be >= 0 and t2star_range increasing and > 0")
    ds = make_synthetic_dataset(path, seed=seed, **kwargs)
    rng = np.random.default_rng([seed, 2024])
    brain = None
    maps: dict[str, np.ndarray] = {}
    for bold in sorted(ds.fmriprep_dir.rglob("*_desc-preproc_bold.nii.gz")):
        img = nib.load(str(bold))
        data = np.asarray(img.dataobj, dtype=np.float64)
        if brain is None:
            brain = data.std(axis=3) > 0
            t2star = rng.uniform(*t2star_range, size=int(brain.sum()))
            maps = {"T2starmap": t2star}
        echoes = _echo_signals(data[brain].T, tes, te_ref, maps["T2starmap"], thermal_noise, rng)
        maps.setdefault("S0map", echoes.pop("s0"))
        tr = float(img.header.get_zooms()[3])
        _write_echoes(bold, img, brain, echoes["echoes"], tes, tr)
    _write_truth(ds.truth_dir, brain, maps, tes, te_ref, thermal_noise, img.affine)
    return ds


def _echo_signals(
    signal: np.ndarray,
    tes: np.ndarray,
    te_ref: float,
    t2star: np.ndarray,
    thermal_noise: float,
    rng: np.random.Generator,
) -> dict:
    """Echo series (n_echoes, n_scans, n_vox) of single-echo series ``signal`` at ``te_ref``."""
    mean = signal.mean(axis=0)
    f = signal / np.where(mean > 0, mean, 1.0) - 1.0  # = -te_ref * dR2*
    s0 = mean / np.exp(-te_ref / t2star)
    sd = thermal_noise / 100.0 * mean
    echoes = np.stack(
        [
            s0 * np.exp(-te / t2star) * (1.0 + (te / te_ref) * f)
            + rng.normal(size=signal.shape) * sd
            for te in tes
        ]
    )
    return {"echoes": echoes, "s0": s0}


def optimal_combination(echoes: np.ndarray, tes: np.ndarray, t2star: np.ndarray) -> np.ndarray:
    """T2*-weighted sum of the echoes (Posse et al., 1999): weights ``TE exp(-TE/T2*)``.

    Parameters
    ----------
    echoes : ndarray, shape (n_echoes, n_scans, n_vox)
    tes : ndarray, shape (n_echoes,)
        Echo times (ms).
    t2star : ndarray, shape (n_vox,)
        T2* (ms).

    Returns
    -------
    ndarray, shape (n_scans, n_vox)
    """
    w = tes[:, None] * np.exp(-tes[:, None] / t2star[None, :])
    w = w / w.sum(axis=0)
    return np.einsum("ev,etv->tv", w, echoes)


def _echo_name(bold: Path, k: int) -> Path:
    """``..._run-1_space-S_desc-preproc_bold`` -> ``..._run-1_echo-k_space-S_desc-...``."""
    name = re.sub(r"_(space-|desc-)", rf"_echo-{k}_\1", bold.name, count=1)
    return bold.with_name(name)


def _write_echoes(
    bold: Path, img, brain: np.ndarray, echoes: np.ndarray, tes: np.ndarray, tr: float
) -> None:
    sidecar = json.loads(bold.with_name(bold.name.replace(".nii.gz", ".json")).read_text())
    for k, (series, te) in enumerate(zip(echoes, tes, strict=True), start=1):
        path = _echo_name(bold, k)
        write_nifti(path, _volume(series, brain), img.affine, tr)
        write_json(
            path.with_name(path.name.replace(".nii.gz", ".json")),
            {**sidecar, "EchoTime": float(te) / 1000.0},
        )
    # the combined run: T2*-weighted combination with the T2* fitted as fMRIPrep does
    # (log-linear fit of the mean echo signals)
    means = np.log(np.maximum(echoes.mean(axis=1), 1e-6))
    slope = np.polyfit(tes, means, 1)[0]
    t2star = np.clip(-1.0 / np.where(slope < 0, slope, -1e-3), 1.0, 500.0)
    write_nifti(bold, _volume(optimal_combination(echoes, tes, t2star), brain), img.affine, tr)


def _volume(series: np.ndarray, brain: np.ndarray) -> np.ndarray:
    out = np.zeros((*brain.shape, series.shape[0]), dtype=np.float32)
    out[brain] = series.T
    return out


def _write_truth(
    truth_dir: Path, brain, maps: dict, tes, te_ref: float, thermal_noise: float, affine
) -> None:
    for name, values in maps.items():
        vol = np.zeros(brain.shape, dtype=np.float32)
        vol[brain] = values
        write_nifti(truth_dir / f"desc-truth_{name}.nii.gz", vol, affine)
    write_json(
        truth_dir / "truth_multiecho.json",
        {
            "EchoTime": [float(t) / 1000.0 for t in tes],
            "ReferenceEchoTime": te_ref / 1000.0,
            "ThermalNoisePercent": thermal_noise,
            "Model": "S_k = S0 exp(-TE_k/T2*) (1 - TE_k dR2*(t)) + white noise; "
            "dR2* = -f/TE_ref with f the single-echo simulation's signal change",
        },
    )
