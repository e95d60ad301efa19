"""Report panels of the voxel-wise HRF methods (rfir, r1glm, library).

Each ``draw_*`` function takes the HRF step's result (``{"maps": [{"fragment", "path",
...}], "tables": [...], "parameters": path, "method": ...}``) and returns a figure; they
are listed as :class:`~bids_hrf.hrf.registry.ReportPanel` objects in the registry entries.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bids_hrf.reports._common import embed, load_img, pyplot_figure, report_style
from bids_hrf.reports.figures_hrf import _slices_map, plot_hrf_parameter_maps

__all__ = ["draw_best_hrfs", "draw_fit_maps", "draw_parameter_maps", "draw_ttp_histograms"]


def _map(hrf: dict, suffix: str) -> str | None:
    for item in hrf.get("maps", []):
        if item.get("run") is None and item["fragment"].endswith(suffix):
            return item["path"]
    return None


def _tag(hrf: dict) -> str:
    return str(hrf["method"])


def draw_parameter_maps(hrf: dict):
    """Time to peak, FWHM and height of each voxel's HRF on axial slices."""
    tag = _tag(hrf)
    return plot_hrf_parameter_maps(
        _map(hrf, f"desc-{tag}_stat-ttp_statmap"), _map(hrf, f"desc-{tag}_stat-fwhm_statmap"),
        _map(hrf, f"desc-{tag}_stat-height_statmap"))


def draw_fit_maps(hrf: dict):
    """In-sample R^2 and, for the cross-validated library, held-out R^2 on axial slices."""
    tag = _tag(hrf)
    rows = [(name, path) for name, path in (
        ("in-sample R^2", _map(hrf, f"desc-{tag}_stat-r2_statmap")),
        ("held-out R^2", _map(hrf, f"desc-{tag}_stat-heldoutr2_statmap"))) if path]
    if not rows:
        raise ValueError("no fit map was written")
    with report_style():
        fig = pyplot_figure(9, 2.3 * len(rows))
        for i, (name, path) in enumerate(rows):
            img = load_img(path)
            v = np.asarray(img.dataobj, float)
            v = v[np.isfinite(v) & (v != 0)]
            vmax = float(np.percentile(v, 98)) if v.size else 1.0
            _slices_map(fig, img, [0.0, 1 - (i + 1) / len(rows), 1.0, 1 / len(rows)], name,
                        "viridis", 0.0, max(vmax, 1e-3), None, 1e-12)
    return embed(fig, fmt="png")


def draw_best_hrfs(hrf: dict, n: int = 10):
    """HRFs of the ``n`` best-fit voxels (highest fit map), with SPM's canonical HRF."""
    from bids_hrf.hrf.basis import canonical_hrf

    tag = _tag(hrf)
    fit = _map(hrf, f"desc-{tag}_stat-heldoutr2_statmap") or _map(
        hrf, f"desc-{tag}_stat-r2_statmap")
    hrf4d = _map(hrf, f"desc-{tag}Hrf_bold")
    if fit is None or hrf4d is None:
        raise ValueError("the voxel HRF map or the fit map was not written")
    r2 = np.asarray(load_img(fit).dataobj, float).ravel()
    h = np.asarray(load_img(hrf4d).dataobj, float)
    h = h.reshape(-1, h.shape[-1])
    r2 = np.where(np.isfinite(r2) & np.any(h != 0, axis=1), r2, -np.inf)
    best = np.argsort(r2)[::-1][:n]
    best = best[np.isfinite(r2[best])]
    params = json.loads(open(hrf["parameters"]).read())
    dt = float(params.get("parameters", {}).get("dt") or params.get("SamplingPeriod") or 1.0)
    time = np.arange(h.shape[1]) * dt
    with report_style():
        fig = pyplot_figure(6.5, 3.2)
        ax = fig.add_subplot(111)
        for j in best:
            peak = np.max(np.abs(h[j])) or 1.0
            ax.plot(time, h[j] / peak, lw=1, alpha=0.8, label=f"R^2 {r2[j]:.2f}")
        ct, cv = canonical_hrf("spm", dt=0.1, duration=float(time[-1]))
        ax.plot(ct, cv / np.max(cv), "k--", lw=2, label="canonical (spm)")
        ax.set_xlabel("time after onset (s)")
        ax.set_ylabel("HRF (unit peak)")
        ax.axhline(0, color="0.7", lw=0.5)
        ax.legend(fontsize=6, ncol=2, frameon=False)
    return embed(fig, fmt="svg")


def draw_ttp_histograms(hrf: dict, max_parcels: int = 40):
    """Histogram of the voxels' time to peak in each parcel (rows), as a heat map."""
    path = next((t["path"] for t in hrf.get("tables", []) if t["fragment"] == "ttphist"), None)
    if path is None:
        raise ValueError("the time-to-peak histogram table was not written")
    table = pd.read_csv(path, sep="\t").head(max_parcels)
    counts = table.drop(columns=["parcel"]).to_numpy(float)
    frac = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    edges = [c.split("-")[0] for c in table.columns[1:]]
    with report_style():
        fig = pyplot_figure(7, 0.5 + 0.18 * len(table))
        ax = fig.add_subplot(111)
        im = ax.imshow(frac, aspect="auto", cmap="Blues", interpolation="nearest")
        ax.set_yticks(range(len(table)), [str(p) for p in table["parcel"]], fontsize=5)
        step = max(1, len(edges) // 10)
        ax.set_xticks(range(0, len(edges), step), edges[::step], fontsize=6)
        ax.set_xlabel("time to peak (s, bin start)")
        fig.colorbar(im, ax=ax, label="fraction of the parcel's voxels")
    return embed(fig, fmt="png")
