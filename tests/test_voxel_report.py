"""Report panels of the voxel-wise HRF methods, drawn from written maps and tables."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from nilearn import masking

from bids_hrf.hrf._voxel_app import estimate_voxelwise
from bids_hrf.hrf.library import HRFLibrary
from bids_hrf.reports import figures_voxelwise as FV
from tests.voxel_simulation import simulate


@pytest.fixture(scope="module")
def hrf_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("voxrep")
    sim = simulate(n_parcels=2, voxels_per_parcel=32, n_runs=2, n_scans=150, seed=9)
    est = estimate_voxelwise("library", HRFLibrary(), sim.Y, sim.events, sim.frame_times,
                             sim.tr, sim.parcels + 1, {1: "a", 2: "b"}, fir_duration=20.0)
    mask = nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4) * 3)
    maps = []
    for frag, values in est.voxel_maps.items():
        path = out / f"all_{frag}.nii.gz"
        nib.save(masking.unmask(np.asarray(values, np.float32), mask), str(path))
        maps.append({"fragment": frag, "path": str(path), "run": None, "kind": "nifti"})
    tables = []
    for key, tab in est.parcel_tables.items():
        path = out / f"table_{key}.tsv"
        tab.to_csv(path, sep="\t", index=False)
        tables.append({"fragment": key, "path": str(path)})
    params = out / "hrf_parameters.json"
    params.write_text(json.dumps({"method": "library", "SamplingPeriod": est.sampling_period,
                                  "parameters": est.parameters}, default=str))
    return {"maps": maps, "tables": tables, "parameters": str(params), "method": "library"}


@pytest.mark.parametrize("draw", [FV.draw_parameter_maps, FV.draw_fit_maps,
                                  FV.draw_best_hrfs, FV.draw_ttp_histograms])
def test_panels_draw(hrf_result, draw):
    fig = draw(hrf_result)
    assert fig is not None and len(str(fig)) > 1000


def test_best_hrfs_needs_its_maps(hrf_result):
    with pytest.raises(ValueError, match="not written"):
        FV.draw_best_hrfs({**hrf_result, "maps": []})
