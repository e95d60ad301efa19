"""Hostile inputs: each test generates a small dataset, breaks one thing, runs the CLI in a
subprocess and checks the documented exit code, one clear ``bids-hrf: error:`` line naming
the file, no traceback, BIDS_DIR untouched and no partial file left in OUTPUT_DIR.

Where the run can go on (one bad subject of many, an empty parcel, a condition missing in
one run), it must finish with exit 0 and say what it skipped.

Exit codes (BIDS Apps / sysexits): 0 ok, 1 failure, 64 usage, 65 bad data, 66 no input,
73 cannot create output.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests._hostile import (
    Dataset,
    assert_fails,
    assert_succeeds,
    can_enforce_permissions,
    edit_json,
    edit_nifti,
    edit_tsv,
    files_below,
    make_dataset,
    partial_files,
    run_cli,
    truncate_gzip,
)

USAGE, DATAERR, NOINPUT, CANTCREAT = 64, 65, 66, 73


@pytest.fixture
def ds(tmp_path) -> Dataset:
    return make_dataset(tmp_path)


def _check(ds: Dataset, result, code: int | None, *mentions: str, before=None) -> None:
    """The common checks: exit code and message, BIDS_DIR unchanged, no partial outputs."""
    if code == 0:
        assert_succeeds(result, *mentions)
    elif code is not None:
        assert_fails(result, code, *mentions)
    if before is not None:
        assert files_below(ds.bids) == before, "BIDS_DIR was modified"
    assert not partial_files(ds.out), partial_files(ds.out)
    assert not partial_files(ds.bids), partial_files(ds.bids)


def _run(ds: Dataset, *extra, code: int, mentions=(), **kwargs):
    before = files_below(ds.bids)
    result = run_cli(*ds.args(*extra, **{k: v for k, v in kwargs.items()
                                         if k in ("atlas", "report")}))
    _check(ds, result, code, *mentions, before=before)
    return result


# ---------------------------------------------------------------------------------------
# missing inputs (caught before any work)


def test_no_fmriprep_derivatives(ds):
    shutil.rmtree(ds.bids / "derivatives" / "fmriprep")
    _run(ds, code=NOINPUT, mentions=("fmriprep", "fMRIPrep"))
    assert not ds.out.exists()


def test_bids_dir_missing(tmp_path):
    ds = make_dataset(tmp_path)
    args = ds.args()
    args[0] = str(tmp_path / "nowhere")
    result = run_cli(*args)
    assert_fails(result, NOINPUT, "nowhere")


def test_bids_dir_without_description(ds):
    (ds.bids / "dataset_description.json").unlink()
    _run(ds, code=NOINPUT, mentions=("dataset_description.json",))


def test_bold_without_confounds(ds):
    ds.confounds().unlink()
    _run(ds, code=NOINPUT, mentions=("confounds", ds.bold().name))


def test_bold_without_mask(ds):
    ds.mask().unlink()
    _run(ds, code=NOINPUT, mentions=("mask", ds.bold().name))


def test_events_missing(ds):
    ds.events().unlink()
    _run(ds, code=NOINPUT, mentions=("events", "--hrf-method sparse"))


def test_unknown_participant(ds):
    _run(ds, "--participant-label", "99", code=USAGE, mentions=("'99'", "01"))


def test_participant_without_func_data_alone(tmp_path):
    ds = make_dataset(tmp_path, n_subjects=2)
    shutil.rmtree(ds.func("02"))
    shutil.rmtree(ds.bids / "sub-02" / "func")
    _run(ds, "--participant-label", "02", code=NOINPUT, mentions=("sub-02",))


# ---------------------------------------------------------------------------------------
# confounds


def test_confounds_wrong_number_of_rows(ds):
    edit_tsv(ds.confounds(), lambda t: t.iloc[:-5])
    _run(ds, code=DATAERR, mentions=(ds.confounds().name, "rows"))


def test_confounds_nan_beyond_first_row(ds):
    def nan_row(t):
        t.loc[10, "trans_x"] = np.nan
        return t
    edit_tsv(ds.confounds(), nan_row)
    _run(ds, code=DATAERR, mentions=(ds.confounds().name, "trans_x"))


def test_confounds_inf(ds):
    def inf_row(t):
        t["rot_y"] = t["rot_y"].astype(object)
        t.loc[20, "rot_y"] = "inf"
        return t
    edit_tsv(ds.confounds(), inf_row)
    _run(ds, code=DATAERR, mentions=(ds.confounds().name, "rot_y"))


def test_confounds_constant_column(ds):
    def constant(t):
        t["trans_z"] = 0.0
        return t
    edit_tsv(ds.confounds(), constant)
    _run(ds, code=DATAERR, mentions=(ds.confounds().name, "trans_z", "constant"))


def test_confounds_not_a_table(ds):
    ds.confounds().write_bytes(b"\x00\x01\x02 binary junk\n\x00")
    _run(ds, code=DATAERR, mentions=(ds.confounds().name,))


def test_confounds_unknown_column(ds):
    _run(ds, "--confounds", "trans_x,not_a_column", code=DATAERR,
         mentions=("not_a_column",))


# ---------------------------------------------------------------------------------------
# BOLD images and metadata


def test_bold_3d(ds):
    edit_nifti(ds.bold(), lambda d: d[..., 0])
    _run(ds, code=DATAERR, mentions=(ds.bold().name, "4D"))


def test_bold_single_volume(ds):
    edit_nifti(ds.bold(), lambda d: d[..., :1])
    _run(ds, code=DATAERR, mentions=(ds.bold().name, "volume"))


def test_bold_not_nifti(ds):
    with open(ds.bold(), "wb") as fh:
        fh.write(b"this is not an image" * 10)
    _run(ds, code=DATAERR, mentions=(ds.bold().name,))


def test_tr_missing(ds):
    edit_json(ds.bold_json(), RepetitionTime=None)
    edit_json(ds.top_json, RepetitionTime=None)
    _run(ds, code=DATAERR, mentions=("RepetitionTime", ds.bold().name))


def test_tr_zero(ds):
    edit_json(ds.bold_json(), RepetitionTime=0)
    _run(ds, code=DATAERR, mentions=("RepetitionTime", ds.bold().name))


def test_tr_in_milliseconds(ds):
    edit_json(ds.bold_json(), RepetitionTime=2000)
    _run(ds, code=DATAERR, mentions=("RepetitionTime", "seconds"))


def test_tr_not_a_number(ds):
    edit_json(ds.bold_json(), RepetitionTime="two")
    _run(ds, code=DATAERR, mentions=("RepetitionTime", ds.bold().name))


# ---------------------------------------------------------------------------------------
# events


def test_events_negative_duration(ds):
    def negative(t):
        t.loc[3, "duration"] = -1.0
        return t
    edit_tsv(ds.events(), negative)
    _run(ds, code=DATAERR, mentions=(ds.events().name, "negative"))


def test_events_non_numeric_onset(ds):
    def text(t):
        t["onset"] = t["onset"].astype(object)
        t.loc[2, "onset"] = "soon"
        return t
    edit_tsv(ds.events(), text)
    _run(ds, code=DATAERR, mentions=(ds.events().name, "onset"))


def test_events_without_onset_column(ds):
    edit_tsv(ds.events(), lambda t: t.drop(columns=["onset"]))
    _run(ds, code=DATAERR, mentions=(ds.events().name, "onset"))


def test_events_all_after_end_of_scan(ds):
    edit_tsv(ds.events(), lambda t: t.assign(onset=t["onset"] + 10_000.0))
    _run(ds, code=DATAERR, mentions=(ds.events().name, "after the end"))


# ---------------------------------------------------------------------------------------
# contrasts


def test_contrast_unknown_condition(ds, tmp_path):
    path = tmp_path / "contrasts.json"
    path.write_text(json.dumps({"bad": "audio - tactile"}))
    _run(ds, "--contrasts", path, code=USAGE, mentions=("tactile", "audio"))


def test_contrasts_malformed_json(ds, tmp_path):
    path = tmp_path / "contrasts.json"
    path.write_text('{"a": "audio - visual",')
    _run(ds, "--contrasts", path, code=USAGE, mentions=("contrasts.json", "JSON"))


def test_contrasts_not_an_object(ds, tmp_path):
    path = tmp_path / "contrasts.json"
    path.write_text("42")
    _run(ds, "--contrasts", path, code=USAGE, mentions=("contrasts.json",))


EVIL = [
    "__import__('os').system('touch {marker}')",
    "audio.__class__.__bases__[0].__subclasses__()",
    "open('{marker}', 'w')",
    "(lambda: audio)()",
    "[x for x in ().__class__.__base__.__subclasses__()]",
]


def test_contrast_code_execution_refused(ds, tmp_path):
    """Five contrasts trying to run code: each refused on its own line (exit 64), nothing
    executed."""
    marker = tmp_path / "pwned"
    path = tmp_path / "contrasts.json"
    path.write_text(json.dumps({f"evil{i}": e.format(marker=marker)
                                for i, e in enumerate(EVIL)}))
    before = files_below(ds.bids)
    result = run_cli(*ds.args("--contrasts", path))
    assert result.code == USAGE, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert len(result.errors) == len(EVIL), result.stderr[-3000:]
    for i, line in enumerate(result.errors):
        assert f"'evil{i}'" in line and "contrasts.json" in line, line
    assert not marker.exists()
    assert files_below(ds.bids) == before
    assert not ds.out.exists() or not partial_files(ds.out)


# ---------------------------------------------------------------------------------------
# atlas


def test_atlas_missing_file(ds, tmp_path):
    _run(ds, code=NOINPUT, atlas=tmp_path / "none_dseg.nii.gz", mentions=("none_dseg",))


def test_atlas_4d(ds, tmp_path):
    img = nib.load(str(ds.atlas))
    data = np.asarray(img.dataobj)
    bad = tmp_path / "four_dseg.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([data, data], axis=-1).astype(np.int16), img.affine),
             str(bad))
    _run(ds, code=DATAERR, atlas=bad, mentions=("four_dseg",))


def test_atlas_in_another_space(ds, tmp_path):
    """An atlas whose grid does not overlap the brain (another space): no parcel left."""
    img = nib.load(str(ds.atlas))
    affine = img.affine.copy()
    affine[:3, 3] += 500.0
    bad = tmp_path / "far_dseg.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), str(bad))
    _run(ds, code=DATAERR, atlas=bad, mentions=("far_dseg",))


def test_atlas_not_labels(ds, tmp_path):
    img = nib.load(str(ds.atlas))
    bad = tmp_path / "float_dseg.nii.gz"
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.random(img.shape).astype(np.float32), img.affine), str(bad))
    _run(ds, code=DATAERR, atlas=bad, mentions=("float_dseg",))


# ---------------------------------------------------------------------------------------
# corrupted and unreadable files


def test_bold_corrupted_gzip(ds):
    truncate_gzip(ds.bold())
    _run(ds, code=DATAERR, mentions=(ds.bold().name,))


def test_mask_corrupted_gzip(ds):
    truncate_gzip(ds.mask(), keep=0.6)
    _run(ds, code=DATAERR, mentions=(ds.mask().name,))


@pytest.mark.skipif(not can_enforce_permissions(), reason="cannot make files unreadable here")
def test_bold_unreadable(ds):
    ds.bold().chmod(0)
    before = files_below(ds.bids)
    result = run_cli(*ds.args(), obey_permissions=True)
    ds.bold().chmod(0o644)
    _check(ds, result, NOINPUT, ds.bold().name, "permission", before=before)


@pytest.mark.skipif(not can_enforce_permissions(), reason="cannot make files unreadable here")
def test_events_unreadable(ds):
    ds.events().chmod(0)
    before = files_below(ds.bids)
    result = run_cli(*ds.args(), obey_permissions=True)
    ds.events().chmod(0o644)
    _check(ds, result, NOINPUT, ds.events().name, "permission", before=before)


# ---------------------------------------------------------------------------------------
# output directory


@pytest.mark.skipif(not can_enforce_permissions(), reason="cannot make folders read-only here")
def test_output_dir_read_only(ds):
    ds.out.mkdir()
    ds.out.chmod(0o555)
    result = run_cli(*ds.args(), obey_permissions=True)
    ds.out.chmod(0o755)
    _check(ds, result, CANTCREAT, str(ds.out))
    assert list(ds.out.iterdir()) == []


def test_output_dir_under_a_file(ds, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    ds.out = blocker / "out"
    _run(ds, code=CANTCREAT, mentions=("afile",))


def test_output_inside_bids_dir(ds):
    ds.out = ds.bids / "results"
    _run(ds, code=USAGE, mentions=("BIDS_DIR", "derivatives"))
    assert not ds.out.exists()


def test_output_is_bids_dir(ds):
    ds.out = ds.bids
    _run(ds, code=USAGE, mentions=("BIDS_DIR",))


def test_output_dir_full(ds):
    """A full disk (ENOSPC on every write into OUTPUT_DIR): exit 73, nothing partial."""
    prelude = f"""
import errno, os
_OUT = {str(ds.out.resolve())!r}
_real_replace = os.replace
def _full(src, dst, *a, **k):
    if os.path.abspath(str(dst)).startswith(_OUT):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
    return _real_replace(src, dst, *a, **k)
os.replace = _full
"""
    before = files_below(ds.bids)
    result = run_cli(*ds.args(), python_prelude=prelude)
    _check(ds, result, CANTCREAT, "space", before=before)
    assert [p for p in ds.out.rglob("*") if p.is_file()] == []


# ---------------------------------------------------------------------------------------
# the run goes on: these run the workflow (1 subject, 1 run, no report)


@pytest.mark.slow
def test_one_bad_subject_of_two_is_skipped(tmp_path):
    ds = make_dataset(tmp_path, n_subjects=2)
    edit_nifti(ds.bold("02"), lambda d: d[..., 0])
    _run(ds, code=0, mentions=("sub-02",))
    assert (ds.out / "sub-01").is_dir()
    assert not (ds.out / "sub-02").exists()


@pytest.mark.slow
def test_participant_without_func_data_is_skipped(tmp_path):
    ds = make_dataset(tmp_path, n_subjects=2)
    shutil.rmtree(ds.func("02"))
    shutil.rmtree(ds.bids / "sub-02" / "func")
    _run(ds, code=0, mentions=("sub-02",))
    assert (ds.out / "sub-01").is_dir()


@pytest.mark.slow
def test_bold_with_nan_inf_and_flat_voxels(ds):
    mask = np.asarray(nib.load(str(ds.mask())).dataobj) > 0
    idx = np.argwhere(mask)

    def damage(d):
        d[tuple(idx[0])] = np.nan
        d[tuple(idx[1])][5] = np.inf
        d[tuple(idx[2])] = 100.0
        d[tuple(idx[3])] = 0.0
        return d
    edit_nifti(ds.bold(), damage)
    _run(ds, code=0, mentions=("NaN",))
    z = ds.out / "sub-01" / "func" / (
        "sub-01_task-localizer_space-MNI152NLin2009cAsym_contrast-audio_stat-z_statmap.nii.gz")
    values = np.asarray(nib.load(str(z)).dataobj)
    assert np.isfinite(values).all()
    assert values[tuple(idx[0])] == 0 and values[tuple(idx[2])] == 0


@pytest.mark.slow
def test_tr_disagrees_with_header(ds):
    edit_nifti(ds.bold(), lambda d: d, header_tr=3.0)
    _run(ds, code=0, mentions=("disagrees",))


@pytest.mark.slow
def test_sub_second_tr(tmp_path):
    ds = make_dataset(tmp_path, tr=0.8, n_scans=120)
    _run(ds, code=0)
    sidecar = next((ds.out / "sub-01" / "func").glob("*run-1*_timeseries.json"))
    assert json.loads(sidecar.read_text())["RepetitionTime"] == pytest.approx(0.8)


@pytest.mark.slow
def test_single_condition_paradigm(tmp_path):
    ds = make_dataset(tmp_path, conditions=("audio",))
    _run(ds, code=0)
    assert list((ds.out / "sub-01" / "func").glob("*contrast-audio_stat-z_statmap.nii.gz"))


@pytest.mark.slow
def test_condition_missing_in_one_run(tmp_path):
    """'visual' has no events in run 2: its fixed effects use run 1 only."""
    ds = make_dataset(tmp_path, n_runs=2)
    edit_tsv(ds.events(run=2), lambda t: t[t["trial_type"] != "visual"])
    contrasts = tmp_path / "c.json"
    contrasts.write_text(json.dumps({"av": "audio - visual"}))
    _run(ds, "--contrasts", contrasts, code=0, mentions=("visual",))
    func = ds.out / "sub-01" / "func"
    visual = next(func.glob("sub-01_task-localizer_space-*_contrast-visual_stat-z_statmap.json"))
    assert json.loads(visual.read_text())["NumberOfRunsCombined"] == 1
    audio = next(func.glob("sub-01_task-localizer_space-*_contrast-audio_stat-z_statmap.json"))
    assert json.loads(audio.read_text())["NumberOfRunsCombined"] == 2


@pytest.mark.slow
def test_events_partly_after_end_and_missing_trial_type(ds):
    def damage(t):
        t.loc[len(t)] = {"onset": 5000.0, "duration": 1.0, "trial_type": "audio",
                         "modulation": 1.0}
        t["trial_type"] = t["trial_type"].astype(object)
        t.loc[1, "trial_type"] = np.nan
        return t
    edit_tsv(ds.events(), damage)
    _run(ds, code=0, mentions=("after the end", "trial_type"))


def test_events_without_trial_type_column(ds):
    edit_tsv(ds.events(), lambda t: t.drop(columns=["trial_type"]))
    _run(ds, code=DATAERR, mentions=(ds.events().name, "trial_type"))


@pytest.mark.slow
def test_atlas_with_one_label(ds, tmp_path):
    img = nib.load(str(ds.atlas))
    one = tmp_path / "one_dseg.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(img.dataobj) > 0).astype(np.int16), img.affine),
             str(one))
    _run(ds, code=0, atlas=one)


@pytest.mark.slow
def test_atlas_with_empty_parcel(ds, tmp_path):
    img = nib.load(str(ds.atlas))
    data = np.asarray(img.dataobj).astype(np.int16)
    data[0, 0, 0] = 99  # a parcel of one voxel outside the brain
    bad = tmp_path / "empty_dseg.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine), str(bad))
    _run(ds, code=0, atlas=bad, mentions=("99",))


@pytest.mark.slow
def test_paths_with_spaces_and_non_ascii(tmp_path):
    root = tmp_path / "my data é ü"
    root.mkdir()
    ds = make_dataset(root, name="bids ß")
    ds.out = root / "out put ø"
    ds.work = root / "work dir ñ"
    _run(ds, code=0)
    assert list((ds.out / "sub-01" / "func").glob("*_statmap.nii.gz"))


@pytest.mark.slow
def test_differing_compcor_columns_across_runs(tmp_path):
    """Run 2 has fewer CompCor components than run 1 (fMRIPrep keeps a variance share)."""
    ds = make_dataset(tmp_path, n_runs=2)
    _drop_compcor(ds.confounds(run=2), keep=2, sidecar=True)
    _run(ds, "--confounds", "compcor", code=0)
    designs = sorted((ds.out / "sub-01" / "func").glob("*_design.tsv"))
    n_compcor = [sum(c.startswith("a_comp_cor") for c in p.read_text().split("\n")[0].split())
                 for p in designs]
    assert n_compcor[0] > n_compcor[1] == 2


def _drop_compcor(tsv: Path, keep: int, sidecar: bool) -> None:
    """Keep only the first ``keep`` aCompCor columns (in the JSON sidecar too if asked)."""
    drop: list[str] = []

    def cut(t):
        drop.extend([c for c in t.columns if c.startswith("a_comp_cor_")][keep:])
        return t.drop(columns=drop)
    edit_tsv(tsv, cut)
    if sidecar:
        meta = tsv.with_suffix(".json")
        data = json.loads(meta.read_text())
        meta.write_text(json.dumps({k: v for k, v in data.items() if k not in drop}))


def test_compcor_columns_missing_from_table_but_in_sidecar(ds):
    _drop_compcor(ds.confounds(), keep=2, sidecar=False)
    _run(ds, "--confounds", "compcor", code=DATAERR, mentions=(ds.confounds().name,))


def test_not_run_inside_bids_dir_writes(ds):
    """Validation failures leave OUTPUT_DIR uncreated."""
    edit_json(ds.bold_json(), RepetitionTime=-2)
    _run(ds, code=DATAERR)
    assert not ds.out.exists()
    assert os.listdir(ds.bids)


def test_out_of_memory_in_a_step(ds):
    """A step running out of memory: exit 1, one line saying what to do, resumable."""
    prelude = """
import bids_hrf.glm.first_level as fl
def _oom(*args, **kwargs):
    raise MemoryError()
fl.fit_first_level = _oom
"""
    before = files_below(ds.bids)
    result = run_cli(*ds.args(), python_prelude=prelude)
    _check(ds, result, 1, "out of memory", "--mem-gb", before=before)
