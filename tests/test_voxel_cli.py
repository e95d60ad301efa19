"""The voxel-wise HRF methods (rfir, r1glm, library) from the command line (issue 13).

Registered in the HRF-method registry: selectable with ``--hrf-method``, their options on
the command line, run by the workflow, written as BIDS-Derivatives and drawn in the report.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_hrf.errors import EXIT_NOINPUT
from tests.conftest import run_cli


def _run(small_dataset, tmp_path, method, *extra):
    out = tmp_path / f"out-{method}"
    code = run_cli(small_dataset.bids_dir, out, "participant", "--participant-label", "01",
                   "--hrf-method", method, "--atlas", "data-driven:6", "--nprocs", "2",
                   "-w", tmp_path / f"work-{method}", *extra)
    return code, out / "sub-01" / "func", out


@pytest.mark.parametrize("method,extra", [
    ("rfir", ()),
    ("r1glm", ("--r1glm-basis", "fir")),
    ("library", ("--library-cv", "off", "--voxel-glm-hrf", "parcel")),
])
def test_voxel_method_end_to_end(small_dataset, tmp_path, method, extra):
    code, func, out = _run(small_dataset, tmp_path, method, *extra)
    assert code == 0
    hrf4d = next(func.glob(f"*desc-{method}Hrf_bold.nii.gz"))
    img = nib.load(hrf4d)
    meta = json.loads(hrf4d.with_name(hrf4d.name.replace(".nii.gz", ".json")).read_text())
    assert img.ndim == 4 and meta["RepetitionTime"] == meta["SamplingPeriod"] > 0
    def volume(stat):
        path = next(func.glob(f"*stat-{stat}_desc-{method}_statmap.nii.gz"))
        return np.asarray(nib.load(path).dataobj, dtype=float)

    ttp, r2 = volume("ttp"), volume("r2")
    # the best-fit voxels (top 2 % R^2: the planted responses) peak where BOLD HRFs do
    best = r2 >= np.nanpercentile(r2[r2 != 0], 98)
    assert best.sum() >= 10 and 3.5 <= np.nanmedian(ttp[best]) <= 7.5
    table = pd.read_csv(next(func.glob(f"*desc-{method}_hrf.tsv")), sep="\t")
    assert table.shape[1] == 7  # time + 6 parcels
    params = json.loads(next(func.glob(f"*desc-{method}_hrf.json")).read_text())
    html = (out / "sub-01.html").read_text()
    assert "Time to peak of the voxels of each parcel" in html
    assert "HRFs of the 10 best-fit voxels" in html
    if method == "r1glm":
        assert params["MethodParameters"]["basis"] == "fir"
        assert "finite impulse response basis" in html
    if method == "library":
        # --library-cv off: chosen in sample, so no held-out R^2 map
        assert not list(func.glob("*stat-heldoutr2*"))
        assert params["MethodParameters"]["cv"] is False
        assert params["MethodParameters"]["glm_hrf"] == "parcel"
        assert "by its in-sample fit" in html
    else:
        assert params["MethodParameters"]["glm_hrf"] == "voxel"


def test_library_cross_validation_writes_held_out_fit(small_dataset, tmp_path):
    code, func, _ = _run(small_dataset, tmp_path, "library")
    assert code == 0
    assert list(func.glob("*stat-heldoutr2_desc-library_statmap.nii.gz"))


def test_missing_library_tsv_is_one_clear_error(small_dataset, tmp_path, capsys):
    code, _, out = _run(small_dataset, tmp_path, "library", "--library-tsv",
                        tmp_path / "nope.tsv")
    err = capsys.readouterr().err
    assert code == EXIT_NOINPUT and "--library-tsv" in err and "nope.tsv" in err
    assert "Traceback" not in err and not out.exists()


def test_forced_cross_validation_with_one_run_is_one_clear_error(tmp_path, capsys):
    from bids_hrf.datasets import make_synthetic_dataset
    from bids_hrf.errors import EXIT_USAGE

    one = make_synthetic_dataset(tmp_path / "bids", size="small", n_subjects=1, n_runs=1,
                                 seed=3)
    code = run_cli(one.bids_dir, tmp_path / "out", "participant", "--hrf-method", "library",
                   "--library-cv", "on", "--atlas", "data-driven:4", "--nprocs", "1",
                   "-w", tmp_path / "work")
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "at least 2 runs" in err and "--library-cv off" in err
    assert "Traceback" not in err
