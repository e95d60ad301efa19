"""End to end, group level: participant (FIR HRFs) then group CLI on a generated dataset with
two groups and planted group effects, plus a subject with two sessions, one missing a run
and one missing a condition.

Planted (see ``truth.json``): an activation in one Frontoparietal parcel for the first
condition in patients only; a 1.5 s later time to peak of one Auditory parcel in patients;
a Default-network edge correlated in controls only. Planted nulls: parcels active in both
groups or in none, the HRFs of the other parcels, a Somatomotor edge correlated in both.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow
SPACE = "MNI152NLin2009cAsym"
N_SUBJECTS = 12


def _make_dataset(root: Path):
    from bids_hrf.datasets import make_synthetic_dataset

    ds = make_synthetic_dataset(root, size="small", n_subjects=N_SUBJECTS, n_sessions=2,
                                n_runs=2, seed=7)
    fmriprep = root / "derivatives" / "fmriprep"
    for sub in ds.subjects[1:]:  # only sub-01 keeps two sessions
        for base in (root, fmriprep):
            shutil.rmtree(base / f"sub-{sub}" / "ses-02")
    for base in (root, fmriprep):  # sub-02 misses run 2
        for path in (base / "sub-02" / "ses-01").rglob("*run-2*"):
            path.unlink()
    for path in (root / "sub-03").rglob("*_events.tsv"):  # sub-03 never sees 'visual'
        events = pd.read_csv(path, sep="\t")
        events[events["trial_type"] != "visual"].to_csv(path, sep="\t", index=False)
    return ds


@pytest.fixture(scope="module")
def group_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("group") / "bids"
    ds = _make_dataset(root)
    out = root / "derivatives" / "bids_hrf"
    work = tmp_path_factory.mktemp("work")
    code = run_cli(root, out, "participant", "--atlas", ds.atlas_img, "-w", work,
                   "--nprocs", "1", "--hrf-method", "fir", "--no-report")
    assert code == 0
    group_code = run_cli(root, out, "group", "-w", work, "--nprocs", "1",
                         "--group-model", "two-sample:group", "--group-permutations", "100")
    return ds, out, group_code


def _group_file(out: Path, pattern: str) -> Path:
    found = sorted((out / "group").glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


def _sidecar(path: Path) -> dict:
    name = path.name.split(".")[0]
    return json.loads((path.parent / f"{name}.json").read_text())


def test_group_exit_code_and_report(group_run):
    _, out, code = group_run
    assert code == 0
    html = (out / "group.html").read_text()
    for title in ("Second-level GLM", "Group HRFs", "Connectivity", "Clusters of",
                  "patientMinusControl"):
        assert title in html, title
    assert "sub-03" in html  # the subject missing a contrast is named
    assert "Welch t tests" in html and "no group comparison" not in html  # two groups


def _parcel_voxels(ds, name: str) -> np.ndarray:
    labels = nib.load(ds.truth_dir / f"space-{SPACE}_desc-parcels_dseg.nii.gz").get_fdata()
    return labels == ds.truth.parcel_names.index(name) + 1


def test_planted_activation_found_and_nulls_not(group_run):
    ds, out, _ = group_run
    effect = ds.truth.group_effects["activation"]
    assert effect["active_in"] == ["patient"]
    planted = _parcel_voxels(ds, effect["parcel"])
    cond = effect["condition"]
    z = nib.load(_group_file(out, f"*model-patientMinusControl_contrast-{cond}_stat-z_"
                                  "desc-firHrf_statmap.nii.gz")).get_fdata()
    fwe = nib.load(_group_file(out, f"*model-patientMinusControl_contrast-{cond}_"
                                    "stat-logpFweVoxel_desc-firHrf_statmap.nii.gz")).get_fdata()
    assert z[planted].max() > 3.09
    assert fwe[planted].max() > -np.log10(0.05)
    # planted nulls: no FWE-significant voxel outside the planted parcel, in either contrast
    assert not np.any(fwe[~planted] > -np.log10(0.05))
    other = [c for c in ds.conditions if c != cond][0]
    fwe_null = nib.load(_group_file(out, f"*model-patientMinusControl_contrast-{other}_"
                                         "stat-logpFweVoxel_desc-firHrf_statmap.nii.gz"))
    assert not np.any(fwe_null.get_fdata() > -np.log10(0.05))
    clusters = pd.read_csv(_group_file(out, f"*model-patientMinusControl_contrast-{cond}_"
                                            "desc-firHrf_clusters.tsv"), sep="\t")
    assert len(clusters) >= 1
    # the mean over groups finds the activation shared by both groups
    shared = ds.truth.active_parcels[cond]
    zmean = nib.load(_group_file(out, f"*model-mean_contrast-{cond}_stat-z_desc-firHrf_"
                                      "statmap.nii.gz")).get_fdata()
    for parcel in shared:
        assert zmean[_parcel_voxels(ds, parcel)].max() > 3.09, parcel


def test_planted_time_to_peak_found_and_nulls_not(group_run):
    ds, out, _ = group_run
    effect = ds.truth.group_effects["time_to_peak"]
    comp = pd.read_csv(_group_file(out, "*desc-fir_hrfcomparison.tsv"), sep="\t")
    ttp = comp[comp["parameter"] == "time_to_peak"].set_index("parcel")
    assert bool(ttp.loc[effect["parcel"], "significant"])
    assert 0.5 < ttp.loc[effect["parcel"], "difference"] < 3.0  # planted: +1.5 s
    nulls = ds.truth.group_effects["nulls"]["time_to_peak"]
    assert not ttp.loc[nulls, "significant"].any()
    params = pd.read_csv(_group_file(out, "*desc-fir_hrfparams.tsv"), sep="\t")
    assert params["subject"].nunique() == N_SUBJECTS
    assert {"time_to_peak", "fwhm", "height", "group"} <= set(params.columns)


def test_planted_edge_found_and_null_not(group_run):
    ds, out, _ = group_run
    effect = ds.truth.group_effects["connectivity"]
    null = ds.truth.group_effects["nulls"]["connectivity"]["parcels"]
    edges = pd.read_csv(_group_file(out, "*meas-correlation_edges.tsv"), sep="\t")

    def row(pair):
        hit = edges[edges["name_i"].isin(pair) & edges["name_j"].isin(pair)]
        assert len(hit) == 1
        return hit.iloc[0]

    planted = row(effect["parcels"])
    assert effect["correlated_in"] == ["control"]
    assert planted["significant"] and planted["difference"] < 0  # patient - control
    assert not row(null)["significant"]
    assert edges["significant"].sum() <= 2
    nets = pd.read_csv(_group_file(out, "*meas-correlation_desc-groupComparison_"
                                        "networks.tsv"), sep="\t")
    default = nets[(nets["network_a"] == "Default") & (nets["network_b"] == "Default")]
    assert bool(default["significant"].iloc[0])


def test_missing_run_contrast_and_sessions(group_run):
    ds, out, _ = group_run
    visual = _group_file(out, "task-localizer_contrast-visual_desc-firHrf_groupdesign.tsv")
    meta = _sidecar(visual)
    assert meta["MissingSubjects"] == ["sub-03"]
    assert "sub-03" not in meta["Subjects"]
    audio = _sidecar(_group_file(out, "task-localizer_contrast-audio_desc-firHrf_"
                                      "groupdesign.tsv"))
    assert len(audio["Subjects"]) == N_SUBJECTS
    assert audio["SessionsCombined"]["sub-01"] == 2
    assert audio["SessionsCombined"]["sub-02"] == 1
    design = pd.read_csv(visual, sep="\t")
    assert len(design) == N_SUBJECTS - 1 and "03" not in design["participant"].astype(str)
    # per-run connectivity matrices: two sessions for sub-01, one run for sub-02
    sub01 = sorted(p.name for p in (out / "sub-01").rglob("*meas-correlation_relmat.tsv"))
    assert len(sub01) == 4 and any("ses-02" in n for n in sub01)
    sub02 = sorted(p.name for p in (out / "sub-02").rglob("*meas-correlation_relmat.tsv"))
    assert sub02 == [f"sub-02_ses-01_task-localizer_run-1_space-{SPACE}_seg-Synthetic_"
                     "meas-correlation_relmat.tsv"]
    relmat = next((out / "sub-02").rglob("*meas-correlation_relmat.tsv"))
    assert _sidecar(relmat)["TaskRegressors"] == ["audio", "visual"]
    matrix = pd.read_csv(relmat, sep="\t")
    assert matrix.shape == (len(matrix.columns), len(matrix.columns))
    np.testing.assert_allclose(np.diag(matrix.to_numpy()), 1.0, atol=1e-6)


def test_agrees_with_nilearn_second_level_model(group_run):
    """z of the written group maps vs nilearn's SecondLevelModel on the written subject maps
    (sessions combined here by precision weighting, independently of bids_hrf)."""
    from nilearn.glm.second_level import SecondLevelModel
    from nilearn.masking import intersect_masks

    ds, out, _ = group_run
    design_path = _group_file(out, "task-localizer_contrast-audio_desc-firHrf_groupdesign.tsv")
    design = pd.read_csv(design_path, sep="\t", dtype={"participant": str})
    maps = []
    for sub in design["participant"]:
        files = sorted((out / f"sub-{sub}").rglob(
            f"sub-{sub}_*task-localizer_space-{SPACE}_contrast-audio_stat-effect_desc-firHrf"
            "_statmap.nii.gz"))
        effects = [nib.load(f) for f in files]
        variances = [nib.load(str(f).replace("stat-effect", "stat-variance")) for f in files]
        e = np.stack([img.get_fdata() for img in effects])
        v = np.stack([img.get_fdata() for img in variances])
        w = np.where(v > 0, 1 / np.where(v > 0, v, 1), 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            combined = np.nan_to_num((w * e).sum(0) / w.sum(0))
        maps.append(nib.Nifti1Image(combined, effects[0].affine))
    mask = intersect_masks([nib.Nifti1Image((m.get_fdata() != 0).astype(np.uint8), m.affine)
                            for m in maps], threshold=1, connected=False)
    x = design.drop(columns="participant")
    model = SecondLevelModel(mask_img=mask).fit(maps, design_matrix=x)
    inside = mask.get_fdata() > 0
    for name, weights in (("patientMinusControl", [-1, 1]), ("mean", [0.5, 0.5])):
        for stat, output_type in (("z", "z_score"), ("t", "stat"), ("effect", "effect_size")):
            ref = model.compute_contrast(np.asarray(weights, float), output_type=output_type)
            ours = nib.load(_group_file(out, f"*model-{name}_contrast-audio_stat-{stat}_"
                                             "desc-firHrf_statmap.nii.gz"))
            np.testing.assert_allclose(ours.get_fdata()[inside], ref.get_fdata()[inside],
                                       atol=1e-4)
    ours_mask = nib.load(_group_file(out, "*model-mean_contrast-audio_stat-z_desc-firHrf_"
                                          "statmap.nii.gz")).get_fdata() != 0
    assert np.array_equal(ours_mask, inside)  # same group mask: subjects' common voxels


def test_bids_validator_no_errors(group_run):
    _, out, _ = group_run
    from tests.conftest import validator_executable

    proc = subprocess.run([validator_executable(), str(out), "--format", "json"],
                          capture_output=True,
                          text=True, timeout=300)
    report = json.loads(proc.stdout)
    issues = report.get("issues", {}).get("issues", [])
    assert issues or proc.returncode == 0, proc.stderr[-2000:]
    # the whole output dataset, participant and group level
    ours = [i for i in issues if i.get("severity") == "error"]
    assert not ours, ours[:5]
