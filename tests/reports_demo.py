"""Synthetic inputs for the report tests and a demo report using every figure.

``python -m tests.reports_demo [PATH]`` writes the demo report (default
/tmp/report_demo.html) to look at in a browser.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.stats import gamma

from bids_hrf.reports import Report
from bids_hrf.reports import figures as F

EVIL = '<script>alert("x")</script>&<b>'
TR = 2.0
N_VOL = 60


# ---------------------------------------------------------------------------------------------
# synthetic inputs
# ---------------------------------------------------------------------------------------------
def _affine() -> np.ndarray:
    aff = np.diag([4.0, 4.0, 4.0, 1.0])
    aff[:3, 3] = [-18.0, -26.0, -10.0]
    return aff


def _gamma_hrf(t: np.ndarray, peak: float = 5.0, width: float = 1.0) -> np.ndarray:
    """Double-gamma HRF with its positive lobe peaking near ``peak`` seconds."""
    a = peak / width + 1
    h = gamma.pdf(t, a, scale=width) - gamma.pdf(t, a + 10, scale=width) / 6
    return h / np.abs(h).max()


def make_inputs(seed: int = 0) -> dict:
    """Small synthetic run: 4D BOLD, mask, atlas, confounds, design, HRFs, maps, group data."""
    rng = np.random.default_rng(seed)
    shape = (10, 12, 10)
    aff = _affine()
    i, j, k = np.indices(shape)
    brain = ((i - 4.5) / 4.2) ** 2 + ((j - 5.5) / 5.2) ** 2 + ((k - 4.5) / 4.2) ** 2 <= 1
    labels = (1 + (i >= 5) + 2 * (j >= 6) + 4 * (k >= 5)) * brain
    names = [f"parcel {n}" for n in range(1, 9)]
    signal = rng.normal(0, 1, (*shape, N_VOL)).cumsum(axis=-1) * 0.3
    bold = (1000 + 40 * brain[..., None] + signal).astype(np.float32)
    stat = rng.normal(0, 1, shape)
    stat[2:6, 3:8, 3:7] += 5.0
    stat[6:9, 2:5, 5:8] -= 4.5
    stat *= brain
    ppm = 1 / (1 + np.exp(-(stat - 2.0) * 1.5)) * brain
    fd = np.abs(rng.normal(0.12, 0.06, N_VOL))
    fd[0] = np.nan
    fd[[22, 23, 41]] = [0.8, 0.65, 1.1]
    confounds = pd.DataFrame(
        rng.normal(0, 1, (N_VOL, 8)).cumsum(axis=0),
        columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "csf", "wm"],
    )
    confounds["motion_outlier00"] = 0.0
    confounds.loc[22, "motion_outlier00"] = 1.0
    sample_mask = np.array([v for v in range(3, N_VOL) if v not in (22, 23, 41)])
    events = pd.DataFrame(
        {
            "onset": np.arange(6, N_VOL * TR - 10, 15.0),
            "duration": 3.0,
            "trial_type": (["faces", EVIL] * 10)[: len(np.arange(6, N_VOL * TR - 10, 15.0))],
        }
    )
    frame_times = np.arange(N_VOL) * TR
    design = pd.DataFrame(
        {
            "faces": np.convolve(
                np.isin(frame_times, events.onset[::2]), _gamma_hrf(np.arange(0, 30, TR))
            )[:N_VOL],
            EVIL: np.convolve(
                np.isin(frame_times, events.onset[1::2]), _gamma_hrf(np.arange(0, 30, TR))
            )[:N_VOL],
        }
    )
    for d in range(3):
        design[f"drift_{d + 1}"] = np.cos(np.pi * (d + 1) * (np.arange(N_VOL) + 0.5) / N_VOL)
    design["constant"] = 1.0
    t = np.arange(0, 25.5, 0.5)
    peaks = np.linspace(4.0, 6.5, len(names))
    hrfs = np.column_stack([_gamma_hrf(t, p) for p in peaks])
    variance = (0.05 + 0.02 * rng.random(hrfs.shape)) ** 2
    conv = []
    for p, name in enumerate(names):
        n_it = 12 + 3 * p
        f = -1000 + 800 * (1 - np.exp(-np.arange(n_it) / (2 + p)))
        if p == 5:
            f[6] = f[5] - 30.0  # one non-monotone parcel
        conv.append(pd.DataFrame({"parcel": name, "iteration": np.arange(n_it), "free_energy": f}))
    activity = np.zeros(N_VOL)
    activity[[5, 14, 30, 47]] = [1.5, 0.8, 2.0, -0.7]
    fitted = np.convolve(activity, _gamma_hrf(np.arange(0, 30, TR)))[:N_VOL]
    y = fitted + rng.normal(0, 0.3, N_VOL)
    n_sub = 12
    groups = np.array(["patients"] * 6 + ["controls"] * 6)
    summary = pd.concat(
        [
            pd.DataFrame(
                {"parcel": name, "time": t, "mean": hrfs[:, p] * s, "sd": 0.15, "group": g}
            )
            for p, name in enumerate(names)
            for g, s in (("patients", 0.8), ("controls", 1.0))
        ]
    )
    params = pd.DataFrame(
        {
            "participant_id": np.repeat([f"sub-{s:02d}" for s in range(n_sub)], len(names)),
            "group": np.repeat(groups, len(names)),
            "parcel": names * n_sub,
            "time_to_peak": np.tile(peaks, n_sub) + rng.normal(0, 0.4, n_sub * len(names)),
        }
    )
    ts = rng.normal(size=(100, len(names)))
    ts[:, 1] += ts[:, 0]
    conn = np.corrcoef(ts.T)
    edges = pd.DataFrame(
        [(a, b) for a in range(len(names)) for b in range(a)], columns=["i", "j"]
    ).assign(t=lambda d: rng.normal(0, 2, len(d)))
    edges["p_fdr"] = np.where(np.abs(edges["t"]) > 3, 0.01, 0.5)
    coverage = pd.DataFrame(
        {"label": names, "coverage": np.round(rng.uniform(0.35, 1.0, len(names)), 3)}
    )
    # A JDE-VEM hrfparams table (its columns, Schaefer-like snake_case parcel labels): wide
    # enough that its cells must wrap, and words must not be cut in doing so.
    jde_cols = ["time_to_peak", "fwhm", "height", "time_to_peak_sd", "fwhm_sd", "height_sd",
                "max_ppm", "class_separation", "response_p", "response_q", "hrf_tempering"]
    hrfparams = pd.DataFrame(rng.uniform(0, 10, (len(names), len(jde_cols))), columns=jde_cols)
    hrfparams.insert(0, "parcel", [f"7Networks_LH_SomMot_{k}" for k in range(len(names))])
    hrfparams = hrfparams.assign(silent=rng.random(len(names)) > 0.5, n_iter=30, converged=True)
    return {
        "hrfparams": hrfparams,
        "bold": nib.Nifti1Image(bold, aff),
        "mask": nib.Nifti1Image(brain.astype(np.uint8), aff),
        "atlas": nib.Nifti1Image(labels.astype(np.int16), aff),
        "mean": nib.Nifti1Image(bold.mean(axis=-1), aff),
        "stat": nib.Nifti1Image(stat.astype(np.float32), aff),
        "ppm": nib.Nifti1Image(ppm.astype(np.float32), aff),
        "ttp": nib.Nifti1Image((brain * (5 + (i - 5) * 0.2)).astype(np.float32), aff),
        "fwhm": nib.Nifti1Image((brain * (4.5 + (j - 6) * 0.1)).astype(np.float32), aff),
        "height": nib.Nifti1Image((brain * rng.uniform(0.5, 2, shape)).astype(np.float32), aff),
        "names": names,
        "fd": fd,
        "confounds": confounds,
        "sample_mask": sample_mask,
        "events": events,
        "design": design,
        "time": t,
        "hrfs": hrfs,
        "variance": variance,
        "reference": (t, _gamma_hrf(t, 5.0)),
        "convergence": pd.concat(conv, ignore_index=True),
        "frame_times": frame_times,
        "y": y,
        "fitted": fitted,
        "activity": activity,
        "summary": summary,
        "params": params,
        "conn": conn,
        "networks": ["vis", "dmn", "vis", "smn", "dmn", "smn", "vis", "dmn"],
        "edges": edges,
        "coverage": coverage,
    }


def _figure_calls(d: dict) -> dict:
    """Each figure function with arguments built from :func:`make_inputs`."""
    return {
        "confounds": (F.plot_confounds, (d["fd"], d["confounds"], d["sample_mask"], TR, 0.5), {}),
        "carpet": (F.plot_carpet, (d["bold"], d["mask"], TR), {}),
        "design": (F.plot_design_matrix, (d["design"],), {}),
        "atlas": (F.plot_atlas, (d["atlas"],), {"bg_img": d["mean"]}),
        "coverage": (F.plot_coverage, (d["coverage"],), {"threshold": 0.5}),
        "stat_map": (F.plot_stat_map, (d["stat"],), {"bg_img": d["mean"], "title": "faces"}),
        "hrf_panel": (
            F.plot_hrf_panel,
            (d["time"], d["hrfs"], d["names"]),
            {"variance": d["variance"], "reference": d["reference"]},
        ),
        "hrf_overlay": (F.plot_hrf_overlay, (d["time"], d["hrfs"], d["names"]), {}),
        "ppm": (F.plot_ppm, (d["ppm"],), {"bg_img": d["mean"], "title": "faces"}),
        "free_energy": (F.plot_free_energy, (d["convergence"],), {}),
        "parameter_maps": (
            F.plot_hrf_parameter_maps,
            (d["ttp"], d["fwhm"], d["height"]),
            {"bg_img": d["mean"]},
        ),
        "sparse_fit": (
            F.plot_sparse_fit,
            (d["frame_times"], d["y"], d["fitted"], d["activity"], d["events"]),
            {"title": "voxel (4, 5, 6)"},
        ),
        "connectivity": (
            F.plot_connectivity_matrix,
            (d["conn"], d["names"]),
            {"networks": d["networks"], "title": "mean connectivity"},
        ),
        "edge_differences": (F.plot_edge_differences, (d["edges"], d["names"]), {}),
        "group_hrfs": (F.plot_group_hrfs, (d["summary"],), {"parcels": d["names"][:6]}),
        "parameter_comparison": (
            F.plot_hrf_parameter_comparison,
            (d["params"], "time_to_peak"),
            {"groups": ["controls", "patients"]},
        ),
    }


def build_demo_report(
    d: dict | None = None, logger: logging.Logger | None = None, made: dict | None = None
) -> Report:
    """A participant-like report with every figure, a failing figure and hostile names.

    ``made`` maps figure names to figures already made (the tests make each figure once).
    """
    d = make_inputs() if d is None else d
    calls = _figure_calls(d)
    if made is not None:
        calls = {key: ((lambda key=key: made[key]), (), {}) for key in calls}
    rep = Report("sub-01", subtitle="ds-demo \u00b7 task-faces \u00b7 bids_hrf demo", logger=logger)
    rep.add_metadata(
        "BOLD runs", ["sub-01_task-faces_run-1", "sub-01_task-faces_run-2"], group="Inputs"
    )
    rep.add_metadata("fMRIPrep derivatives", Path("/data/derivatives/fmriprep"), group="Inputs")
    rep.add_metadata("space", "MNI152NLin2009cAsym", group="Inputs")
    rep.add_metadata("HRF methods", ["jde-vem", "sparse", "canonical"], group="Parameters")
    rep.add_metadata(
        "confounds", {"strategy": "motion+wm_csf", "fd_threshold": 0.5}, group="Parameters"
    )
    rep.add_metadata("condition", EVIL, group="Parameters")
    rep.add_warning("run-2: 14% of volumes scrubbed (FD > 0.5 mm)")
    rep.add_warning(f"condition {EVIL} has only 3 events")

    data = rep.section("Data and parcellation")
    rep.add_text(
        data,
        "Parcellation resampled to the BOLD grid.\n\nParcels with less than "
        "50% coverage are dropped.",
    )
    for key, cap in (
        ("atlas", "Parcellation on the mean BOLD image."),
        ("coverage", "Coverage of each parcel; orange: below the 50% threshold."),
    ):
        f, a, k = calls[key]
        rep.add_figure(data, f, *a, caption=cap, **k)
    rep.add_table(data, d["coverage"], caption="Parcel coverage")

    runs = rep.section("Runs")
    for r in (1, 2):
        run = rep.section(f"run-{r}", parent=runs, open=r == 1)
        for key, cap in (
            ("confounds", "Framewise displacement and confounds; shaded: censored volumes."),
            ("carpet", "Carpet plot of the cleaned BOLD signal."),
            ("design", "First-level design matrix."),
            ("stat_map", f"z map of contrast {EVIL}, |z| > 3.1."),
        ):
            f, a, k = calls[key]
            rep.add_figure(run, f, *a, caption=cap, **k)
        rep.add_table(run, d["events"], caption="Events")

    jde = rep.section("JDE-VEM")
    rep.add_text(jde, "Joint detection-estimation, variational EM, one HRF per parcel.")
    for key, cap in (
        ("hrf_panel", "HRF per parcel with \u00b12 sd credible band; dashed: canonical HRF."),
        ("hrf_overlay", "All parcel HRFs, coloured by time to peak."),
        ("ppm", "Posterior probability map, faces."),
        ("free_energy", "Free energy per VEM iteration."),
        ("parameter_maps", "HRF parameter maps."),
    ):
        f, a, k = calls[key]
        rep.add_figure(jde, f, *a, caption=cap, **k)

    def broken() -> None:
        raise RuntimeError("synthetic failure <b>boom</b>")

    rep.add_figure(jde, broken, caption="A figure that fails on purpose.")
    rep.add_table(jde, d["hrfparams"], caption="HRF parameters per parcel")
    spfm = rep.section("Sparse deconvolution")
    f, a, k = calls["sparse_fit"]
    rep.add_figure(spfm, f, *a, caption="Example voxel: BOLD, fit and activity.", **k)

    group = rep.section("Group (preview)")
    for key, cap in (
        ("connectivity", "Mean connectivity, ordered by network."),
        ("edge_differences", "Edge-wise t, patients vs controls; circles: p_FDR < 0.05."),
        ("group_hrfs", "Group HRFs."),
        ("parameter_comparison", "Time to peak per parcel and group."),
    ):
        f, a, k = calls[key]
        rep.add_figure(group, f, *a, caption=cap, **k)
    return rep


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/report_demo.html")
    path = build_demo_report().write(target)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
