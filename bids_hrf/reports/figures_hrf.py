"""Report figures for HRF estimation: HRF panels, PPMs, convergence, parameter maps, SPFM fits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bids_hrf.reports._common import (
    PALETTE,
    EmbeddedFigure,
    as_hrf_matrix,
    check_1d,
    display_background,
    display_image,
    embed,
    grid_shape,
    load_img,
    memoize_figure,
    new_figure,
    pyplot_figure,
    report_style,
    short_names,
    time_to_peak,
)
from bids_hrf.reports.figures_surface import draw_surface_row, is_surface_map, sample_noun


def _reference(reference: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if reference is None:
        return None
    if len(reference) != 2:
        raise ValueError("reference must be a (time, values) pair")
    ref_t = check_1d("reference time", reference[0])
    ref_v = check_1d("reference values", reference[1], ref_t.size)
    return ref_t, ref_v


def reference_scale(hrf: np.ndarray, reference: np.ndarray) -> float:
    """Positive factor bringing the reference's peak magnitude to the HRF's.

    The reference keeps its own sign: a parcel whose HRF is negative (or noise) is compared
    with the upright canonical shape, never with a flipped one.
    """
    hrf = np.asarray(hrf, dtype=float)
    reference = np.asarray(reference, dtype=float)
    peak = float(np.nanmax(np.abs(hrf))) if np.isfinite(hrf).any() else 0.0
    ref_peak = float(np.max(np.abs(reference))) if reference.size else 0.0
    if not (np.isfinite(peak) and peak > 0 and ref_peak > 0):
        return 1.0
    return peak / ref_peak


@memoize_figure
def plot_hrf_panel(
    time: Any,
    hrfs: Any,
    names: Sequence[str] | None = None,
    variance: Any = None,
    reference: tuple[Any, Any] | None = None,
    max_parcels: int = 48,
) -> EmbeddedFigure:
    """Small multiples of the HRF of each parcel.

    Parameters
    ----------
    time : array-like, shape (n_samples,)
        Seconds after stimulus onset.
    hrfs : array-like, shape (n_samples, n_parcels)
    names : sequence of str, optional
        Parcel names (panel titles).
    variance : array-like, shape (n_samples, n_parcels), optional
        Posterior variance; a band of +/- 2 standard deviations is drawn.
    reference : (time, values), optional
        Reference HRF (e.g. canonical), drawn dashed with its own sign, scaled to the
        magnitude of each parcel's peak so that shapes can be compared.
    max_parcels : int
        Largest number of panels; the first ``max_parcels`` parcels are drawn.

    Returns
    -------
    EmbeddedFigure
        An SVG figure; a dot marks the time to peak of each HRF.
    """
    time, hrfs, names = as_hrf_matrix(time, hrfs, names)
    if variance is not None:
        variance = np.asarray(variance, dtype=float)
        if variance.shape != hrfs.shape:
            raise ValueError(f"variance has shape {variance.shape}, hrfs have {hrfs.shape}")
        sd = np.sqrt(np.clip(variance, 0, None))
    else:
        sd = None
    ref = _reference(reference)
    if max_parcels < 1:
        raise ValueError("max_parcels must be at least 1")
    n_total = hrfs.shape[1]
    n = min(n_total, int(max_parcels))
    ttp = time_to_peak(time, hrfs[:, :n])
    titles, prefix = short_names(names[:n])
    nrows, ncols = grid_shape(n)
    with report_style():
        height = 1.05 * nrows + 0.5
        # A fixed grid without layout engine, and few ticks: with dozens of panels the
        # constrained layout and the tick updates took most of the drawing time.
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        fig = Figure(figsize=(min(9.5, 1.25 * ncols + 0.6), height))
        fig.subplots_adjust(left=0.5 / fig.get_figwidth(), right=0.99,
                            bottom=0.4 / height, top=1 - 0.45 / height,
                            wspace=0.12, hspace=0.5)
        axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
        axes[0, 0].xaxis.set_major_locator(MaxNLocator(3, integer=True))
        axes[0, 0].yaxis.set_major_locator(MaxNLocator(3))
        for k, ax in enumerate(axes.flat):
            if k >= n:
                ax.set_visible(False)
                continue
            h = hrfs[:, k]
            ax.axhline(0, color="#bbbbbb", lw=0.5)
            if sd is not None:
                ax.fill_between(
                    time, h - 2 * sd[:, k], h + 2 * sd[:, k], color=PALETTE[0], alpha=0.22, lw=0
                )
            if ref is not None:
                ax.plot(ref[0], ref[1] * reference_scale(h, ref[1]), color="#777777",
                        lw=0.8, ls="--")
            ax.plot(time, h, color=PALETTE[0], lw=1.1)
            if np.isfinite(ttp[k]):
                ax.plot([ttp[k]], [np.interp(ttp[k], time, h)], "o", ms=2.5, color=PALETTE[1])
                ax.text(
                    0.97,
                    0.93,
                    f"{ttp[k]:.1f} s",
                    transform=ax.transAxes,
                    ha="right",
                    va="top",
                    fontsize=6.5,
                    color=PALETTE[1],
                )
            ax.set_title(titles[k], fontsize=7, pad=2)
            ax.tick_params(labelsize=6)
        for ax in axes[-1, :]:
            ax.set_xlabel("s", fontsize=7)
        parts = ["HRF per parcel (dot: time to peak"]
        if sd is not None:
            parts.append("; band: \u00b12 sd")
        if ref is not None:
            parts.append("; dashed: reference")
        parts.append(")")
        if n < n_total:
            parts.append(f" \u2014 first {n} of {n_total} parcels")
        if prefix:
            parts.append(f" \u2014 names without the prefix {prefix!r}")
        fig.suptitle("".join(parts), x=0.01, ha="left", fontsize=8.5)
    return embed(fig, fmt="svg")


@memoize_figure
def plot_hrf_overlay(
    time: Any, hrfs: Any, names: Sequence[str] | None = None, title: str = ""
) -> EmbeddedFigure:
    """All parcel HRFs on one axis, coloured by their time to peak.

    Parameters
    ----------
    time : array-like, shape (n_samples,)
    hrfs : array-like, shape (n_samples, n_parcels)
    names : sequence of str, optional
        Parcel names; a legend is drawn when there are at most 10 parcels.
    title : str
        Figure title.

    Returns
    -------
    EmbeddedFigure
        An SVG figure with a time-to-peak colour bar.
    """
    import matplotlib as mpl

    time, hrfs, names = as_hrf_matrix(time, hrfs, names)
    ttp = time_to_peak(time, hrfs)
    finite = ttp[np.isfinite(ttp)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    norm = mpl.colors.Normalize(lo, hi)
    cmap = mpl.colormaps["viridis"]
    with report_style():
        fig = new_figure(6.0, 3.2)
        ax = fig.add_subplot(1, 1, 1)
        ax.axhline(0, color="#bbbbbb", lw=0.6)
        order = np.argsort(np.nan_to_num(ttp, nan=hi))
        for k in order:
            colour = cmap(norm(ttp[k])) if np.isfinite(ttp[k]) else "#999999"
            ax.plot(
                time,
                hrfs[:, k],
                color=colour,
                lw=1.0,
                alpha=0.85,
                label=names[k] if hrfs.shape[1] <= 10 else None,
            )
        ax.set_xlabel("time after onset (s)")
        ax.set_ylabel("HRF (a.u.)")
        ax.set_xlim(time[0], time[-1])
        fig.colorbar(
            mpl.cm.ScalarMappable(norm=norm, cmap=cmap),
            ax=ax,
            label="time to peak (s)",
            shrink=0.85,
        )
        if hrfs.shape[1] <= 10:
            ax.legend(loc="upper right")
        ax.set_title(
            title
            or f"{hrfs.shape[1]} parcel HRFs, median time to peak "
            f"{np.nanmedian(ttp) if finite.size else float('nan'):.1f} s",
            loc="left",
        )
    return embed(fig, fmt="svg")


def _slices_map(fig, img, rect, title, cmap, vmin, vmax, bg_img, threshold, kind="nearest"):
    from nilearn import plotting

    if is_surface_map(img):
        draw_surface_row(fig, img, rect, title, cmap, vmin, vmax, threshold)
        return

    # Large maps are drawn from a reduced copy (see display_image): voxel values are kept
    # (``nearest``) for parameter maps, block maxima (``stat``) for probability maps.
    img, bg_img = display_image(img, kind), display_background(bg_img)
    kwargs = {} if bg_img is None else {"bg_img": bg_img}
    plotting.plot_stat_map(
        img,
        display_mode="z",
        cut_coords=min(6, img.shape[2]),
        figure=fig,
        axes=rect,
        title=title,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        symmetric_cbar=False,
        threshold=threshold,
        draw_cross=False,
        colorbar=True,
        **kwargs,
    )


def plot_ppm(
    ppm_img: Any, bg_img: Any = None, threshold: float | None = 0.5, title: str = ""
) -> EmbeddedFigure:
    """A posterior probability map (values in [0, 1]) on axial slices, as a PNG.

    Parameters
    ----------
    ppm_img : Niimg-like
        3D map of P(effect > delta | data).
    bg_img : Niimg-like, optional
        Background image; nilearn's MNI template when not given.
    threshold : float or None
        Probabilities below this are transparent.
    title : str
        Figure title (e.g. the contrast name).

    Returns
    -------
    EmbeddedFigure
    """
    img = load_img(ppm_img)
    data = np.asarray(img.dataobj, dtype=float)
    if np.nanmin(data) < -1e-6 or np.nanmax(data) > 1 + 1e-6:
        raise ValueError("a PPM holds probabilities: values must lie in [0, 1]")
    n_above = int((np.nan_to_num(data) > 0.95).sum())
    with report_style():
        fig = pyplot_figure(9, 2.4)
        label = f"{title}: " if "PPM" in title else f"{title}  PPM: " if title else "PPM: "
        _slices_map(
            fig,
            img,
            [0, 0, 1, 1],
            f"{label}{n_above} {sample_noun()} with P > 0.95",
            "inferno",
            0.0,
            1.0,
            bg_img,
            threshold,
            kind="stat",
        )
    return embed(fig, fmt="png")


def plot_hrf_parameter_maps(
    ttp_img: Any = None, fwhm_img: Any = None, height_img: Any = None, bg_img: Any = None
) -> EmbeddedFigure:
    """Maps of HRF time to peak, full width at half maximum and height, one row each.

    Parameters
    ----------
    ttp_img, fwhm_img, height_img : Niimg-like, optional
        3D parameter maps (seconds, seconds, arbitrary units); missing ones are skipped.
    bg_img : Niimg-like, optional
        Background image; nilearn's MNI template when not given.

    Returns
    -------
    EmbeddedFigure
        A PNG with one row of axial slices per map; colour limits are the 2nd and 98th
        percentiles of the non-zero values.
    """
    maps = [
        (name, img, cmap)
        for name, img, cmap in (
            ("time to peak (s)", ttp_img, "viridis"),
            ("FWHM (s)", fwhm_img, "cividis"),
            ("height (a.u.)", height_img, "magma"),
        )
        if img is not None
    ]
    if not maps:
        raise ValueError("give at least one of ttp_img, fwhm_img or height_img")
    loaded = [(name, load_img(img), cmap) for name, img, cmap in maps]
    n = len(loaded)
    with report_style():
        fig = pyplot_figure(9, 2.3 * n)
        for row, (name, img, cmap) in enumerate(loaded):
            values = np.asarray(img.dataobj, dtype=float)
            values = values[np.isfinite(values) & (values != 0)]
            if values.size:
                vmin, vmax = np.percentile(values, [2, 98])
            else:
                vmin, vmax = 0.0, 1.0
            # nilearn's colour bar fails on ranges narrow next to their values (e.g. unit-peak
            # heights 1.00-1.04) and on constant maps: widen to >= 20 % of the magnitude
            scale = max(abs(vmin), abs(vmax), 1e-3)
            if vmax - vmin < 0.2 * scale:
                centre, half = (vmin + vmax) / 2, 0.1 * scale
                vmin, vmax = centre - half, centre + half
            rect = [0.0, 1 - (row + 1) / n, 1.0, 1 / n]
            _slices_map(fig, img, rect, name, cmap, float(vmin), float(vmax), bg_img, 1e-12)
    return embed(fig, fmt="png")


def plot_free_energy(convergence: pd.DataFrame, tolerance: float = 1e-6) -> EmbeddedFigure:
    """Free-energy traces of the VEM iterations, normalised per parcel to [0, 1].

    Parameters
    ----------
    convergence : DataFrame
        Long table with columns ``parcel``, ``iteration`` and ``free_energy``.
    tolerance : float
        Relative decrease above which a parcel is flagged as non-monotone (red): the free
        energy must not decrease between VEM iterations.

    Returns
    -------
    EmbeddedFigure
        An SVG figure.
    """
    required = {"parcel", "iteration", "free_energy"}
    if not isinstance(convergence, pd.DataFrame) or not required <= set(convergence.columns):
        raise ValueError(f"convergence must be a DataFrame with columns {sorted(required)}")
    if convergence.empty:
        raise ValueError("convergence table is empty")
    n_flagged = 0
    iterations = []
    with report_style():
        fig = new_figure(6.0, 3.0)
        ax = fig.add_subplot(1, 1, 1)
        for parcel, group in convergence.groupby("parcel", sort=False):
            group = group.sort_values("iteration")
            f = group["free_energy"].to_numpy(dtype=float)
            it = group["iteration"].to_numpy(dtype=float)
            iterations.append(it.size)
            span = np.nanmax(f) - np.nanmin(f)
            norm = (f - np.nanmin(f)) / span if span > 0 else np.ones_like(f)
            decrease = -np.diff(f) / (np.abs(f[:-1]) + 1e-300)
            bad = bool(decrease.size and np.nanmax(decrease) > tolerance)
            n_flagged += bad
            label = str(parcel) if bad and n_flagged <= 5 else None
            ax.plot(
                it,
                norm,
                lw=1.4 if bad else 0.8,
                color=PALETTE[1] if bad else PALETTE[0],
                alpha=1.0 if bad else 0.5,
                label=label,
                zorder=3 if bad else 2,
            )
        ax.set_xlabel("iteration")
        ax.set_ylabel("free energy (normalised)")
        ax.set_ylim(-0.05, 1.08)
        n_parcels = len(iterations)
        ax.set_title(
            f"VEM convergence: {n_parcels} parcels, median {int(np.median(iterations))} "
            f"iterations, {n_flagged} with a decreasing free energy",
            loc="left",
        )
        if n_flagged:
            ax.legend(title="non-monotone", loc="lower right")
    return embed(fig, fmt="svg")


def plot_sparse_fit(
    time: Any,
    y: Any,
    fitted: Any,
    activity: Any,
    events: pd.DataFrame | None = None,
    title: str = "",
) -> EmbeddedFigure:
    """A voxel's BOLD signal with its sparse-deconvolution fit and activity-inducing signal.

    Parameters
    ----------
    time : array-like, shape (n_volumes,)
        Acquisition times in seconds.
    y : array-like, shape (n_volumes,)
        Observed (cleaned) BOLD signal.
    fitted : array-like, shape (n_volumes,)
        Denoised signal (activity convolved with the HRF).
    activity : array-like, shape (n_volumes,)
        Activity-inducing signal; non-zero entries are drawn as stems.
    events : DataFrame, optional
        Paradigm with ``onset`` (and ``trial_type``); onsets are drawn as ticks.
    title : str
        Figure title (e.g. the voxel or parcel).

    Returns
    -------
    EmbeddedFigure
        An SVG figure.
    """
    time = check_1d("time", time)
    n = time.size
    y = check_1d("y", y, n)
    fitted = check_1d("fitted", fitted, n)
    activity = check_1d("activity", activity, n)
    if events is not None and "onset" not in events.columns:
        raise ValueError("events must have an 'onset' column")
    with report_style():
        fig = new_figure(7.5, 3.6)
        ax, bx = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
        ax.plot(time, y, color="#999999", lw=0.9, label="BOLD")
        ax.plot(time, fitted, color=PALETTE[0], lw=1.3, label="denoised")
        residual = y - fitted
        r2 = 1 - np.nanvar(residual) / np.nanvar(y) if np.nanvar(y) > 0 else float("nan")
        ax.set_ylabel("signal")
        ax.legend(loc="upper right", ncols=2)
        ax.set_title(
            f"{title + ': ' if title else ''}R\u00b2 = {r2:.2f}, "
            f"{int((activity != 0).sum())} non-zero activity samples",
            loc="left",
        )
        nz = np.flatnonzero(activity != 0)
        bx.axhline(0, color="#bbbbbb", lw=0.6)
        bx.vlines(time[nz], 0, activity[nz], color=PALETTE[2], lw=1.0)
        bx.plot(time[nz], activity[nz], "o", ms=2.2, color=PALETTE[2])
        bx.set_ylabel("activity")
        bx.set_xlabel("time (s)")
        if events is not None and len(events):
            types = (
                events["trial_type"].astype(str)
                if "trial_type" in events.columns
                else pd.Series(["event"] * len(events), index=events.index)
            )
            for i, kind in enumerate(pd.unique(types)):
                onsets = events.loc[types == kind, "onset"].to_numpy(dtype=float)
                colour = PALETTE[(i + 3) % len(PALETTE)]
                for a in (ax, bx):
                    a.vlines(
                        onsets,
                        0,
                        0.07,
                        transform=a.get_xaxis_transform(),
                        color=colour,
                        lw=1.2,
                        label=kind if a is bx else None,
                    )
            bx.legend(
                loc="upper right",
                ncols=min(4, len(pd.unique(types))),
                title="onsets",
                frameon=True,
                framealpha=0.85,
                edgecolor="none",
            )
        bx.set_xlim(time[0], time[-1])
    return embed(fig, fmt="svg")


__all__ = [
    "plot_free_energy",
    "plot_hrf_overlay",
    "plot_hrf_panel",
    "plot_hrf_parameter_maps",
    "plot_ppm",
    "plot_sparse_fit",
]
