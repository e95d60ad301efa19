"""Paradigm-free ("blind") HRF estimation: alternate sparse activity and HRF shape.

For the voxels of one parcel, sharing one HRF ``h``, alternate

(a) the sparse activity ``s_v`` of every voxel given ``h`` (LARS path + BIC, debiased; see
    :mod:`bids_hrf.hrf.sparse.deconvolution`), and
(b) ``h`` given the activities: least squares over all voxels of the parcel,
    ``sum_v ||y_v - (s_v * h)||^2 + mu ||D2 h||^2``, with ``h`` on a fine grid of step ``dt``
    (only its samples at multiples of TR enter the data term; the second-order-difference
    prior, as in JDE, interpolates between them), ``h(0) = 0`` and ``h(duration) = 0``,
    then scaled to unit norm.

It needs no paradigm, so it applies to resting-state runs. Blind deconvolution alone cannot
tell a delayed HRF from earlier activity (a shift of the HRF by a whole number of scans is
undone by shifting the events), so the alternation left alone stays where it starts. The start
is therefore chosen first: the canonical HRF is stretched in time, ``h(t / a)`` for a grid of
factors ``a`` (a stretched HRF starts at 0 like the canonical one, so it is not a shift), and
the factor minimising the summed BIC of the sparse fits of all voxels is kept. The
alternation (a)-(b) then refines the shape, each update being kept only if it lowers that BIC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_hrf.hrf._hrf_matrix import canonical_hrf
from bids_hrf.hrf.sparse.deconvolution import SparseDeconvolution

#: Time-stretch factors of the canonical HRF tried by default (peak 3 s to 10 s for SPM).
DEFAULT_SCALES = tuple(np.round(np.arange(0.6, 2.01, 0.1), 2))


@dataclass
class BlindHRFResult:
    """Output of :func:`estimate_blind_hrf`.

    Attributes
    ----------
    time : ndarray, shape (n_samples,)
        Fine time grid (s).
    hrf : ndarray, shape (n_samples,)
        Estimated HRF on ``time``, scaled to a unit peak (positive).
    hrf_tr : ndarray, shape (n_lags,)
        The HRF at multiples of TR (``hrf`` sampled at ``0, TR, ...``).
    activity : ndarray, shape (n_scans, n_voxels)
        Sparse activity deconvolved with the final HRF (in units of the unit-peak HRF).
    n_iter : int
    converged : bool
    """

    time: np.ndarray
    hrf: np.ndarray
    hrf_tr: np.ndarray
    activity: np.ndarray
    n_iter: int
    converged: bool


def _interp_matrix(time: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Linear interpolation weights mapping values on ``time`` to ``points``."""
    out = np.zeros((points.size, time.size))
    for i, p in enumerate(points):
        k = int(np.clip(np.searchsorted(time, p) - 1, 0, time.size - 2))
        w = (p - time[k]) / (time[k + 1] - time[k])
        out[i, k] = 1.0 - w
        out[i, k + 1] = w
    return out


def _lagged(s: np.ndarray, n_lags: int) -> np.ndarray:
    """Stack of delayed copies: ``X[v, n, k] = s[n - k, v]``."""
    n_scans, n_vox = s.shape
    x = np.zeros((n_vox, n_scans, n_lags))
    for k in range(n_lags):
        x[:, k:, k] = s[: n_scans - k].T
    return x


def estimate_blind_hrf(
    Y: np.ndarray,
    tr: float,
    dt: float = 0.1,
    hrf_duration: float = 25.0,
    hrf_model: str = "spm",
    criterion: str = "bic",
    smoothness: float = 1e-3,
    max_iter: int = 5,
    tol: float = 1e-3,
    scales: np.ndarray | tuple = DEFAULT_SCALES,
) -> BlindHRFResult:
    """Estimate one HRF and the sparse activity of the voxels of a parcel, without events.

    Parameters
    ----------
    Y : ndarray, shape (n_scans, n_voxels)
        Cleaned time series of the parcel (one run).
    tr : float
        Repetition time (s).
    dt : float
        Step of the output HRF grid (s).
    hrf_duration : float
        Length of the HRF (s); the HRF is zero at 0 and at ``hrf_duration``.
    hrf_model : {"spm", "glover"}
        Starting HRF.
    criterion : str
        Lambda rule of the activity step (see :class:`SparseDeconvolution`).
    smoothness : float
        Weight of the second-difference prior relative to the data term.
    max_iter : int
        Maximum number of alternations after the stretch search.
    tol : float
        Stop when the unit-norm HRF changes by less than this (L2).
    scales : sequence of float
        Time-stretch factors of the canonical HRF tried first (1 = canonical; 1.4 moves the
        SPM peak from 5 s to 7 s).

    Returns
    -------
    BlindHRFResult
    """
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    n_scans = Y.shape[0]
    if dt <= 0 or dt > tr:
        raise ValueError(f"dt must be in (0, tr], got dt={dt} with tr={tr}")
    if hrf_duration < 2 * tr:
        raise ValueError(f"hrf_duration ({hrf_duration} s) must cover at least two scans")
    n_lags = int(np.floor(hrf_duration / tr + 1e-9)) + 1
    n_lags = min(n_lags, n_scans)
    if n_scans < 3 * n_lags:
        raise ValueError(
            f"{n_scans} scans are too few to estimate an HRF of {hrf_duration} s at TR={tr} s"
        )
    time = np.arange(0.0, hrf_duration + dt / 2, dt)
    p_mat = _interp_matrix(time, np.arange(n_lags) * tr)  # fine grid -> TR samples
    free = np.arange(1, time.size - 1)  # h(0) = h(end) = 0
    d2 = np.diff(np.eye(time.size), n=2, axis=0)[:, free]
    penalty = d2.T @ d2 / dt**3  # discretised integral of h''^2, in seconds

    def fit_activity(h_fine):
        h_tr = p_mat @ h_fine
        model = SparseDeconvolution(tr, hrf_model=h_tr, criterion=criterion).fit(Y)
        rss = np.maximum(np.sum((Y - model.fitted_) ** 2, axis=0), 1e-300)
        k = np.count_nonzero(model.coef_, axis=0)
        bic = float(np.sum(n_scans * np.log(rss / n_scans) + np.log(n_scans) * k))
        return model.coef_ / np.max(np.abs(h_tr)), bic

    # (0) stretch of the canonical HRF with the best summed BIC
    best = None
    for a in np.asarray(scales, dtype=float):
        h_a = canonical_hrf(time / a, hrf_model)
        s_a, bic_a = fit_activity(h_a)
        if best is None or bic_a < best[2]:
            best = (h_a / np.linalg.norm(h_a), s_a, bic_a)
    h, s, bic = best
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - reported after the loop
        if not np.any(s):
            converged = True  # nothing to learn the shape from: keep the current HRF
            break
        # (b) HRF given the activity: penalised least squares over all voxels
        x = _lagged(s, n_lags) @ p_mat[:, free]  # (V, n_scans, n_free)
        xtx = np.einsum("vnk,vnl->kl", x, x)
        xty = np.einsum("vnk,nv->k", x, Y)
        mu = smoothness * np.trace(xtx) / free.size
        h_new = np.zeros_like(h)
        h_new[free] = np.linalg.solve(xtx + mu * penalty, xty)
        if h_new[np.argmax(np.abs(h_new))] < 0:
            h_new = -h_new
        norm = np.linalg.norm(h_new)
        if norm == 0:
            converged = True
            break
        h_new /= norm
        # (a) activity given the HRF; keep the update only if the fit improves
        s_new, bic_new = fit_activity(h_new)
        change = np.linalg.norm(h_new - h)
        if bic_new >= bic:
            converged = True
            break
        h, s, bic = h_new, s_new, bic_new
        if change < tol:
            converged = True
            break
    h_peak = h / np.max(h)
    h_tr = p_mat @ h_peak
    activity = SparseDeconvolution(tr, hrf_model=h_tr, criterion=criterion).fit(Y).coef_
    return BlindHRFResult(
        time=time,
        hrf=h_peak,
        hrf_tr=h_tr,
        activity=activity,
        n_iter=n_iter,
        converged=converged,
    )
