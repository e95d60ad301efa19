"""Report figures drawn from arrays at their own resolution: carpet plots and design matrices.

The carpet is drawn from a voxel subsample computed once, when the run is read for its
parcel series (:func:`carpet_rows`), so the report never reloads the 4D BOLD. Design matrices
are drawn with one image row per volume (or per participant) so that short task regressors
are not decimated into speckles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bids_hrf.reports._common import EmbeddedFigure, embed, load_img, new_figure, report_style

#: Largest number of voxel rows kept for a carpet plot.
CARPET_ROWS = 1200


def carpet_rows(Y: np.ndarray, max_rows: int = CARPET_ROWS) -> np.ndarray:
    """Standardised time series of evenly spaced voxels, for a carpet plot.

    Parameters
    ----------
    Y : ndarray, shape (n_scans, n_voxels)
        Voxel time series (voxels in mask order).
    max_rows : int
        Largest number of voxels kept (every k-th voxel in mask order).

    Returns
    -------
    ndarray, shape (n_rows, n_scans), float16
        Each kept voxel's time series minus its mean, divided by its standard deviation
        (0 for constant voxels); non-finite values set to 0.
    """
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"Y must have shape (n_scans, n_voxels), got {Y.shape}")
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    n_vox = Y.shape[1]
    pick = np.unique(np.linspace(0, n_vox - 1, min(n_vox, int(max_rows))).round().astype(int))
    sub = np.nan_to_num(np.asarray(Y[:, pick], dtype=np.float64), nan=0.0, posinf=0.0,
                        neginf=0.0)
    sub = sub - sub.mean(axis=0)
    sd = sub.std(axis=0)
    sub = np.divide(sub, sd, out=np.zeros_like(sub), where=sd > 0)
    return sub.T.astype(np.float16)


def _integer_ticks(ax, axis: str = "x") -> None:
    """At most 6 round ticks written without trailing zeros ("100", not "100.00")."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(MaxNLocator(6, integer=True, steps=[1, 2, 2.5, 5, 10]))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def plot_carpet(
    data: Any,
    mask_img: Any = None,
    tr: float | None = None,
    sample_mask: Sequence[int] | None = None,
    samples: str = "voxels",
) -> EmbeddedFigure:
    """Carpet plot (standardised voxel time series as rows) of a BOLD run, as a PNG.

    Parameters
    ----------
    data : ndarray or Niimg-like
        Rows from :func:`carpet_rows` (shape (n_rows, n_scans)), or a 4D BOLD image (path
        or nibabel image; read here and subsampled the same way).
    mask_img : Niimg-like, optional
        Brain mask for a 4D image (all non-zero mean voxels when not given).
    tr : float, optional
        Repetition time in seconds: the x axis is then in seconds, else in volumes.
    sample_mask : sequence of int, optional
        Kept volumes; the others (dummy scans, censored volumes) are shaded.
    samples : str
        What the rows are, for the labels: ``"voxels"``, ``"vertices"``, ``"grayordinates"``.

    Returns
    -------
    EmbeddedFigure
    """
    rows = np.asarray(data) if isinstance(data, np.ndarray) else None
    if rows is None:
        img = load_img(data)
        if img.ndim != 4:
            raise ValueError(f"the carpet plot needs a 4D BOLD image, got {img.ndim}D")
        vol = np.asarray(img.dataobj, dtype=np.float32)
        if mask_img is not None:
            mask = np.asarray(load_img(mask_img).dataobj) > 0
        else:
            mask = np.abs(vol).mean(axis=3) > 0
        rows = carpet_rows(vol[mask].T)
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise ValueError(f"carpet rows must have shape (n_voxels, n_scans), got {rows.shape}")
    n_rows, n_scans = rows.shape
    scale = float(tr) if tr else 1.0
    with report_style():
        fig = new_figure(9, 3.2)
        ax = fig.add_subplot(1, 1, 1)
        ax.imshow(rows.astype(np.float32), aspect="auto", cmap="gray", vmin=-2, vmax=2,
                  interpolation="antialiased",
                  extent=(-0.5 * scale, (n_scans - 0.5) * scale, n_rows, 0))
        if sample_mask is not None:
            kept = np.zeros(n_scans, dtype=bool)
            kept[np.asarray(sample_mask, dtype=int)] = True
            for i in np.flatnonzero(~kept):
                ax.axvspan((i - 0.5) * scale, (i + 0.5) * scale, color="#D55E00", alpha=0.35,
                           lw=0)
        _integer_ticks(ax, "x")
        ax.set_yticks([])
        ax.set_xlabel("time (s)" if tr else "volume")
        ax.set_ylabel(f"{n_rows} {samples}")
        ax.set_title(f"Time series of {samples}, each standardised (grey scale: -2 to 2 SD)"
                     + ("; orange: volumes left out" if sample_mask is not None
                        and len(sample_mask) < n_scans else ""), loc="left")
    return embed(fig, fmt="png", dpi=90)


def plot_design_matrix(
    design: pd.DataFrame,
    row_label: str = "volume",
    row_names: Sequence[str] | None = None,
) -> EmbeddedFigure:
    """A design matrix, columns scaled to their maximum magnitude, as a PNG.

    Drawn with at least one image pixel per row (nearest neighbour), so that brief events
    keep their shape instead of being decimated.

    Parameters
    ----------
    design : DataFrame, shape (n_rows, n_regressors)
    row_label : str
        Name of the rows ("volume" for a first-level design, "participant" for a group
        design).
    row_names : sequence of str, optional
        Tick label of every row (e.g. ``sub-01``); drawn when there are at most 40 rows.

    Returns
    -------
    EmbeddedFigure
    """
    if not isinstance(design, pd.DataFrame) or design.shape[1] == 0:
        raise ValueError("design must be a DataFrame with at least one column")
    values = design.to_numpy(dtype=float)
    peak = np.nanmax(np.abs(values), axis=0)
    values = np.divide(values, peak, out=np.zeros_like(values), where=peak > 0)
    n_rows, n_cols = values.shape
    if row_names is not None and len(row_names) != n_rows:
        raise ValueError(f"{len(row_names)} row names for {n_rows} rows")
    dpi = 100
    labelled = row_names is not None and n_rows <= 40
    height = max(2.6 if not labelled else 0.8 + 0.22 * n_rows, (n_rows + 120) / dpi)
    width = min(12.0, 1.8 + 0.32 * n_cols + (0.6 if labelled else 0.0))
    with report_style():
        fig = new_figure(width, min(height, 14.0))
        ax = fig.add_subplot(1, 1, 1)
        ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                  interpolation="nearest")
        ax.set_xticks(np.arange(n_cols), [str(c) for c in design.columns], rotation=60,
                      ha="right", fontsize=7 if n_cols > 12 else 8)
        if labelled:
            ax.set_yticks(np.arange(n_rows), [str(r) for r in row_names])
        else:
            _integer_ticks(ax, "y")
        ax.set_ylabel(row_label)
        for spine in ax.spines.values():
            spine.set_visible(True)
    return embed(fig, fmt="png", dpi=dpi)
