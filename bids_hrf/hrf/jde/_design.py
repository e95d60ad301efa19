"""Design pieces of the JDE-VEM model: stimulus matrices, drifts, HRF prior, neighbour graph.

Everything here is computed once per parcel (or once per run) and is pure array code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse, stats

__all__ = [
    "choose_dt",
    "canonical_hrf",
    "condition_names",
    "condition_matrices",
    "drift_basis",
    "hrf_precision",
    "grid_adjacency",
    "graph_colours",
    "validate_events",
]

_EPS_T = 1e-9  # tolerance (s) when comparing times on the dt grid


def choose_dt(tr: float, dt: float | None = None, max_dt: float = 0.6) -> float:
    """Return the HRF sampling step.

    Parameters
    ----------
    tr : float
        Repetition time in seconds.
    dt : float, optional
        Requested step. Any positive value is accepted: the stimulus matrices are exact for
        the piecewise-linear HRF through the samples, so ``tr / dt`` need not be an integer.
    max_dt : float
        When ``dt`` is None, the largest step allowed; the step chosen is ``tr / k`` with the
        smallest integer ``k`` giving ``dt <= max_dt`` (TR = 2 -> 0.5, TR = 1 -> 0.5,
        TR = 0.72 -> 0.36).

    Returns
    -------
    float
    """
    if not np.isfinite(tr) or tr <= 0:
        raise ValueError(f"tr must be a positive number of seconds, got {tr!r}")
    if dt is not None:
        if not np.isfinite(dt) or dt <= 0:
            raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
        return float(dt)
    k = max(1, math.ceil(tr / max_dt - 1e-9))
    return float(tr) / k


def canonical_hrf(time: np.ndarray, model: str = "spm") -> np.ndarray:
    """Canonical HRF of ``--hrf-model`` at ``time`` (s).

    Parameters
    ----------
    time : ndarray
    model : str
        ``"spm"`` (double gamma, peak 5 s, undershoot 15 s, ratio 1/6), ``"glover"``
        (derivative variants such as ``"spm + derivative"`` give their main HRF), or a shape
        of :mod:`bids_hrf.hrf.presets` (``claron2021``, ``gamma:6,1``, ``file:HRF.tsv``...).

    Returns
    -------
    ndarray
        Same shape as ``time`` (arbitrary scale).

    Raises
    ------
    ValueError
        For an unknown model name.
    """
    time = np.asarray(time, dtype=float)
    from bids_hrf.hrf.basis import normalize_hrf_model
    from bids_hrf.hrf.presets import is_hrf_shape, parse_hrf_shape

    if is_hrf_shape(model):
        return np.asarray(parse_hrf_shape(model).values(time), dtype=float)
    family = normalize_hrf_model(model).split(" + ")[0]
    if family == "spm":
        return stats.gamma.pdf(time, 6.0) - stats.gamma.pdf(time, 16.0) / 6.0
    from bids_hrf.hrf._hrf_matrix import canonical_hrf as double_gamma

    return double_gamma(time, family)


def validate_events(events: pd.DataFrame, run: int = 0) -> pd.DataFrame:
    """Check an events table and return onset, duration, trial_type, modulation columns.

    Raises
    ------
    ValueError
        When a required column is missing or a value is not finite.
    """
    if not isinstance(events, pd.DataFrame):
        raise ValueError(f"events of run {run} must be a pandas DataFrame, got {type(events)}")
    missing = [c for c in ("onset", "trial_type") if c not in events.columns]
    if missing:
        raise ValueError(
            f"events of run {run} lack column(s) {missing}: give onset, duration, trial_type "
            "(and optionally modulation) as in a BIDS events.tsv"
        )
    out = pd.DataFrame(
        {
            "onset": pd.to_numeric(events["onset"], errors="coerce").to_numpy(float),
            "duration": (
                pd.to_numeric(events["duration"], errors="coerce").to_numpy(float)
                if "duration" in events.columns
                else np.zeros(len(events))
            ),
            "trial_type": events["trial_type"].astype(str).to_numpy(),
            "modulation": (
                pd.to_numeric(events["modulation"], errors="coerce").to_numpy(float)
                if "modulation" in events.columns
                else np.ones(len(events))
            ),
        }
    )
    for col in ("onset", "duration", "modulation"):
        bad = ~np.isfinite(out[col].to_numpy())
        if bad.any():
            raise ValueError(
                f"events of run {run}: column {col!r} has {int(bad.sum())} missing or "
                f"non-numeric value(s) (first at row {int(np.flatnonzero(bad)[0])}); fix or "
                "drop those rows"
            )
    if (out["duration"] < 0).any():
        raise ValueError(f"events of run {run}: negative durations; durations must be >= 0")
    return out


def condition_names(events: Sequence[pd.DataFrame]) -> list[str]:
    """Sorted trial_type names over all runs."""
    names: set[str] = set()
    for ev in events:
        names.update(ev["trial_type"].tolist())
    return sorted(names)


def _hat(u: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - np.abs(u), 0.0, None)


def _hat_integral(u: np.ndarray) -> np.ndarray:
    """Antiderivative of the hat function ``max(0, 1 - |u|)`` (0 below -1, 1 above 1)."""
    u = np.clip(u, -1.0, 1.0)
    return np.where(u <= 0, 0.5 * (u + 1.0) ** 2, 1.0 - 0.5 * (1.0 - u) ** 2)


def condition_matrices(
    events: pd.DataFrame,
    frame_times: np.ndarray,
    conditions: Sequence[str],
    dt: float,
    n_lags: int,
) -> np.ndarray:
    """Stimulus lag matrices ``X_m`` of one run, exact for a piecewise-linear HRF.

    The HRF is the piecewise-linear interpolant of its samples ``h_d = h(d dt)`` (0 before
    lag 0 and after the last sample), so ``sum_d X[m, n, d] h_d`` is exactly the response
    at scan time ``t_n``, whatever ``tr / dt`` and the frame-time offsets:

    - an impulse (duration 0) at onset ``o`` adds ``modulation * hat((t_n - o) / dt - d)``
      (linear interpolation of the HRF at lag ``t_n - o``);
    - an event of duration ``w > 0`` adds ``modulation * max(w, dt) / w`` times the integral
      over its duration of the interpolated HRF, in units of ``dt``: a block counts
      ``w / dt`` impulses (as a boxcar on the dt grid in PyHRF), an event shorter than
      ``dt`` counts as one impulse spread over its duration.

    Parameters
    ----------
    events : DataFrame
        Validated events (see :func:`validate_events`).
    frame_times : ndarray, shape (n_scans,)
    conditions : sequence of str
    dt : float
    n_lags : int
        Number of HRF samples D.

    Returns
    -------
    ndarray, shape (n_conditions, n_scans, n_lags)
    """
    frame_times = np.asarray(frame_times, dtype=float)
    n_scans = frame_times.size
    lags = np.arange(n_lags)[None, :]
    stim_times = frame_times[:, None] - dt * lags  # stimulus time seen at lag d
    out = np.zeros((len(conditions), n_scans, n_lags))
    types = events["trial_type"].to_numpy()
    for m, name in enumerate(conditions):
        sel = types == name
        ons = events["onset"].to_numpy()[sel]
        durs = events["duration"].to_numpy()[sel]
        amps = events["modulation"].to_numpy()[sel]
        # impulses: linear interpolation of the HRF at lag t_n - o (two samples per scan)
        imp = durs <= 0
        tau = (frame_times[None, :] - ons[imp, None]) / dt  # (E, N) in units of dt
        tau = np.where(np.abs(tau - np.round(tau)) < _EPS_T / dt, np.round(tau), tau)
        e_idx, n_idx = np.nonzero((tau >= 0) & (tau < n_lags))
        t = tau[e_idx, n_idx]
        d0 = np.floor(t).astype(int)
        frac = t - d0
        a = amps[imp][e_idx]
        np.add.at(out[m], (n_idx, d0), a * (1.0 - frac))
        nxt = d0 + 1 < n_lags
        np.add.at(out[m], (n_idx[nxt], d0[nxt] + 1), (a * frac)[nxt])
        # events with a duration: integral of the interpolated HRF over the duration
        for onset, duration, amp in zip(ons[~imp], durs[~imp], amps[~imp], strict=True):
            causal = (frame_times - onset >= -_EPS_T)[:, None]
            u = (stim_times - onset) / dt  # lag of the scan after the onset, minus d, in dt
            lower = np.maximum(u - duration / dt, -lags)
            w = (_hat_integral(u) - _hat_integral(lower)) * max(duration, dt) / duration
            out[m] += amp * np.where(causal, w, 0.0)
    return out


def drift_basis(
    frame_times: np.ndarray,
    model: str | None = "cosine",
    high_pass: float = 0.01,
    order: int = 3,
) -> np.ndarray:
    """Orthonormal low-frequency drift basis (columns) including the constant.

    Parameters
    ----------
    frame_times : ndarray, shape (n_scans,)
    model : {"cosine", "polynomial", None}
        Drift family, as in nilearn's ``make_first_level_design_matrix``.
    high_pass : float
        Cut-off frequency (Hz) of the cosine basis.
    order : int
        Order of the polynomial basis.

    Returns
    -------
    ndarray, shape (n_scans, n_drifts)
    """
    from nilearn.glm.first_level import make_first_level_design_matrix

    if model not in ("cosine", "polynomial", None):
        raise ValueError(f"drift_model must be 'cosine', 'polynomial' or None, got {model!r}")
    frame_times = np.asarray(frame_times, dtype=float)
    dm = make_first_level_design_matrix(
        frame_times, events=None, drift_model=model, high_pass=high_pass, drift_order=order
    ).to_numpy(float)
    q, r = np.linalg.qr(dm)
    keep = np.abs(np.diag(r)) > 1e-8 * max(1.0, np.abs(np.diag(r)).max())
    return q[:, keep]


def hrf_precision(n_lags: int, dt: float, zero_constraint: bool = True) -> np.ndarray:
    """Inverse prior covariance ``R^-1 = D2' D2 / dt^4`` of the free HRF samples.

    ``D2`` takes second differences of the HRF padded with zeros at both ends, so the matrix
    is full rank. With the zero constraint the first and last samples are fixed to 0 and the
    ``n_lags - 2`` interior samples are free.

    Returns
    -------
    ndarray, shape (n_free, n_free)
    """
    n_free = n_lags - 2 if zero_constraint else n_lags
    if n_free < 1:
        raise ValueError(f"the HRF needs at least 3 samples, got {n_lags}; lower dt")
    d2 = (
        np.diag(np.full(n_free, -2.0))
        + np.diag(np.ones(n_free - 1), 1)
        + np.diag(np.ones(n_free - 1), -1)
    )
    return d2.T @ d2 / dt**4


def grid_adjacency(ijk: np.ndarray) -> sparse.csr_matrix:
    """6-connectivity adjacency of voxels given integer grid coordinates.

    Parameters
    ----------
    ijk : ndarray, shape (n_voxels, 3)

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_voxels, n_voxels), symmetric, 0/1
    """
    ijk = np.asarray(ijk)
    if ijk.ndim != 2 or ijk.shape[1] != 3:
        raise ValueError(f"voxel coordinates must have shape (n_voxels, 3), got {ijk.shape}")
    ijk = ijk.astype(np.int64)
    n = ijk.shape[0]
    if n == 0:
        return sparse.csr_matrix((0, 0))
    lo = ijk.min(axis=0) - 1
    dims = ijk.max(axis=0) - lo + 2
    keys = np.ravel_multi_index((ijk - lo).T, dims)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    rows, cols = [], []
    for axis in range(3):
        shifted = ijk - lo
        shifted[:, axis] += 1
        k2 = np.ravel_multi_index(shifted.T, dims)
        pos = np.clip(np.searchsorted(sorted_keys, k2), 0, n - 1)
        hit = sorted_keys[pos] == k2
        rows.append(np.flatnonzero(hit))
        cols.append(order[pos[hit]])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    adj = sparse.coo_matrix((np.ones(r.size), (r, c)), shape=(n, n))
    adj = ((adj + adj.T) > 0).astype(float)
    return adj.tocsr()


def graph_colours(adjacency: sparse.spmatrix) -> np.ndarray:
    """Greedy colouring: neighbours never share a colour (a 6-connected grid gets 2 colours).

    Voxels of one colour are conditionally independent given the others, so updating their
    labels together is exact coordinate ascent of the free energy.
    """
    adj = sparse.csr_matrix(adjacency)
    n = adj.shape[0]
    colours = np.full(n, -1, dtype=int)
    degree = np.diff(adj.indptr)
    for v in np.argsort(-degree, kind="stable"):
        used = set(colours[adj.indices[adj.indptr[v] : adj.indptr[v + 1]]].tolist())
        c = 0
        while c in used:
            c += 1
        colours[v] = c
    return colours
