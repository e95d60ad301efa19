"""End to end: the participant level on the shapes of data real users have.

Each fixture runs the CLI in-process (``tests.conftest.run_cli``) on a small generated
dataset with one variant of the inputs or options, and the tests check the outputs by
name AND by value against the planted truth (``dataset.truth`` / ``derivatives/truth``):
sessions, a resting-state run beside the task, FIR HRFs, a data-driven atlas, BIDS filters,
``sub-`` prefixed labels, confound strategies and dummy scans, the Python API, reruns from
the nipype cache, and the MultiProc plugin.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.conftest import run_cli

pytestmark = pytest.mark.slow
SPACE = "MNI152NLin2009cAsym"
SEG = "Synthetic"


# --------------------------------------------------------------------------- helpers


def _data(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def _truth_mask(ds, condition: str) -> np.ndarray:
    return _data(ds.truth_dir / f"space-{SPACE}_desc-{condition}_mask.nii.gz") > 0


def _assert_finds_activation(ds, zpath: Path, condition: str, min_auc: float = 0.85) -> None:
    """The z map separates the truth-active voxels from the others."""
    z = _data(zpath)
    active = _truth_mask(ds, condition)
    brain = z != 0
    labels, scores = active[brain], z[brain]
    assert labels.any() and (~labels).any()
    auc = roc_auc_score(labels, scores)
    assert auc > min_auc, f"{zpath.name}: AUC {auc:.3f}"
    assert np.median(scores[labels]) > 2.0, zpath.name


def _zmap(func: Path, prefix: str, condition: str, desc: str = "") -> Path:
    desc = f"_desc-{desc}" if desc else ""
    return func / f"{prefix}_space-{SPACE}_contrast-{condition}_stat-z{desc}_statmap.nii.gz"


def _arrays(out: Path) -> dict:
    """Every NIfTI data array and TSV table of an output folder, by relative path."""
    found = {}
    for path in sorted(out.rglob("sub-*")):
        if path.name.endswith(".nii.gz"):
            found[str(path.relative_to(out))] = _data(path)
        elif path.suffix == ".tsv":
            found[str(path.relative_to(out))] = pd.read_csv(path, sep="\t")
    return found


def _assert_same(first: dict, second: dict, exact: bool) -> None:
    assert first and first.keys() == second.keys()
    for name, values in first.items():
        other = second[name]
        if isinstance(values, pd.DataFrame):
            pd.testing.assert_frame_equal(values, other, check_exact=exact, rtol=1e-6,
                                          atol=1e-6, obj=name)
        elif exact:
            assert values.dtype == other.dtype, name
            np.testing.assert_array_equal(values, other, err_msg=name)
        else:
            np.testing.assert_allclose(other, values, rtol=1e-6, atol=1e-6, err_msg=name)


def _timed(*args) -> tuple[int, float]:
    t0 = time.perf_counter()
    code = run_cli(*args)
    return code, time.perf_counter() - t0


def _common(ds, work: Path, *extra) -> list:
    return ["--atlas", ds.atlas_img, "-w", work, "--nprocs", "1", "--no-report", *extra]


def _scrubbing_kept(confounds: Path, n_dummy: int, fd: float = 0.5, dvars: float = 1.5,
                    min_segment: int = 5) -> int:
    """Volumes kept by the ``scrubbing`` preset, computed here from the confounds table:
    drop the dummy scans, volumes with FD > fd or std_DVARS > dvars, and the kept segments
    shorter than ``min_segment`` volumes."""
    table = pd.read_csv(confounds, sep="\t")
    flagged = ((table["framewise_displacement"] > fd)
               | (table["std_dvars"] > dvars)).to_numpy()[n_dummy:]
    keep = ~flagged
    start = None
    for i in range(len(keep) + 1):
        if i < len(keep) and keep[i]:
            start = i if start is None else start
        elif start is not None:
            if i - start < min_segment:
                keep[start:i] = False
            start = None
    return int(keep.sum())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def session_dataset(tmp_path_factory):
    """2 subjects x 2 sessions x (2 localizer runs + 1 rest run)."""
    from bids_hrf.datasets import make_synthetic_dataset

    root = tmp_path_factory.mktemp("variants_ses") / "bids"
    return make_synthetic_dataset(root, size="small", n_subjects=2, n_sessions=2, n_runs=2,
                                  rest_task=True, seed=11)


@pytest.fixture(scope="module")
def session_runs(session_dataset, tmp_path_factory):
    """Participant level on sub-01 only (``sub-`` prefix), all tasks; then task filtered."""
    ds = session_dataset
    base = tmp_path_factory.mktemp("variants_ses_out")
    all_tasks = run_cli(ds.bids_dir, base / "all", "participant", "--participant-label",
                        "sub-01", *_common(ds, base / "w_all"))
    localizer = run_cli(ds.bids_dir, base / "loc", "participant", "--participant-label",
                        "01", "--task", "localizer", *_common(ds, base / "w_loc"))
    return {"all": (all_tasks, base / "all"), "loc": (localizer, base / "loc")}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """1 subject x 2 localizer runs, one session."""
    from bids_hrf.datasets import make_synthetic_dataset

    root = tmp_path_factory.mktemp("variants_one") / "bids"
    return make_synthetic_dataset(root, size="small", n_subjects=1, n_runs=2, seed=5)


@pytest.fixture(scope="module")
def base_run(dataset, tmp_path_factory):
    """Canonical HRF, Linear plugin, run twice into the same OUTPUT_DIR and work dir."""
    base = tmp_path_factory.mktemp("variants_base")
    out, work = base / "out", base / "work"
    code, first_s = _timed(dataset.bids_dir, out, "participant", *_common(dataset, work))
    arrays = _arrays(out) if code == 0 else {}
    results = {str(p): p.stat().st_mtime_ns for p in work.rglob("result_*.pklz")}
    code2, second_s = _timed(dataset.bids_dir, out, "participant", *_common(dataset, work))
    return {"code": code, "code2": code2, "out": out, "work": work, "first_s": first_s,
            "second_s": second_s, "arrays": arrays, "arrays2": _arrays(out),
            "results": results,
            "results2": {str(p): p.stat().st_mtime_ns for p in work.rglob("result_*.pklz")}}


def _variant(dataset, tmp_path_factory, name: str, *extra) -> tuple[int, Path]:
    base = tmp_path_factory.mktemp(f"variants_{name}")
    code = run_cli(dataset.bids_dir, base / "out", "participant",
                   *_common(dataset, base / "work", *extra))
    return code, base / "out"


@pytest.fixture(scope="module")
def func_of(dataset):
    return lambda out: out / f"sub-{dataset.subjects[0]}" / "func"


# --------------------------------------------------------------------------- (1) sessions


def test_sessions_outputs_per_session(session_dataset, session_runs):
    ds = session_dataset
    code, out = session_runs["all"]
    assert code == 0
    assert ds.sessions == ["01", "02"]
    assert not (out / "sub-01" / "func").exists()
    for ses in ds.sessions:
        func = out / "sub-01" / f"ses-{ses}" / "func"
        prefix = f"sub-01_ses-{ses}_task-localizer"
        for run in (1, 2):
            assert (func / f"{prefix}_run-{run}_design.tsv").is_file()
            assert _zmap(func, f"{prefix}_run-{run}", "audio").is_file()
        assert (func / f"{prefix}_space-{SPACE}_seg-{SEG}_desc-canonical_hrf.tsv").is_file()
        for condition in ds.conditions:
            zpath = _zmap(func, prefix, condition)
            sidecar = json.loads(zpath.with_name(
                zpath.name.replace(".nii.gz", ".json")).read_text())
            # fixed effects of this session's two runs only
            assert sidecar["NumberOfRunsCombined"] == 2
            bolds = [s for s in sidecar["Sources"] if s.endswith("desc-preproc_bold.nii.gz")]
            assert len(bolds) == 2 and all(f"ses-{ses}" in s for s in bolds), bolds
            _assert_finds_activation(ds, zpath, condition)


def test_participant_label_with_sub_prefix(session_runs):
    for key in ("all", "loc"):
        code, out = session_runs[key]
        assert code == 0
        assert (out / "sub-01").is_dir()
        assert not (out / "sub-02").exists()


# --------------------------------------------------------------------------- (2) rest


def test_rest_run_gets_parcel_series_but_no_glm(session_dataset, session_runs):
    ds = session_dataset
    code, out = session_runs["all"]
    assert code == 0
    assert "rest" in ds.tasks
    names = pd.read_csv(ds.atlas_tsv, sep="\t")["name"].astype(str).tolist()
    for ses in ds.sessions:
        func = out / "sub-01" / f"ses-{ses}" / "func"
        rest = sorted(p.name for p in func.glob("*task-rest*"))
        assert rest, f"no rest outputs in {func}"
        assert not [n for n in rest if "statmap" in n or n.endswith("_design.tsv")], rest
        stem = f"sub-01_ses-{ses}_task-rest_space-{SPACE}_seg-{SEG}_stat-mean_timeseries"
        series = pd.read_csv(func / f"{stem}.tsv", sep="\t")
        sidecar = json.loads((func / f"{stem}.json").read_text())
        assert len(series) == ds.n_scans - ds.n_dummy_scans == sidecar["NumberOfVolumesKept"]
        assert set(series.columns) <= set(names) and len(series.columns) >= 8
        values = series.to_numpy()
        assert np.isfinite(values).all() and (values.std(axis=0) > 0).all()
        # cleaning keeps each parcel's mean: that of the BOLD over the parcel's voxels
        prep = ds.fmriprep_dir / "sub-01" / f"ses-{ses}" / "func"
        bold = _data(prep / f"sub-01_ses-{ses}_task-rest_space-{SPACE}_desc-preproc_bold.nii.gz")
        mask = _data(prep / f"sub-01_ses-{ses}_task-rest_space-{SPACE}_desc-brain_mask.nii.gz")
        dseg_stem = f"sub-01_ses-{ses}_task-rest_space-{SPACE}_seg-{SEG}_dseg"
        dseg = _data(func / f"{dseg_stem}.nii.gz")
        table = pd.read_csv(func / f"{dseg_stem}.tsv", sep="\t")
        for index, name in zip(table["index"], table["name"], strict=True):
            voxels = bold[(dseg == index) & (mask > 0)][:, ds.n_dummy_scans:]
            np.testing.assert_allclose(series[name].mean(), voxels.mean(), rtol=1e-4)
        assert "simple" in sidecar["Confounds"]
        # the task of the same session still has its GLM
        _assert_finds_activation(ds, _zmap(func, f"sub-01_ses-{ses}_task-localizer",
                                           "audio"), "audio")


def test_task_filter_leaves_rest_out(session_dataset, session_runs):
    code, out = session_runs["loc"]
    assert code == 0
    files = [p.name for p in out.rglob("sub-01_*")]
    assert files and not [f for f in files if "task-rest" in f]
    assert [f for f in files if "task-localizer" in f]
    # same analysis of the localizer runs as without the filter
    _, out_all = session_runs["all"]
    rel = Path("sub-01/ses-01/func") / _zmap(Path(), "sub-01_ses-01_task-localizer",
                                              "audio").name
    np.testing.assert_array_equal(_data(out / rel), _data(out_all / rel))


# --------------------------------------------------------------------------- (3) FIR


def test_fir_hrfs_match_the_truth(session_dataset, tmp_path_factory):
    """FIR on sessions with a rest run: the rest run has no events (canonical table)."""
    ds = session_dataset
    base = tmp_path_factory.mktemp("variants_fir")
    code = run_cli(ds.bids_dir, base / "out", "participant", "--participant-label", "01",
                   "--hrf-method", "fir", *_common(ds, base / "work"))
    assert code == 0
    truth = ds.truth.hrf
    active = sorted({p for ps in ds.truth.active_parcels.values() for p in ps})
    assert active
    for ses in ds.sessions:
        func = base / "out" / "sub-01" / f"ses-{ses}" / "func"
        prefix = f"sub-01_ses-{ses}_task-localizer"
        stem = f"{prefix}_space-{SPACE}_seg-{SEG}_desc-fir_hrf"
        table = pd.read_csv(func / f"{stem}.tsv", sep="\t")
        assert json.loads((func / f"{stem}.json").read_text())["HRFMethod"] == "fir"
        assert (func / f"{prefix}_space-{SPACE}_seg-{SEG}_stat-variance_desc-fir_hrf.tsv"
                ).is_file()
        assert set(active) <= set(table.columns)
        for parcel in active:
            reference = np.interp(table["time"], truth["time"], truth[parcel])
            r = np.corrcoef(reference, table[parcel])[0, 1]
            assert r > 0.7, f"ses-{ses} {parcel}: FIR vs truth r = {r:.3f}"
            assert np.isclose(np.linalg.norm(table[parcel]), 1.0, atol=1e-3)
        # first-level maps named desc-firHrf, and they find the activation
        assert not _zmap(func, prefix, "audio").exists()
        for condition in ds.conditions:
            assert _zmap(func, f"{prefix}_run-1", condition, "firHrf").is_file()
            _assert_finds_activation(ds, _zmap(func, prefix, condition, "firHrf"), condition,
                                     min_auc=0.8)
        # the rest run: parcel series, no GLM, no FIR
        rest = sorted(p.name for p in func.glob("*task-rest*"))
        assert any(n.endswith("_stat-mean_timeseries.tsv") for n in rest), rest
        assert not [n for n in rest if "statmap" in n or "desc-fir" in n], rest


# --------------------------------------------------------------------------- (4) data-driven


@pytest.fixture()
def offline():
    """Refuse every internet connection made in this process."""
    real = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"network disabled in this test (connect to {address})")
        return real(self, address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", connect)
        yield


def test_data_driven_atlas_offline(dataset, tmp_path_factory, func_of, offline):
    code, out = _variant(dataset, tmp_path_factory, "datadriven", "--atlas", "data-driven:8")
    assert code == 0
    func = func_of(out)
    prefix = f"sub-{dataset.subjects[0]}_task-localizer"
    stem = f"{prefix}_space-{SPACE}_seg-datadriven8_dseg"
    labels = pd.read_csv(func / f"{stem}.tsv", sep="\t")
    dseg = _data(func / f"{stem}.nii.gz")
    in_map = sorted(int(v) for v in np.unique(dseg) if v != 0)
    assert 2 <= len(in_map) <= 8
    assert labels["index"].tolist() == in_map
    assert labels["name"].tolist() == [f"parcel{i}" for i in in_map]
    assert json.loads((func / f"{stem}.json").read_text())["Atlas"].startswith("data-driven:8")
    mask = _data(next(dataset.fmriprep_dir.rglob("*run-1*desc-brain_mask.nii.gz"))) > 0
    assert not (dseg[~mask] > 0).any()
    assert (dseg[mask] > 0).mean() > 0.5
    series = pd.read_csv(func / f"{prefix}_run-1_space-{SPACE}_seg-datadriven8_stat-mean_"
                                "timeseries.tsv", sep="\t")
    assert series.columns.tolist() == labels["name"].tolist()
    assert (func / f"{prefix}_space-{SPACE}_seg-datadriven8_desc-canonical_hrf.tsv").is_file()
    _assert_finds_activation(dataset, _zmap(func, prefix, "audio"), "audio")


# --------------------------------------------------------------------------- (5) filter


def test_bids_filter_file_selects_run_1(dataset, base_run, tmp_path_factory, func_of):
    filt = tmp_path_factory.mktemp("variants_filter") / "filter.json"
    # fMRIPrep-style filters may also name the space and the subject (was a TypeError)
    filt.write_text(json.dumps({"bold": {"run": 1, "space": SPACE, "subject": ["sub-01"]}}))
    code, out = _variant(dataset, tmp_path_factory, "filtered", "--bids-filter-file", filt)
    assert code == 0
    func = func_of(out)
    names = [p.name for p in func.iterdir()]
    assert [n for n in names if "_run-1_" in n]
    assert not [n for n in names if "_run-2_" in n]
    prefix = f"sub-{dataset.subjects[0]}_task-localizer"
    ffx = _zmap(func, prefix, "audio")
    sidecar = json.loads(ffx.with_name(ffx.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["NumberOfRunsCombined"] == 1
    assert not [s for s in sidecar["Sources"] if "run-2" in s]
    # run 1 is analysed exactly as in the unfiltered run; fixed effects of one run = run 1
    run1 = _data(_zmap(func, f"{prefix}_run-1", "audio"))
    base_func = func_of(base_run["out"])
    np.testing.assert_array_equal(run1, _data(_zmap(base_func, f"{prefix}_run-1", "audio")))
    np.testing.assert_allclose(_data(ffx), run1, atol=1e-5)


# --------------------------------------------------------------------------- (7) confounds


def test_scrubbing_with_three_dummy_scans(dataset, tmp_path_factory, func_of):
    code, out = _variant(dataset, tmp_path_factory, "scrubbing", "--confounds", "scrubbing",
                         "--dummy-scans", "3")
    assert code == 0
    func = func_of(out)
    prefix = f"sub-{dataset.subjects[0]}_task-localizer"
    for run in (1, 2):
        conf = next(dataset.fmriprep_dir.rglob(f"*run-{run}_desc-confounds_timeseries.tsv"))
        expected = _scrubbing_kept(conf, 3)
        assert expected < dataset.n_scans - 3  # the synthetic motion makes some censoring
        stem = f"{prefix}_run-{run}_space-{SPACE}_seg-{SEG}_stat-mean_timeseries"
        sidecar = json.loads((func / f"{stem}.json").read_text())
        assert sidecar["NumberOfDummyScans"] == 3
        assert sidecar["NumberOfVolumesKept"] == expected
        assert len(pd.read_csv(func / f"{stem}.tsv", sep="\t")) == expected
        design = pd.read_csv(func / f"{prefix}_run-{run}_design.tsv", sep="\t")
        assert len(design) == expected
        assert {"trans_x", "rot_z", "white_matter", "csf"} <= set(design.columns)
    _assert_finds_activation(dataset, _zmap(func, prefix, "visual"), "visual", min_auc=0.8)


def test_explicit_confound_columns(dataset, tmp_path_factory, func_of):
    code, out = _variant(dataset, tmp_path_factory, "explicit", "--confounds",
                         "trans_x,trans_y,trans_z")
    assert code == 0
    func = func_of(out)
    prefix = f"sub-{dataset.subjects[0]}_task-localizer"
    design = pd.read_csv(func / f"{prefix}_run-1_design.tsv", sep="\t")
    nuisance = [c for c in design.columns
                if c not in dataset.conditions and not c.startswith("drift") and c != "constant"]
    assert nuisance == ["trans_x", "trans_y", "trans_z"]
    conf = pd.read_csv(next(dataset.fmriprep_dir.rglob("*run-1_desc-confounds_timeseries.tsv")),
                       sep="\t")
    n_dummy = dataset.n_dummy_scans  # "auto" reads the non_steady_state_outlier columns
    assert len(design) == dataset.n_scans - n_dummy
    for column in nuisance:
        source = conf[column].to_numpy()[n_dummy:]
        np.testing.assert_allclose(design[column], source - source.mean(), atol=1e-6)
    _assert_finds_activation(dataset, _zmap(func, prefix, "audio"), "audio")


# --------------------------------------------------------------------------- (8) API


def test_python_api_matches_the_cli(dataset, base_run, tmp_path_factory, func_of):
    from bids_hrf import api
    from bids_hrf.config import make_config

    assert base_run["code"] == 0
    base = tmp_path_factory.mktemp("variants_api")
    config = make_config(dataset.bids_dir, base / "out", "participant",
                         atlas=str(dataset.atlas_img), work_dir=base / "work", nprocs=1,
                         write_report=False)
    summary = api.run(config)
    assert isinstance(summary, dict)
    prefix = f"sub-{dataset.subjects[0]}_task-localizer"
    for condition in dataset.conditions:
        api_z = _data(_zmap(func_of(base / "out"), prefix, condition))
        cli_z = _data(_zmap(func_of(base_run["out"]), prefix, condition))
        np.testing.assert_array_equal(api_z, cli_z)
        _assert_finds_activation(dataset, _zmap(func_of(base / "out"), prefix, condition),
                                 condition)


# --------------------------------------------------------------------------- (9) rerun


def test_rerun_reuses_the_cache(base_run):
    assert base_run["code"] == 0 and base_run["code2"] == 0
    # every computing node's cached result is reused, not recomputed; the sink (and the
    # report) always run, so that deleted outputs are written again
    before, after = base_run["results"], base_run["results2"]
    assert before.keys() == after.keys()
    steps = ("atlas_", "prepare_", "hrf_", "first_level_", "ffx_")
    reused = [k for k in before if Path(k).parent.name.startswith(steps)]
    assert len(reused) == 7, reused  # atlas, 2 prepare, hrf, 2 first level, ffx
    assert all(after[k] == before[k] for k in reused)
    sinks = [k for k in before if Path(k).parent.name.startswith("sink_")]
    assert sinks and all(after[k] > before[k] for k in sinks)
    _assert_same(base_run["arrays"], base_run["arrays2"], exact=True)


def test_rerun_after_an_input_changed_recomputes(dataset, tmp_path):
    """Files are hashed by path, size and time: an edited events file must still invalidate
    the cached steps that read it (the atlas step, which does not, is reused)."""
    import shutil

    bids = tmp_path / "bids"
    shutil.copytree(dataset.bids_dir, bids)
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--atlas", dataset.atlas_img, "-w", work, "--nprocs", "1", "--no-report"]
    assert run_cli(bids, out, "participant", *args) == 0
    before = {str(p): p.stat().st_mtime_ns for p in work.rglob("result_*.pklz")}
    events = sorted(bids.rglob("*run-1_events.tsv"))[0]
    table = pd.read_csv(events, sep="\t")
    table["onset"] = table["onset"] + 4.0  # the same size on disk, other onsets
    table.to_csv(events, sep="\t", index=False)
    assert run_cli(bids, out, "participant", *args) == 0
    after = {str(p): p.stat().st_mtime_ns for p in work.rglob("result_*.pklz")}
    redone = {Path(k).parent.name for k in before if after[k] != before[k]}
    assert any(n.startswith("first_level_run1") for n in redone), redone
    assert not any(n.startswith("atlas_") for n in redone), redone  # not read: reused


# --------------------------------------------------------------------------- (10) MultiProc


def test_multiproc_matches_linear(dataset, base_run, tmp_path_factory):
    assert base_run["code"] == 0
    base = tmp_path_factory.mktemp("variants_multiproc")
    code, seconds = _timed(dataset.bids_dir, base / "out", "participant", "--atlas",
                           dataset.atlas_img, "-w", base / "work", "--nprocs", "2",
                           "--no-report")
    assert code == 0
    # joblib workers of the steps must not keep the process pool alive (was ~300 s)
    assert seconds < 200, f"--nprocs 2 took {seconds:.0f} s"
    _assert_same(base_run["arrays"], _arrays(base / "out"), exact=False)
