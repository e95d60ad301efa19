"""Synthetic BIDS dataset with fMRIPrep-like derivatives, an atlas and the ground truth.

:func:`make_synthetic_dataset` writes::

    BIDS_DIR/
      dataset_description.json README CHANGES participants.tsv/.json
      task-<task>_bold.json task-<task>_events.json .bidsignore
      sub-XX/[ses-YY/]anat/sub-XX[_ses-YY]_T1w.nii.gz
      sub-XX/[ses-YY/]func/sub-XX[_ses-YY]_task-T_run-N_{bold.nii.gz,events.tsv}
      derivatives/fmriprep/  (desc-preproc_bold, desc-brain_mask, boldref, confounds)
      derivatives/atlas/tpl-MNI152NLin2009cAsym_atlas-Synthetic_dseg.{nii.gz,tsv}
      derivatives/truth/     (truth_hrf.tsv, truth.json, activation maps, amplitudes)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ._confounds import compute_confounds
from ._design import SyntheticTruth, latent_loadings, plan_truth
from ._geometry import Geometry, realistic_geometry, small_geometry
from ._signals import simulate_run
from ._truth_io import write_truth
from ._writers import (
    FMRIPREP_VERSION,
    SPACE,
    bids_prefix,
    derivative_description,
    func_dir,
    to_volume,
    write_atlas,
    write_json,
    write_nifti,
    write_raw_toplevel,
    write_tsv,
)

SIZES = {
    "small": {"n_scans": 80, "n_parcels": 10},
    "realistic": {"n_scans": 300, "n_parcels": 200},
}


@dataclass
class SyntheticDataset:
    """Paths and truth of a generated dataset.

    Attributes
    ----------
    bids_dir : pathlib.Path
        The raw BIDS dataset.
    fmriprep_dir : pathlib.Path
        ``bids_dir/derivatives/fmriprep``.
    atlas_img, atlas_tsv : pathlib.Path
        The MNI-space parcellation and its label table (``index``, ``name``, ``network``).
    truth : SyntheticTruth
        The planted HRFs, activations, amplitudes and group effects.
    truth_dir : pathlib.Path
        ``bids_dir/derivatives/truth``.
    subjects : list of str
        Subject labels (without ``sub-``).
    sessions : list of str or None
        Session labels, or None when there is a single session (no ``ses-`` level).
    tasks : list of str
        Task labels written (the task, then ``rest`` if requested).
    tr : float
        Repetition time (s).
    n_scans : int
        Volumes per run.
    n_dummy_scans : int
        Leading non-steady-state volumes of each run.
    conditions : tuple of str
        Event conditions (``trial_type`` values).
    space : str
        Template space of the derivatives.
    """

    bids_dir: Path
    fmriprep_dir: Path
    atlas_img: Path
    atlas_tsv: Path
    truth: SyntheticTruth
    truth_dir: Path
    subjects: list[str]
    sessions: list[str] | None
    tasks: list[str]
    tr: float
    n_scans: int
    n_dummy_scans: int
    conditions: tuple[str, ...]
    space: str = SPACE


def _check_arguments(path: Path, size: str, **kw) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    for name in ("n_subjects", "n_sessions", "n_runs"):
        if int(kw[name]) < 1:
            raise ValueError(f"{name} must be at least 1, got {kw[name]}")
    if kw["tr"] <= 0:
        raise ValueError(f"tr must be positive, got {kw['tr']}")
    if kw["n_dummy_scans"] < 0:
        raise ValueError(f"n_dummy_scans must be >= 0, got {kw['n_dummy_scans']}")
    if kw["snr"] <= 0:
        raise ValueError(f"snr must be positive, got {kw['snr']}")
    conditions = kw["conditions"]
    if not conditions or len(set(conditions)) != len(conditions):
        raise ValueError(f"conditions must be distinct names, got {conditions!r}")
    for label in (kw["task"], *conditions):
        if not str(label).isalnum():
            raise ValueError(f"task and condition names must be alphanumeric, got {label!r}")
    if kw["task"] == "rest":
        raise ValueError("task must not be 'rest'; use rest_task=True to add resting runs")
    if kw["groups"] is not None and len(kw["groups"]) < 1:
        raise ValueError("groups must be None or a non-empty tuple of names")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(f"{path} exists and is not an empty directory; choose a new path")


def _participants(n_subjects: int, groups: tuple[str, ...] | None, rng) -> pd.DataFrame:
    ids = [f"{i + 1:02d}" for i in range(n_subjects)]
    return pd.DataFrame(
        {
            "participant_id": [f"sub-{s}" for s in ids],
            "group": [groups[i % len(groups)] if groups else "control" for i in range(n_subjects)],
            "age": rng.integers(20, 60, n_subjects),
            "sex": rng.choice(["M", "F"], n_subjects),
        }
    )


def _voxel_model(geom: Geometry, rng: np.random.Generator) -> dict:
    """Fixed per-voxel properties shared by all runs (brain voxels, C order)."""
    brain = geom.brain
    zooms = np.sqrt((geom.affine[:3, :3] ** 2).sum(axis=0))
    grads = np.gradient(geom.baseline, *zooms)
    gradient = np.column_stack([g[brain] for g in grads])
    coords = geom.voxel_coords_mm(brain)
    tissue = {k: getattr(geom, k)[brain] for k in ("gm", "wm", "csf")}
    n_vox = int(brain.sum())
    glob = np.where(tissue["gm"], 1.0, np.where(tissue["csf"], 0.8, 0.6))
    glob = glob * (1 + 0.1 * rng.normal(size=n_vox))
    scale = np.where(tissue["csf"], 2.0, np.where(tissue["wm"], 0.5, 0.5))
    phys = scale[:, None] * (0.5 + 0.5 * rng.normal(size=(n_vox, 4)))
    return {
        "baseline": geom.baseline[brain],
        "gradient": gradient,
        "rel_coords": coords - coords.mean(axis=0),
        "tissue_weights": {"global": glob, "phys": phys},
        "parcel_index": geom.labels[brain].astype(int) - 1,
        "tissue": tissue,
    }


@threadpool_limits.wrap(limits=1)  # small matrices: BLAS threads only add contention
def make_synthetic_dataset(
    path: str | os.PathLike,
    size: str = "small",
    n_subjects: int = 2,
    n_sessions: int = 1,
    n_runs: int = 2,
    task: str = "localizer",
    conditions: tuple[str, ...] = ("audio", "visual"),
    tr: float = 2.0,
    n_scans: int | None = None,
    n_dummy_scans: int = 2,
    rest_task: bool = False,
    groups: tuple[str, ...] | None = ("control", "patient"),
    snr: float = 2.0,
    seed: int = 0,
) -> SyntheticDataset:
    """Write a synthetic BIDS dataset with fMRIPrep-like derivatives and known truth.

    Parameters
    ----------
    path : str or os.PathLike
        The BIDS root to create (absent or empty).
    size : {"small", "realistic"}
        ``small``: ellipsoid brain, 20 x 24 x 20 voxels of 4 mm, 10 parcels, 80 scans
        (seconds to make). ``realistic``: MNI152 brain at 3 mm, 200 parcels, 300 scans.
    n_subjects, n_sessions, n_runs : int
        Participants, sessions per participant (no ``ses-`` level when 1) and task runs
        per session.
    task : str
        Task label of the event-related runs.
    conditions : tuple of str
        ``trial_type`` values; conditions containing "aud"/"vis"/"motor" activate the
        Auditory/Visual/Somatomotor parcels, others half of a network not yet used.
    tr : float
        Repetition time (s).
    n_scans : int, optional
        Volumes per run (default 80 for small, 300 for realistic).
    n_dummy_scans : int
        Leading non-steady-state volumes (brighter, flagged in the confounds).
    rest_task : bool
        Also write one ``task-rest`` run (no events) per participant and session.
    groups : tuple of str or None
        Group names; participants alternate between them. With two or more groups, the
        group effects described in :func:`bids_hrf.datasets._design.plan_truth` are
        planted between the first and the second group.
    snr : float
        Peak response of an active voxel to a 1-s event (1 %) over the standard deviation
        of the voxel's AR(1) noise.
    seed : int
        Seed of every random draw; the same arguments give the same files.

    Returns
    -------
    SyntheticDataset
        Paths, subjects and the :class:`SyntheticTruth`.
    """
    path = Path(path)
    _check_arguments(
        path,
        size,
        n_subjects=n_subjects,
        n_sessions=n_sessions,
        n_runs=n_runs,
        tr=tr,
        n_dummy_scans=n_dummy_scans,
        snr=snr,
        conditions=tuple(conditions),
        task=task,
        groups=groups,
    )
    conditions = tuple(conditions)
    groups = tuple(groups) if groups is not None else None
    n_scans = int(n_scans or SIZES[size]["n_scans"])
    if n_scans <= n_dummy_scans + 10:
        raise ValueError(f"n_scans ({n_scans}) must exceed n_dummy_scans + 10")
    acq = _Acquisition(task=task, conditions=conditions, n_runs=n_runs, rest_task=rest_task,
                       tr=tr, n_scans=n_scans, n_dummy_scans=n_dummy_scans,
                       noise_sd=1.0 / snr)

    root_seq = np.random.SeedSequence(seed)
    geom_seq, design_seq, subj_seq = root_seq.spawn(3)
    geom = _geometry(size, int(geom_seq.generate_state(1)[0]))
    design_rng = np.random.default_rng(design_seq)
    participants = _participants(n_subjects, groups, design_rng)
    truth = plan_truth(geom, conditions, participants, groups, design_rng)
    sim = _Simulator(path, geom, _voxel_model(geom, design_rng), truth, acq)

    subjects = [pid.removeprefix("sub-") for pid in participants["participant_id"]]
    sessions = [f"{i + 1:02d}" for i in range(n_sessions)] if n_sessions > 1 else None
    tasks = {task: True, **({"rest": False} if rest_task else {})}
    path.mkdir(parents=True, exist_ok=True)
    write_raw_toplevel(path, participants, tasks, tr, groups)
    _write_fmriprep_description(sim.fmriprep_dir)
    atlas_img, atlas_tsv = write_atlas(
        path / "derivatives" / "atlas", geom.atlas_img, geom.names, geom.networks
    )
    for s_idx, (subject, sub_seq) in enumerate(
        zip(subjects, subj_seq.spawn(n_subjects), strict=True)
    ):
        sim.write_subject(subject, participants["group"].iloc[s_idx], sessions,
                          sub_seq.spawn(n_sessions))
    truth_dir = path / "derivatives" / "truth"
    parameters = {
        "size": size,
        "n_subjects": n_subjects,
        "n_sessions": n_sessions,
        "n_runs": n_runs,
        "task": task,
        "conditions": list(conditions),
        "tr": tr,
        "n_scans": n_scans,
        "n_dummy_scans": n_dummy_scans,
        "rest_task": rest_task,
        "groups": list(groups) if groups else None,
        "snr": snr,
        "noise_sd_percent": acq.noise_sd,
        "seed": seed,
        "space": SPACE,
    }
    truth.parameters.update(parameters)
    write_truth(truth_dir, truth, geom)
    return SyntheticDataset(
        bids_dir=path,
        fmriprep_dir=sim.fmriprep_dir,
        atlas_img=atlas_img,
        atlas_tsv=atlas_tsv,
        truth=truth,
        truth_dir=truth_dir,
        subjects=subjects,
        sessions=sessions,
        tasks=list(tasks),
        tr=float(tr),
        n_scans=n_scans,
        n_dummy_scans=n_dummy_scans,
        conditions=conditions,
    )


def _geometry(size: str, seed: int) -> Geometry:
    """The brain, tissues and parcels of a dataset of ``size``."""
    if size == "small":
        return small_geometry(seed, SIZES[size]["n_parcels"])
    return realistic_geometry(seed, SIZES[size]["n_parcels"])


def _write_fmriprep_description(fmriprep_dir: Path) -> None:
    write_json(
        fmriprep_dir / "dataset_description.json",
        derivative_description(
            "fMRIPrep - fMRI PREProcessing workflow (simulated)",
            {
                "Name": "fMRIPrep",
                "Version": FMRIPREP_VERSION,
                "CodeURL": "https://github.com/nipreps/fmriprep",
            },
        ),
    )


@dataclass(frozen=True)
class _Acquisition:
    """The runs of every session and how their signals are simulated."""

    task: str
    conditions: tuple[str, ...]
    n_runs: int
    rest_task: bool
    tr: float
    n_scans: int
    n_dummy_scans: int
    noise_sd: float

    def runs(self) -> list[tuple[str, int | None, bool]]:
        """``(task, run number, with events)`` of each run of a session."""
        runs: list[tuple[str, int | None, bool]] = [
            (self.task, r + 1, True) for r in range(self.n_runs)
        ]
        if self.rest_task:
            runs.append(("rest", None, False))
        return runs


@dataclass(frozen=True)
class _Simulator:
    """Writes the runs of each subject: the planted truth through the voxel model."""

    root: Path
    geom: Geometry
    model: dict
    truth: SyntheticTruth
    acq: _Acquisition

    @property
    def fmriprep_dir(self) -> Path:
        """``root/derivatives/fmriprep``."""
        return self.root / "derivatives" / "fmriprep"

    def voxel_amplitudes(self, subject: str) -> np.ndarray:
        """Response amplitude of each brain voxel to each condition, (n_conditions, n_voxels)."""
        truth, pidx = self.truth, self.model["parcel_index"]
        amp = truth.amplitudes[truth.amplitudes["participant_id"] == f"sub-{subject}"]
        vox_amp = np.zeros((len(self.acq.conditions), int(self.geom.brain.sum())))
        in_gm = pidx >= 0
        for c, cond in enumerate(self.acq.conditions):
            per_parcel = amp[amp["condition"] == cond].set_index("parcel")["amplitude"]
            parcel_amp = per_parcel.reindex(self.geom.names).to_numpy(dtype=float)
            vox_amp[c, in_gm] = truth.voxel_weights[c, in_gm] * parcel_amp[pidx[in_gm]]
        return vox_amp

    def write_subject(self, subject: str, group: str, sessions: list[str] | None,
                      session_seeds: list[np.random.SeedSequence]) -> None:
        """Simulate and write every session and run of one subject."""
        signal = {
            "voxel_amplitudes": self.voxel_amplitudes(subject),
            "hrfs": self.truth.hrf_by_group[group].drop(columns="time").to_numpy(),
            "latent_loadings": latent_loadings(self.truth, self.geom, group),
        }
        runs = self.acq.runs()
        for ses, ses_seq in zip(sessions or [None], session_seeds, strict=True):
            _write_anat(self.root, self.fmriprep_dir, self.geom, subject, ses)
            for (run_task, run, with_events), run_seq in zip(
                runs, ses_seq.spawn(len(runs)), strict=True
            ):
                rng = np.random.default_rng(run_seq)
                sig = self.simulate(signal, with_events, rng)
                confounds, meta = compute_confounds(
                    sig.bold, sig.motion, self.model["tissue"], self.acq.tr,
                    self.acq.n_dummy_scans, rng,
                )
                _write_run(
                    self.root,
                    self.fmriprep_dir,
                    self.geom,
                    subject,
                    ses,
                    bids_prefix(subject, ses, run_task, run),
                    sig,
                    confounds,
                    meta,
                    run_task,
                    self.acq.tr,
                )

    def simulate(self, signal: dict, with_events: bool, rng: np.random.Generator):
        """One run's signals (:func:`~bids_hrf.datasets._signals.simulate_run`)."""
        model, acq = self.model, self.acq
        return simulate_run(
            baseline=model["baseline"],
            gradient=model["gradient"],
            rel_coords=model["rel_coords"],
            tissue_weights=model["tissue_weights"],
            parcel_index=model["parcel_index"],
            conditions=acq.conditions,
            n_scans=acq.n_scans,
            tr=acq.tr,
            n_dummy_scans=acq.n_dummy_scans,
            noise_sd=acq.noise_sd,
            with_events=with_events,
            rng=rng,
            **signal,
        )


def _write_anat(root: Path, fmriprep_dir: Path, geom: Geometry, subject: str, ses) -> None:
    anat = np.asarray(geom.anat_img.dataobj)
    sub_ses = f"sub-{subject}" + (f"_ses-{ses}" if ses else "")
    raw_dir = func_dir(root, subject, ses).parent / "anat"
    write_nifti(raw_dir / f"{sub_ses}_T1w.nii.gz", anat, geom.affine)
    if ses is None or ses == "01":
        der = fmriprep_dir / f"sub-{subject}" / "anat"
        write_nifti(
            der / f"sub-{subject}_space-{SPACE}_desc-preproc_T1w.nii.gz",
            anat.astype(np.float32),
            geom.affine,
        )
        write_nifti(
            der / f"sub-{subject}_space-{SPACE}_desc-brain_mask.nii.gz",
            geom.brain.astype(np.uint8),
            geom.affine,
        )
        for tissue in ("GM", "WM", "CSF"):
            prob = getattr(geom, tissue.lower()).astype(np.float32)
            write_nifti(
                der / f"sub-{subject}_space-{SPACE}_label-{tissue}_probseg.nii.gz",
                prob,
                geom.affine,
            )


def _write_run(
    root, fmriprep_dir, geom, subject, ses, prefix, sig, confounds, meta, run_task, tr
) -> None:
    brain = geom.brain
    raw = func_dir(root, subject, ses)
    raw_bold = np.clip(np.round(sig.bold), 0, 32767).astype(np.int16)
    write_nifti(
        raw / f"{prefix}_bold.nii.gz", to_volume(raw_bold, brain, np.int16), geom.affine, tr
    )
    if sig.events is not None:
        write_tsv(raw / f"{prefix}_events.tsv", sig.events)
    der = func_dir(fmriprep_dir, subject, ses)
    space = f"{prefix}_space-{SPACE}"
    write_nifti(
        der / f"{space}_desc-preproc_bold.nii.gz", to_volume(sig.bold, brain), geom.affine, tr
    )
    write_json(
        der / f"{space}_desc-preproc_bold.json",
        {"RepetitionTime": tr, "SkullStripped": False, "TaskName": run_task},
    )
    write_nifti(der / f"{space}_desc-brain_mask.nii.gz", brain.astype(np.uint8), geom.affine)
    write_json(der / f"{space}_desc-brain_mask.json", {"Type": "Brain"})
    ref = sig.bold[len(sig.bold) // 4 :].mean(axis=0)
    write_nifti(der / f"{space}_boldref.nii.gz", to_volume(ref, brain), geom.affine)
    write_tsv(der / f"{prefix}_desc-confounds_timeseries.tsv", confounds)
    write_json(der / f"{prefix}_desc-confounds_timeseries.json", meta)
