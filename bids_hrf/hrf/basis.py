"""Canonical HRF presets and sampled HRFs usable as nilearn ``hrf_model`` callables.

The canonical shapes are nilearn's double-gamma presets (``spm``: peak 6 s, undershoot
16 s, ratio 0.167; ``glover``: peak 6 s, undershoot 12 s, dispersion 0.9, ratio 0.48),
evaluated here on a regular grid so that they fill the same :class:`HRFEstimate` table as
the estimated HRFs. :func:`sampled_hrf_model` turns any sampled HRF (canonical or
estimated) back into a kernel on nilearn's oversampled grid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import gamma

from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.presets import is_hrf_shape, parse_hrf_shape

HRF_MODELS: tuple[str, ...] = (
    "spm",
    "glover",
    "spm + derivative",
    "glover + derivative",
    "spm + derivative + dispersion",
    "glover + derivative + dispersion",
)

# Double-gamma parameters of nilearn's presets (hemodynamic_models._gamma_difference_hrf).
_GAMMA_PARAMS: dict[str, dict[str, float]] = {
    "spm": {
        "delay": 6.0,
        "undershoot": 16.0,
        "dispersion": 1.0,
        "u_dispersion": 1.0,
        "ratio": 0.167,
    },
    "glover": {
        "delay": 6.0,
        "undershoot": 12.0,
        "dispersion": 0.9,
        "u_dispersion": 0.9,
        "ratio": 0.48,
    },
}


def normalize_hrf_model(name: str) -> str:
    """Return the canonical spelling of an HRF model name.

    Accepts nilearn's names (``"spm + derivative"``) and CLI-friendly aliases
    (``"spm+derivative"``, ``"SPM_derivative"``, ``"spm-derivative-dispersion"``).

    Parameters
    ----------
    name : str
        HRF model name.

    Returns
    -------
    str
        One of :data:`HRF_MODELS`.

    Raises
    ------
    ValueError
        If the name is not a known HRF model; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise ValueError(
            f"HRF model must be a string, got {type(name).__name__}; "
            f"use one of {', '.join(HRF_MODELS)}"
        )
    if is_hrf_shape(name):
        return parse_hrf_shape(name).spec
    tokens = name.lower().replace("+", " ").replace("_", " ").replace("-", " ").split()
    key = " + ".join(tokens)
    if key in HRF_MODELS:
        return key
    raise ValueError(
        f"Unknown HRF model {name!r}; use one of: {', '.join(repr(m) for m in HRF_MODELS)} "
        "(spaces around '+' are optional), or a shape: claron2021, verhoef2025, "
        "inverse-gamma:ALPHA,BETA, gamma:SHAPE,SCALE, double-gamma:PEAK,UNDERSHOOT,RATIO, "
        "file:HRF.tsv"
    )


def nilearn_hrf_model(name: str):
    """What to give nilearn's ``hrf_model`` for a model name: nilearn's own spelling for its
    presets, a :class:`~bids_hrf.hrf.presets.HRFShape` callable (kernel normalised to sum 1,
    as nilearn's presets) for the shapes of :mod:`bids_hrf.hrf.presets`."""
    model = "fir" if str(name).lower() == "fir" else normalize_hrf_model(name)
    return parse_hrf_shape(model) if is_hrf_shape(model) else model


def _double_gamma(t: np.ndarray, family: str) -> np.ndarray:
    p = _GAMMA_PARAMS[family]
    peak = gamma.pdf(t, p["delay"] / p["dispersion"], scale=p["dispersion"])
    under = gamma.pdf(t, p["undershoot"] / p["u_dispersion"], scale=p["u_dispersion"])
    return peak - p["ratio"] * under


def _time_grid(dt: float, duration: float) -> np.ndarray:
    if not np.isfinite(dt) or dt <= 0:
        raise ValueError(f"HRF sampling period dt must be positive, got {dt}")
    if not np.isfinite(duration) or duration < dt:
        raise ValueError(f"HRF duration must be at least dt={dt} s, got {duration}")
    n = int(np.floor(duration / dt + 1e-9)) + 1
    return np.arange(n) * dt


def canonical_hrf(
    name: str = "spm", dt: float = 0.1, duration: float = 25.0
) -> tuple[np.ndarray, np.ndarray]:
    """Sample the canonical (double-gamma) HRF of a preset on a regular grid.

    Derivative presets (``"spm + derivative"``...) return their main HRF (the
    derivatives are basis functions, not HRF shapes).

    Parameters
    ----------
    name : str, default="spm"
        HRF model name (see :func:`normalize_hrf_model`).
    dt : float, default=0.1
        Sampling period in seconds.
    duration : float, default=25.0
        Last sample time in seconds (included when it is a multiple of ``dt``).

    Returns
    -------
    time : ndarray, shape (n_samples,)
        ``0, dt, 2 dt, ...`` seconds after the stimulus onset.
    values : ndarray, shape (n_samples,)
        The HRF, scaled to unit Euclidean norm (the convention of the estimated HRFs).
    """
    time = _time_grid(dt, duration)
    if is_hrf_shape(name):
        values = parse_hrf_shape(name).values(time)
        if not np.any(values):
            raise ValueError(f"HRF {name} is zero on 0..{duration:g} s")
        return time, values / np.linalg.norm(values)
    family = normalize_hrf_model(name).split(" + ")[0]
    values = _double_gamma(time, family)
    return time, values / np.linalg.norm(values)


def canonical_estimate(
    parcel_names: list[str], hrf_model: str = "spm", dt: float = 0.1, duration: float = 25.0
) -> HRFEstimate:
    """Return an :class:`HRFEstimate` with the canonical HRF in every parcel.

    Parameters
    ----------
    parcel_names : list of str
        Parcel labels (one column each).
    hrf_model : str, default="spm"
        HRF model name; derivative presets use their main HRF.
    dt, duration : float
        Sampling period and duration in seconds (see :func:`canonical_hrf`).

    Returns
    -------
    HRFEstimate
        ``method="canonical"``, no variance; ``parameters`` records the model, dt and
        duration.
    """
    names = [str(p) for p in parcel_names]
    if len(set(names)) != len(names):
        raise ValueError("parcel_names contains duplicates; each parcel needs a unique name")
    model = normalize_hrf_model(hrf_model)
    time, values = canonical_hrf(model, dt=dt, duration=duration)
    hrfs = np.repeat(values[:, None], len(names), axis=1)
    return HRFEstimate(
        time=time,
        hrfs=hrfs,
        labels=names,
        method="canonical",
        parameters={"hrf_model": model, "dt": float(dt), "duration": float(duration)},
    )


def sampled_hrf_model(
    time: np.ndarray, values: np.ndarray, normalize: str | None = "sum", name: str = "sampled"
) -> Callable[..., np.ndarray]:
    """Wrap a sampled HRF as a callable accepted by nilearn's ``hrf_model``.

    Parameters
    ----------
    time : ndarray, shape (n_samples,)
        Increasing sample times in seconds after the onset.
    values : ndarray, shape (n_samples,)
        HRF values at ``time``.
    normalize : {"sum", "peak", None}, default="sum"
        Scaling of the kernel on nilearn's oversampled grid. ``"sum"`` makes it sum to 1,
        as nilearn's presets do, so that a long block of unit amplitude plateaus at 1 and
        effect sizes are comparable with the canonical path; when the HRF integrates to
        nearly zero or less (an implausible estimate) the kernel is scaled to a unit
        absolute peak instead. ``"peak"`` always scales to a unit absolute peak; ``None``
        keeps the interpolated values.
    name : str, default="sampled"
        ``__name__`` of the callable (nilearn appends it to the regressor names).

    Returns
    -------
    callable
        ``hrf(t_r, oversampling=50, time_length=32.0, onset=0.0) -> ndarray`` of
        ``n = round(time_length / (t_r / oversampling))`` samples: the sampled HRF
        linearly interpolated (zero outside ``[time[0], time[-1]]``) at the times where
        nilearn evaluates its own presets, ``linspace(0, time_length, n) - onset - dt``
        with ``dt = t_r / oversampling``. Following nilearn's grid exactly means a sampled
        canonical HRF reproduces nilearn's preset kernel (up to interpolation and the
        support of the samples); like the presets, the kernel is thereby delayed by one
        oversampled step (0.04 s at TR = 2 s).
    """
    t = np.asarray(time, dtype=float).ravel()
    v = np.asarray(values, dtype=float).ravel()
    if t.size != v.size or t.size < 2:
        raise ValueError(
            f"time and values must have the same length (>= 2), got {t.size} and {v.size}"
        )
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
        raise ValueError("HRF time and values must be finite (no NaN or inf)")
    if np.any(np.diff(t) <= 0):
        raise ValueError("HRF time must be strictly increasing")
    if normalize not in ("sum", "peak", None):
        raise ValueError(f"normalize must be 'sum', 'peak' or None, got {normalize!r}")
    if not np.any(v):
        raise ValueError("HRF is identically zero; it cannot model a response")

    def hrf(t_r: float, oversampling: int = 50, time_length: float = 32.0, onset: float = 0.0):
        dt = float(t_r) / int(oversampling)
        n = int(np.rint(float(time_length) / dt))
        # nilearn's preset grid (hemodynamic_models._gamma_difference_hrf): sample k holds
        # the HRF at k * time_length / (n - 1) - dt
        lags = np.linspace(0.0, float(time_length), n) - float(onset) - dt
        kernel = np.interp(lags, t, v, left=0.0, right=0.0)
        peak = np.max(np.abs(kernel))
        if peak == 0:
            return kernel
        if normalize == "sum":
            total = kernel.sum()
            if total > 0.05 * np.abs(kernel).sum():
                return kernel / total
            return kernel / peak
        if normalize == "peak":
            return kernel / peak
        return kernel

    hrf.__name__ = name
    hrf.__qualname__ = name
    return hrf
