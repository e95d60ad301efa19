"""Tests of the synthetic BIDS + fMRIPrep-like dataset generator (bids_hrf.datasets)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_hrf.datasets import make_synthetic_dataset
from bids_hrf.datasets.__main__ import main as cli_main

SPACE = "MNI152NLin2009cAsym"


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """The default small dataset: 2 subjects (control, patient) x 2 runs."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "bids", size="small")


@pytest.fixture(scope="module")
def ds_sessions(tmp_path_factory):
    """Two sessions, one task run each plus a rest run, short runs."""
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("synth_ses") / "bids",
        n_subjects=2,
        n_sessions=2,
        n_runs=1,
        n_scans=40,
        rest_task=True,
        seed=3,
    )


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


# --------------------------------------------------------------------------- layout


def test_layout_and_top_level_files(ds):
    root = ds.bids_dir
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and desc["BIDSVersion"] == "1.9.0"
    assert desc["Authors"] and desc["License"]
    der = json.loads((ds.fmriprep_dir / "dataset_description.json").read_text())
    assert der["DatasetType"] == "derivative"
    assert der["GeneratedBy"][0] == {
        "Name": "fMRIPrep",
        "Version": "23.2.1",
        "CodeURL": "https://github.com/nipreps/fmriprep",
    }
    parts = pd.read_csv(root / "participants.tsv", sep="\t")
    assert list(parts.columns) == ["participant_id", "group", "age", "sex"]
    assert list(parts["group"]) == ["control", "patient"]
    assert json.loads((root / "task-localizer_bold.json").read_text())["RepetitionTime"] == 2.0
    assert not (root / "sub-01" / "func" / "sub-01_task-localizer_run-1_bold.json").exists()
    ev = pd.read_csv(root / "sub-01" / "func" / "sub-01_task-localizer_run-1_events.tsv", sep="\t")
    assert list(ev.columns) == ["onset", "duration", "trial_type", "modulation"]
    assert set(ev["trial_type"]) == {"audio", "visual"}
    assert ev["duration"].between(1.0, 3.0).all() and (ev["modulation"] == 1.0).all()
    assert ev["onset"].min() >= ds.n_dummy_scans * ds.tr  # no event in non-steady volumes
    assert np.diff(ev["onset"]).min() > 0
    for suffix in ("desc-preproc_bold.nii.gz", "desc-brain_mask.nii.gz", "boldref.nii.gz"):
        assert (
            ds.fmriprep_dir
            / "sub-02"
            / "func"
            / f"sub-02_task-localizer_run-2_space-{SPACE}_{suffix}"
        ).is_file()
    sidecar = json.loads(_preproc(ds).with_suffix("").with_suffix(".json").read_text())
    assert sidecar == {"RepetitionTime": 2.0, "SkullStripped": False, "TaskName": "localizer"}
    assert ds.subjects == ["01", "02"] and ds.space == SPACE and ds.sessions is None


def test_images_are_consistent(ds):
    bold = nib.load(_preproc(ds))
    raw = nib.load(ds.bids_dir / "sub-01" / "func" / "sub-01_task-localizer_run-1_bold.nii.gz")
    mask = nib.load(str(_preproc(ds)).replace("desc-preproc_bold", "desc-brain_mask"))
    assert bold.shape == (20, 24, 20, 80) and raw.shape == bold.shape
    assert bold.header.get_zooms() == (4.0, 4.0, 4.0, 2.0)
    assert raw.header.get_data_dtype() == np.int16 and mask.get_data_dtype() == np.uint8
    data = bold.get_fdata()
    inside = np.asarray(mask.dataobj).astype(bool)
    assert np.all(data[~inside] == 0)
    mean = data[inside][:, ds.n_dummy_scans :].mean()
    assert 850 < mean < 1150  # baseline intensity ~1000
    # non-steady-state volumes are brighter than the rest
    per_volume = data[inside].mean(axis=0)
    assert per_volume[: ds.n_dummy_scans].min() > 1.2 * np.median(per_volume)
    # raw data hold the same (rounded) series
    assert np.abs(raw.get_fdata()[inside] - data[inside]).max() <= 0.5 + 1e-3


def test_atlas_differs_in_resolution_and_resamples_to_truth(ds):
    from nilearn.image import resample_to_img

    atlas = nib.load(ds.atlas_img)
    bold = nib.load(_preproc(ds))
    assert atlas.header.get_zooms()[:3] != bold.header.get_zooms()[:3]
    table = pd.read_csv(ds.atlas_tsv, sep="\t")
    assert list(table.columns) == ["index", "name", "network"]
    assert list(table["index"]) == list(range(1, len(table) + 1))
    assert {"Visual", "Auditory", "Default"} <= set(table["network"])
    assert set(np.unique(atlas.get_fdata())) == set(range(len(table) + 1))
    assert ds.atlas_img.name == f"tpl-{SPACE}_atlas-Synthetic_dseg.nii.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resampled = resample_to_img(atlas, bold, interpolation="nearest")
    np.testing.assert_array_equal(
        np.asarray(resampled.dataobj).astype(int), ds.truth.parcel_labels.astype(int)
    )


# --------------------------------------------------------------------------- pybids


def test_pybids_finds_derivatives_by_entities(ds):
    from bids import BIDSLayout

    layout = BIDSLayout(ds.bids_dir, derivatives=ds.fmriprep_dir, validate=False)
    assert layout.get_subjects() == ["01", "02"]
    common = {"subject": "01", "space": SPACE, "extension": ".nii.gz"}
    preproc = layout.get(desc="preproc", suffix="bold", return_type="file", **common)
    masks = layout.get(desc="brain", suffix="mask", datatype="func", return_type="file", **common)
    confounds = layout.get(subject="01", desc="confounds", suffix="timeseries", extension=".tsv")
    assert len(preproc) == 2 and len(masks) == 2 and len(confounds) == 2
    assert layout.get_runs(subject="01", task="localizer") == [1, 2]
    events = layout.get(subject="01", suffix="events", extension=".tsv", run=1)
    assert len(events) == 1
    # the raw BOLD has no sidecar of its own: RepetitionTime comes from the top-level JSON
    raw = layout.get(subject="01", run=1, suffix="bold", extension=".nii.gz", scope="raw")
    assert layout.get_metadata(raw[0].path)["RepetitionTime"] == 2.0
    assert layout.get_metadata(preproc[0])["SkullStripped"] is False
    assert "trial_type" in layout.get_metadata(events[0].path)


def test_pybids_sessions_and_rest(ds_sessions):
    from bids import BIDSLayout

    ds = ds_sessions
    layout = BIDSLayout(ds.bids_dir, derivatives=ds.fmriprep_dir, validate=False)
    assert layout.get_sessions() == ["01", "02"] and ds.sessions == ["01", "02"]
    assert sorted(layout.get_tasks()) == ["localizer", "rest"]
    rest = layout.get(
        subject="02", session="02", task="rest", desc="preproc", suffix="bold", extension=".nii.gz"
    )
    assert len(rest) == 1
    assert not layout.get(subject="02", task="rest", suffix="events")
    assert layout.get_metadata(rest[0].path)["TaskName"] == "rest"
    assert len(layout.get(task="localizer", suffix="events", extension=".tsv")) == 4


# --------------------------------------------------------------------------- validator


VALIDATOR = shutil.which("bids-validator-deno") or shutil.which(
    "bids-validator-deno", path=str(Path(sys.executable).parent)
)


@pytest.mark.parametrize("which", ["ds", "ds_sessions"])
def test_bids_validator_reports_no_error(which, request):
    dataset = request.getfixturevalue(which)
    proc = subprocess.run(
        [VALIDATOR, str(dataset.bids_dir), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(proc.stdout)
    errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
    assert errors == [] and proc.returncode != 16


# --------------------------------------------------------------------------- API


def test_deterministic_for_a_seed(tmp_path):
    kw = {"n_subjects": 1, "n_runs": 1, "n_scans": 30, "groups": None}
    a = make_synthetic_dataset(tmp_path / "a", seed=7, **kw)
    b = make_synthetic_dataset(tmp_path / "b", seed=7, **kw)
    c = make_synthetic_dataset(tmp_path / "c", seed=8, **kw)
    img = f"sub-01/func/sub-01_task-localizer_run-1_space-{SPACE}_desc-preproc_bold.nii.gz"
    da, db, dc = (nib.load(d.fmriprep_dir / img).get_fdata() for d in (a, b, c))
    np.testing.assert_array_equal(da, db)
    assert not np.allclose(da, dc)
    pd.testing.assert_frame_equal(a.truth.hrf, b.truth.hrf)
    assert a.truth.group_effects["groups"] == []
    assert set(pd.read_csv(a.bids_dir / "participants.tsv", sep="\t")["group"]) == {"control"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": "huge"}, "size"),
        ({"n_subjects": 0}, "n_subjects"),
        ({"conditions": ("a-b",)}, "alphanumeric"),
        ({"conditions": ("audio", "audio")}, "distinct"),
        ({"n_scans": 8}, "n_scans"),
        ({"snr": 0}, "snr"),
        ({"task": "rest"}, "rest_task"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_dataset(tmp_path / "x", **kwargs)


def test_refuses_non_empty_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not an empty directory"):
        make_synthetic_dataset(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main([str(out), "--subjects", "1", "--runs", "1", "--scans", "30"]) == 0
    assert (out / "derivatives" / "fmriprep" / "sub-01" / "func").is_dir()
    assert "wrote" in capsys.readouterr().out
    assert cli_main([str(out)]) == 64  # not empty any more
    assert "not an empty directory" in capsys.readouterr().err


def test_to_volume_round_trip():
    from bids_hrf.datasets._writers import to_volume

    rng = np.random.default_rng(1)
    mask = rng.random((5, 6, 7)) > 0.5
    values = rng.normal(size=(4, int(mask.sum()))).astype(np.float32)
    vol = to_volume(values, mask)
    assert vol.shape == (5, 6, 7, 4) and vol.flags["F_CONTIGUOUS"]
    np.testing.assert_array_equal(vol[mask], values.T)
    assert np.all(vol[~mask] == 0)
    np.testing.assert_array_equal(to_volume(values[0], mask)[mask], values[0])


@pytest.mark.slow
def test_realistic_size(tmp_path):
    ds = make_synthetic_dataset(tmp_path / "real", size="realistic", n_subjects=1, n_runs=1)
    img = nib.load(_preproc(ds))
    assert img.shape[3] == 300 and img.header.get_zooms()[:3] == (3.0, 3.0, 3.0)
    assert 150 <= len(ds.truth.parcel_names) <= 250
    atlas = nib.load(ds.atlas_img)
    assert atlas.header.get_zooms()[:3] == (2.0, 2.0, 2.0)
    counts = np.bincount(ds.truth.parcel_labels.ravel())[1:]
    assert counts.min() > 20  # every parcel has voxels on the BOLD grid
    table = _confounds(ds)
    assert table.filter(like="cosine").shape[1] == int(2 * 298 * 2.0 / 128) - 1
