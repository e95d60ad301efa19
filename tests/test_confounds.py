"""Tests of bids_hrf.confounds on generated and on nilearn's real fMRIPrep confounds files."""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bids_hrf.confounds import (
    PRESET_STRATEGIES,
    PRESETS,
    expected_confounds_path,
    find_confounds_file,
    load_run_confounds,
    parse_confounds_spec,
)
from bids_hrf.errors import DataError, NoInputError, UsageError

NILEARN_DATA = Path(__import__("nilearn").__file__).parent / "interfaces" / "fmriprep" / "data"
BOLD_NAME = "sub-01_task-rest_run-1_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
CONF_NAME = "sub-01_task-rest_run-1_desc-confounds_timeseries"
MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


def make_confounds(n=40, n_nss=2, n_acompcor=4, seed=0, spikes=()):
    """A small fMRIPrep-like confounds table (recent names) and its JSON metadata."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for name in MOTION + ["csf", "white_matter", "global_signal"]:
        base = np.cumsum(rng.normal(0, 0.05, n)) + rng.normal(0, 1)
        cols[name] = base
        deriv = np.r_[np.nan, np.diff(base)]
        cols[f"{name}_derivative1"] = deriv
        cols[f"{name}_power2"] = base**2
        cols[f"{name}_derivative1_power2"] = deriv**2
    fd = np.r_[np.nan, np.abs(rng.normal(0.1, 0.03, n - 1))]
    dvars = np.r_[np.nan, np.abs(rng.normal(1.0, 0.1, n - 1))]
    for t in spikes:
        fd[t] = 2.0
    cols["framewise_displacement"] = fd
    cols["std_dvars"] = dvars
    cols["dvars"] = dvars * 20
    meta = {}
    for k in range(n_acompcor):
        name = f"a_comp_cor_{k:02d}"
        cols[name] = rng.normal(size=n)
        meta[name] = {"Method": "aCompCor", "Mask": "combined", "Retained": True,
                      "VarianceExplained": 0.1, "CumulativeVarianceExplained": 0.1 * (k + 1)}
    for k in range(2):
        name = f"t_comp_cor_{k:02d}"
        cols[name] = rng.normal(size=n)
        meta[name] = {"Method": "tCompCor", "Retained": True}
    t = np.arange(n)
    for k in range(2):
        cols[f"cosine{k:02d}"] = np.cos(np.pi * (k + 1) * (t + 0.5) / n)
    for k in range(n_nss):
        onehot = np.zeros(n, dtype=int)
        onehot[k] = 1
        cols[f"non_steady_state_outlier{k:02d}"] = onehot
    return pd.DataFrame(cols), meta


def write_run(folder: Path, table: pd.DataFrame, meta: dict | None, n_volumes=None,
              conf_name=CONF_NAME, bold_name=BOLD_NAME) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / f"{conf_name}.tsv", sep="\t", index=False, na_rep="n/a")
    if meta is not None:
        (folder / f"{conf_name}.json").write_text(json.dumps(meta))
    bold = folder / bold_name
    if n_volumes is not None:
        nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, n_volumes), np.float32), np.eye(4)), bold)
    return bold


@pytest.fixture
def run(tmp_path):
    table, meta = make_confounds()
    return write_run(tmp_path, table, meta), table


def test_presets_are_documented_and_mapped():
    import bids_hrf.confounds as mod

    assert set(PRESETS) == set(PRESET_STRATEGIES)
    for preset in PRESETS:
        assert f"``{preset}``" in mod.__doc__


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("minimal", set(MOTION)),
        ("simple", set(MOTION) | {f"{m}_derivative1" for m in MOTION} | {"csf", "white_matter"}),
        ("scrubbing",
         set(MOTION) | {f"{m}_derivative1" for m in MOTION} | {"csf", "white_matter"}),
        ("motion24", set(MOTION) | {f"{m}_{s}" for m in MOTION
                                    for s in ("derivative1", "power2", "derivative1_power2")}),
        ("gsr", set(MOTION) | {f"{m}_derivative1" for m in MOTION}
         | {"csf", "white_matter", "global_signal"}),
        ("compcor", set(MOTION) | {f"{m}_derivative1" for m in MOTION}
         | {f"a_comp_cor_{k:02d}" for k in range(4)} | {"cosine00", "cosine01"}),
    ],
)
def test_presets_on_generated_table(run, preset, expected):
    bold, table = run
    res = load_run_confounds(bold, preset)
    assert set(res.columns) == expected
    assert list(res.confounds.columns) == res.columns
    assert res.confounds.shape == (40, len(expected))
    assert not res.confounds.isna().any().any()
    assert res.n_dummy == 2
    np.testing.assert_array_equal(res.sample_mask, np.arange(2, 40))
    # values are the TSV's, demeaned over the kept volumes (row 0 filled from row 1)
    for col in res.columns:
        raw = table[col].to_numpy(float).copy()
        if np.isnan(raw[0]):
            raw[0] = raw[1]
        np.testing.assert_allclose(res.confounds[col], raw - raw[2:].mean(), atol=1e-12)
    np.testing.assert_allclose(res.confounds.iloc[2:].mean(), 0, atol=1e-10)
    assert np.isnan(res.framewise_displacement[0])
    np.testing.assert_allclose(res.framewise_displacement[1:],
                               table["framewise_displacement"][1:])
    assert res.confounds_file.endswith(f"{CONF_NAME}.tsv")
    assert res.description.endswith(".") and preset in res.description


def test_none_preset_keeps_dummy_removal(run):
    bold, _ = run
    res = load_run_confounds(bold, "none")
    assert res.confounds is None and res.columns == []
    np.testing.assert_array_equal(res.sample_mask, np.arange(2, 40))
    assert "no confound regressor" in res.description


def test_none_without_confounds_file(tmp_path):
    bold = tmp_path / BOLD_NAME
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 20), np.float32), np.eye(4)), bold)
    res = load_run_confounds(bold, "none", dummy_scans=3)
    np.testing.assert_array_equal(res.sample_mask, np.arange(3, 20))
    assert load_run_confounds(bold, "none").sample_mask is None


def test_scrubbing_censors_fd_spikes_and_short_segments(tmp_path):
    table, meta = make_confounds(n=60, n_nss=0, spikes=(30, 33))
    bold = write_run(tmp_path, table, meta)
    res = load_run_confounds(bold, "scrubbing", fd_threshold=0.5, scrub_min_segment=5)
    # FD spikes at 30 and 33; the 2-volume segment 31-32 is shorter than 5 -> removed
    expected = np.setdiff1d(np.arange(60), [30, 31, 32, 33])
    np.testing.assert_array_equal(res.sample_mask, expected)
    assert res.n_censored == 4 and res.n_dummy == 0
    assert "4 of 60 volumes censored" in res.description
    res0 = load_run_confounds(bold, "scrubbing", scrub_min_segment=0)
    np.testing.assert_array_equal(res0.sample_mask, np.setdiff1d(np.arange(60), [30, 33]))
    # a higher threshold keeps everything
    assert load_run_confounds(bold, "scrubbing", fd_threshold=3.0).sample_mask is None


def test_dummy_scans_int_overrides_fmriprep(run):
    bold, _ = run
    res = load_run_confounds(bold, "simple", dummy_scans=5)
    assert res.n_dummy == 5
    np.testing.assert_array_equal(res.sample_mask, np.arange(5, 40))
    res = load_run_confounds(bold, "simple", dummy_scans=0)
    assert res.n_dummy == 0 and res.sample_mask is None
    np.testing.assert_allclose(res.confounds.mean(), 0, atol=1e-10)


def test_dummy_int_with_scrubbing(tmp_path):
    table, meta = make_confounds(n=60, n_nss=3, spikes=(40,))
    bold = write_run(tmp_path, table, meta)
    res = load_run_confounds(bold, "scrubbing", dummy_scans=1, scrub_min_segment=0)
    np.testing.assert_array_equal(res.sample_mask, np.setdiff1d(np.arange(1, 60), [40]))
    assert res.n_censored == 1


def test_n_compcor(run):
    bold, _ = run
    res = load_run_confounds(bold, "compcor", n_compcor=2)
    assert [c for c in res.columns if "comp_cor" in c] == ["a_comp_cor_00", "a_comp_cor_01"]


def test_explicit_columns(run):
    bold, table = run
    res = load_run_confounds(bold, ["csf", "trans_x_derivative1"])
    assert res.columns == ["csf", "trans_x_derivative1"]
    d = table["trans_x_derivative1"].to_numpy(float).copy()
    d[0] = d[1]
    np.testing.assert_allclose(res.confounds["trans_x_derivative1"], d - d[2:].mean())
    np.testing.assert_array_equal(res.sample_mask, np.arange(2, 40))


def test_explicit_unknown_column_names_file_and_closest(run):
    bold, _ = run
    with pytest.raises(DataError) as exc:
        load_run_confounds(bold, ["csf", "trans_xx", "whitematter"])
    msg = str(exc.value)
    assert CONF_NAME in msg and "'trans_xx'" in msg and "'trans_x'" in msg
    assert "'white_matter'" in msg and "'csf'" not in msg.split("--")[0].split("column")[1]


def test_missing_confounds_file_names_expected_path(tmp_path):
    bold = tmp_path / BOLD_NAME
    with pytest.raises(NoInputError) as exc:
        load_run_confounds(bold, "simple")
    assert str(tmp_path / f"{CONF_NAME}.tsv") in str(exc.value)
    assert expected_confounds_path(bold) == tmp_path / f"{CONF_NAME}.tsv"


def test_nan_beyond_first_row_is_error(tmp_path):
    table, meta = make_confounds()
    table.loc[17, "csf"] = np.nan
    bold = write_run(tmp_path, table, meta)
    with pytest.raises(DataError) as exc:
        load_run_confounds(bold, "simple")
    msg = str(exc.value)
    assert CONF_NAME in msg and "'csf'" in msg and "row 18" in msg and "volume 17" in msg
    # the same table is fine when csf is not selected
    assert "csf" not in load_run_confounds(bold, "minimal").columns


def test_inf_and_constant_columns_are_errors(tmp_path):
    table, meta = make_confounds()
    table.loc[5, "trans_y"] = np.inf
    bold = write_run(tmp_path / "a", table, meta)
    with pytest.raises(DataError, match="trans_y"):
        load_run_confounds(bold, "minimal")
    table, meta = make_confounds()
    table["rot_z"] = 0.0
    bold = write_run(tmp_path / "b", table, meta)
    with pytest.raises(DataError, match=r"'rot_z' is constant") as exc:
        load_run_confounds(bold, "minimal")
    assert CONF_NAME in str(exc.value)


def test_row_count_must_match_bold(tmp_path):
    table, meta = make_confounds(n=40)
    bold = write_run(tmp_path, table, meta, n_volumes=41)
    with pytest.raises(DataError, match="40 rows but .* 41 volumes") as exc:
        load_run_confounds(bold, "simple")
    assert CONF_NAME in str(exc.value)
    with pytest.raises(DataError, match="40 rows"):
        load_run_confounds(bold, "simple", n_volumes=39)
    assert load_run_confounds(bold, "simple", n_volumes=40).n_volumes == 40


def test_preset_needing_missing_columns(tmp_path):
    table, meta = make_confounds()
    bold = write_run(tmp_path / "a", table.drop(columns=["csf"]), meta)
    with pytest.raises(DataError, match="preset 'simple'") as exc:
        load_run_confounds(bold, "simple")
    assert CONF_NAME in str(exc.value)
    bold = write_run(tmp_path / "b", table.drop(columns=["std_dvars"]), meta)
    with pytest.raises(DataError, match="std_dvars"):
        load_run_confounds(bold, "scrubbing")
    bold = write_run(tmp_path / "c", table, None)  # no JSON: no CompCor metadata
    with pytest.raises(DataError, match="compcor"):
        load_run_confounds(bold, "compcor")


def test_all_volumes_censored_is_error(tmp_path):
    table, meta = make_confounds(n=20, n_nss=0)
    bold = write_run(tmp_path, table, meta)
    with pytest.raises(DataError, match="no volume"):
        load_run_confounds(bold, "none", dummy_scans=20)
    with pytest.raises(DataError, match="no volume"):
        load_run_confounds(bold, "scrubbing", fd_threshold=0.01)


@pytest.mark.parametrize("bad", [{"dummy_scans": -1}, {"dummy_scans": "yes"},
                                 {"fd_threshold": 0}, {"std_dvars_threshold": -2},
                                 {"n_compcor": 0}, {"scrub_min_segment": -1}])
def test_bad_parameters(run, bad):
    bold, _ = run
    with pytest.raises(UsageError):
        load_run_confounds(bold, "simple", **bad)


def test_parse_spec():
    from bids_hrf.confounds import ConfoundsSpecError

    with pytest.raises(ValueError):  # the CLI parser catches ValueError
        parse_confounds_spec("")
    assert issubclass(ConfoundsSpecError, UsageError)
    assert parse_confounds_spec(" Simple ") == "simple"
    assert parse_confounds_spec("trans_x, trans_y,csf,,trans_x") == ["trans_x", "trans_y", "csf"]
    assert parse_confounds_spec("non-stdDVARS") == ["non-stdDVARS"]
    for bad in ["", "  ", ",,", "trans x", "a;b"]:
        with pytest.raises(UsageError):
            parse_confounds_spec(bad)


# ---------------------------------------------------------------------------------------
# nilearn's real fMRIPrep files


def _copy_nilearn(tmp_path: Path, stem: str, suffix: str) -> Path:
    conf = f"sub-01_task-rest_run-1_desc-confounds_{suffix}"
    shutil.copy(NILEARN_DATA / f"{stem}.tsv", tmp_path / f"{conf}.tsv")
    if (NILEARN_DATA / f"{stem}.json").is_file():
        shutil.copy(NILEARN_DATA / f"{stem}.json", tmp_path / f"{conf}.json")
    return tmp_path / BOLD_NAME


@pytest.mark.parametrize(("stem", "suffix", "n_nss"), [
    ("test-v21_desc-confounds_timeseries", "timeseries", 3),
    ("test_desc-confounds_regressors", "regressors", 1),
    ("no_nonsteady_desc-confounds_regressors", "regressors", 0),
])
@pytest.mark.parametrize("preset", ["minimal", "simple", "compcor", "motion24", "gsr", "none"])
def test_real_nilearn_files(tmp_path, stem, suffix, n_nss, preset):
    bold = _copy_nilearn(tmp_path, stem, suffix)
    raw = pd.read_csv(NILEARN_DATA / f"{stem}.tsv", sep="\t")
    nss = [c for c in raw.columns if "non_steady_state" in c]
    assert len(nss) == n_nss
    if preset == "compcor" and not (NILEARN_DATA / f"{stem}.json").is_file():
        with pytest.raises(DataError, match="json"):
            load_run_confounds(bold, preset)
        return
    res = load_run_confounds(bold, preset)
    assert res.n_dummy == n_nss and res.n_volumes == len(raw) == 30
    if n_nss:
        flagged = raw[nss].to_numpy().sum(axis=1) > 0
        np.testing.assert_array_equal(res.sample_mask, np.flatnonzero(~flagged))
    else:
        assert res.sample_mask is None
    if preset == "none":
        assert res.confounds is None
        return
    assert res.confounds.shape[0] == 30 and np.isfinite(res.confounds.to_numpy()).all()
    assert set(MOTION) <= set(res.columns) <= set(raw.columns)
    if preset == "compcor":
        meta = json.loads((NILEARN_DATA / f"{stem}.json").read_text())
        acomp = [c for c in meta if c.startswith("a_comp_cor") and meta[c].get("Mask")
                 == "combined"]
        assert sorted(c for c in res.columns if c.startswith("a_comp_cor")) == sorted(acomp)
        assert any(c.startswith("cosine") for c in res.columns) == any(
            c.startswith("cosine") for c in raw.columns)


def test_real_file_scrubbing_thresholds(tmp_path):
    bold = _copy_nilearn(tmp_path, "test-v21_desc-confounds_timeseries", "timeseries")
    raw = pd.read_csv(NILEARN_DATA / "test-v21_desc-confounds_timeseries.tsv", sep="\t")
    fd, dv = raw["framewise_displacement"].to_numpy(), raw["std_dvars"].to_numpy()
    thr_fd, thr_dv = np.nanpercentile(fd, 90), np.nanpercentile(dv, 90)
    res = load_run_confounds(bold, "scrubbing", fd_threshold=thr_fd,
                             std_dvars_threshold=thr_dv, scrub_min_segment=0)
    outliers = set(np.flatnonzero((fd > thr_fd) | (dv > thr_dv))) | {0, 1, 2}
    np.testing.assert_array_equal(res.sample_mask, sorted(set(range(30)) - outliers))


def test_old_camelcase_fmriprep_file(tmp_path):
    table, _ = make_confounds(n_nss=2)
    old = table[MOTION + ["framewise_displacement", "csf"] + [
        "non_steady_state_outlier00", "non_steady_state_outlier01"]].rename(columns={
            "trans_x": "X", "trans_y": "Y", "trans_z": "Z", "rot_x": "RotX", "rot_y": "RotY",
            "rot_z": "RotZ", "framewise_displacement": "FramewiseDisplacement", "csf": "CSF",
            "non_steady_state_outlier00": "NonSteadyStateOutlier00",
            "non_steady_state_outlier01": "NonSteadyStateOutlier01"})
    old["tCompCor00"] = np.random.default_rng(1).normal(size=len(old))
    # fMRIPrep < 1.2 named the file ..._bold_confounds.tsv: not found
    bold = write_run(tmp_path / "a", old, None, conf_name="sub-01_task-rest_run-1_bold_confounds")
    with pytest.raises(NoInputError):
        load_run_confounds(bold, "minimal")
    bold = write_run(tmp_path / "b", old, None,
                     conf_name=CONF_NAME.replace("timeseries", "regressors"))
    res = load_run_confounds(bold, "minimal")  # old names are translated
    assert set(res.columns) == set(MOTION) and res.n_dummy == 2
    np.testing.assert_allclose(res.confounds["rot_y"], old["RotY"] - old["RotY"][2:].mean())
    np.testing.assert_allclose(res.framewise_displacement[1:], old["FramewiseDisplacement"][1:])
    np.testing.assert_array_equal(res.sample_mask, np.arange(2, 40))
    assert load_run_confounds(bold, "minimal", dummy_scans=4).sample_mask[0] == 4
    with pytest.raises(DataError, match="simple"):  # no derivatives in fMRIPrep < 1.2
        load_run_confounds(bold, "simple")
    res = load_run_confounds(bold, ["X", "Y", "Z", "RotX", "RotY", "RotZ"])
    assert res.columns == ["X", "Y", "Z", "RotX", "RotY", "RotZ"] and res.n_dummy == 2
    old.loc[9, "RotX"] = np.nan
    bold = write_run(tmp_path / "c", old, None, conf_name=CONF_NAME)
    with pytest.raises(DataError, match=r"'rot_x' \('RotX' in the file\).* row 10"):
        load_run_confounds(bold, "minimal")
    weird = old.drop(columns=["RotX"]).rename(columns={"X": "MyRegressor"})
    bold = write_run(tmp_path / "d", weird, None, conf_name=CONF_NAME)
    with pytest.raises(DataError, match="MyRegressor"):
        load_run_confounds(bold, "minimal")


def test_confounds_file_lookup_variants(tmp_path):
    table, meta = make_confounds()
    # file named with fewer entities than the BOLD (no run): still found
    write_run(tmp_path, table, meta, conf_name="sub-01_task-rest_desc-confounds_timeseries")
    assert find_confounds_file(tmp_path / BOLD_NAME).name.startswith("sub-01_task-rest_desc")
    # a file of another run is not used
    other = tmp_path / "other"
    write_run(other, table, meta, conf_name="sub-01_task-rest_run-2_desc-confounds_timeseries")
    with pytest.raises(NoInputError):
        find_confounds_file(other / BOLD_NAME)
    # uncompressed .nii BOLD, and a folder whose name contains "tsv"
    folder = tmp_path / "tsvdata"
    bold = write_run(folder, table, meta, bold_name=BOLD_NAME.replace(".nii.gz", ".nii"))
    assert load_run_confounds(bold, "compcor").n_dummy == 2


# ---------------------------------------------------------------------------------------
# property tests of the TSV handling

_names = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=12).filter(
    lambda s: s.strip("_") and s.lower() not in PRESETS)


@settings(max_examples=40, deadline=None)
@given(names=st.lists(_names, min_size=1, max_size=6),
       pads=st.lists(st.sampled_from(["", " ", "  "]), min_size=12, max_size=12))
def test_parse_spec_roundtrip(names, pads):
    text = ",".join(f"{pads[i % 12]}{n}{pads[(i + 1) % 12]}" for i, n in enumerate(names))
    assert parse_confounds_spec(text) == list(dict.fromkeys(names))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(12, 50), n_nss=st.integers(0, 4), seed=st.integers(0, 2**16),
       preset=st.sampled_from(["minimal", "simple", "compcor", "gsr"]))
def test_property_rows_nan_and_dummies(tmp_path_factory, n, n_nss, seed, preset):
    table, meta = make_confounds(n=n, n_nss=n_nss, seed=seed)
    bold = write_run(tmp_path_factory.mktemp("p"), table, meta)
    res = load_run_confounds(bold, preset)
    assert res.confounds.shape[0] == n
    assert np.isfinite(res.confounds.to_numpy()).all()
    assert res.n_dummy == n_nss
    kept = np.arange(n_nss, n)
    if n_nss:
        np.testing.assert_array_equal(res.sample_mask, kept)
    else:
        assert res.sample_mask is None
    np.testing.assert_allclose(res.confounds.iloc[kept].mean(), 0, atol=1e-9)
    # rows past the first equal the TSV up to the (kept-volume) mean
    for col in res.columns:
        raw = table[col].to_numpy(float)
        diff = res.confounds[col].to_numpy()[1:] - raw[1:]
        np.testing.assert_allclose(diff, diff[0], atol=1e-9)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(12, 40), data=st.data())
def test_property_nan_anywhere_after_first_row_is_named(tmp_path_factory, n, data):
    table, meta = make_confounds(n=n)
    col = data.draw(st.sampled_from(MOTION + [f"{m}_derivative1" for m in MOTION]))
    row = data.draw(st.integers(1, n - 1))
    table.loc[row, col] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    bold = write_run(tmp_path_factory.mktemp("q"), table, meta)
    with pytest.raises(DataError) as exc:
        load_run_confounds(bold, "simple")
    msg = str(exc.value)
    assert f"'{col}'" in msg and f"row {row + 1} " in msg and CONF_NAME in msg


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(12, 40), n_nss=st.integers(0, 3), dummy=st.integers(0, 6),
       seed=st.integers(0, 2**16), junk=st.integers(0, 3))
def test_property_dummy_count_and_unused_columns(tmp_path_factory, n, n_nss, dummy, seed,
                                                 junk):
    table, meta = make_confounds(n=n, n_nss=n_nss, seed=seed)
    rng = np.random.default_rng(seed)
    ref_dir = tmp_path_factory.mktemp("ref")
    reference = load_run_confounds(write_run(ref_dir, table, meta), "simple",
                                   dummy_scans=dummy)
    # unused columns with NaN anywhere, and a shuffled column order, change nothing
    noisy = table.copy()
    for k in range(junk):
        col = rng.normal(size=n)
        col[rng.integers(0, n)] = np.nan
        noisy[f"extra_{k}"] = col
    noisy = noisy[list(rng.permutation(noisy.columns))]
    res = load_run_confounds(write_run(tmp_path_factory.mktemp("n"), noisy, meta), "simple",
                             dummy_scans=dummy)
    assert res.n_dummy == dummy
    expected = None if dummy == 0 else np.arange(dummy, n)
    if expected is None:
        assert res.sample_mask is None
    else:
        np.testing.assert_array_equal(res.sample_mask, expected)
    pd.testing.assert_frame_equal(res.confounds[reference.columns], reference.confounds)
