"""HRF convolution matrices for sparse deconvolution (spike, block and multi-echo models).

Time convention
---------------
Column ``i`` of the HRF matrix is the HRF *starting at scan i*: ``H[i + k, i] = h(k TR)``
with ``h(0) = 0`` for the canonical shapes. An event at scan ``i`` therefore recovers at
coefficient ``i`` (its BOLD response is zero at scan ``i`` and rises from scan ``i + 1``).

pySPFM 2.0.3 builds the same Toeplitz matrix from its HRF vector, but its built-in ``spm`` and
``glover`` HRFs come from nilearn with ``oversampling=1``, whose gamma densities are shifted
by one sample (``loc=dt``) -- and sampled every ``N TR / (N - 1)`` s: the response to an event
at scan ``i`` starts one scan later, so pySPFM recovers it at coefficient ``i - 1``. Compare
the two with ``ours[1:]`` against ``pyspfm[:-1]`` (given the same HRF samples as a custom
``.1D`` file, pySPFM's coefficients align with ours without a shift). Here the canonical
shapes are evaluated exactly at ``k TR`` (:func:`canonical_hrf`).

Amplitude convention (as pySPFM): the matrix is divided by its largest absolute value, so a
coefficient of 1 produces a BOLD response whose peak is 1 (single echo, spike model).

Block model: ``H L`` with ``L`` the lower-triangular matrix of ones, so the coefficients are
the *innovation* signal (the derivative of the activity). Multi-echo: the matrices
``-TE_k H`` (TE in seconds) are stacked along time, echo after echo, then scaled jointly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import gamma

# Double-gamma parameters of the canonical shapes (as in SPM and nilearn's presets).
_DOUBLE_GAMMA = {
    "spm": {
        "delay": 6.0,
        "undershoot": 16.0,
        "dispersion": 1.0,
        "u_dispersion": 1.0,
        "ratio": 1.0 / 6.0,
    },
    "glover": {
        "delay": 6.0,
        "undershoot": 12.0,
        "dispersion": 0.9,
        "u_dispersion": 0.9,
        "ratio": 0.48,
    },
}


def canonical_hrf(time: np.ndarray, model: str = "spm") -> np.ndarray:
    """Evaluate a canonical double-gamma HRF at arbitrary times, scaled to a unit peak.

    Parameters
    ----------
    time : ndarray
        Seconds after stimulus onset (negative times give 0).
    model : {"spm", "glover"}
        Double-gamma preset.

    Returns
    -------
    ndarray
        HRF values, same shape as ``time``; the maximum over a fine grid is 1.
    """
    from bids_hrf.hrf.presets import is_hrf_shape, parse_hrf_shape

    if is_hrf_shape(model):
        shape = parse_hrf_shape(model)
        peak = np.max(np.abs(shape.values(np.linspace(0.0, 32.0, 3201))))
        return shape.values(np.asarray(time, dtype=float)) / peak
    if model not in _DOUBLE_GAMMA:
        raise ValueError(
            f"Unknown HRF model {model!r}: use 'spm', 'glover', a shape (claron2021, "
            "gamma:SHAPE,SCALE, ...) or an array of HRF samples"
        )
    p = _DOUBLE_GAMMA[model]
    t = np.asarray(time, dtype=float)

    def _shape(tt: np.ndarray) -> np.ndarray:
        return gamma.pdf(tt, p["delay"] / p["dispersion"], scale=p["dispersion"]) - p[
            "ratio"
        ] * gamma.pdf(tt, p["undershoot"] / p["u_dispersion"], scale=p["u_dispersion"])

    peak = np.max(_shape(np.linspace(0.0, 32.0, 3201)))
    return _shape(t) / peak


def hrf_samples(tr: float, n_scans: int, hrf_model: str | np.ndarray = "spm") -> np.ndarray:
    """Return the HRF sampled at ``0, TR, 2 TR, ...`` (``n_scans`` samples).

    Parameters
    ----------
    tr : float
        Repetition time in seconds.
    n_scans : int
        Number of samples wanted (the kernel is zero-padded or must not be longer).
    hrf_model : {"spm", "glover"} or ndarray
        Canonical shape, or HRF samples at TR starting at onset (``h[0]`` at t = 0).

    Returns
    -------
    ndarray, shape (n_scans,)
    """
    if tr <= 0:
        raise ValueError(f"tr must be positive (seconds), got {tr}")
    if isinstance(hrf_model, str):
        return canonical_hrf(np.arange(n_scans) * tr, hrf_model)
    h = np.asarray(hrf_model, dtype=float).ravel()
    if h.size == 0 or not np.all(np.isfinite(h)) or not np.any(h):
        raise ValueError("hrf_model samples must be finite and not all zero")
    if h.size > n_scans:
        raise ValueError(
            f"The HRF has {h.size} samples but the data only {n_scans} scans: "
            "truncate the HRF or use more scans"
        )
    out = np.zeros(n_scans)
    out[: h.size] = h
    return out


def convolution_matrix(h: np.ndarray, n_scans: int) -> np.ndarray:
    """Lower-triangular Toeplitz matrix with ``H[i + k, i] = h[k]`` (column i starts at i).

    Parameters
    ----------
    h : ndarray
        Kernel samples (truncated or zero-padded to ``n_scans``).
    n_scans : int
        Matrix size.

    Returns
    -------
    ndarray, shape (n_scans, n_scans)
    """
    col = np.zeros(n_scans)
    k = min(n_scans, len(h))
    col[:k] = h[:k]
    idx = np.arange(n_scans)
    diff = idx[:, None] - idx[None, :]
    return np.where(diff >= 0, col[np.clip(diff, 0, n_scans - 1)], 0.0)


def _te_seconds(te: Sequence[float] | None) -> list[float] | None:
    if te is None:
        return None
    te = [float(t) for t in te]
    if len(te) == 0 or any(t <= 0 for t in te):
        raise ValueError(f"te must be a list of positive echo times (ms), got {te}")
    # pySPFM convention: values above 1 are milliseconds.
    return [t / 1000.0 for t in te] if max(te) > 1 else te


def hrf_matrix(
    tr: float,
    n_scans: int,
    hrf_model: str | np.ndarray = "spm",
    block_model: bool = False,
    te: Sequence[float] | None = None,
) -> np.ndarray:
    """Build the (normalised) HRF matrix of the deconvolution model.

    Parameters
    ----------
    tr : float
        Repetition time in seconds.
    n_scans : int
        Number of scans per echo.
    hrf_model : {"spm", "glover"} or ndarray
        Canonical shape or HRF samples at TR.
    block_model : bool
        Integrate (cumulative sum) so that coefficients are innovation signals.
    te : list of float, optional
        Echo times (ms, or s when all <= 1) for multi-echo data; rows are stacked by echo.

    Returns
    -------
    ndarray, shape (n_scans * n_echoes, n_scans)
        See the module docstring for the time and amplitude conventions.
    """
    if n_scans < 2:
        raise ValueError(f"Need at least 2 scans to deconvolve, got {n_scans}")
    h = hrf_samples(tr, n_scans, hrf_model)
    mat = convolution_matrix(h, n_scans)
    if block_model:
        mat = np.cumsum(mat[:, ::-1], axis=1)[:, ::-1]  # H @ tril(ones)
    tes = _te_seconds(te)
    if tes is not None and len(tes) > 1:
        mat = np.vstack([-t * mat for t in tes])
    scale = np.max(np.abs(mat))
    return mat / scale


def integration_matrix(n_scans: int) -> np.ndarray:
    """Lower-triangular matrix of ones mapping innovation to activity (``a = L u``)."""
    return np.tril(np.ones((n_scans, n_scans)))
