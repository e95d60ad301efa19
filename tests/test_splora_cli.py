"""SPLORA from the command line (issue 15): sparse + low-rank paradigm free mapping with a
nuclear-norm penalty, registered as ``--hrf-method splora``."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from tests.conftest import run_cli


def test_splora_end_to_end(small_dataset, tmp_path):
    out = tmp_path / "out"
    code = run_cli(small_dataset.bids_dir, out, "participant", "--participant-label", "01",
                   "--hrf-method", "splora", "--splora-rho-factor", "0.5",
                   "--splora-max-iter", "100", "--atlas", "data-driven:4", "--nprocs", "1",
                   "-w", tmp_path / "work")
    assert code == 0
    func = out / "sub-01" / "func"

    def series(desc):
        path = next(func.glob(f"*run-1_*desc-{desc}_bold.nii.gz"))
        return path, np.asarray(nib.load(path).dataobj, dtype=float)

    (act_path, activity), (low_path, low), (_, fitted) = (series(d) for d in
                                                         ("activity", "lowrank", "denoised"))
    meta = json.loads(low_path.with_name(low_path.name.replace(".nii.gz", ".json")).read_text())
    assert meta["Rank"][0] >= 1 and "low-rank" in meta["Description"]
    assert activity.shape == low.shape == fitted.shape
    inside = np.abs(fitted).sum(axis=-1) > 0
    active = (activity[inside] != 0).mean()
    assert 0 < active < 0.5  # sparse: most scans of most voxels carry no event
    params = json.loads(next(func.glob("*desc-splora_hrf.json")).read_text())
    assert params["MethodParameters"]["rho_factor"] == 0.5
    html = (out / "sub-01.html").read_text()
    assert "SPLORA" in html and "Uruñuela et al., 2021" in html
    # a weaker nuclear-norm penalty leaves a higher rank (the option changes the fit)
    out2 = tmp_path / "out2"
    assert run_cli(small_dataset.bids_dir, out2, "participant", "--participant-label", "01",
                   "--hrf-method", "splora", "--splora-rho-factor", "0.05", "--splora-max-iter",
                   "100", "--atlas",
                   "data-driven:4", "--nprocs", "1", "--no-report",
                   "-w", tmp_path / "work2") == 0
    low2 = next((out2 / "sub-01" / "func").glob("*run-1_*desc-lowrank_bold.json"))
    assert json.loads(low2.read_text())["Rank"][0] > meta["Rank"][0]
