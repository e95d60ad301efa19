"""The participant report: ``sub-<label>.html`` from the step results of every group."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from nilearn import image

from bids_hrf.atlas import _file_atlas_name
from bids_hrf.hrf.basis import canonical_hrf
from bids_hrf.hrf.registry import get_method
from bids_hrf.io.events import read_events
from bids_hrf.reports import Report
from bids_hrf.reports import figures as F
from bids_hrf.reports import figures_voxelwise as FV
from bids_hrf.reports.figures_surface import sample_noun, set_surface_geometry
from bids_hrf.reports.methods import add_methods_section, hrfs_used_text
from bids_hrf.reports.sparse_summary import read_sparse_summary
from bids_hrf.steps.prepare import read_confounds, read_sample_mask
from bids_hrf.steps.surface import read_geometry

LOGGER = logging.getLogger("bids_hrf")

#: What the participant maps' threshold means.
_Z31 = ("p < 0.001 one-sided for each {one}, not corrected for the number of {many}: a "
        "first look, not an inference")


def _canonical_reference(time: np.ndarray, hrf_model: str):
    dt = float(np.median(np.diff(time))) if time.size > 1 else 0.1
    t, values = canonical_hrf(hrf_model.split("+")[0].strip() or "spm", dt=dt,
                              duration=float(time[-1]) if time.size else 25.0)
    values = np.asarray(values, dtype=float)
    norm = np.linalg.norm(values)
    return t, values / norm if norm > 0 else values


def _mean_img(bold: str):
    return image.mean_img(bold, copy_header=True)


def atlas_description(atlas: str) -> str:
    """How a report names the atlas: its name, never a path of the user's machine.

    A file is named by its ``atlas-<label>`` entity (or its file name) with "file" added;
    TemplateFlow and data-driven atlases keep their specification.
    """
    text = str(atlas)
    if text.startswith("data-driven"):
        return f"{text} (parcels made from the data)"
    if text.endswith((".nii", ".nii.gz")) or "/" in text or "\\" in text:
        name = Path(text).name
        return f"{_file_atlas_name(Path(text))} (file {name})"
    return text


def _background(prepared: list[dict], runs: list[dict]):
    """Mean BOLD volume of the first run: saved by the prepare step (older work
    directories: computed from the BOLD)."""
    mean = prepared[0].get("mean_bold") if prepared else None
    if mean and Path(mean).is_file():
        return mean
    try:
        return _mean_img(runs[0]["bold"])
    except Exception as exc:  # a background is a nicety
        LOGGER.debug("no mean image: %s", exc)
        return None


def _carpet_data(run: dict, prep: dict):
    """Carpet rows saved by the prepare step, or the BOLD image (older work directories)."""
    carpet = prep.get("carpet")
    if carpet and Path(carpet).is_file():
        return np.load(carpet)
    return run["bold"]


def _find_map(maps: list[dict], *parts: str) -> list[dict]:
    return [m for m in maps if m.get("kind", "nifti") == "nifti"
            and all(p in m["fragment"] for p in parts)]


def _add_hrf_section(report, sec: str, hrf: dict, config: dict, bg) -> None:
    table = pd.read_csv(hrf["hrf"], sep="\t")
    time = table["time"].to_numpy()
    names = [str(c) for c in table.columns[1:]]
    hrfs = table.iloc[:, 1:].to_numpy()
    variance = None
    if hrf.get("hrf_variance"):
        variance = pd.read_csv(hrf["hrf_variance"], sep="\t").iloc[:, 1:].to_numpy()
    reference = _canonical_reference(time, config["hrf_model"])
    report.add_text(sec, f"HRF method: {hrf['method']}. One HRF per parcel, sampled every "
                         f"{np.median(np.diff(time)):.3g} s, unit norm"
                    + (", with +/- 2 posterior standard deviations." if variance is not None
                       else "."))
    if hrfs.shape[1] > 1 and np.allclose(hrfs, hrfs[:, :1], rtol=0, atol=1e-9):
        # A fixed HRF (canonical): one curve says it all, dozens of identical panels do not.
        report.add_figure(sec, F.plot_hrf_panel, time, hrfs[:, :1],
                          [f"all {len(names)} parcels"], reference=reference,
                          caption=f"The HRF of every parcel: the same {hrf['method']} HRF in "
                                  f"all {len(names)} parcels, not estimated from the data "
                                  "(dashed: canonical HRF)")
        _add_hrf_tables_and_maps(report, sec, hrf, bg)
        return
    silent = _silent_parcels(hrf)
    shown = [i for i, n in enumerate(names) if n not in silent]
    if silent:
        report.add_text(sec, f"{len(silent)} silent parcel(s): no evidence that they respond "
                             "to the paradigm (F-tests of the conditions with the canonical "
                             f"HRF and its derivatives in each {sample_noun(singular=True)} "
                             "and in the parcel mean, "
                             "false discovery rate 5 % over the parcels), so their HRF is "
                             "shaped by the prior and the noise rather than by a response. "
                             "They are drawn apart; do not interpret their HRF parameters or "
                             "PPMs: " + ", ".join(silent) + ".")
    if shown:
        report.add_figure(sec, F.plot_hrf_panel, time, hrfs[:, shown],
                          [names[i] for i in shown],
                          variance=None if variance is None else variance[:, shown],
                          reference=reference,
                          caption="Parcel HRFs" + (" with evidence of activation"
                                                   if silent else "")
                                  + " (dashed: canonical HRF)")
    if silent:
        idx = [names.index(n) for n in silent]
        report.add_figure(sec, F.plot_hrf_panel, time, hrfs[:, idx], silent,
                          variance=None if variance is None else variance[:, idx],
                          reference=reference,
                          caption="Silent parcels (no evidence of activation): HRF not "
                                  "supported by the data (dashed: canonical HRF)")
    if silent and shown:
        report.add_figure(sec, F.plot_hrf_overlay, time, hrfs[:, shown],
                          [names[i] for i in shown],
                          caption="HRFs of the parcels with evidence of activation, coloured "
                                  "by time to peak")
    else:
        report.add_figure(sec, F.plot_hrf_overlay, time, hrfs, names,
                          caption="All parcel HRFs, coloured by time to peak")
    _add_hrf_tables_and_maps(report, sec, hrf, bg)


def _add_hrf_tables_and_maps(report, sec: str, hrf: dict, bg) -> None:
    """Convergence, HRF parameters, PPMs, parameter maps and stability maps of a method."""

    for item in hrf.get("tables", []):
        tab = pd.read_csv(item["path"], sep="\t")
        if item["fragment"] == "convergence" and {"parcel", "iteration",
                                                  "free_energy"} <= set(tab.columns):
            report.add_figure(sec, F.plot_free_energy, tab,
                              caption="Free energy across VEM iterations (one line per parcel)")
        elif item["fragment"] == "hrfparams":
            report.add_table(sec, tab, caption="HRF parameters per parcel")
    maps = hrf.get("maps", [])
    ppm = _find_map(maps, "stat-ppm")
    for item in ppm[:6]:
        label = item["fragment"].split("_")[0].removeprefix("contrast-")
        report.add_figure(sec, F.plot_ppm, item["path"], bg_img=bg, title=f"PPM {label}",
                          caption=f"Posterior probability map of {label}: for a "
                                  "condition, P(response level above the point where the "
                                  "active and inactive classes cross); for a contrast, "
                                  "P(contrast > 0)")
    ttp, fwhm, height = (_find_map(maps, f"stat-{k}") for k in ("ttp", "fwhm", "height"))
    if ttp or fwhm or height:
        report.add_figure(sec, F.plot_hrf_parameter_maps,
                          ttp[0]["path"] if ttp else None, fwhm[0]["path"] if fwhm else None,
                          height[0]["path"] if height else None, bg_img=bg,
                          caption="HRF parameter maps (time to peak, FWHM, height)")
    auc = _find_map(maps, "stat-auc")
    for item in auc[:2]:
        report.add_figure(sec, _max_img_stat, item["path"], bg,
                          caption="Stability selection: maximum AUC over time "
                                  f"({item['fragment']})")


def _silent_parcels(hrf: dict) -> list[str]:
    """Parcels flagged ``silent`` in a JDE-VEM ``hrfparams`` table (none for other methods)."""
    for item in hrf.get("tables", []):
        if item["fragment"] == "hrfparams":
            tab = pd.read_csv(item["path"], sep="\t")
            if {"parcel", "silent"} <= set(tab.columns):
                return [str(p) for p in tab.loc[tab["silent"].astype(bool), "parcel"]]
    return []


def _max_img_stat(path: str, bg):
    img = image.load_img(path)
    if img.ndim == 4:
        img = image.math_img("np.max(img, axis=-1)", img=img)
    return F.plot_stat_map(img, bg_img=bg, threshold=0.0, title="maximum over time",
                           stat="AUC")


def _add_sparse_fits(report, sec: str, hrf: dict, runs: list[dict], prepared: list[dict],
                     config: dict | None = None):
    """Example voxel fits, and activity against the paradigm, of sparse deconvolution.

    Drawn from what the sparse step saved (:mod:`bids_hrf.reports.sparse_summary`): the
    BOLD is not reloaded and event detection is not re-run here.
    """

    saved = hrf.get("sparse_report") or []
    if not saved:
        report.add_text(sec, "Example fits are not shown: the sparse step of this work "
                             "directory saved none (rerun with a fresh work directory).")
        return
    by_index = {r.get("run"): r for r in runs}
    for item in saved:
        index = item["run"]
        run = runs[index] if index < len(runs) else by_index.get(index, {})
        prep = prepared[index] if index < len(prepared) else {}
        name = item.get("name") or run.get("name", f"run {index + 1}")
        arrays, meta, table = read_sparse_summary(item)
        events = read_events(run.get("events")) if run.get("events") else None
        kind = meta["kind"]
        for k, voxel in enumerate(meta["voxels"]):
            what, parcel = voxel["what"], voxel["parcel"]
            report.add_figure(sec, F.plot_sparse_fit, arrays["frame_times"],
                              arrays["bold"][:, k], arrays["denoised"][:, k],
                              arrays["activity"][:, k], events=events,
                              title=f"{name}: {what} ({parcel})",
                              caption=f"Cleaned BOLD (percent change), sparse fit (denoised "
                                      f"BOLD) and {kind} signal of the {what} of parcel "
                                      f"{parcel}" + ("; ticks: paradigm onsets"
                                                     if events is not None else ""))
        bg = _background([prep], [run]) if prep else None
        report.add_figure(sec, F.plot_stat_map, item["rate"], bg_img=bg,
                          threshold=1e-6, title=f"{kind} events", stat="events/min",
                          caption=f"{name}: number of non-zero {kind} coefficients per "
                                  "minute in each voxel (where the deconvolution finds events)")
        if table is not None:
            shown = table.head(12).round({"response": 2, "detected": 2, "chance": 2})
            report.add_table(sec, shown,
                             caption=f"{name}: detected events against the paradigm, per "
                                     "parcel and condition (first 12). response: peak of the "
                                     "event-triggered average of the parcel's mean activity "
                                     "(standardised) 0 to 2 scans after the onsets; lag: lag "
                                     "(scans) of its maximum; detected: fraction of the onsets "
                                     "with activity above 1 SD within +-1 scan; chance: the "
                                     "same rate at every scan. Parcels whose activity follows "
                                     "a condition come first.")


def _hrf_panel(report, sec: str, group: dict, config: dict, bg) -> None:
    _add_hrf_section(report, sec, group["hrf"], config, bg)


def _sparse_fits_panel(report, sec: str, group: dict, config: dict, bg) -> None:
    _add_sparse_fits(report, sec, group["hrf"], group["runs"], group["prepared"], config)


def _voxel_hrfs_panel(report, sec: str, group: dict, config: dict, bg) -> None:
    """Fit maps, best-fit voxel HRFs and time-to-peak histograms (the parameter maps are
    drawn by the ``hrf`` panel)."""
    hrf = group["hrf"]
    for draw, caption in (
            (FV.draw_fit_maps, "Fit of each voxel's HRF model: in-sample R^2 and, with "
                               "cross-validation, held-out R^2 (leave one run out)"),
            (FV.draw_best_hrfs, "HRFs of the 10 best-fit voxels (dashed: canonical SPM HRF)"),
            (FV.draw_ttp_histograms, "Time to peak of the voxels of each parcel (counts per "
                                     "0.5 s bin)")):
        report.add_figure(sec, draw, hrf, caption=caption)


#: The report panels a method may list in :attr:`bids_hrf.hrf.registry.MethodSpec.report_panels`.
PANELS = {"hrf": _hrf_panel, "sparse-fits": _sparse_fits_panel,
          "voxel-hrfs": _voxel_hrfs_panel}


def _add_method_panels(report, sec: str, group: dict, config: dict, bg) -> None:
    """The panels the HRF method of ``group`` asks for, in its order."""
    for panel in get_method(group["hrf"]["method"]).report_panels:
        if panel in PANELS:
            PANELS[panel](report, sec, group, config, bg)
        else:
            LOGGER.warning("HRF method %s asks for an unknown report panel %r (known: %s)",
                           group["hrf"]["method"], panel, ", ".join(PANELS))


def participant_report_step(subject: str, output_dir: str, config: dict,
                            groups: list[dict], nprocs: int = 1) -> Path:
    """Build and write ``OUTPUT_DIR/sub-<subject>.html``.

    Nothing is refitted and no 4D BOLD is read here: the steps saved what the report draws
    (mean volume, carpet rows, maps, tables). With ``nprocs`` > 1 the figures are drawn in
    that many processes.
    """

    report = Report(f"sub-{subject}", subtitle=f"bids-hrf participant report "
                                               f"({config['hrf_method']} HRFs)", logger=LOGGER,
                    n_procs=max(1, int(nprocs)))
    first = groups[0]["prepared"][0] if groups and groups[0].get("prepared") else {}
    geometry = read_geometry(first)
    set_surface_geometry(geometry)  # surface runs: where the samples lie
    samples = sample_noun()
    z31 = _Z31.format(one=sample_noun(singular=True), many=samples)
    report.add_metadata("Participant", f"sub-{subject}")
    report.add_metadata("BIDS dataset", config["bids_dir"])
    report.add_metadata("fMRIPrep derivatives",
                        ", ".join(config["derivatives"]) or
                        str(Path(config["bids_dir"]) / "derivatives" / "fmriprep"))
    report.add_metadata("Space", config["space"])
    report.add_metadata("Atlas", atlas_description(config["atlas"]))
    report.add_metadata("Runs", sum(len(g["runs"]) for g in groups))
    for key in ("confounds", "dummy_scans", "fd_threshold", "high_pass", "smoothing_fwhm",
                "hrf_method", "hrf_model", "hrf_duration", "noise_model"):
        report.add_metadata(key, config[key], group="Parameters")
    if config.get("contrasts"):
        report.add_metadata("contrasts", json.dumps(config["contrasts"]), group="Parameters")
    first_run = True
    for group in groups:
        ents = group["entities"]
        title = " ".join(f"{k}-{v}" for k, v in ents.items() if k != "sub")
        gsec = report.section(title or "runs")
        prepared, runs = group["prepared"], group["runs"]
        bg = _background(prepared, runs)
        asec = report.section("Parcellation", parent=gsec)
        surface = bool(prepared[0].get("geometry"))
        report.add_figure(asec, F.plot_atlas, prepared[0]["atlas_bold"], bg_img=bg,
                          caption=f"Atlas {atlas_description(config['atlas'])} "
                                  + ("on the cortical surface (inflated mesh)" if surface
                                     else "resampled to the BOLD grid, on the run's mean "
                                          "BOLD volume"))
        coverage = pd.read_csv(prepared[0]["coverage"], sep="\t")
        report.add_figure(asec, F.plot_coverage, coverage, caption="Coverage of each parcel")
        dropped = sorted({d for p in prepared for d in p.get("dropped_parcels", [])})
        if dropped:
            report.add_warning(f"{title}: parcels dropped (too few "
                               f"{sample_noun()} in the data): "
                               + ", ".join(dropped))
        hsec = report.section("HRF estimates", parent=gsec)
        if group.get("hrf"):
            _add_method_panels(report, hsec, group, config, bg)
        for run, prep in zip(runs, prepared, strict=True):
            # The first run of the report is open: the default view reads in order.
            rsec = report.section(run["name"], parent=gsec, open=first_run)
            first_run = False
            conf = read_confounds(prep["confounds"])
            fd = pd.read_csv(prep["fd"], sep="\t")["framewise_displacement"].to_numpy()
            report.add_text(rsec, f"TR {run['tr']} s, {run['n_volumes']} volumes, "
                                  f"{prep['n_dummy']} dummy scan(s), {prep['n_kept']} kept. "
                                  f"Confounds: {prep['confounds_description']}")
            report.add_figure(rsec, F.plot_confounds, fd, conf,
                              sample_mask=read_sample_mask(prep["sample_mask"]),
                              tr=run["tr"],
                              fd_threshold=(config["fd_threshold"]
                                            if config["confounds"] == "scrubbing" else None),
                              caption="Framewise displacement and confounds")
            report.add_figure(rsec, F.plot_carpet, _carpet_data(run, prep),
                              prep.get("mask", run["mask"]),
                              run["tr"], sample_mask=read_sample_mask(prep["sample_mask"]),
                              samples=samples,
                              caption="Carpet plot of the preprocessed BOLD: evenly spaced "
                                      f"{'brain ' if samples == 'voxels' else ''}{samples} (rows), "
                                      "each standardised over time")
            glm = _glm_for(group, run, prep)
            if glm:
                report.add_figure(rsec, F.plot_design_matrix,
                                  pd.read_csv(glm["design"], sep="\t"),
                                  caption=f"Design matrix ({glm['design_parcel']})")
                used = _hrfs_used(config, [glm])
                for label, paths in glm["contrasts"].items():
                    # Run-level maps: slices only (the glass brain doubles the drawing time;
                    # it is kept for the fixed-effects maps), at a lower resolution.
                    report.add_figure(rsec, F.plot_stat_map, paths["z"], bg_img=bg,
                                      threshold=3.1, title=label, glass_brain=False,
                                      dpi=90,
                                      caption=f"Contrast {label}: z map, shown where "
                                              f"|z| > 3.1 ({z31}); HRFs: {used}")
        ffx = group.get("ffx") or {}
        if ffx.get("contrasts"):
            fsec = report.section("Fixed effects across runs", parent=gsec)
            used = _hrfs_used(config, group.get("glm") or [])
            for label, paths in ffx["contrasts"].items():
                report.add_figure(fsec, F.plot_stat_map, paths["z"], bg_img=bg, threshold=3.1,
                                  title=f"{label} ({paths.get('n_runs', 1)} runs)",
                                  caption=f"Contrast {label}: fixed-effects z map, shown where "
                                          f"|z| > 3.1 ({z31}); HRFs: {used}")
    add_methods_section(report, config, "participant")
    return report.write(Path(output_dir) / f"sub-{subject}.html")


def _hrfs_used(config: dict, glms: list[dict]) -> str:
    """Which HRFs the first-level designs used, for the captions of the z maps."""

    fallback: set[str] = set()
    for glm in glms:
        if not glm or not glm.get("design"):
            continue
        summary = Path(glm["design"]).parent / "glm_summary.json"
        try:
            source = json.loads(summary.read_text()).get("hrf_source", {})
        except (OSError, ValueError):
            continue
        fallback |= {str(k) for k, v in source.items() if v == "canonical"}
    return hrfs_used_text(config, sorted(fallback))


def _glm_for(group: dict, run: dict, prep: dict | None = None) -> dict | None:
    """The GLM result of ``run`` (matched by its mask: surface runs' is their samples')."""
    mask = (prep or {}).get("mask", run["mask"])
    for glm in group.get("glm") or []:
        if glm and Path(glm.get("mask", "")) == Path(mask):
            return glm
    return None
