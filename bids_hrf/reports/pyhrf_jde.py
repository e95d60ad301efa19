"""HTML report of a ``bids-hrf-jde`` run (PyHRF-compatible command)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from bids_hrf.reports.build import Report


def _volume(values: np.ndarray, mask: np.ndarray, affine) -> nib.Nifti1Image:
    """(n_voxels,) values inside ``mask`` -> 3-D image to draw (0 outside the mask)."""
    out = np.zeros(mask.shape, dtype=np.float32)
    out[mask] = np.asarray(values)
    return nib.Nifti1Image(out, affine)


def write_jde_report(path: Path, estimate, data, args, files: dict[str, str]) -> Path:
    """Write ``jde_vem_report.html``: HRFs, PPMs, contrasts, parcel table, output files.

    Parameters
    ----------
    path : Path
        The HTML file to write.
    estimate : HRFEstimate
        From :func:`bids_hrf.hrf.jde.app.estimate_jde_vem`.
    data : bids_hrf.steps.pyhrf_jde.JDEData
        The data that were fitted (mask, affine).
    args : argparse.Namespace
        The command's arguments (shown in the summary).
    files : dict
        Output file -> description, listed at the end.
    """
    from nilearn import image

    from bids_hrf.hrf.basis import canonical_hrf
    from bids_hrf.hrf.jde.app import bids_label, condition_label
    from bids_hrf.reports.figures import plot_free_energy, plot_hrf_panel, plot_ppm

    rep = Report("bids-hrf-jde", subtitle=f"JDE-VEM of {Path(args.bold_data_file[0]).name}"
                 + (f" and {len(args.bold_data_file) - 1} more session(s)"
                    if len(args.bold_data_file) > 1 else ""))
    for key in ("tr", "parcels_file", "onsets_file", "def_contrasts_file", "drifts_type",
                "hrf_duration", "beta", "sigma_h", "hrf_hyperprior", "estimate_hrf",
                "zero_constraint", "nb_iter_min", "nb_iter_max"):
        rep.add_metadata(key, getattr(args, key))
    rep.add_metadata("dt", estimate.sampling_period)
    rep.add_metadata("conditions", ", ".join(estimate.parameters["conditions"]))
    try:
        bg = image.mean_img(args.bold_data_file[0], copy_header=True)
    except Exception:  # the background is cosmetic
        bg = None
    sec = rep.section("HRFs")
    time = estimate.time
    canon_t, canon = canonical_hrf("spm", estimate.sampling_period, float(time[-1]))
    rep.add_figure(sec, plot_hrf_panel, time, estimate.hrfs, list(estimate.labels),
                   variance=estimate.variance, reference=(canon_t, canon),
                   caption="Posterior mean HRF of each parcel (unit norm) with +/- 2 SD; "
                           "dashed: canonical HRF scaled to the peak.")
    table = estimate.parcel_tables.get("hrfparams")
    if isinstance(table, pd.DataFrame):
        rep.add_table(sec, table, caption="HRF parameters per parcel (silent: no condition "
                      "shows a response, the HRF reflects the prior)")
    conv = estimate.parcel_tables.get("convergence")
    if isinstance(conv, pd.DataFrame):
        rep.add_figure(sec, plot_free_energy, conv, caption="Free energy per VEM iteration.")
    affine = data.parcel_img.affine
    sec = rep.section("Conditions")
    for c in estimate.parameters["conditions"]:
        values = estimate.voxel_maps[f"contrast-{condition_label(c)}_desc-jdevem_stat-"
                                     "ppm_statmap"]
        rep.add_figure(sec, plot_ppm, _volume(values, data.mask, affine), bg_img=bg,
                       title=c, caption=f"PPM of condition {c} (shown above 0.5).")
    if data.contrasts:
        sec = rep.section("Contrasts")
        for k in data.contrasts:
            values = estimate.voxel_maps[f"contrast-{bids_label(k)}_desc-jdevem_stat-"
                                         "ppm_statmap"]
            rep.add_figure(sec, plot_ppm, _volume(values, data.mask, affine), bg_img=bg,
                           title=k, caption=f"P({k} > 0 | data) (shown above 0.5).")
            means = pd.Series(estimate.voxel_maps[f"contrast-{bids_label(k)}_desc-jdevem_"
                                                  "stat-effect_statmap"]).groupby(
                data.labels).mean()
            rep.add_table(sec, pd.DataFrame({"parcel": means.index, "mean contrast":
                                             np.round(means.to_numpy(), 4)}),
                          caption=f"Mean of contrast {k} over each parcel's voxels.")
    sec = rep.section("Output files")
    rep.add_table(sec, pd.DataFrame({"file": list(files), "content": list(files.values())}),
                  caption="Files written in the output directory (docs/pyhrf.md maps them to "
                          "PyHRF's).", max_rows=500)
    return rep.write(path)
