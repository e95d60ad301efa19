"""Group model parsing, design building and second-level statistics."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bids_hrf.glm.second_level import (
    build_group_design,
    combine_sessions,
    fit_second_level,
    group_contrasts,
    paired_design,
    parse_group_model,
    permutation_inference,
    threshold_and_clusters,
)

SHAPE = (9, 9, 9)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
BLOB = (slice(1, 4), slice(1, 4), slice(1, 4))  # 27 voxels, active in patients only
NULL = (slice(5, 8), slice(5, 8), slice(5, 8))


def _participants(n_per_group=10, seed=0):
    rng = np.random.default_rng(seed)
    n = 2 * n_per_group
    return pd.DataFrame({
        "participant_id": [f"sub-{i:02d}" for i in range(n)],
        "group": ["control"] * n_per_group + ["patient"] * n_per_group,
        "age": rng.uniform(20, 60, n).round(1),
        "sex": rng.choice(["F", "M"], n),
    })


def _maps(participants, effect=2.5, seed=1):
    """One image per participant: noise + effect in BLOB for patients + age slope."""
    rng = np.random.default_rng(seed)
    imgs = []
    for _, row in participants.iterrows():
        data = rng.normal(0.0, 1.0, SHAPE)
        data += 0.02 * (row["age"] - 40.0)
        if row["group"] == "patient":
            data[BLOB] += effect
        imgs.append(nib.Nifti1Image(data.astype(np.float32), AFFINE))
    return imgs


def _mask():
    return nib.Nifti1Image(np.ones(SHAPE, dtype=np.uint8), AFFINE)


@pytest.fixture(scope="module")
def two_group():
    parts = _participants()
    return parts, _maps(parts)


# ---------------------------------------------------------------- parsing and design


def test_default_and_one_sample_spec():
    parts = _participants()
    spec = parse_group_model(None, parts)
    assert spec.kind == "one-sample" and spec.intercept
    design, used, dropped = build_group_design(spec, ["01", "02", "sub-03"], None)
    assert list(design.columns) == ["intercept"]
    assert used == ["01", "02", "sub-03"] and dropped == {}
    np.testing.assert_array_equal(group_contrasts(spec, design)["mean"], [1.0])


def test_two_sample_design_codes_groups_and_centres_covariates():
    parts = _participants()
    spec = parse_group_model("two-sample:group:age,sex", parts)
    assert spec.levels == ["control", "patient"]
    assert spec.categorical == ["sex"]
    subjects = [f"{i:02d}" for i in range(20)]
    design, used, dropped = build_group_design(spec, subjects, parts)
    assert list(design.columns) == ["control", "patient", "age", "sex_M"]
    assert used == subjects and not dropped
    np.testing.assert_allclose(design["control"] + design["patient"], 1.0)
    np.testing.assert_array_equal(design["patient"], (parts["group"] == "patient").astype(float))
    np.testing.assert_allclose(design["age"], parts["age"] - parts["age"].mean())
    is_m = (parts["sex"] == "M").astype(float)
    np.testing.assert_allclose(design["sex_M"], is_m - is_m.mean())
    cons = design.attrs["contrasts"]
    np.testing.assert_array_equal(cons["patientMinusControl"], [-1, 1, 0, 0])


def test_missing_subjects_are_dropped_with_reason():
    parts = _participants()
    parts["age"] = parts["age"].astype(object)  # as read with na_values unset
    parts.loc[3, "age"] = np.nan
    parts.loc[4, "age"] = "n/a"
    spec = parse_group_model("two-sample:group:age", parts)
    subjects = [f"sub-{i:02d}" for i in range(20)] + ["sub-99"]
    design, used, dropped = build_group_design(spec, subjects, parts)
    assert set(dropped) == {"sub-03", "sub-04", "sub-99"}
    assert "participants.tsv" in dropped["sub-99"] and "not listed" in dropped["sub-99"]
    assert "age" in dropped["sub-03"] and "age" in dropped["sub-04"]
    assert len(used) == 18 and design.shape == (18, 3)
    assert list(design.index) == used
    # age is centred on the subjects used, not on everyone in participants.tsv
    assert abs(design["age"].mean()) < 1e-10


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("two-sample:diagnosis", "valid columns are"),
        ("two-sample:group:weight", "weight"),
        ("one-sample:height", "valid columns are"),
        ("three-sample:group", "unknown group model"),
        ("two-sample", "needs a column"),
    ],
)
def test_bad_specs_are_value_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_group_model(spec, _participants())


def test_single_group_is_rejected():
    parts = _participants()
    parts["group"] = "control"
    with pytest.raises(ValueError, match="exactly two groups.*found 1"):
        parse_group_model("two-sample:group", parts)
    # two groups in participants.tsv but only one group has maps
    spec = parse_group_model("two-sample:group", _participants())
    with pytest.raises(ValueError, match="single group"):
        build_group_design(spec, [f"{i:02d}" for i in range(10)], _participants())


def test_too_few_subjects():
    spec = parse_group_model("two-sample:group:age", _participants())
    with pytest.raises(ValueError, match="too few subjects.*at least 4"):
        build_group_design(spec, ["00", "01", "10"], _participants())
    with pytest.raises(ValueError, match="too few subjects"):
        build_group_design(parse_group_model(None, None), ["01"], None)


def test_rank_deficient_covariate():
    parts = _participants()
    parts["site"] = np.where(parts["group"] == "patient", 2.0, 1.0)
    spec = parse_group_model("two-sample:group:site", parts)
    with pytest.raises(ValueError, match="rank deficient"):
        build_group_design(spec, [f"{i:02d}" for i in range(20)], parts)


def test_paired_design():
    subjects = [f"sub-{s:02d}_ses-{ses}" for s in range(5) for ses in ("pre", "post")]
    subjects += ["sub-07_ses-pre"]  # no post session
    spec = parse_group_model("paired:session:pre,post", None)
    design, used, dropped = build_group_design(spec, subjects, None)
    assert list(dropped) == ["sub-07_ses-pre"] and "exactly one map" in dropped["sub-07_ses-pre"]
    assert design.columns[0] == "post_minus_pre" and design.shape == (10, 6)
    np.testing.assert_array_equal(design["post_minus_pre"], [-0.5, 0.5] * 5)
    np.testing.assert_array_equal(design["sub_03"], [0] * 6 + [1, 1] + [0] * 2)
    # the paired contrast equals a one-sample test on the differences
    rng = np.random.default_rng(3)
    base = rng.normal(size=(5, 4))
    diffs = rng.normal(0.5, 1.0, size=(5, 4))
    data = np.empty((10, 4))
    data[0::2], data[1::2] = base, base + diffs
    res = fit_second_level(data, design)["postMinusPre"]
    ref = stats.ttest_1samp(diffs, 0.0, axis=0)
    np.testing.assert_allclose(res.stat, ref.statistic, rtol=1e-8)
    np.testing.assert_allclose(res.effect, diffs.mean(axis=0), rtol=1e-8)
    with pytest.raises(ValueError, match="each subject once"):
        paired_design(["01", "01", "02"], ["a", "b", "a"])
    # permutation inference on the paired design: subject columns already model the mean
    perm = permutation_inference(data, design, [1, 0, 0, 0, 0, 0], n_perm=50)
    np.testing.assert_allclose(perm["t"], ref.statistic, rtol=1e-6)


def test_bids_stats_model_dict():
    parts = _participants()
    model = {
        "Nodes": [{
            "Level": "Dataset", "Name": "group",
            "Model": {"Type": "glm", "X": [1, "group", "age"]},
            "Contrasts": [
                {"Name": "patientVsControl", "ConditionList": ["group.patient"],
                 "Weights": [1], "Test": "t"},
                {"Name": "anyEffect", "ConditionList": ["intercept", "group.patient", "age"],
                 "Weights": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "Test": "F"},
            ],
        }]
    }
    spec = parse_group_model(model, parts)
    assert spec.kind == "custom" and spec.intercept and spec.categorical == ["group"]
    design, _, _ = build_group_design(spec, [f"{i:02d}" for i in range(20)], parts)
    assert list(design.columns) == ["intercept", "group_patient", "age"]
    cons = group_contrasts(spec, design)
    np.testing.assert_array_equal(cons["patientVsControl"], [0, 1, 0])
    assert cons["anyEffect"].shape == (3, 3)
    bad = {"Model": {"X": [1]}, "Contrasts": [
        {"Name": "c", "ConditionList": ["a", "b"], "Weights": [1], "Test": "t"}]}
    with pytest.raises(ValueError, match="2 conditions"):
        parse_group_model(bad, parts)
    with pytest.raises(ValueError, match="valid columns"):
        parse_group_model({"Model": {"X": [1, "iq"]}}, parts)


# ---------------------------------------------------------------- statistics


def test_two_sample_finds_planted_activation(two_group):
    parts, imgs = two_group
    spec = parse_group_model("two-sample:group:age", parts)
    design, used, _ = build_group_design(spec, list(parts["participant_id"]), parts)
    res = fit_second_level(imgs, design, mask_img=_mask())["patientMinusControl"]
    z = res.z.get_fdata()
    assert z[BLOB].mean() > 3.0
    thresholded, clusters = threshold_and_clusters(res.z, alpha=0.05, height_control="fdr",
                                                   mask_img=_mask())
    active = thresholded.get_fdata() != 0
    assert active[BLOB].mean() > 0.8
    assert not active[NULL].any()
    assert active.sum() - active[BLOB].sum() <= 3  # FDR 5 %: few false positives
    assert len(clusters) >= 1 and np.isfinite(clusters.attrs["threshold"])
    peak_vox = np.linalg.inv(AFFINE) @ np.r_[clusters.iloc[0][["X", "Y", "Z"]].astype(float), 1]
    assert all(1 <= c <= 3 for c in np.round(peak_vox[:3]))
    # the group-mean contrast and control-only maps show nothing in NULL
    assert np.abs(z[NULL]).max() < 4.0


@pytest.mark.golden
def test_agrees_with_nilearn_second_level_model(two_group):
    from nilearn.glm.second_level import SecondLevelModel

    parts, imgs = two_group
    for model, mask in [("one-sample", _mask()), ("two-sample:group:age,sex", _mask()),
                        ("two-sample:group", None)]:
        spec = parse_group_model(model, parts)
        design, _, _ = build_group_design(spec, list(parts["participant_id"]), parts)
        con = design.attrs["contrasts"]
        name = next(iter(con))
        ours = fit_second_level(imgs, design, mask_img=mask)[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slm = SecondLevelModel(mask_img=mask).fit(imgs, design_matrix=design)
            ref = slm.compute_contrast(con[name], output_type="all")
        for ours_img, key in [(ours.effect, "effect_size"), (ours.variance, "effect_variance"),
                              (ours.stat, "stat"), (ours.z, "z_score"), (ours.p, "p_value")]:
            np.testing.assert_allclose(ours_img.get_fdata(), ref[key].get_fdata(),
                                       rtol=1e-6, atol=1e-8, err_msg=f"{model} {key}")


@pytest.mark.golden
def test_f_contrast_and_arrays_match_nilearn_and_numpy(two_group):
    from nilearn.glm.second_level import SecondLevelModel

    parts, imgs = two_group
    spec = parse_group_model("two-sample:group:age", parts)
    design, _, _ = build_group_design(spec, list(parts["participant_id"]), parts)
    f_con = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    ours = fit_second_level(imgs, design, mask_img=_mask(), contrasts={"groups": f_con})
    res = ours["groups"]
    assert res.stat_type == "F"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slm = SecondLevelModel(mask_img=_mask()).fit(imgs, design_matrix=design)
        ref_f = slm.compute_contrast(f_con, second_level_stat_type="F", output_type="stat")
    np.testing.assert_allclose(res.stat.get_fdata(), ref_f.get_fdata(), rtol=1e-6)
    # independent: F from restricted vs full residual sums of squares (numpy)
    y = np.stack([img.get_fdata().ravel() for img in imgs])
    x = design.to_numpy()
    rss_full = ((y - x @ np.linalg.lstsq(x, y, rcond=None)[0]) ** 2).sum(0)
    x0 = x[:, 2:]
    rss_red = ((y - x0 @ np.linalg.lstsq(x0, y, rcond=None)[0]) ** 2).sum(0)
    f_ref = ((rss_red - rss_full) / 2) / (rss_full / (x.shape[0] - 3))
    np.testing.assert_allclose(res.stat.get_fdata().ravel(), f_ref, rtol=1e-6)
    # array input gives the same t as image input, and a formula the same as a vector
    arr = fit_second_level(y, design, contrasts={"d": "patient - control"})["d"]
    img = fit_second_level(imgs, design, mask_img=_mask(), contrasts={"d": [-1, 1, 0]})["d"]
    np.testing.assert_allclose(arr.stat, img.stat.get_fdata().ravel(), rtol=1e-6)
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(arr.effect, beta[1] - beta[0], rtol=1e-8, atol=1e-10)
    assert arr.dof == 17


def test_fit_errors():
    design = pd.DataFrame({"intercept": np.ones(4)})
    with pytest.raises(ValueError, match="3 subject maps but the design matrix has 4"):
        fit_second_level(np.zeros((3, 5)), design)
    with pytest.raises(ValueError, match="does not match"):
        fit_second_level(np.ones((4, 5)), design, contrasts={"c": [1, 0]})
    with pytest.raises(ValueError, match="NaN"):
        fit_second_level(np.full((4, 5), np.nan), design)


def test_permutation_inference_arrays_and_images(two_group):
    rng = np.random.default_rng(5)
    data = rng.normal(size=(16, 30))
    data[:8, :5] += 3.0  # group A higher in elements 0-4
    design = pd.DataFrame({"a": np.r_[np.ones(8), np.zeros(8)], "b": np.r_[np.zeros(8),
                                                                         np.ones(8)]})
    out = permutation_inference(data, design, "a - b", n_perm=300, random_state=0)
    fwe_p = 10 ** -out["logp_max_t"]
    assert (fwe_p[:5] < 0.05).all()
    assert (fwe_p[5:] > 0.05).mean() > 0.9
    ref = fit_second_level(data, design, contrasts={"d": "a - b"})["d"]
    np.testing.assert_allclose(out["t"], ref.stat, rtol=1e-6)
    with pytest.raises(ValueError, match="need images"):
        permutation_inference(data, design, "a - b", threshold=0.001)
    parts, imgs = two_group
    spec = parse_group_model("two-sample:group", parts)
    design, _, _ = build_group_design(spec, list(parts["participant_id"]), parts)
    out = permutation_inference(imgs, design, [-1, 1], mask_img=_mask(), n_perm=100,
                                threshold=0.001)
    assert {"t", "logp_max_t", "size", "logp_max_size", "mass"} <= set(out)
    assert out["logp_max_size"].get_fdata()[BLOB].max() > 1.3
    assert out["logp_max_size"].get_fdata()[NULL].max() < 1.3


def test_threshold_arrays_match_images():
    rng = np.random.default_rng(2)
    z = rng.normal(size=SHAPE)
    z[BLOB] += 5.0
    img = nib.Nifti1Image(z, AFFINE)
    for control, alpha in [("fdr", 0.05), ("bonferroni", 0.05), ("fpr", 0.001)]:
        t_img, clusters = threshold_and_clusters(img, alpha, control, mask_img=_mask())
        t_arr, table = threshold_and_clusters(z.ravel(), alpha, control)
        assert clusters.attrs["threshold"] == pytest.approx(table.attrs["threshold"])
        np.testing.assert_allclose(t_img.get_fdata().ravel(), t_arr)
    assert threshold_and_clusters(z.ravel(), 0.05, "bonferroni")[1].attrs["threshold"] == (
        pytest.approx(stats.norm.isf(0.025 / z.size)))
    _, none = threshold_and_clusters(rng.normal(size=500), 0.01, "fdr")
    assert none.empty
    with pytest.raises(ValueError, match="height_control"):
        threshold_and_clusters(z.ravel(), 0.05, "holm")


def test_combine_sessions_precision_weighted():
    effects = np.array([[1.0, 2.0, 5.0], [3.0, 4.0, 7.0]])
    variances = np.array([[1.0, 1.0, 0.0], [3.0, 1.0, 2.0]])
    eff, var = combine_sessions(effects, variances)
    np.testing.assert_allclose(eff, [(1 + 3 / 3) / (1 + 1 / 3), 3.0, 7.0])
    np.testing.assert_allclose(var, [1 / (1 + 1 / 3), 0.5, 2.0])
    imgs = [nib.Nifti1Image(e.reshape(1, 1, 3), np.eye(4)) for e in effects]
    vimgs = [nib.Nifti1Image(v.reshape(1, 1, 3), np.eye(4)) for v in variances]
    e_img, v_img = combine_sessions(imgs, vimgs)
    np.testing.assert_allclose(e_img.get_fdata().ravel(), eff)


@pytest.mark.golden
def test_combine_sessions_matches_nilearn_fixed_effects():
    from nilearn.glm.contrasts import compute_fixed_effects

    rng = np.random.default_rng(4)
    shape = (4, 4, 4)
    effects = [nib.Nifti1Image(rng.normal(size=shape), np.eye(4)) for _ in range(3)]
    variances = [nib.Nifti1Image(rng.uniform(0.5, 2.0, shape), np.eye(4)) for _ in range(3)]
    mask = nib.Nifti1Image(np.ones(shape, dtype=np.uint8), np.eye(4))
    ours_e, ours_v = combine_sessions(effects, variances)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = compute_fixed_effects(effects, variances, mask=mask, precision_weighted=True)
    np.testing.assert_allclose(ours_e.get_fdata(), ref[0].get_fdata(), rtol=1e-6)
    np.testing.assert_allclose(ours_v.get_fdata(), ref[1].get_fdata(), rtol=1e-6)
