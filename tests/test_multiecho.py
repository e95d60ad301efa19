"""Multi-echo sparse deconvolution: inputs (per-echo files, echo times), the joint model in
the app driver, and the multi-echo synthetic generator. The CLI end to end is in
tests/test_multiecho_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from bids_hrf.errors import DataError, UsageError
from bids_hrf.hrf._hrf_matrix import hrf_matrix
from bids_hrf.hrf.sparse.app import estimate_sparse, map_metadata
from bids_hrf.io.multiecho import (
    combined_bolds,
    echo_files,
    echo_times_ms,
    multi_echo_wanted,
    run_echoes,
)

COMBINED = "sub-01_task-rest_run-1_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"


def _echo(folder: Path, k: int, te, name: str = COMBINED) -> Path:
    path = folder / name.replace("_space-", f"_echo-{k}_space-")
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 12), np.float32), np.eye(4)), str(path))
    if te is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(
            json.dumps({"EchoTime": te})
        )
    return path


def test_echo_files_and_times_in_ms(tmp_path):
    (tmp_path / COMBINED).touch()
    files = [_echo(tmp_path, k, te) for k, te in ((2, 0.03), (1, 0.014), (3, 0.046))]
    # another run's and another space's echoes are not this run's
    _echo(tmp_path, 1, 0.01, COMBINED.replace("run-1", "run-2"))
    _echo(tmp_path, 1, 0.01, COMBINED.replace("MNI152NLin2009cAsym", "T1w"))
    found = echo_files(tmp_path / COMBINED)
    assert found == [files[1], files[0], files[2]]
    assert echo_times_ms(found) == pytest.approx([14.0, 30.0, 46.0])
    echoes = run_echoes(tmp_path / COMBINED)
    assert [e.te_ms for e in echoes] == pytest.approx([14.0, 30.0, 46.0])


def test_echo_time_from_the_raw_sidecar(tmp_path):
    deriv, raw = tmp_path / "deriv", tmp_path / "bids"
    deriv.mkdir()
    (raw / "sub-01" / "func").mkdir(parents=True)
    files = [_echo(deriv, k, None) for k in (1, 2)]
    for k, te in ((1, 0.015), (2, 0.035)):
        (raw / "sub-01" / "func" / f"sub-01_task-rest_run-1_echo-{k}_bold.json").write_text(
            json.dumps({"EchoTime": te})
        )
    assert echo_times_ms(files, raw) == pytest.approx([15.0, 35.0])


@pytest.mark.parametrize(
    ("times", "says"),
    [
        ((0.014, None), "has no EchoTime"),
        ((0.014, 30), "over 1 s"),
        ((0.014, "30ms"), "not a positive number"),
        ((0.03, 0.014), "inconsistent"),
        ((0.03, 0.03), "inconsistent"),
    ],
)
def test_bad_echo_times_are_one_clear_line(tmp_path, times, says):
    files = [_echo(tmp_path, k, te) for k, te in enumerate(times, start=1)]
    with pytest.raises(DataError) as info:
        echo_times_ms(files)
    line = info.value.one_line()
    assert says in line and "\n" not in line
    assert files[1].name.split(".")[0] in line  # names the file
    assert "--" in line  # and the fix


def test_too_few_echoes_says_how_to_get_them(tmp_path):
    (tmp_path / COMBINED).touch()
    _echo(tmp_path, 1, 0.014)
    with pytest.raises(DataError, match="--me-output-echos"):
        run_echoes(tmp_path / COMBINED)


def test_echoes_in_another_space_are_named_in_the_fix(tmp_path):
    (tmp_path / COMBINED).touch()
    for k in (1, 2):  # fMRIPrep writes the echoes in the BOLD's native grid
        (tmp_path / f"sub-01_task-rest_run-1_echo-{k}_desc-preproc_bold.nii.gz").touch()
    with pytest.raises(DataError) as info:
        run_echoes(tmp_path / COMBINED)
    assert "in space native (no space- entity) only" in info.value.one_line()


def test_per_echo_files_are_not_runs_of_their_own(tmp_path):
    combined = SimpleNamespace(path=str(tmp_path / COMBINED))
    echoes = [SimpleNamespace(path=str(_echo(tmp_path, k, 0.01 * k))) for k in (1, 2)]
    lone = SimpleNamespace(path=str(tmp_path / COMBINED.replace("run-1", "run-3_echo-1")))
    assert combined_bolds([combined, *echoes, lone]) == [combined, lone]


def test_multi_echo_flag_needs_the_sparse_method():
    config = SimpleNamespace(method_options={"multi_echo": True}, hrf_method="canonical")
    with pytest.raises(UsageError, match="--hrf-method sparse"):
        multi_echo_wanted(config)
    assert multi_echo_wanted(
        SimpleNamespace(method_options={"multi_echo": True}, hrf_method="sparse")
    )
    assert not multi_echo_wanted(SimpleNamespace(method_options={}, hrf_method="canonical"))


def test_multi_echo_refuses_the_blind_hrf():
    config = SimpleNamespace(
        method_options={"multi_echo": True, "estimate_hrf": True}, hrf_method="sparse"
    )
    with pytest.raises(UsageError, match="--multi-echo deconvolves with the canonical"):
        multi_echo_wanted(config)
    assert multi_echo_wanted(
        SimpleNamespace(
            method_options={"multi_echo": True, "stability_surrogates": 5}, hrf_method="sparse"
        )
    )
    # other methods' resolved defaults (fir: estimate_hrf=True) are not sparse's
    fir = SimpleNamespace(
        method_options={"multi_echo": True, "estimate_hrf": True}, hrf_method="fir"
    )
    with pytest.raises(UsageError, match="an option of --hrf-method sparse"):
        multi_echo_wanted(fir)


def _events(n: int, n_vox: int, rng) -> np.ndarray:
    s = np.zeros((n, n_vox))
    for v in range(n_vox):
        s[rng.choice(np.arange(5, n - 10), 5, replace=False), v] = rng.uniform(1, 2, 5)
    return s


def test_joint_echoes_recover_activity_better_than_one_echo():
    """Echo k = -TE_k x dR2* convolved with the HRF, white noise of the same SD at every
    echo: the joint fit finds the events better than the middle echo alone, and keeps the
    single-echo sign (activity > 0 for a BOLD increase)."""
    rng = np.random.default_rng(3)
    n, n_vox, tr, te = 100, 30, 2.0, [14.0, 30.0, 46.0]
    truth = _events(n, n_vox, rng)
    Y = hrf_matrix(tr, n, "spm", False, te) @ -truth  # activation: dR2* < 0
    Y = Y + rng.normal(0, 0.25, Y.shape)
    labels = np.repeat([1, 2], n_vox // 2)
    joint = estimate_sparse(Y, tr, labels, {}, estimate_hrf=False, te=te)
    middle = estimate_sparse(Y[n : 2 * n], tr, labels, {}, estimate_hrf=False)

    def corr(est):
        a = est.voxel_maps["desc-activity_bold"]
        return np.mean([np.corrcoef(a[:, v], truth[:, v])[0, 1] for v in range(n_vox)])

    assert corr(joint) > 0.8
    assert corr(joint) > corr(middle) + 0.05
    assert sorted(k for k in joint.voxel_maps if "denoised" in k) == [
        f"echo-{k}_desc-denoised_bold" for k in (1, 2, 3)
    ]
    assert joint.voxel_maps["echo-2_desc-denoised_bold"].shape == (n, n_vox)
    meta = map_metadata("echo-3_desc-denoised_bold", joint.parameters)
    assert meta["EchoTime"] == pytest.approx(0.046) and "(echo 3)" in meta["Description"]
    assert map_metadata("desc-activity_bold", joint.parameters)["EchoTime"] == pytest.approx(
        [0.014, 0.03, 0.046]
    )
    with pytest.raises(ValueError, match="canonical HRF"):
        estimate_sparse(Y, tr, labels, {}, estimate_hrf=True, te=te)


def test_stability_selection_over_the_echoes():
    rng = np.random.default_rng(4)
    n, n_vox, tr, te = 80, 6, 2.0, [14.0, 30.0, 46.0]
    truth = _events(n, n_vox, rng)
    Y = hrf_matrix(tr, n, "spm", False, te) @ -truth + rng.normal(0, 0.2, (3 * n, n_vox))
    est = estimate_sparse(Y, tr, np.ones(n_vox, int), {}, estimate_hrf=False, te=te, n_surrogates=6)
    auc = est.voxel_maps["desc-sparse_stat-auc_bold"]
    assert auc.shape == (n, n_vox)
    assert auc[truth > 0].mean() > 2 * auc[truth == 0].mean()


def test_multiecho_generator_writes_echoes_with_known_truth(tmp_path):
    from bids_hrf.datasets.multiecho_sim import make_multiecho_dataset, optimal_combination

    ds = make_multiecho_dataset(
        tmp_path / "me",
        n_subjects=1,
        n_runs=1,
        groups=None,
        n_scans=30,
        echo_times=(12.0, 28.0, 44.0),
        thermal_noise=0.0,
    )
    func = ds.fmriprep_dir / "sub-01" / "func"
    combined = next(func.glob("*run-1_space-*desc-preproc_bold.nii.gz"))
    echoes = run_echoes(combined)
    assert [e.te_ms for e in echoes] == pytest.approx([12.0, 28.0, 44.0])
    data = [np.asarray(nib.load(str(e.bold)).dataobj) for e in echoes]
    brain = data[0].std(axis=3) > 0
    S = np.stack([d[brain].T for d in data]).astype(float)
    t2star = np.asarray(nib.load(str(ds.truth_dir / "desc-truth_T2starmap.nii.gz")).dataobj)[brain]
    s0 = np.asarray(nib.load(str(ds.truth_dir / "desc-truth_S0map.nii.gz")).dataobj)[brain]
    # without thermal noise: the mean decays as S0 exp(-TE/T2*) and the signal change of
    # echo k is TE_k / TE_ref times the reference one (BOLD contrast grows with TE)
    mean = S.mean(axis=1)
    assert np.allclose(mean[0], s0 * np.exp(-12.0 / t2star), rtol=1e-3)
    change = S / mean[:, None, :] - 1
    assert np.allclose(change[2], change[0] * 44.0 / 12.0, atol=1e-4)
    comb = np.asarray(nib.load(str(combined)).dataobj)[brain].T
    np.testing.assert_allclose(
        comb, optimal_combination(S, np.array([12.0, 28.0, 44.0]), t2star), rtol=0.02
    )


def test_generator_command_line_writes_the_echo_times(tmp_path):
    from bids_hrf.datasets.__main__ import main

    out = tmp_path / "me"
    args = [str(out), "--subjects", "1", "--runs", "1", "--scans", "20", "--no-groups"]
    assert main([*args, "--echo-times", "12,30,48,66"]) == 0
    combined = next((out / "derivatives" / "fmriprep").rglob("*run-1_space-*preproc_bold.nii.gz"))
    assert [e.te_ms for e in run_echoes(combined)] == pytest.approx([12, 30, 48, 66])
