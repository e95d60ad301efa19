"""Report figures for the group level: connectivity, edge tests, group HRFs, HRF parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bids_hrf.reports._common import (
    PALETTE,
    EmbeddedFigure,
    embed,
    grid_shape,
    new_figure,
    report_style,
)


def _square(matrix: Any, names: Sequence[str] | None, what: str) -> tuple[np.ndarray, list]:
    mat = np.asarray(matrix, dtype=float)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"{what} must be a square matrix, got shape {mat.shape}")
    if names is None:
        names = [str(i + 1) for i in range(mat.shape[0])]
    names = [str(n) for n in names]
    if len(names) != mat.shape[0]:
        raise ValueError(f"{len(names)} names given for a {mat.shape[0]}x{mat.shape[0]} {what}")
    return mat, names


def _matrix_axes(ax, mat, names, cmap, vmax, label, networks=None):
    """Draw ``mat`` with labels (when few) and network boundaries; return the image."""
    n = mat.shape[0]
    im = ax.imshow(mat, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
    if n <= 40:
        fs = 7 if n <= 20 else 5.5
        ax.set_xticks(np.arange(n), names, rotation=90, fontsize=fs)
        ax.set_yticks(np.arange(n), names, fontsize=fs)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if networks is not None:
        nets = list(networks)
        bounds = [i for i in range(1, n) if nets[i] != nets[i - 1]]
        for b in bounds:
            ax.axhline(b - 0.5, color="black", lw=0.8)
            ax.axvline(b - 0.5, color="black", lw=0.8)
        starts = [0, *bounds]
        stops = [*bounds, n]
        centres = [(a + b - 1) / 2 for a, b in zip(starts, stops, strict=True)]
        if n > 40:
            ax.set_yticks(centres, [str(nets[s]) for s in starts], fontsize=7)
        else:  # network names above the columns, tick labels keep the parcel names
            top = ax.secondary_xaxis("top")
            top.set_xticks(centres, [str(nets[s]) for s in starts], fontsize=7.5,
                           fontweight="bold", rotation=40, ha="left")
            top.tick_params(length=0)
            top.spines["top"].set_visible(False)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label=label)
    return im


def plot_connectivity_matrix(
    matrix: Any,
    names: Sequence[str] | None = None,
    networks: Sequence[str] | None = None,
    title: str = "",
    unit: str = "connectivity",
) -> EmbeddedFigure:
    """A parcel-by-parcel connectivity matrix, grouped by network when networks are given.

    Parameters
    ----------
    matrix : array-like, shape (n_parcels, n_parcels)
        Correlations (or any symmetric connectivity measure).
    names : sequence of str, optional
        Parcel names (tick labels when there are at most 40 parcels).
    networks : sequence of str, optional
        Network of each parcel; parcels are reordered by network (stable) and boundaries
        are drawn.
    title : str
        Figure title.
    unit : str
        Label of the colour bar: the unit of the values (e.g. ``"r"`` or ``"Fisher z"``).

    Returns
    -------
    EmbeddedFigure
        A PNG (the colour scale is symmetric around zero; the diagonal is blanked).
    """
    mat, names = _square(matrix, names, "connectivity matrix")
    n = mat.shape[0]
    if networks is not None:
        networks = [str(x) for x in networks]
        if len(networks) != n:
            raise ValueError(f"{len(networks)} networks given for {n} parcels")
        first_seen = {net: i for i, net in reversed(list(enumerate(networks)))}
        order = sorted(range(n), key=lambda i: (first_seen[networks[i]], i))
        mat = mat[np.ix_(order, order)]
        names = [names[i] for i in order]
        networks = [networks[i] for i in order]
    mat = mat.copy()
    np.fill_diagonal(mat, np.nan)
    off = mat[np.isfinite(mat)]
    vmax = float(np.max(np.abs(off))) if off.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    size = 4.2 if n <= 20 else 6.0
    with report_style():
        fig = new_figure(size + 1.0, size)
        ax = fig.add_subplot(1, 1, 1)
        _matrix_axes(ax, mat, names, "RdBu_r", vmax, unit, networks)
        ax.set_title(title or f"Connectivity ({n} parcels)", loc="left")
    return embed(fig, fmt="png", dpi=120)


def _pick(df: pd.DataFrame, options: Sequence[str]) -> str | None:
    lower = {str(c).lower(): c for c in df.columns}
    for name in options:
        if name in lower:
            return lower[name]
    return None


def edge_matrix(
    results: pd.DataFrame, names: Sequence[str], alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray, str, str]:
    """Lay out edge-wise results as a lower-triangular matrix.

    Parameters
    ----------
    results, names, alpha
        As in :func:`plot_edge_differences`.

    Returns
    -------
    matrix : ndarray, shape (n, n)
        The statistic at ``[max(i, j), min(i, j)]``; NaN elsewhere.
    significant : ndarray of bool, shape (n, n)
        Significant edges, same layout.
    statistic : str
        Name of the statistic column.
    criterion : str
        How significance was decided (e.g. ``"p_fdr < 0.05"``), empty when given directly.
    """
    if not isinstance(results, pd.DataFrame) or results.empty:
        raise ValueError("results must be a non-empty DataFrame with one row per edge")
    names = [str(n) for n in names]
    if not names:
        raise ValueError("names must list the parcels of the matrix")
    index = {name: i for i, name in enumerate(names)}
    src = _pick(results, ("source", "i", "node_i", "parcel_1", "region_1"))
    dst = _pick(results, ("target", "j", "node_j", "parcel_2", "region_2"))
    stat = _pick(results, ("t", "statistic", "stat", "z", "difference", "effect"))
    if src is None or dst is None or stat is None:
        raise ValueError(
            "results need edge endpoints ('source'/'target' or 'i'/'j') and a statistic "
            f"('t', 'statistic', 'stat', 'z', 'difference' or 'effect'); got {list(results)}"
        )

    def _positions(col: str) -> np.ndarray:
        values = results[col]
        if pd.api.types.is_integer_dtype(values):
            pos = values.to_numpy(dtype=int)
            if pos.min() < 0 or pos.max() >= len(names):
                raise ValueError(f"edge index in {col!r} out of range for {len(names)} parcels")
            return pos
        missing = sorted(set(values.astype(str)) - set(index))
        if missing:
            raise ValueError(f"edges name unknown parcels {missing[:5]} in {col!r}")
        return values.astype(str).map(index).to_numpy(dtype=int)

    i, j = _positions(src), _positions(dst)
    lo, hi = np.maximum(i, j), np.minimum(i, j)
    n = len(names)
    mat = np.full((n, n), np.nan)
    mat[lo, hi] = results[stat].to_numpy(dtype=float)
    sig_col = _pick(results, ("significant",))
    p_col = _pick(results, ("p_fdr", "q", "p_corrected", "p_fwe", "p"))
    if sig_col is not None:
        significant = results[sig_col].to_numpy(dtype=bool)
    elif p_col is not None:
        significant = results[p_col].to_numpy(dtype=float) < alpha
    else:
        significant = np.zeros(len(results), dtype=bool)
    sig = np.zeros((n, n), dtype=bool)
    sig[lo, hi] = significant
    label = f"{p_col} < {alpha:g}" if p_col is not None and sig_col is None else ""
    return mat, sig, str(stat), label


def plot_edge_differences(
    results: pd.DataFrame, names: Sequence[str], alpha: float = 0.05, title: str = ""
) -> EmbeddedFigure:
    """Edge-wise group differences as a matrix, significant edges marked with a dot.

    Parameters
    ----------
    results : DataFrame
        One row per edge. Endpoints in ``source``/``target`` (names or 0-based indices) or
        ``i``/``j`` (0-based indices); the statistic in ``t``, ``statistic``, ``stat``,
        ``z``, ``difference`` or ``effect``; optionally a corrected p-value in ``p_fdr``,
        ``q``, ``p_corrected``, ``p_fwe`` or ``p`` (or a boolean ``significant``).
    names : sequence of str
        Parcel names, giving the matrix order.
    alpha : float
        Significance level used with the p-value column.
    title : str
        Figure title.

    Returns
    -------
    EmbeddedFigure
        A PNG: lower triangle coloured by the statistic.
    """
    mat, sig, stat, where = edge_matrix(results, names, alpha)
    names = [str(n) for n in names]
    n = len(names)
    lo, hi = np.nonzero(sig)
    finite = mat[np.isfinite(mat)]
    vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    size = 4.2 if n <= 20 else 6.0
    with report_style():
        fig = new_figure(size + 1.0, size)
        ax = fig.add_subplot(1, 1, 1)
        _matrix_axes(ax, mat, names, "PuOr_r", vmax, str(stat))
        if lo.size:
            ax.plot(
                hi,
                lo,
                "o",
                ms=3 if n <= 40 else 1.5,
                color="black",
                mfc="none",
                mew=0.8,
            )
        where = f" ({where})" if where else ""
        ax.set_title(
            title
            or f"Edge differences: {int(sig.sum())} of {len(results)} edges significant{where}",
            loc="left",
        )
    return embed(fig, fmt="png", dpi=120)


def plot_group_hrfs(
    summary: pd.DataFrame, parcels: Sequence[str] | None = None, max_parcels: int = 24
) -> EmbeddedFigure:
    """Group-average HRFs per parcel, one line (and +/- 1 sd band) per group.

    Parameters
    ----------
    summary : DataFrame
        Long table with columns ``parcel``, ``time``, ``mean``, ``sd`` and optionally
        ``group``; ``sd`` is the across-participant standard deviation.
    parcels : sequence of str, optional
        Parcels to draw (in this order); all, up to ``max_parcels``, when not given.
    max_parcels : int
        Largest number of panels.

    Returns
    -------
    EmbeddedFigure
        An SVG figure.
    """
    required = {"parcel", "time", "mean"}
    if not isinstance(summary, pd.DataFrame) or not required <= set(summary.columns):
        raise ValueError(
            f"summary must be a DataFrame with columns {sorted(required)} "
            "(and optionally 'sd', 'group')"
        )
    data = summary.assign(parcel=summary["parcel"].astype(str))
    available = list(pd.unique(data["parcel"]))
    if parcels is None:
        chosen = available
    else:
        chosen = [str(p) for p in parcels]
        missing = [p for p in chosen if p not in available]
        if missing:
            raise ValueError(f"parcels {missing[:5]} are not in the summary table")
    n_total = len(chosen)
    chosen = chosen[: max(1, int(max_parcels))]
    if "group" in data.columns:
        groups = list(pd.unique(data["group"].astype(str)))
        data = data.assign(group=data["group"].astype(str))
    else:
        groups = ["all"]
        data = data.assign(group="all")
    nrows, ncols = grid_shape(len(chosen), max_cols=6)
    with report_style():
        fig = new_figure(min(9.5, 1.5 * ncols + 0.8), 1.25 * nrows + 0.7)
        axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
        by_parcel = dict(tuple(data.groupby("parcel", sort=False)))
        for k, ax in enumerate(axes.flat):
            if k >= len(chosen):
                ax.set_visible(False)
                continue
            sub = by_parcel[chosen[k]]
            ax.axhline(0, color="#bbbbbb", lw=0.5)
            for g, name in enumerate(groups):
                rows = sub[sub["group"] == name].sort_values("time")
                if rows.empty:
                    continue
                t = rows["time"].to_numpy(dtype=float)
                m = rows["mean"].to_numpy(dtype=float)
                colour = PALETTE[g % len(PALETTE)]
                if "sd" in rows.columns:
                    s = rows["sd"].to_numpy(dtype=float)
                    ax.fill_between(t, m - s, m + s, color=colour, alpha=0.18, lw=0)
                ax.plot(t, m, color=colour, lw=1.1, label=name if k == 0 else None)
            ax.set_title(chosen[k], fontsize=7, pad=2)
            ax.tick_params(labelsize=6)
        for ax in axes[-1, :]:
            ax.set_xlabel("s", fontsize=7)
        more = f" \u2014 first {len(chosen)} of {n_total} parcels" if len(chosen) < n_total else ""
        fig.suptitle(
            f"Group HRFs (mean \u00b1 1 sd across participants){more}",
            x=0.01,
            ha="left",
            fontsize=8.5,
        )
        if len(groups) > 1:
            fig.legend(loc="outside lower center", ncols=min(6, len(groups)))
    return embed(fig, fmt="svg")


def plot_hrf_parameter_comparison(
    params: pd.DataFrame,
    parameter: str,
    groups: Sequence[str] | None = None,
    max_parcels: int = 30,
) -> EmbeddedFigure:
    """An HRF parameter per parcel across participants, compared between groups.

    Parameters
    ----------
    params : DataFrame
        One row per participant and parcel: columns ``parcel``, ``parameter`` (e.g.
        ``time_to_peak``) and optionally ``group``.
    parameter : str
        The column to plot.
    groups : sequence of str, optional
        Groups to show, in this order; all groups in the table when not given.
    max_parcels : int
        Largest number of parcels shown (first ones in table order).

    Returns
    -------
    EmbeddedFigure
        An SVG strip plot: one dot per participant, a bar at each group mean.
    """
    if not isinstance(params, pd.DataFrame) or "parcel" not in params.columns:
        raise ValueError("params must be a DataFrame with a 'parcel' column")
    if parameter not in params.columns:
        raise ValueError(f"parameter {parameter!r} is not a column of params: {list(params)}")
    data = params.assign(parcel=params["parcel"].astype(str))
    if "group" in data.columns:
        data = data.assign(group=data["group"].astype(str))
    else:
        data = data.assign(group="all")
    present = list(pd.unique(data["group"]))
    groups = present if groups is None else [str(g) for g in groups]
    unknown = [g for g in groups if g not in present]
    if unknown:
        raise ValueError(f"groups {unknown} are not in params (available: {present})")
    parcels = list(pd.unique(data["parcel"]))
    n_total = len(parcels)
    parcels = parcels[: max(1, int(max_parcels))]
    n_g = len(groups)
    width = 0.8 / n_g
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    with report_style():
        fig = new_figure(min(9.5, max(5.0, 1.8 + 0.32 * len(parcels) * max(1, n_g * 0.7))), 3.0)
        ax = fig.add_subplot(1, 1, 1)
        for g, name in enumerate(groups):
            colour = PALETTE[g % len(PALETTE)]
            for p, parcel in enumerate(parcels):
                values = data.loc[
                    (data["parcel"] == parcel) & (data["group"] == name), parameter
                ].to_numpy(dtype=float)
                values = values[np.isfinite(values)]
                if not values.size:
                    continue
                x0 = p - 0.4 + width * (g + 0.5)
                jitter = rng.uniform(-width * 0.3, width * 0.3, values.size)
                ax.plot(
                    x0 + jitter,
                    values,
                    "o",
                    ms=2.5,
                    color=colour,
                    alpha=0.6,
                    label=name if p == 0 else None,
                )
                ax.hlines(values.mean(), x0 - width * 0.4, x0 + width * 0.4, color=colour, lw=1.8)
        ax.set_xticks(
            np.arange(len(parcels)),
            parcels,
            rotation=60 if len(parcels) > 8 else 0,
            ha="right" if len(parcels) > 8 else "center",
            fontsize=7,
        )
        ax.set_xlim(-0.6, len(parcels) - 0.4)
        ax.set_ylabel(parameter.replace("_", " "))
        more = f" (first {len(parcels)} of {n_total} parcels)" if len(parcels) < n_total else ""
        ax.set_title(f"{parameter.replace('_', ' ')} per parcel{more}; bar: group mean", loc="left")
        if n_g > 1:
            fig.legend(loc="outside right upper")
    return embed(fig, fmt="svg")


__all__ = [
    "edge_matrix",
    "plot_connectivity_matrix",
    "plot_edge_differences",
    "plot_group_hrfs",
    "plot_hrf_parameter_comparison",
]
