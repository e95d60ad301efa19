"""Write the ground truth as a small derivative dataset (``derivatives/truth``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._design import SyntheticTruth
from ._geometry import Geometry
from ._writers import SPACE, derivative_description, write_json, write_nifti, write_tsv


def write_truth(truth_dir: Path, truth: SyntheticTruth, geom: Geometry) -> None:
    """Write HRF tables, amplitudes, parcel and activation maps, and ``truth.json``.

    Files: ``truth_hrf.tsv`` (first group), ``truth_hrf_group-<g>.tsv`` (every group),
    ``truth_amplitudes.tsv``, ``space-<space>_desc-parcels_dseg.nii.gz`` (BOLD grid),
    ``space-<space>_desc-<condition>_mask.nii.gz`` (voxels active in everyone) and
    ``group-<g>_space-<space>_desc-<condition>_mask.nii.gz`` (voxels active in group g).
    """
    from bids_hrf import __version__

    write_json(
        truth_dir / "dataset_description.json",
        derivative_description(
            "Ground truth of the synthetic dataset",
            {"Name": "bids_hrf.datasets", "Version": __version__},
        ),
    )
    write_tsv(truth_dir / "truth_hrf.tsv", truth.hrf, float_format="%.6g")
    for group, table in truth.hrf_by_group.items():
        write_tsv(truth_dir / f"truth_hrf_group-{group}.tsv", table, float_format="%.6g")
    write_tsv(truth_dir / "truth_amplitudes.tsv", truth.amplitudes)
    write_nifti(
        truth_dir / f"space-{SPACE}_desc-parcels_dseg.nii.gz",
        truth.parcel_labels.astype(np.int16),
        geom.affine,
    )
    maps = {}
    for cond, active in truth.active_voxels.items():
        name = f"space-{SPACE}_desc-{cond}_mask.nii.gz"
        write_nifti(truth_dir / name, active.astype(np.uint8), geom.affine)
        maps[cond] = name
    maps_by_group: dict = {}
    for group, per_cond in truth.active_voxels_by_group.items():
        maps_by_group[group] = {}
        for cond, active in per_cond.items():
            name = f"group-{group}_space-{SPACE}_desc-{cond}_mask.nii.gz"
            write_nifti(truth_dir / name, active.astype(np.uint8), geom.affine)
            maps_by_group[group][cond] = name
    write_json(
        truth_dir / "truth.json",
        {
            "Description": (
                "Ground truth of the simulation. Voxel signal in percent of its baseline: "
                "sum over conditions of amplitude x (stimulus boxcar convolved with the "
                "parcel HRF of unit peak, in seconds), plus global signal, physiological "
                "fluctuations, connectivity latents, drifts and AR(1) noise; a residual "
                "motion artefact and brighter non-steady-state volumes are added."
            ),
            "Parameters": truth.parameters,
            "HRF": {
                "Model": "double gamma (SPM shape, time axis dilated), unit peak",
                "SamplingPeriod": 0.1,
                "Table": "truth_hrf.tsv",
                "TablesByGroup": {g: f"truth_hrf_group-{g}.tsv" for g in truth.hrf_by_group},
                "TimeToPeak": truth.time_to_peak,
                "TimeToPeakByGroup": truth.time_to_peak_by_group,
            },
            "Parcels": {
                "Names": truth.parcel_names,
                "Networks": dict(zip(truth.parcel_names, truth.parcel_networks, strict=True)),
                "Map": f"space-{SPACE}_desc-parcels_dseg.nii.gz",
            },
            "ActiveParcels": truth.active_parcels,
            "NullParcels": truth.null_parcels,
            "ActiveVoxelMaps": maps,
            "ActiveVoxelMapsByGroup": maps_by_group,
            "ActiveVoxelCounts": {c: int(m.sum()) for c, m in truth.active_voxels.items()},
            "Amplitudes": "truth_amplitudes.tsv",
            "GroupEffects": truth.group_effects,
        },
    )
