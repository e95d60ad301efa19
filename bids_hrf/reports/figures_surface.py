"""Report figures of surface samples (issue 12): maps on the cortical mesh, or flat.

A map of surface samples (:mod:`bids_hrf.surface.samples`) whose layout is a full fsaverage
GIFTI pair with an offline mesh (fsaverage5, shipped by nilearn) is drawn on the inflated
mesh, lateral and medial views of both hemispheres, over the sulcal depth. Other layouts
(fsLR grayordinates: no fsLR mesh offline) get a flat figure of the values of every sample,
grouped by hemisphere and structure, with a note: never a crash, never a volume view of
surface data.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from bids_hrf.reports._common import EmbeddedFigure, embed, load_img, pyplot_figure, report_style
from bids_hrf.surface.meshes import surface_mesh
from bids_hrf.surface.samples import (
    FSAVERAGE_VERTICES,
    SampleGeometry,
    is_sample_image,
    sample_values,
)

_VIEWS = (("L", "lateral"), ("L", "medial"), ("R", "lateral"), ("R", "medial"))


def is_surface_map(img: Any) -> bool:
    """Whether ``img`` (path or image) holds surface samples."""
    try:
        return is_sample_image(load_img(img))
    except Exception:
        return False


#: Geometry of the surface samples drawn by this process's report (set by the report of a
#: surface run; maps hold no geometry themselves).
_GEOMETRY: list = [None]


def set_surface_geometry(geometry: SampleGeometry | None) -> None:
    """Tell the figures where the samples of the maps they draw lie (None: infer)."""
    _GEOMETRY[0] = geometry


def above(stat: str, threshold: float) -> str:
    """A threshold in a title: ``|z| > 3.10`` for signed statistics, ``-log10 p > 1.30``
    for the non-negative -log10 p maps."""
    if stat.startswith("-log10"):
        return f"{stat} > {threshold:.2f}"
    return f"|{stat}| > {threshold:.2f}"


def sample_noun(singular: bool = False) -> str:
    """What the samples of the maps drawn now are called: voxels, vertices or grayordinates."""
    geometry = _GEOMETRY[0]
    if geometry is None:
        return "voxel" if singular else "voxels"
    if geometry.kind == "cifti":
        return "grayordinate" if singular else "grayordinates"
    return "vertex" if singular else "vertices"


def _display_mesh(space: str, hemi: str):
    return surface_mesh(space, hemi, "inflated") or surface_mesh(space, hemi)


def _hemispheres(values: np.ndarray) -> tuple[str, dict[str, np.ndarray]] | None:
    """The values on each hemisphere's full mesh, or None without a mesh.

    With a registered geometry (:func:`set_surface_geometry`) of as many samples, samples
    go to their vertices (CIFTI: subcortical voxels are not drawn); otherwise a full
    fsaverage GIFTI pair is recognised by its length."""
    geometry = _GEOMETRY[0]
    if geometry is not None and geometry.n_samples == values.size:
        meshes = {h: _display_mesh(geometry.space, h) for h in "LR"}
        if any(m is None for m in meshes.values()):
            return None
        parts = {}
        for hemi in "LR":
            idx = geometry.hemisphere(hemi)
            full = np.zeros(meshes[hemi][0].shape[0])
            keep = geometry.vertex[idx] < full.size
            full[geometry.vertex[idx][keep]] = values[idx][keep]
            parts[hemi] = full
        return geometry.space, parts
    for space, n in FSAVERAGE_VERTICES.items():
        if values.size == 2 * n and _display_mesh(space, "L") is not None:
            return space, {"L": values[:n], "R": values[n:]}
    return None


def _sulcal(space: str, hemi: str) -> np.ndarray | None:
    try:
        from nilearn.datasets import load_fsaverage_data

        data = load_fsaverage_data(mesh=space, mesh_type="inflated", data_type="sulcal")
        return np.asarray(data.data.parts["left" if hemi == "L" else "right"])
    except Exception:  # a background is a nicety
        return None


def plot_surface_map(img: Any, threshold: float | None = None, title: str = "",
                     stat: str = "z", cmap: str = "RdBu_r", vmin: float | None = None,
                     vmax: float | None = None, labels: bool = False,
                     dpi: int = 100) -> EmbeddedFigure:
    """A map of surface samples: four views on the inflated mesh, or a flat figure.

    Parameters
    ----------
    img : path or image
        Surface NIfTI (n_samples, 1, 1).
    threshold : float, optional
        Absolute value below which samples are not coloured (and counted above).
    title : str
    stat : str
        Name of the statistic in the title.
    cmap : str
    vmin, vmax : float, optional
        Colour range (default symmetric around 0 up to the peak).
    labels : bool
        The map is a parcellation (integer labels, 0 = none).
    dpi : int

    Returns
    -------
    EmbeddedFigure
    """
    values = np.nan_to_num(sample_values(load_img(img)).astype(float))
    if values.ndim != 1:
        values = values[:, 0]
    layout = _hemispheres(values)
    if labels:
        n = int((np.unique(values) != 0).sum())
        head = f"{title}  {n} parcels" if title else f"{n} parcels"
    else:
        peak = float(np.max(np.abs(values))) if values.size else 0.0
        n_supra = int((np.abs(values) > (threshold or 0.0)).sum())
        head = f"{title}  " if title else ""
        head += (f"{above(stat, threshold)} in {n_supra} {sample_noun()}, peak {peak:.2f}"
                 if threshold is not None else f"peak |{stat}| {peak:.2f}")
        if vmax is None:
            vmax = max(peak, (threshold or 0.0) * 1.5, 1e-6)
    if layout is None:
        return _flat_figure(values, head, threshold, labels, dpi)
    return _mesh_figure(layout, head, threshold, cmap, vmin, vmax, labels, dpi)


def _mesh_figure(layout, head, threshold, cmap, vmin, vmax, labels, dpi):
    with report_style():
        fig = pyplot_figure(10, 2.9)
        _mesh_row(fig, layout, [0.0, 0.0, 0.95, 0.86], threshold, cmap, vmin, vmax, labels)
        fig.suptitle(head, x=0.01, ha="left", fontsize=9)
        if not labels:
            from matplotlib import cm, colors

            low = vmin if vmin is not None else -vmax
            bar = cm.ScalarMappable(norm=colors.Normalize(low, vmax), cmap=cmap)
            fig.colorbar(bar, cax=fig.add_axes([0.955, 0.2, 0.01, 0.55]))
    return embed(fig, fmt="png", dpi=dpi)


def _mesh_row(fig, layout, rect, threshold, cmap, vmin, vmax, labels) -> None:
    """Four views (left/right, lateral/medial) of ``layout`` (:func:`_hemispheres`) in
    ``rect`` of ``fig``."""
    from nilearn import plotting

    space, parts = layout
    x0, y0, width, height = rect
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, (hemi, view) in enumerate(_VIEWS):
            ax = fig.add_axes([x0 + width * (0.01 + 0.245 * k), y0 + 0.02 * height,
                               width * 0.24, height * 0.9], projection="3d")
            part = parts[hemi]
            side = "left" if hemi == "L" else "right"
            common = {"surf_mesh": _display_mesh(space, hemi), "hemi": side,
                      "view": view, "axes": ax, "figure": fig,
                      "bg_map": _sulcal(space, hemi), "colorbar": False}
            if labels:
                plotting.plot_surf_roi(roi_map=part.astype(int), cmap="tab20", **common)
            else:
                kwargs = {"vmin": vmin} if vmin is not None else {}
                plotting.plot_surf_stat_map(stat_map=part, threshold=threshold or None,
                                            cmap=cmap, vmax=vmax, **common, **kwargs)
            ax.set_title(f"{side} {view}", fontsize=7)


def draw_surface_row(fig, img: Any, rect: list[float], title: str, cmap: str,
                     vmin: float | None, vmax: float | None,
                     threshold: float | None) -> None:
    """Draw a surface map in ``rect`` of ``fig`` (the surface counterpart of a row of
    axial slices): mesh views when offline, else the flat view."""
    values = np.nan_to_num(sample_values(load_img(img)).astype(float))
    values = values if values.ndim == 1 else values[:, 0]
    layout = _hemispheres(values)
    x0, y0, width, height = rect
    fig.text(x0 + 0.01 * width, y0 + 0.94 * height, title, fontsize=8)
    if vmin is None or vmax is None:
        finite = values[np.isfinite(values)]
        vmin = float(finite.min()) if vmin is None and finite.size else vmin
        vmax = float(finite.max()) if vmax is None and finite.size else vmax
    if layout is not None:
        _mesh_row(fig, layout, [x0, y0, 0.94 * width, 0.9 * height], threshold, cmap, vmin,
                  vmax, False)
    else:
        ax = fig.add_axes([x0 + 0.07 * width, y0 + 0.15 * height, 0.85 * width,
                           0.7 * height])
        ax.scatter(np.arange(values.size), values, s=1, c=values, cmap=cmap, vmin=vmin,
                   vmax=vmax, rasterized=True)
        ax.set_xlabel("sample (file order)", fontsize=7)
    if vmin is not None and vmax is not None and vmax > vmin:
        # Each row its own colour bar: the rows (time to peak, FWHM, height...) have their
        # own units and ranges, as the volume rows do.
        from matplotlib import cm, colors

        bar = cm.ScalarMappable(norm=colors.Normalize(vmin, vmax), cmap=cmap)
        cax = fig.add_axes([x0 + 0.95 * width, y0 + 0.2 * height, 0.01 * width,
                            0.6 * height])
        fig.colorbar(bar, cax=cax).ax.tick_params(labelsize=6)


def _flat_figure(values, head, threshold, labels, dpi):
    with report_style():
        fig = pyplot_figure(9, 2.6)
        ax = fig.add_axes([0.07, 0.18, 0.9, 0.62])
        x = np.arange(values.size)
        if labels:
            ax.scatter(x, values, s=1, c=values % 20, cmap="tab20", rasterized=True)
            ax.set_ylabel("parcel")
        else:
            ax.scatter(x, values, s=1, color="#555555", rasterized=True)
            if threshold:
                for sign in (-1, 1) if values.min() < 0 else (1,):
                    ax.axhline(sign * threshold, color="#D55E00", lw=0.8)
                strong = np.abs(values) > threshold
                ax.scatter(x[strong], values[strong], s=2, color="#D55E00", rasterized=True)
        ax.set_xlabel("sample (grayordinates in file order: left cortex, right cortex, "
                      "subcortical voxels)")
        ax.set_xlim(0, max(1, values.size - 1))
        fig.text(0.01, 0.93, head, fontsize=9)
        fig.text(0.01, 0.85, "No cortical mesh of this space is available offline: values "
                 "per sample; open the CIFTI/GIFTI output in Connectome Workbench or "
                 "nilearn to see them on the surface.", fontsize=7, color="#555555")
    return embed(fig, fmt="png", dpi=dpi)
