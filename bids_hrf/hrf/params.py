"""HRF shape parameters: time to peak, full width at half maximum, height.

Vectorised over columns (one HRF per column). HRFs are upsampled with a cubic spline
before the peak and the half-maximum crossings are located, so the parameters are not
quantised to the sampling step. Uncertainty is propagated from per-sample variances (or a
full covariance) by Monte-Carlo sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.interpolate import CubicSpline

__all__ = ["HRFParameters", "hrf_parameters"]


@dataclass
class HRFParameters:
    """Parameters of ``n`` HRFs; ``*_sd`` are None when no variance was given.

    Attributes
    ----------
    time_to_peak, fwhm, height : ndarray (n,)
        Seconds from onset to the maximum, seconds between the half-maximum crossings on
        both sides of the maximum, and the maximum value. NaN where undefined (no positive
        peak, or the HRF does not fall below half its maximum on one side).
    time_to_peak_sd, fwhm_sd, height_sd : ndarray (n,) or None
        Standard deviations over the Monte-Carlo draws (NaN-aware).
    """

    time_to_peak: np.ndarray
    fwhm: np.ndarray
    height: np.ndarray
    time_to_peak_sd: np.ndarray | None = None
    fwhm_sd: np.ndarray | None = None
    height_sd: np.ndarray | None = None

    def to_frame(self, labels: list[str] | None = None) -> pd.DataFrame:
        """One row per HRF: parcel, time_to_peak, fwhm, height and the ``*_sd`` columns."""
        n = self.time_to_peak.size
        out = {"parcel": list(labels) if labels is not None else list(range(n))}
        for name in ("time_to_peak", "fwhm", "height"):
            out[name] = getattr(self, name)
        for name in ("time_to_peak", "fwhm", "height"):
            sd = getattr(self, f"{name}_sd")
            out[f"{name}_sd"] = sd if sd is not None else np.full(n, np.nan)
        return pd.DataFrame(out)


def _upsample(hrf: np.ndarray, time: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    fine = np.linspace(time[0], time[-1], (time.size - 1) * factor + 1)
    return fine, CubicSpline(time, hrf, axis=0)(fine)


def _point_parameters(
    hrf: np.ndarray, time: np.ndarray, factor: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fine, h = _upsample(hrf, time, factor)
    n_t, n = h.shape
    k = np.argmax(h, axis=0)
    cols = np.arange(n)
    height = h[k, cols]
    ttp = fine[k]
    half = height / 2.0
    idx = np.arange(n_t)[:, None]
    below = h < half[None, :]
    # last sample below half before the peak, first one after it
    before = np.where(below & (idx < k[None, :]), idx, -1).max(axis=0)
    after = np.where(below & (idx > k[None, :]), idx, n_t).min(axis=0)
    ok = (before >= 0) & (after < n_t) & (height > 0)
    b = np.clip(before, 0, n_t - 2)
    a = np.clip(after, 1, n_t - 1)

    def _cross(i0, i1):
        h0, h1 = h[i0, cols], h[i1, cols]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(h1 != h0, (half - h0) / (h1 - h0), 0.0)
        return fine[i0] + frac * (fine[i1] - fine[i0])

    bad = height <= 1e-6 * np.abs(h).max(axis=0)  # no positive peak
    fwhm = np.where(ok & ~bad, _cross(a - 1, a) - _cross(b, b + 1), np.nan)
    return (np.where(bad, np.nan, ttp), fwhm, np.where(bad, np.nan, height))


def hrf_parameters(
    hrf: np.ndarray,
    time: np.ndarray,
    variance: np.ndarray | None = None,
    covariance: np.ndarray | None = None,
    n_draws: int = 200,
    upsample: int = 10,
    random_state: int | np.random.Generator | None = 0,
) -> HRFParameters:
    """Time to peak, FWHM and height of HRFs, with optional Monte-Carlo uncertainty.

    Parameters
    ----------
    hrf : ndarray (n_samples,) or (n_samples, n_hrfs)
    time : ndarray (n_samples,)
        Seconds after onset, increasing.
    variance : ndarray like ``hrf``, optional
        Per-sample variance (independent samples).
    covariance : ndarray (n_samples, n_samples) or (n_hrfs, n_samples, n_samples), optional
        Full posterior covariance; used instead of ``variance``.
    n_draws : int
        Monte-Carlo draws for the standard deviations.
    upsample : int
        Cubic-spline upsampling factor.
    random_state : int or Generator, optional

    Returns
    -------
    HRFParameters
    """
    hrf = np.asarray(hrf, dtype=float)
    one = hrf.ndim == 1
    H = hrf[:, None] if one else hrf
    time = np.asarray(time, dtype=float)
    if time.ndim != 1 or time.size != H.shape[0] or time.size < 3:
        raise ValueError(
            f"time must be 1-D with one entry per HRF sample (>= 3), got {time.shape} "
            f"for HRFs of shape {hrf.shape}"
        )
    if np.any(np.diff(time) <= 0):
        raise ValueError("time must be strictly increasing")
    if not np.all(np.isfinite(H)):
        raise ValueError("HRFs contain NaN or inf")
    ttp, fwhm, height = _point_parameters(H, time, upsample)
    out = HRFParameters(ttp, fwhm, height)
    if variance is None and covariance is None:
        return out
    rng = np.random.default_rng(random_state)
    n_t, n = H.shape
    if covariance is not None:
        cov = np.asarray(covariance, dtype=float)
        cov = np.broadcast_to(cov, (n, n_t, n_t)) if cov.ndim == 2 else cov
        if cov.shape != (n, n_t, n_t):
            raise ValueError(f"covariance must be ({n_t}, {n_t}) or ({n}, {n_t}, {n_t})")
        w, V = np.linalg.eigh(cov)
        root = V * np.sqrt(np.clip(w, 0, None))[:, None, :]  # (n, n_t, n_t)
    else:
        var = np.asarray(variance, dtype=float).reshape(H.shape)
        if np.any(var < 0) or not np.all(np.isfinite(var)):
            raise ValueError("variance must be finite and >= 0")
        sd = np.sqrt(var)
    chunk = max(1, int(2e6 // (n_t * upsample * n)))
    draws = {k: [] for k in ("t", "f", "h")}
    done = 0
    while done < n_draws:
        b = min(chunk, n_draws - done)
        z = rng.standard_normal((b, n_t, n))
        if covariance is not None:
            noise = np.einsum("kts,bsk->btk", root, z)
        else:
            noise = z * sd[None]
        sample = (H[None] + noise).transpose(1, 0, 2).reshape(n_t, b * n)
        t_, f_, h_ = _point_parameters(sample, time, upsample)
        draws["t"].append(t_.reshape(b, n))
        draws["f"].append(f_.reshape(b, n))
        draws["h"].append(h_.reshape(b, n))
        done += b

    def _sd(x):
        x = np.concatenate(x)
        with np.errstate(invalid="ignore"):
            cnt = np.sum(np.isfinite(x), axis=0)
            m = np.nansum(x, axis=0) / np.maximum(cnt, 1)
            v = np.nansum((x - m) ** 2, axis=0) / np.maximum(cnt - 1, 1)
        return np.where(cnt > 1, np.sqrt(v), np.nan)

    out.time_to_peak_sd = _sd(draws["t"])
    out.fwhm_sd = _sd(draws["f"])
    out.height_sd = _sd(draws["h"])
    return out
