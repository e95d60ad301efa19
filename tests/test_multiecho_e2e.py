"""End to end: ``bids-hrf --hrf-method sparse --multi-echo`` on a tiny generated multi-echo
dataset (one participant, one task run, three echoes), against the same run deconvolved
from one echo (the middle one, TE = 30 ms) and from the optimally combined BOLD.

Measured on this dataset (seed 0; docs/sparse.md, "Multi-echo data"): mean event-locked
response of the truly active parcels 0.97 SD (joint echoes) vs 0.64 (echo 2 alone) and 0.80
(optimal combination).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

SPACE = "space-MNI152NLin2009cAsym"
PREFIX = f"sub-01_task-localizer_run-1_{SPACE}"
ATLAS = "derivatives/atlas/tpl-MNI152NLin2009cAsym_atlas-Synthetic_dseg.nii.gz"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from bids_hrf.datasets.multiecho_sim import make_multiecho_dataset

    root = tmp_path_factory.mktemp("multiecho_e2e")
    bids = root / "bids"
    make_multiecho_dataset(bids, n_subjects=1, n_runs=1, groups=None, seed=0)
    # the single-echo comparison: the same run with echo 2 as its (only) BOLD
    single = root / "single"
    shutil.copytree(bids, single)
    func = single / "derivatives" / "fmriprep" / "sub-01" / "func"
    echo2 = next(func.glob("*_echo-2_*desc-preproc_bold.nii.gz"))
    shutil.copy(echo2, func / f"{PREFIX}_desc-preproc_bold.nii.gz")
    for path in func.glob("*_echo-*"):
        path.unlink()
    outs = {}
    for name, data, extra in (
        ("joint", bids, ["--multi-echo"]),
        ("echo2", single, []),
        ("optcom", bids, []),
    ):
        out = root / f"out_{name}"
        assert (
            run_cli(
                str(data),
                str(out),
                "participant",
                "--atlas",
                str(bids / ATLAS),
                "--hrf-method",
                "sparse",
                "--no-report",
                *extra,
                "-w",
                str(root / f"work_{name}"),
            )
            == 0
        )
        outs[name] = out / "sub-01" / "func"
    return bids, outs


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())


def _active_response(bids: Path, func: Path) -> tuple[float, float]:
    """Mean event-locked response (SD units) of the truly active parcels and median of the
    inactive ones, over both conditions (:func:`detect_events`)."""
    from nilearn import masking

    from bids_hrf.hrf.sparse.app import detect_events

    fmriprep = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    mask = str(next(fmriprep.glob("*run-1*desc-brain_mask.nii.gz")))
    truth = bids / "derivatives" / "truth"
    parcels = np.rint(
        masking.apply_mask(str(truth / f"{SPACE}_desc-parcels_dseg.nii.gz"), mask)
    ).astype(int)
    act_path = func / f"{PREFIX}_desc-activity_bold.nii.gz"
    A = masking.apply_mask(str(act_path), mask)
    n_lead = _sidecar(act_path)["DummyVolumesZeroed"]
    frame_times = np.arange(A.shape[0]) * 2.0
    A, frame_times = A[n_lead:], frame_times[n_lead:]
    events = pd.read_csv(
        bids / "sub-01" / "func" / "sub-01_task-localizer_run-1_events.tsv", sep="\t"
    )
    amps = pd.read_csv(truth / "truth_amplitudes.tsv", sep="\t")
    labels = pd.read_csv(bids / ATLAS.replace(".nii.gz", ".tsv"), sep="\t")
    names = dict(zip(labels["index"], labels["name"], strict=True))
    active, inactive = [], []
    for condition, rows in amps.groupby("condition"):
        onsets = events.loc[events["trial_type"] == condition, "onset"].to_numpy()
        table = detect_events(A, frame_times, onsets, parcels, names).set_index("parcel")
        active += list(table.loc[rows.loc[rows["amplitude"] > 0.5, "parcel"], "response"])
        inactive += list(table.loc[rows.loc[rows["amplitude"] == 0, "parcel"], "response"])
    return float(np.mean(active)), float(np.median(inactive))


def test_outputs_and_sidecars_record_the_echo_times(runs):
    bids, outs = runs
    func = outs["joint"]
    act = func / f"{PREFIX}_desc-activity_bold.nii.gz"
    meta = _sidecar(act)
    assert meta["EchoTime"] == pytest.approx([0.014, 0.030, 0.046])
    assert any("_echo-3_" in s for s in meta["Sources"])
    for k, te in ((1, 0.014), (2, 0.030), (3, 0.046)):
        den = func / f"sub-01_task-localizer_run-1_echo-{k}_{SPACE}_desc-denoised_bold.nii.gz"
        assert den.exists(), den
        assert _sidecar(den)["EchoTime"] == pytest.approx(te)
    assert (func / f"{PREFIX}_stat-lambda_desc-sparse_statmap.nii.gz").exists()
    # without --multi-echo: the combined BOLD only, echo files are not runs of their own
    names = [p.name for p in outs["optcom"].iterdir()]
    assert not [n for n in names if "echo-" in n]
    assert f"{PREFIX}_desc-denoised_bold.nii.gz" in names
    assert "EchoTime" not in _sidecar(outs["optcom"] / f"{PREFIX}_desc-activity_bold.nii.gz")


def test_joint_echoes_detect_the_truth_at_least_as_well_as_one_echo(runs):
    bids, outs = runs
    joint, joint_off = _active_response(bids, outs["joint"])
    echo2, _ = _active_response(bids, outs["echo2"])
    optcom, _ = _active_response(bids, outs["optcom"])
    assert joint >= echo2 + 0.1, (joint, echo2, optcom)
    assert joint >= optcom, (joint, echo2, optcom)
    assert joint > 0.8 and joint_off < 0.3, (joint, joint_off)


def test_missing_echo_time_is_one_line_naming_the_file(runs, tmp_path, capsys):
    bids, _ = runs
    broken = tmp_path / "broken"
    shutil.copytree(bids, broken)
    sidecar = next(
        (broken / "derivatives" / "fmriprep" / "sub-01" / "func").glob(
            "*_echo-2_*desc-preproc_bold.json"
        )
    )
    meta = json.loads(sidecar.read_text())
    del meta["EchoTime"]
    sidecar.write_text(json.dumps(meta))
    code = run_cli(
        str(broken),
        str(tmp_path / "out"),
        "participant",
        "--atlas",
        str(bids / ATLAS),
        "--hrf-method",
        "sparse",
        "--multi-echo",
        "-w",
        str(tmp_path / "work"),
    )
    assert code != 0
    err = capsys.readouterr().err
    line = next(t for t in err.splitlines() if "has no EchoTime" in t)
    assert sidecar.name in line and 'add "EchoTime" (seconds)' in line


def test_bids_validator(runs):
    import subprocess
    import sys

    validator = Path(sys.executable).parent / "bids-validator-deno"
    if not validator.exists():
        validator = shutil.which("bids-validator-deno")
    if not validator:
        raise AssertionError("bids-validator-deno missing: pip install '.[test]'")
    root = runs[1]["joint"].parent.parent
    proc = subprocess.run(
        [str(validator), str(root), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    errors = [i for i in report["issues"]["issues"] if i.get("severity") == "error"]
    assert not errors, errors[:5]
