"""Shared helpers of the report figures: the embedded-figure record, Agg set-up and styling.

Nothing here imports matplotlib at module import time: every helper imports it when called,
so ``import bids_hrf.reports`` stays cheap and never chooses a backend.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Colours used throughout the report (colour-blind safe, Okabe-Ito).
PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#F0E442",
    "#000000",
)

_RC = {
    "font.size": 8.5,
    "axes.titlesize": 9,
    "axes.labelsize": 8.5,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#444444",
    "axes.linewidth": 0.8,
    "axes.grid": False,
    "svg.fonttype": "none",
    "svg.hashsalt": None,
    "figure.dpi": 100,
    "savefig.bbox": "tight",
}


@dataclass(frozen=True)
class EmbeddedFigure:
    """A rendered figure ready to be embedded in an HTML page.

    Attributes
    ----------
    mime : str
        ``"image/svg+xml"`` or ``"image/png"``.
    data : bytes
        The encoded image.
    """

    mime: str
    data: bytes

    def __post_init__(self) -> None:
        if self.mime not in ("image/svg+xml", "image/png"):
            raise ValueError(f"unsupported figure type {self.mime!r}: use SVG or PNG")
        if isinstance(self.data, str):
            object.__setattr__(self, "data", self.data.encode("utf-8"))

    @property
    def nbytes(self) -> int:
        """Size of the encoded image in bytes."""
        return len(self.data)

    def data_uri(self) -> str:
        """Return the image as a ``data:`` URI (base64)."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def ensure_agg() -> None:
    """Select the non-interactive Agg backend unless pyplot was already set up by the caller."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")


@contextlib.contextmanager
def report_style() -> Iterator[None]:
    """Temporarily apply the report's matplotlib style."""
    ensure_agg()
    import matplotlib

    with matplotlib.rc_context(_RC):
        yield


def new_figure(width: float, height: float):
    """Return a matplotlib Figure not registered with pyplot (nothing to close or leak)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def pyplot_figure(width: float, height: float):
    """Return a pyplot figure (for nilearn functions that need one); close it via embed."""
    ensure_agg()
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(width, height))


def _has_raster(fig: Any) -> bool:
    from matplotlib.collections import QuadMesh
    from matplotlib.image import AxesImage

    for ax in fig.get_axes():
        if ax.images or any(isinstance(a, AxesImage) for a in ax.get_children()):
            return True
        if any(isinstance(c, QuadMesh) for c in ax.collections):
            return True
    return False


def close_figure(fig: Any) -> None:
    """Close ``fig`` in pyplot's registry when pyplot created it."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)


def embed(fig: Any, fmt: str | None = None, dpi: int = 110) -> EmbeddedFigure:
    """Encode a matplotlib figure as SVG (line plots) or PNG (raster-heavy) and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure; closed afterwards.
    fmt : {"svg", "png"}, optional
        Forced format. By default PNG when the figure holds images (brain slices, carpets,
        matrices) and SVG otherwise.
    dpi : int
        Resolution of PNG output.

    Returns
    -------
    EmbeddedFigure
    """
    if fmt is None:
        fmt = "png" if _has_raster(fig) else "svg"
    if fmt not in ("svg", "png"):
        raise ValueError(f"figure format must be 'svg' or 'png', got {fmt!r}")
    buf = io.BytesIO()
    try:
        with report_style():
            fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", facecolor="white")
    finally:
        close_figure(fig)
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return EmbeddedFigure(mime=mime, data=buf.getvalue())


def memoize_figure(func):
    """Cache the figures of a pure plotting function, keyed on the pickled arguments.

    A participant report draws the same figure several times when the inputs repeat (the
    canonical HRFs of every session and task); a small cache (32 entries) draws it once.
    Arguments that cannot be pickled bypass the cache.
    """
    import functools
    import hashlib
    import pickle
    from collections import OrderedDict

    cache: OrderedDict[str, EmbeddedFigure] = OrderedDict()

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> EmbeddedFigure:
        try:
            payload = pickle.dumps((args, sorted(kwargs.items())), protocol=5)
        except Exception:  # unpicklable argument: no caching
            return func(*args, **kwargs)
        key = hashlib.sha1(payload).hexdigest()
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        result = func(*args, **kwargs)
        cache[key] = result
        if len(cache) > 32:
            cache.popitem(last=False)
        return result

    wrapper.cache_clear = cache.clear  # type: ignore[attr-defined]
    return wrapper


def display_figure(display: Any) -> Any:
    """Return the matplotlib figure behind a nilearn display, axes or figure."""
    from matplotlib.figure import Figure

    if isinstance(display, Figure):
        return display
    frame = getattr(display, "frame_axes", None)
    if frame is not None:
        return frame.figure
    fig = getattr(display, "figure", None)
    if fig is not None:
        return fig
    raise TypeError(f"cannot find a matplotlib figure in {type(display).__name__}")


def time_to_peak(time: np.ndarray, hrfs: np.ndarray) -> np.ndarray:
    """Time of the positive peak of each HRF column (parabolic refinement).

    As :func:`bids_hrf.hrf.params.hrf_parameters`: the largest positive value; columns
    without any positive value use the largest absolute value.

    Parameters
    ----------
    time : ndarray, shape (n_samples,)
    hrfs : ndarray, shape (n_samples, n_hrfs)

    Returns
    -------
    ndarray, shape (n_hrfs,)
        Seconds; NaN for columns that are all zero or not finite.
    """
    time = np.asarray(time, dtype=float)
    hrfs = np.atleast_2d(np.asarray(hrfs, dtype=float).T).T
    finite = np.isfinite(hrfs).all(axis=0) & (np.abs(hrfs).max(axis=0, initial=0) > 0)
    clean = np.nan_to_num(hrfs)
    idx = np.where(clean.max(axis=0, initial=0) > 0, np.argmax(clean, axis=0),
                   np.argmax(np.abs(clean), axis=0))
    ttp = time[idx].astype(float)
    n = time.size
    inner = (idx > 0) & (idx < n - 1)
    cols = np.nonzero(inner)[0]
    if cols.size and n > 2:
        i = idx[cols]
        y0, y1, y2 = hrfs[i - 1, cols], hrfs[i, cols], hrfs[i + 1, cols]
        denom = y0 - 2 * y1 + y2
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(np.abs(denom) > 1e-12, 0.5 * (y0 - y2) / denom, 0.0)
        dt = (time[i + 1] - time[i - 1]) / 2
        ttp[cols] = time[i] + np.clip(shift, -0.5, 0.5) * dt
    ttp[~finite] = np.nan
    return ttp


def check_1d(name: str, values: Any, length: int | None = None) -> np.ndarray:
    """Return ``values`` as a float vector, checking its length."""
    arr = np.asarray(values, dtype=float).ravel()
    if length is not None and arr.size != length:
        raise ValueError(f"{name} has {arr.size} values but {length} were expected")
    return arr


def as_hrf_matrix(time: Any, hrfs: Any, names: Sequence[str] | None) -> tuple:
    """Validate ``(time, hrfs, names)`` and return them as arrays and a list of str."""
    time = check_1d("time", time)
    hrfs = np.asarray(hrfs, dtype=float)
    if hrfs.ndim == 1:
        hrfs = hrfs[:, None]
    if hrfs.ndim != 2 or hrfs.shape[0] != time.size:
        raise ValueError(
            f"hrfs must have shape (n_samples={time.size}, n_parcels), got {hrfs.shape}"
        )
    if names is None:
        names = [str(i + 1) for i in range(hrfs.shape[1])]
    names = [str(n) for n in names]
    if len(names) != hrfs.shape[1]:
        raise ValueError(f"{len(names)} names given for {hrfs.shape[1]} HRF columns")
    return time, hrfs, names


def load_img(img: Any) -> Any:
    """Load a NIfTI path or pass a nibabel image through (nilearn's check_niimg)."""
    from nilearn.image import load_img as _load

    return _load(img)


#: Largest number of voxels a slice mosaic is drawn from: whole-brain images at 2 mm (~1.1
#: million voxels) and coarser are drawn as they are; finer ones are reduced by an integer
#: factor. A mosaic slice is ~130 pixels wide in the report, so a 1 mm map (193 voxels across)
#: loses nothing visible at 2 mm (measured: a 1 mm map with its glass brain drawn in 2.0 s
#: instead of 3.7 s).
DISPLAY_MAX_VOXELS = 2**21


def _block_reduce(data: np.ndarray, factor: int, kind: str) -> np.ndarray:
    """Reduce the first three axes of ``data`` by ``factor`` (edge blocks padded)."""
    if kind == "nearest":  # the voxel nearest each block's centre: labels stay labels
        c = factor // 2
        return data[c::factor, c::factor, c::factor]
    pad = [(0, (-n) % factor) for n in data.shape[:3]]
    fill = np.nan
    work = np.pad(np.asarray(data, dtype=np.float32), pad, constant_values=fill)
    nx, ny, nz = (n // factor for n in work.shape)
    blocks = work.reshape(nx, factor, ny, factor, nz, factor).transpose(0, 2, 4, 1, 3, 5)
    blocks = blocks.reshape(nx, ny, nz, factor**3)
    finite = np.isfinite(blocks)
    if kind == "mean":
        with np.errstate(invalid="ignore"):
            total = np.where(finite, blocks, 0.0).sum(axis=-1)
            out = total / np.maximum(finite.sum(axis=-1), 1)
        return out.astype(np.float32)
    # "stat": the value of largest magnitude in each block, with its sign, so that peaks
    # and supra-threshold voxels stay visible.
    mag = np.where(finite, np.abs(blocks), -1.0)
    pick = np.take_along_axis(blocks, mag.argmax(axis=-1)[..., None], axis=-1)[..., 0]
    return np.where(finite.any(axis=-1), pick, 0.0).astype(np.float32)


def display_background(bg_img: Any) -> Any:
    """A mosaic's background through :func:`display_image` (block means); None stays None,
    and anything that is not a 3D image (a nilearn template name...) passes through."""
    if bg_img is None or isinstance(bg_img, str) and not os.path.exists(bg_img):
        return bg_img
    img = load_img(bg_img)
    return display_image(img, "mean") if img.ndim == 3 else bg_img


def display_image(img: Any, kind: str = "stat", max_voxels: int = DISPLAY_MAX_VOXELS) -> Any:
    """The image a slice mosaic is drawn from: ``img`` itself when small, else reduced.

    Parameters
    ----------
    img : Niimg-like
        3D image.
    kind : {"stat", "nearest", "mean"}
        How a block of ``f x f x f`` voxels becomes one: the value of largest magnitude with
        its sign (statistical maps: peaks survive), the voxel nearest its centre (label
        images, parameter maps: values are not mixed), or the mean of its finite values
        (anatomical backgrounds).
    max_voxels : int
        Images with at most this many voxels are returned unchanged (the same object).

    Returns
    -------
    nibabel.Nifti1Image
        With ``f = ceil((n_voxels / max_voxels) ** (1/3))`` and an affine whose voxel
        centres are the blocks' centres (for ``nearest``, the picked voxels' centres).
    """
    import nibabel as nib

    img = load_img(img)
    if kind not in ("stat", "nearest", "mean"):
        raise ValueError(f"kind must be 'stat', 'nearest' or 'mean', got {kind!r}")
    if img.ndim != 3:
        raise ValueError(f"display_image needs a 3D image, got {img.ndim}D")
    n_vox = int(np.prod(img.shape))
    if n_vox <= max_voxels:
        return img
    factor = int(np.ceil((n_vox / max_voxels) ** (1.0 / 3.0) - 1e-9))
    data = np.asarray(img.dataobj)
    reduced = _block_reduce(data, factor, kind)
    affine = img.affine.copy()
    centre = factor // 2 if kind == "nearest" else (factor - 1) / 2.0
    affine[:3, 3] = img.affine[:3, :3] @ np.full(3, centre) + img.affine[:3, 3]
    affine[:3, :3] = img.affine[:3, :3] * factor
    out = nib.Nifti1Image(reduced, affine)
    out.header.set_xyzt_units(*img.header.get_xyzt_units())
    return out


def short_names(names: Sequence[str], width: int = 18) -> tuple[list[str], str]:
    """Shorten panel titles: drop a shared prefix, then cut long names in the middle.

    Returns
    -------
    names : list of str
    prefix : str
        The dropped prefix (empty when none was dropped).
    """
    names = [str(n) for n in names]
    prefix = ""
    if len(names) > 1:
        common = os.path.commonprefix(names)
        cut = max(common.rfind(sep) for sep in "_- .")
        if cut >= 3 and all(len(n) > cut + 1 for n in names):
            prefix = common[: cut + 1]
            names = [n[cut + 1 :] for n in names]
    short = [
        n if len(n) <= width else n[: width // 2 - 1] + "\u2026" + n[-(width // 2) :] for n in names
    ]
    return short, prefix


def grid_shape(n: int, max_cols: int = 8) -> tuple[int, int]:
    """Rows and columns of a small-multiples grid for ``n`` panels."""
    ncols = int(min(max_cols, max(1, np.ceil(np.sqrt(n * 1.6)))))
    nrows = int(np.ceil(n / ncols))
    return nrows, ncols
