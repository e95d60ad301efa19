"""Tests of the synthetic dataset generator (bids_hrf.datasets): confounds, planted truth
and its recovery (GLM, connectivity, group effects), agreement with nipype.

Layout, pybids, validator and API tests are in test_datasets.py.
"""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_hrf.datasets import double_gamma_hrf, make_synthetic_dataset

SPACE = "MNI152NLin2009cAsym"


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """The default small dataset: 2 subjects (control, patient) x 2 runs."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "bids", size="small")


def _preproc(ds, sub="01", run=1, task="localizer"):
    return (
        ds.fmriprep_dir
        / f"sub-{sub}"
        / "func"
        / f"sub-{sub}_task-{task}_run-{run}_space-{SPACE}_desc-preproc_bold.nii.gz"
    )


def _confounds(ds, sub="01", run=1):
    path = ds.fmriprep_dir / f"sub-{sub}" / "func"
    return pd.read_csv(
        path / f"sub-{sub}_task-localizer_run-{run}_desc-confounds_timeseries.tsv", sep="\t"
    )


# --------------------------------------------------------------------------- confounds


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"denoise_strategy": "simple"}, {"trans_x", "rot_z_derivative1_power2", "csf"}),
        ({"denoise_strategy": "scrubbing"}, {"white_matter_power2", "cosine00"}),
        ({"denoise_strategy": "compcor"}, {"a_comp_cor_00", "a_comp_cor_04"}),
        (
            {"denoise_strategy": "simple", "global_signal": "full"},
            {"global_signal", "global_signal_derivative1_power2"},
        ),
    ],
)
def test_nilearn_strategies(ds, kwargs, expected):
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    conf, sample_mask = load_confounds_strategy(str(_preproc(ds)), **kwargs)
    assert expected <= set(conf.columns)
    assert not conf.isna().any().any() and len(conf) == ds.n_scans
    # the non-steady-state volumes are always left out
    assert sample_mask is not None
    assert not set(range(ds.n_dummy_scans)) & set(sample_mask)
    if kwargs["denoise_strategy"] == "scrubbing":
        table = _confounds(ds)
        high_fd = np.flatnonzero(table["framewise_displacement"].fillna(0) > 0.5)
        assert high_fd.size and not set(high_fd) & set(sample_mask)


def test_nilearn_compcor_variants(ds):
    from nilearn.interfaces.fmriprep import load_confounds

    img = str(_preproc(ds))
    strategy = ("high_pass", "compcor")
    sep, _ = load_confounds(img, strategy=strategy, compcor="anat_separated", n_compcor=2)
    expected = {"c_comp_cor_00", "c_comp_cor_01", "w_comp_cor_00", "w_comp_cor_01"}
    assert set(sep.columns) - {"cosine00"} == expected
    temp, _ = load_confounds(img, strategy=strategy, compcor="temporal", n_compcor="all")
    assert set(temp.columns) - {"cosine00"} == {f"t_comp_cor_0{i}" for i in range(3)}
    meta = json.loads(
        (
            _preproc(ds).parent / "sub-01_task-localizer_run-1_desc-confounds_timeseries.json"
        ).read_text()
    )
    a_cols = [k for k in meta if k.startswith("a_comp_cor")]
    assert all(meta[k]["Mask"] == "combined" and meta[k]["Retained"] for k in a_cols)
    cum = [meta[k]["CumulativeVarianceExplained"] for k in a_cols]
    assert np.all(np.diff(cum) > 0) and cum[-1] <= 1
    assert any(k.startswith("dropped_") and not meta[k]["Retained"] for k in meta)


def test_confound_columns_follow_fmriprep(ds):
    table = _confounds(ds)
    text = (
        _preproc(ds).parent / "sub-01_task-localizer_run-1_desc-confounds_timeseries.tsv"
    ).read_text()
    assert text.splitlines()[1].count("n/a") >= 6  # NaNs are written n/a
    first = table.iloc[0]
    for col in ("framewise_displacement", "std_dvars", "dvars", "rmsd", "trans_x_derivative1"):
        assert np.isnan(first[col])
    for name in ("global_signal", "csf", "white_matter", "trans_x", "rot_y"):
        for ext in ("", "_derivative1", "_power2", "_derivative1_power2"):
            assert f"{name}{ext}" in table
    np.testing.assert_allclose(table["trans_y_power2"], table["trans_y"] ** 2)
    nss = table.filter(like="non_steady_state_outlier")
    assert nss.shape[1] == ds.n_dummy_scans
    np.testing.assert_array_equal(np.argmax(nss.to_numpy(), axis=0), range(ds.n_dummy_scans))
    # framewise displacement recomputed from the motion columns (Power 2012, r = 50 mm)
    motion = table[["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]].to_numpy()
    d = np.abs(np.diff(motion, axis=0))
    fd = d[:, :3].sum(axis=1) + 50 * d[:, 3:].sum(axis=1)
    np.testing.assert_allclose(table["framewise_displacement"][1:], fd, atol=0.05)
    # one motion_outlier column per volume with FD > 0.5 mm
    spikes = table.filter(like="motion_outlier").to_numpy()
    flagged = sorted(np.flatnonzero(spikes.any(axis=1)))
    assert flagged == sorted(np.flatnonzero(table["framewise_displacement"].fillna(0) > 0.5))
    assert spikes.sum(axis=0).tolist() == [1.0] * spikes.shape[1]
    # cosines: DCT with a 128 s cut-off over the steady-state volumes
    assert table.filter(like="cosine").shape[1] == int(2 * (ds.n_scans - 2) * ds.tr / 128) - 1


def test_confounds_explain_simulated_noise(ds):
    """Regressing the confounds out really removes signal (they come from the data)."""
    table = _confounds(ds)
    steady = slice(ds.n_dummy_scans, None)
    data = nib.load(_preproc(ds)).get_fdata()
    mask = ds.truth.parcel_labels > 0
    gm_mean = data[mask].mean(axis=0)[steady]
    rng = np.random.default_rng(0)

    def r2(cols):
        x = np.column_stack([np.ones(ds.n_scans), table[cols].fillna(0).to_numpy()])[steady]
        y = gm_mean - gm_mean.mean()
        beta, *_ = np.linalg.lstsq(x, y, rcond=None)
        return 1 - ((y - x @ beta) ** 2).sum() / (y**2).sum()

    comp = [c for c in table if c.startswith("a_comp_cor") or c.startswith("cosine")]
    random_cols = pd.DataFrame(rng.normal(size=(ds.n_scans, len(comp))))
    table = pd.concat([table, random_cols.add_prefix("random")], axis=1)
    assert r2(comp) > 0.6
    assert r2([f"random{i}" for i in range(len(comp))]) < 0.3
    assert r2(["global_signal"]) > 0.8


# --------------------------------------------------------------------------- truth


def test_truth_hrfs_and_files(ds):
    truth = ds.truth
    hrf = truth.hrf
    assert hrf.columns[0] == "time" and list(hrf.columns[1:]) == truth.parcel_names
    assert np.allclose(np.diff(hrf["time"]), 0.1)
    ttp = hrf["time"].to_numpy()[np.argmax(hrf.drop(columns="time").to_numpy(), axis=0)]
    np.testing.assert_allclose(ttp, [truth.time_to_peak[n] for n in truth.parcel_names])
    assert all(4.0 <= v <= 7.0 for v in truth.time_to_peak.values())
    delayed = truth.group_effects["time_to_peak"]["parcel"]
    ttp_patient = truth.time_to_peak_by_group["patient"]
    assert ttp_patient[delayed] == pytest.approx(truth.time_to_peak[delayed] + 1.5)
    assert all(ttp_patient[n] == truth.time_to_peak[n] for n in truth.parcel_names if n != delayed)
    on_disk = pd.read_csv(ds.truth_dir / "truth_hrf.tsv", sep="\t")
    np.testing.assert_allclose(on_disk.to_numpy(), hrf.to_numpy(), atol=1e-5)
    meta = json.loads((ds.truth_dir / "truth.json").read_text())
    assert meta["ActiveParcels"] == truth.active_parcels
    assert meta["GroupEffects"]["connectivity"]["correlated_in"] == ["control"]
    for cond, name in meta["ActiveVoxelMaps"].items():
        img = nib.load(ds.truth_dir / name)
        np.testing.assert_array_equal(np.asarray(img.dataobj) > 0, truth.active_voxels[cond])
    # mixed active and inactive voxels inside each active parcel
    labels = truth.parcel_labels
    for cond, parcels in truth.active_parcels.items():
        for name in parcels:
            inside = labels == truth.parcel_names.index(name) + 1
            frac = truth.active_voxels[cond][inside].mean()
            assert 0.4 < frac < 0.8
    amps = truth.amplitudes
    patient_only = truth.group_effects["activation"]
    sel = amps[(amps.parcel == patient_only["parcel"]) & (amps.condition == "audio")]
    assert (sel.set_index("group")["amplitude"] > 0).to_dict() == {
        "control": False,
        "patient": True,
    }


def test_double_gamma_hrf():
    t = np.arange(0, 32, 0.01)
    for ttp in (4.0, 5.5, 8.5):
        h = double_gamma_hrf(ttp, t)
        assert t[np.argmax(h)] == pytest.approx(ttp, abs=0.011)
        assert h.max() == pytest.approx(1.0, abs=1e-6)
        assert h.min() < -0.05  # undershoot
    with pytest.raises(ValueError, match="time_to_peak"):
        double_gamma_hrf(0.2)


def _parcel_z(ds, sub, condition, runs=(1, 2)):
    """First-level GLM (both runs, fixed effects) z of ``condition`` in each parcel."""
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    imgs = [str(_preproc(ds, sub, run)) for run in runs]
    events = [
        pd.read_csv(
            ds.bids_dir / f"sub-{sub}" / "func" / f"sub-{sub}_task-localizer_run-{run}_events.tsv",
            sep="\t",
        )
        for run in runs
    ]
    conf, sample_masks = load_confounds_strategy(imgs, denoise_strategy="simple")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glm = FirstLevelModel(
            t_r=ds.tr,
            mask_img=imgs[0].replace("desc-preproc_bold", "desc-brain_mask"),
            drift_model=None,
            minimize_memory=True,
            verbose=0,
        ).fit(imgs, events=events, confounds=conf, sample_masks=sample_masks)
        z = glm.compute_contrast(condition, output_type="z_score").get_fdata()
    # mean z over the truly active voxels of a parcel, over all its voxels if it has none
    labels = ds.truth.parcel_labels
    active = ds.truth.active_voxels_by_group[ds.truth.group_of(sub)][condition]
    out = {}
    for i, name in enumerate(ds.truth.parcel_names):
        inside = labels == i + 1
        out[name] = float(
            z[inside & active].mean() if (inside & active).any() else z[inside].mean()
        )
    return out


@pytest.mark.parametrize("condition", ["audio", "visual"])
def test_glm_finds_active_parcels(ds, condition):
    truth = ds.truth
    z = _parcel_z(ds, "02", condition)  # patient
    active = truth.active_parcels[condition]
    if condition == "audio":
        active = active + [truth.group_effects["activation"]["parcel"]]
    inactive = truth.group_effects["nulls"]["inactive"]
    assert min(z[n] for n in active) > 3.0
    assert max(abs(z[n]) for n in inactive) < 1.5


def test_glm_group_activation_effect(ds):
    """The patient-only parcel responds in the patient, not in the control."""
    parcel = ds.truth.group_effects["activation"]["parcel"]
    assert _parcel_z(ds, "02", "audio")[parcel] > 3.0
    assert abs(_parcel_z(ds, "01", "audio")[parcel]) < 1.5


def test_connectivity_effect(ds):
    from nilearn.interfaces.fmriprep import load_confounds_strategy
    from nilearn.maskers import NiftiLabelsMasker

    truth = ds.truth
    pair = truth.group_effects["connectivity"]["parcels"]
    null_pair = truth.group_effects["nulls"]["connectivity"]["parcels"]
    masker = NiftiLabelsMasker(str(ds.atlas_img), t_r=ds.tr)
    corr = {}
    for sub in ("01", "02"):
        img = str(_preproc(ds, sub, 1))
        conf, sample_mask = load_confounds_strategy(img, denoise_strategy="compcor")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ts = masker.fit_transform(img, confounds=conf, sample_mask=sample_mask)
        r = np.corrcoef(ts.T)
        idx = [truth.parcel_names.index(n) for n in pair + null_pair]
        corr[truth.group_of(sub)] = (r[idx[0], idx[1]], r[idx[2], idx[3]])
    assert corr["control"][0] > 0.7 and corr["patient"][0] < 0.5
    assert corr["control"][1] > 0.7 and corr["patient"][1] > 0.7


@pytest.mark.golden
def test_dvars_matches_nipype(ds, tmp_path):
    """DVARS and std_dvars equal nipype's compute_dvars (what fMRIPrep runs)."""
    pytest.importorskip("nitime")  # nipype's Yule-Walker AR estimate comes from nitime
    from nipype.algorithms.confounds import compute_dvars

    img = _preproc(ds)
    mask = str(img).replace("desc-preproc_bold", "desc-brain_mask")
    std_ref, raw_ref, _ = compute_dvars(str(img), mask)
    table = _confounds(ds)
    np.testing.assert_allclose(table["dvars"][1:], raw_ref, rtol=1e-4)
    np.testing.assert_allclose(table["std_dvars"][1:], std_ref, rtol=1e-3)


@pytest.mark.golden
def test_compcor_matches_nipype(ds):
    """a/c/w CompCor components and cosines equal nipype's compute_noise_components."""
    from nipype.algorithms.confounds import compute_noise_components

    img = nib.load(_preproc(ds))
    steady = img.slicer[..., ds.n_dummy_scans :]
    table = _confounds(ds).iloc[ds.n_dummy_scans :]
    meta = json.loads(
        (
            _preproc(ds).parent / "sub-01_task-localizer_run-1_desc-confounds_timeseries.json"
        ).read_text()
    )
    # the tissue masks the generator used are written as (binary) probseg maps
    probseg = ds.fmriprep_dir / "sub-01" / "anat"
    masks = {
        t: nib.load(probseg / f"sub-01_space-{SPACE}_label-{t}_probseg.nii.gz")
        for t in ("CSF", "WM")
    }
    combined = nib.Nifti1Image(
        ((masks["CSF"].get_fdata() + masks["WM"].get_fdata()) > 0).astype(np.uint8),
        img.affine,
    )
    for prefix, mask_img in (("c", masks["CSF"]), ("w", masks["WM"]), ("a", combined)):
        ref, basis, ref_meta = compute_noise_components(
            steady.get_fdata(dtype=np.float32),
            [mask_img],
            components_criterion=0.5,
            filter_type="cosine",
            period_cut=128,
            repetition_time=ds.tr,
        )
        ours = table[[c for c in table if c.startswith(f"{prefix}_comp_cor")]].to_numpy()
        k = ref.shape[1]
        assert ours.shape[1] >= k
        for i in range(k):  # components agree up to sign
            assert abs(np.corrcoef(ours[:, i], ref[:, i])[0, 1]) > 0.999
            key = f"{prefix}_comp_cor_{i:02d}"
            assert meta[key]["VarianceExplained"] == pytest.approx(
                ref_meta["variance_explained"][i], rel=1e-3
            )
    np.testing.assert_allclose(
        np.abs(table.filter(like="cosine").to_numpy()), np.abs(basis), atol=1e-6
    )


def _fit_time_to_peak(ds, sub, parcels):
    """Grid search of the double-gamma time to peak that best fits each parcel's mean."""
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    from bids_hrf.datasets._signals import condition_regressors

    grid = np.round(np.arange(3.0, 9.01, 0.2), 1)
    rss = np.zeros((len(grid), len(parcels)))
    labels = ds.truth.parcel_labels
    for run in (1, 2):
        img = str(_preproc(ds, sub, run))
        data = nib.load(img).get_fdata()
        y = np.column_stack(
            [data[labels == ds.truth.parcel_names.index(p) + 1].mean(axis=0) for p in parcels]
        )
        events = pd.read_csv(
            ds.bids_dir / f"sub-{sub}" / "func" / f"sub-{sub}_task-localizer_run-{run}_events.tsv",
            sep="\t",
        )
        conf, keep = load_confounds_strategy(img, denoise_strategy="simple")
        hrfs = np.column_stack([double_gamma_hrf(ttp) for ttp in grid])
        regs = condition_regressors(events, ds.conditions, hrfs, ds.n_scans, ds.tr)
        for g in range(len(grid)):
            design = np.column_stack([regs[:, :, g].T, conf.to_numpy(), np.ones(ds.n_scans)])
            beta, *_ = np.linalg.lstsq(design[keep], y[keep], rcond=None)
            rss[g] += ((y[keep] - design[keep] @ beta) ** 2).sum(axis=0)
    return dict(zip(parcels, grid[np.argmin(rss, axis=0)], strict=True))


def test_time_to_peak_effect_is_recoverable(ds):
    """The delayed parcel peaks 1.5 s later in the patient; a null parcel does not move."""
    truth = ds.truth
    delayed = truth.group_effects["time_to_peak"]["parcel"]
    null = next(p for p in truth.active_parcels["audio"] if p != delayed)
    control, patient = (_fit_time_to_peak(ds, sub, [delayed, null]) for sub in ("01", "02"))
    assert control[delayed] == pytest.approx(truth.time_to_peak[delayed], abs=0.3)
    assert patient[delayed] - control[delayed] == pytest.approx(1.5, abs=0.45)
    assert control[null] == pytest.approx(truth.time_to_peak[null], abs=0.3)
    assert abs(patient[null] - control[null]) < 0.45


def test_many_conditions_keep_group_effects(tmp_path):
    conditions = ("audio", "visual", "motor", "faces")
    ds = make_synthetic_dataset(tmp_path / "b", n_runs=1, n_scans=60, conditions=conditions)
    truth = ds.truth
    assert set(truth.active_parcels) == set(conditions)
    assert all(p.startswith("Somatomotor") for p in truth.active_parcels["motor"])
    assert len(truth.active_parcels["faces"]) == 1  # half of a two-parcel network
    patient_only = truth.group_effects["activation"]["parcel"]
    assert not any(patient_only in parcels for parcels in truth.active_parcels.values())
    ev = pd.read_csv(
        ds.bids_dir / "sub-01" / "func" / "sub-01_task-localizer_run-1_events.tsv", sep="\t"
    )
    assert set(ev["trial_type"]) == set(conditions)
