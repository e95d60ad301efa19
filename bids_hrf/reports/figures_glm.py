"""Report figures for the data-quality and GLM parts: confounds, atlas, coverage, maps."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bids_hrf.reports._common import (
    PALETTE,
    EmbeddedFigure,
    check_1d,
    display_background,
    display_image,
    embed,
    load_img,
    new_figure,
    pyplot_figure,
    report_style,
)
from bids_hrf.reports.figures_surface import above, is_surface_map, plot_surface_map

#: Confound columns preferred for the trace panel, in order.
_PREFERRED_CONFOUNDS = (
    "trans_x",
    "trans_y",
    "trans_z",
    "rot_x",
    "rot_y",
    "rot_z",
    "global_signal",
    "csf",
    "white_matter",
)


def _kept_volumes(sample_mask: Any, n: int) -> np.ndarray:
    """Boolean vector of kept volumes from a nilearn sample mask (indices or booleans)."""
    if sample_mask is None:
        return np.ones(n, dtype=bool)
    mask = np.asarray(sample_mask).ravel()
    if mask.dtype == bool:
        if mask.size != n:
            raise ValueError(f"boolean sample_mask has {mask.size} entries for {n} volumes")
        return mask.copy()
    idx = mask.astype(int)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"sample_mask indices must lie in [0, {n - 1}]")
    kept = np.zeros(n, dtype=bool)
    kept[idx] = True
    return kept


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Start and stop (exclusive) of each run of True values."""
    padded = np.concatenate([[False], flags, [False]]).astype(int)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2], strict=True))


def plot_confounds(
    fd: Any,
    confounds: pd.DataFrame | None = None,
    sample_mask: Any = None,
    tr: float | None = None,
    fd_threshold: float | None = None,
    max_confounds: int = 6,
) -> EmbeddedFigure:
    """Framewise displacement with censored volumes shaded, and a few confound traces.

    Parameters
    ----------
    fd : array-like, shape (n_volumes,)
        Framewise displacement in mm (NaN allowed, e.g. for the first volume).
    confounds : DataFrame, optional
        Confound table of the run; up to ``max_confounds`` columns are drawn z-scored
        (motion parameters first, then global/CSF/white-matter signals).
    sample_mask : array-like, optional
        Kept volumes, as nilearn indices or a boolean vector. Excluded volumes at the start
        are shaded as dummy (non-steady-state) volumes, the others as scrubbed.
    tr : float, optional
        Repetition time in seconds; the x axis is in volumes when not given.
    fd_threshold : float, optional
        Scrubbing threshold drawn as a horizontal line.
    max_confounds : int
        Largest number of confound traces drawn.

    Returns
    -------
    EmbeddedFigure
        An SVG figure.
    """
    fd = check_1d("fd", fd)
    n = fd.size
    if n == 0:
        raise ValueError("fd is empty: give one framewise displacement per volume")
    if confounds is not None and len(confounds) != n:
        raise ValueError(f"confounds have {len(confounds)} rows but fd has {n} volumes")
    if tr is not None and not tr > 0:
        raise ValueError(f"tr must be positive, got {tr}")
    kept = _kept_volumes(sample_mask, n)
    excluded = ~kept
    n_dummy = int(np.argmax(kept)) if kept.any() else n
    dummy = np.zeros(n, dtype=bool)
    dummy[:n_dummy] = True
    scrubbed = excluded & ~dummy
    scale = float(tr) if tr else 1.0
    x = np.arange(n) * scale
    columns: list[str] = []
    if confounds is not None:
        numeric = confounds.select_dtypes(include="number")
        preferred = [c for c in _PREFERRED_CONFOUNDS if c in numeric.columns]
        rest = [c for c in numeric.columns if c not in preferred and c != "framewise_displacement"]
        rest = [c for c in rest if numeric[c].nunique(dropna=True) > 2]  # skip spike regressors
        columns = (preferred + rest)[: max(0, int(max_confounds))]

    with report_style():
        nrows = 2 if columns else 1
        fig = new_figure(7.5, 2.2 * nrows + 0.3)
        axes = fig.subplots(nrows, 1, sharex=True, squeeze=False)[:, 0]
        ax = axes[0]
        for label, flags, colour in (
            ("dummy", dummy, "#999999"),
            ("scrubbed", scrubbed, PALETTE[1]),
        ):
            for k, (start, stop) in enumerate(_runs(flags)):
                for a in axes:
                    a.axvspan(
                        (start - 0.5) * scale,
                        (stop - 0.5) * scale,
                        color=colour,
                        alpha=0.18,
                        lw=0,
                        label=f"{label} ({int(flags.sum())})" if (k == 0 and a is ax) else None,
                    )
        ax.plot(x, fd, color=PALETTE[0], lw=1, label="FD")
        if fd_threshold is not None:
            ax.axhline(fd_threshold, color=PALETTE[1], ls="--", lw=0.9, label=f"{fd_threshold} mm")
        ax.set_ylabel("FD (mm)")
        mean_fd = np.nanmean(fd) if np.isfinite(fd).any() else np.nan
        ax.set_title(
            f"FD: mean {mean_fd:.3f} mm, {int(kept.sum())}/{n} volumes kept",
            loc="left",
        )
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=4, borderaxespad=0.1)
        if columns:
            cax = axes[1]
            offset = 0.0
            for i, name in enumerate(columns):
                values = confounds[name].to_numpy(dtype=float)
                sd = np.nanstd(values)
                z = (values - np.nanmean(values)) / (sd if sd > 0 else 1.0)
                cax.plot(x, z - offset, lw=0.8, color=PALETTE[i % len(PALETTE)])
                cax.text(
                    x[-1] + 0.01 * (x[-1] - x[0] + 1),
                    -offset,
                    name,
                    fontsize=7,
                    va="center",
                    color=PALETTE[i % len(PALETTE)],
                )
                offset += 4.0
            cax.set_yticks([])
            cax.set_ylabel("confounds (z)")
            cax.spines["left"].set_visible(False)
        axes[-1].set_xlabel("time (s)" if tr else "volume")
        axes[-1].set_xlim(x[0] - 0.5 * scale, x[-1] + 0.5 * scale)
    return embed(fig, fmt="svg")


def plot_atlas(atlas_img: Any, bg_img: Any = None, title: str = "") -> EmbeddedFigure:
    """Parcellation drawn on axial slices, as a PNG.

    Parameters
    ----------
    atlas_img : Niimg-like
        3D integer label image (0 = background).
    bg_img : Niimg-like, optional
        Background (e.g. the BOLD reference or template); none when not given.
    title : str
        Title drawn on the figure.

    Returns
    -------
    EmbeddedFigure
    """
    from nilearn import plotting

    if is_surface_map(atlas_img):
        return plot_surface_map(atlas_img, title=title, labels=True)
    img = load_img(atlas_img)
    labels = np.unique(np.asarray(img.dataobj))
    n_parcels = int((labels != 0).sum())
    if n_parcels == 0:
        raise ValueError("the atlas image holds no parcel (all voxels are 0)")
    img, bg_img = display_image(img, "nearest"), display_background(bg_img)
    with report_style(), warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*converting a masked element", category=UserWarning
        )
        fig = pyplot_figure(9, 2.4)
        plotting.plot_roi(
            img,
            bg_img=bg_img,
            display_mode="z",
            cut_coords=min(7, img.shape[2]),
            figure=fig,
            title=title or f"{n_parcels} parcels",
            colorbar=False,
            draw_cross=False,
            black_bg=True,
            alpha=0.8 if bg_img is not None else 1.0,
            cmap="tab20",
        )
    return embed(fig, fmt="png")


def _pick(df: pd.DataFrame, options: Sequence[str]) -> str | None:
    lower = {str(c).lower(): c for c in df.columns}
    for name in options:
        if name in lower:
            return lower[name]
    return None


def plot_coverage(coverage: pd.DataFrame, threshold: float | None = None) -> EmbeddedFigure:
    """Fraction of each parcel covered by the brain mask (or by usable voxels).

    Parameters
    ----------
    coverage : DataFrame
        One row per parcel: a name column (``name``, ``label``, ``parcel`` or ``region``,
        else the index) and a fraction in [0, 1] (``coverage``, ``fraction`` or
        ``proportion``, else the first numeric column).
    threshold : float, optional
        Minimum coverage below which parcels are dropped, drawn as a line.

    Returns
    -------
    EmbeddedFigure
        An SVG bar chart, parcels sorted by coverage.
    """
    if not isinstance(coverage, pd.DataFrame) or coverage.empty:
        raise ValueError("coverage must be a non-empty DataFrame with one row per parcel")
    name_col = _pick(coverage, ("name", "label", "parcel", "region"))
    value_col = _pick(coverage, ("coverage", "fraction", "proportion"))
    if value_col is None:
        numeric = [c for c in coverage.select_dtypes(include="number").columns if c != name_col]
        if not numeric:
            raise ValueError("coverage has no numeric column to plot")
        value_col = numeric[0]
    names = (coverage[name_col] if name_col is not None else coverage.index).astype(str)
    values = coverage[value_col].to_numpy(dtype=float)
    order = np.argsort(values, kind="stable")
    n = values.size
    colours = [
        PALETTE[1] if threshold is not None and v < threshold else PALETTE[0] for v in values[order]
    ]
    with report_style():
        if n <= 60:
            fig = new_figure(6.5, max(1.6, 0.16 * n + 0.8))
            ax = fig.add_subplot(1, 1, 1)
            ax.barh(np.arange(n), values[order], color=colours, height=0.75)
            ax.set_yticks(np.arange(n), names.to_numpy()[order], fontsize=6.5 if n > 30 else 7.5)
            ax.set_ylim(-0.6, n - 0.4)
            ax.set_xlabel(str(value_col))
            if threshold is not None:
                ax.axvline(threshold, color=PALETTE[1], ls="--", lw=0.9)
        else:  # too many parcels for labels: show the distribution
            fig = new_figure(6.5, 2.4)
            ax = fig.add_subplot(1, 1, 1)
            ax.plot(np.arange(n), values[order], color=PALETTE[0], lw=1.2)
            ax.set_xlabel("parcels, sorted")
            ax.set_ylabel(str(value_col))
            if threshold is not None:
                ax.axhline(threshold, color=PALETTE[1], ls="--", lw=0.9)
        low = int((values < threshold).sum()) if threshold is not None else 0
        extra = f", {low} below {threshold:g}" if threshold is not None else ""
        ax.set_title(f"Parcel coverage: median {np.nanmedian(values):.2f}{extra}", loc="left")
    return embed(fig, fmt="svg")


def plot_stat_map(
    stat_img: Any,
    bg_img: Any = None,
    threshold: float = 3.1,
    title: str = "",
    glass_brain: bool = True,
    dpi: int = 110,
    stat: str = "z",
) -> EmbeddedFigure:
    """A statistical map on axial slices and, optionally, as a glass brain, as a PNG.

    Parameters
    ----------
    stat_img : Niimg-like
        3D statistical map (z or t).
    bg_img : Niimg-like, optional
        Background for the slices. When not given, nilearn's MNI152 template resampled
        onto the map's grid, so that the background covers the data's field of view only.
    threshold : float
        Absolute value below which voxels are transparent.
    title : str
        Title of the figure (the threshold, the number of voxels above it and the peak
        follow it).
    stat : str
        Name of the statistic in the title (``|z| > 3.09``).
    glass_brain : bool
        Add the glass-brain projections (left, top, right) next to the slices. They cost
        about half of the drawing time, so reports draw them for summary maps only.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    EmbeddedFigure
    """
    from nilearn import plotting

    if is_surface_map(stat_img):
        return plot_surface_map(stat_img, threshold=threshold, title=title, stat=stat, dpi=dpi)
    img = load_img(stat_img)
    if img.ndim == 4 and img.shape[3] == 1:
        from nilearn.image import index_img

        img = index_img(img, 0)
    if img.ndim != 3:
        raise ValueError(f"stat_img must be 3D, got shape {img.shape}")
    data = np.asarray(img.dataobj, dtype=float)
    peak = float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 0.0
    n_supra = int((np.abs(np.nan_to_num(data)) > threshold).sum())
    vmax = max(peak, threshold * 1.5, 1e-6)
    # Counts and peak above come from the full map; the slices are drawn from a reduced
    # copy when the map is large (signed block maxima: supra-threshold voxels stay visible).
    img = display_image(img, "stat")
    bg_img = template_background(img) if bg_img is None else display_background(bg_img)
    kwargs = {} if bg_img is None else {"bg_img": bg_img}
    with report_style():
        fig = pyplot_figure(11, 2.6) if glass_brain else pyplot_figure(7.3, 2.6)
        label = f"{title}  " if title else ""
        plotting.plot_stat_map(
            img,
            threshold=threshold,
            display_mode="z",
            cut_coords=min(6, img.shape[2]),
            figure=fig,
            axes=[0.0, 0.0, 0.66, 1.0] if glass_brain else [0.0, 0.0, 1.0, 1.0],
            title=f"{label}{above(stat, threshold)} in {n_supra} voxels, peak {peak:.2f}",
            vmax=vmax,
            cmap="RdBu_r",
            draw_cross=False,
            colorbar=True,
            **kwargs,
        )
        if glass_brain:
            _glass_projections(fig, img, [0.67, 0.05, 0.33, 0.8], threshold, vmax)
    return embed(fig, fmt="png", dpi=dpi)


def template_background(img: Any) -> Any:
    """nilearn's MNI152 template (2 mm, shipped offline) cropped to ``img``'s field of view.

    Returns None when the template cannot be loaded or does not overlap the data (nilearn
    then draws no background).
    """
    from nilearn import datasets

    try:
        template = datasets.load_mni152_template(resolution=2)
        # The data's corners in template voxels: crop there, keeping the template's detail.
        shape = np.asarray(img.shape[:3]) - 1
        corners = np.array([[i, j, k, 1] for i in (0, shape[0]) for j in (0, shape[1])
                            for k in (0, shape[2])], dtype=float).T
        ijk = (np.linalg.inv(template.affine) @ img.affine @ corners)[:3]
        lo = np.clip(np.floor(ijk.min(axis=1)).astype(int), 0, None)
        hi = np.minimum(np.ceil(ijk.max(axis=1)).astype(int) + 1, template.shape[:3])
        if np.any(hi - lo < 2):
            return None
        return template.slicer[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    except Exception:  # a background is a nicety
        return None


def _signed_max_abs(data: np.ndarray, axis: int) -> np.ndarray:
    """Projection keeping, along ``axis``, the value of largest magnitude with its sign."""
    index = np.expand_dims(np.nanargmax(np.abs(data), axis=axis), axis)
    return np.take_along_axis(data, index, axis=axis).squeeze(axis)


def _glass_projections(fig, img, rect, threshold: float, vmax: float) -> None:
    """Glass-brain view: signed maximum-intensity projections on the three planes.

    Drawn with ``imshow`` on the image grid (reoriented to RAS), with the outline of the
    non-zero (in-mask) voxels; about 20 times cheaper than nilearn's glass brain, whose
    brain schematics alone cost ~0.6 s per map.
    """
    import nibabel as nib

    canonical = nib.as_closest_canonical(img)
    data = np.nan_to_num(np.asarray(canonical.dataobj, dtype=float))
    zooms = canonical.header.get_zooms()[:3]
    inside = data != 0
    views = (  # (projection axis, horizontal axis, vertical axis, label)
        (0, 1, 2, "sagittal"),
        (1, 0, 2, "coronal"),
        (2, 0, 1, "axial"),
    )
    extents = [data.shape[h] * zooms[h] for _, h, _, _ in views]
    left, bottom, width, height = rect
    x = left
    for (axis, h, v, label), extent in zip(views, extents, strict=True):
        w = width * extent / sum(extents)
        ax = fig.add_axes([x, bottom, w * 0.96, height])
        x += w
        proj = _signed_max_abs(data, axis)
        outline = inside.any(axis=axis).astype(float)
        if h > v:  # keep (horizontal, vertical) order for imshow's (column, row)
            proj, outline = proj.T, outline.T
        shown = np.ma.masked_where(np.abs(proj) <= threshold, proj)
        aspect = zooms[v] / zooms[h]
        ax.imshow(outline.T, origin="lower", cmap="Greys", vmin=0, vmax=4, aspect=aspect,
                  interpolation="nearest")
        if outline.any() and not outline.all():
            ax.contour(outline.T, levels=[0.5], colors="#777777", linewidths=0.6)
        ax.imshow(shown.T, origin="lower", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                  aspect=aspect, interpolation="nearest")
        ax.set_title(label, fontsize=7, pad=2)
        ax.set_axis_off()


__all__ = [
    "template_background",
    "plot_atlas",
    "plot_confounds",
    "plot_coverage",
    "plot_stat_map",
]
