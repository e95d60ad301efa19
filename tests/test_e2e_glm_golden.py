"""Golden end-to-end check of the canonical GLM against nilearn's own ``FirstLevelModel``.

The CLI's participant level (canonical SPM HRF, confounds preset ``simple``, dummy scans
``auto``, high-pass 0.01 Hz, AR(1)) is recomputed independently, run by run, with
``nilearn.glm.first_level.FirstLevelModel`` on the same fMRIPrep BOLD, brain mask and
confounds (read by ``nilearn.interfaces.fmriprep.load_confounds`` with the arguments of our
``simple`` preset, whose ``sample_mask`` drops fMRIPrep's non-steady-state volumes). The
z maps the CLI wrote must match nilearn's within 1e-3, and the fixed-effects maps must match
``compute_fixed_effects(precision_weighted=True)`` of nilearn's run-level maps.

The smoothing check runs the CLI again on one subject with ``--smoothing-fwhm 6`` and
compares with ``FirstLevelModel(smoothing_fwhm=6)``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.golden]

TOL = 1e-3
USER_CONTRASTS = {"audio - visual": "audio - visual", "both": "0.5*audio + 0.5*visual"}


def _runs(dataset, subject: str) -> list[dict]:
    """fMRIPrep BOLD, mask, confounds and raw events of each run of a subject."""
    func = Path(dataset.fmriprep_dir) / f"sub-{subject}" / "func"
    runs = []
    pattern = f"sub-{subject}_*_space-{dataset.space}_desc-preproc_bold.nii.gz"
    for bold in sorted(func.glob(pattern)):
        stem = bold.name.split(f"_space-{dataset.space}")[0]
        mask = bold.with_name(bold.name.replace("desc-preproc_bold", "desc-brain_mask"))
        events = Path(dataset.bids_dir) / f"sub-{subject}" / "func" / f"{stem}_events.tsv"
        runs.append({"stem": stem, "bold": bold, "mask": mask, "events": events})
    assert runs, f"no fMRIPrep BOLD for sub-{subject} under {func}"
    return runs


def _nilearn_run(run: dict, tr: float, smoothing_fwhm: float | None = None):
    """Fit one run with FirstLevelModel exactly as the ``simple`` preset specifies."""
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.interfaces.fmriprep import load_confounds

    from bids_hrf.confounds import PRESET_STRATEGIES

    confounds, sample_mask = load_confounds(str(run["bold"]), **PRESET_STRATEGIES["simple"])
    events = pd.read_csv(run["events"], sep="\t")
    model = FirstLevelModel(t_r=tr, hrf_model="spm", drift_model="cosine", high_pass=0.01,
                            noise_model="ar1", mask_img=str(run["mask"]),
                            smoothing_fwhm=smoothing_fwhm, minimize_memory=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(str(run["bold"]), events=events, confounds=confounds,
                  sample_masks=sample_mask)
    design = model.design_matrices_[0]
    dof = design.shape[0] - np.linalg.matrix_rank(design.to_numpy())
    return model, int(dof), sample_mask


def _contrasts(conditions) -> dict[str, str]:
    from bids_hrf.glm.contrasts import clean_label

    exprs = {c: c for c in conditions} | USER_CONTRASTS
    return {clean_label(name): expr for name, expr in exprs.items()}


def _ours(out: Path, subject: str, prefix: str, space: str, label: str) -> Path:
    path = out / f"sub-{subject}" / "func" / \
        f"{prefix}_space-{space}_contrast-{label}_stat-z_statmap.nii.gz"
    assert path.exists(), f"the CLI did not write {path.name}"
    return path


def _max_diff(ours: Path, ref_img, mask) -> float:
    from nilearn import masking

    a = masking.apply_mask(nib.load(ours), mask)
    b = masking.apply_mask(ref_img, mask)
    assert np.all(np.isfinite(a)), f"{ours.name} has non-finite values in the mask"
    return float(np.abs(a - b).max())


def test_run_level_and_fixed_effects_z_match_nilearn(canonical_run):
    """Every condition and user contrast, every run, and the fixed effects, within 1e-3."""
    from nilearn import masking
    from nilearn.glm.contrasts import compute_fixed_effects

    assert canonical_run.code == 0
    data, out = canonical_run.dataset, canonical_run.output_dir
    contrasts = _contrasts(data.conditions)
    assert {"audioMinusVisual", "both"} <= set(contrasts)
    n_compared = 0
    for subject in data.subjects:
        runs = _runs(data, subject)
        per_label: dict[str, list] = {label: [] for label in contrasts}
        for run in runs:
            model, dof, sample_mask = _nilearn_run(run, data.tr)
            # the preset drops fMRIPrep's non-steady-state volumes, as our "auto" does
            assert sample_mask is not None and len(sample_mask) == data.n_scans - \
                data.n_dummy_scans
            for label, expr in contrasts.items():
                ref = model.compute_contrast(expr, output_type="all")
                z = ref["z_score"]
                # not a trivial comparison: the task effects are strong in this dataset
                if label in ("audio", "visual"):
                    assert np.abs(masking.apply_mask(z, run["mask"])).max() > 5
                diff = _max_diff(_ours(out, subject, run["stem"], data.space, label), z,
                                 run["mask"])
                assert diff < TOL, f"{run['stem']} contrast {label}: max |dz| = {diff:.2e}"
                per_label[label].append((ref["effect_size"], ref["effect_variance"], dof,
                                         run["mask"]))
                n_compared += 1
        prefix = runs[0]["stem"].split("_run-")[0]
        for label, entries in per_label.items():
            mask = masking.intersect_masks([e[3] for e in entries], threshold=1,
                                           connected=False)
            *_, z = compute_fixed_effects([e[0] for e in entries], [e[1] for e in entries],
                                          mask=mask, precision_weighted=True,
                                          dofs=[e[2] for e in entries])
            diff = _max_diff(_ours(out, subject, prefix, data.space, label), z, mask)
            assert diff < TOL, f"sub-{subject} fixed effects {label}: max |dz| = {diff:.2e}"
            n_compared += 1
    assert n_compared == len(data.subjects) * (len(runs) + 1) * len(contrasts)


def test_smoothing_matches_first_level_model(canonical_run, tmp_path):
    """``--smoothing-fwhm 6`` gives FirstLevelModel(smoothing_fwhm=6)'s z maps."""
    assert canonical_run.code == 0
    data = canonical_run.dataset
    subject = data.subjects[0]
    out = tmp_path / "out"
    code = run_cli(data.bids_dir, out, "participant", "--atlas", data.atlas_img,
                   "-w", tmp_path / "work", "--nprocs", "1", "--participant-label", subject,
                   "--smoothing-fwhm", "6", "--no-report")
    assert code == 0
    run = _runs(data, subject)[0]
    model, _, _ = _nilearn_run(run, data.tr, smoothing_fwhm=6)
    unsmoothed, _, _ = _nilearn_run(run, data.tr)
    for label in ("audio", "visual"):
        z = model.compute_contrast(label, output_type="z_score")
        ours = _ours(out, subject, run["stem"], data.space, label)
        diff = _max_diff(ours, z, run["mask"])
        assert diff < TOL, f"smoothed {label}: max |dz| = {diff:.2e}"
        # and smoothing did change the map (the comparison is not of unsmoothed maps)
        assert _max_diff(ours, unsmoothed.compute_contrast(label, output_type="z_score"),
                         run["mask"]) > 0.1
