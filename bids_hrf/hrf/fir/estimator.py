"""FIR (finite impulse response) HRF estimation per parcel, shared across conditions.

The HRF of each parcel is modelled on a grid of knots ``0, dt, ..., K dt`` with a
piecewise-linear ("tent") basis, so that the coefficients are the HRF values at the knots
and the onsets need not fall on the scan grid (``dt`` may be finer than the TR when
onsets are jittered). One GLM per run set is fitted to all parcels at once (the design
does not depend on the parcel) with nilearn's ``run_glm``: FIR columns per condition,
confounds and drifts per run. The lags x conditions coefficient matrix of each parcel is
reduced to one shape by its leading singular vector (rank 1: the same HRF for every
condition, with a per-condition amplitude), signed so that its largest-magnitude sample is
positive and scaled to unit norm.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from nilearn.glm.first_level import make_first_level_design_matrix, run_glm

from bids_hrf.conditions import check_events
from bids_hrf.hrf.base import HRFEstimate


def _as_list(x, n: int | None, what: str) -> list:
    if isinstance(x, (list, tuple)):
        if n is not None and len(x) != n:
            raise ValueError(f"{what}: {len(x)} entries for {n} runs")
        return list(x)
    return [x] * (n or 1)


def tent_regressors(
    events: pd.DataFrame,
    conditions: Sequence[str],
    frame_times: np.ndarray,
    dt: float,
    n_knots: int,
    oversampling: int = 10,
) -> np.ndarray:
    """FIR regressors of a piecewise-linear HRF with knots ``k * dt``.

    Parameters
    ----------
    events : pandas.DataFrame
        Validated events (``onset``, ``duration``, optional ``trial_type``/``modulation``).
    conditions : sequence of str
        Conditions, in column order.
    frame_times : ndarray, shape (n_scans,)
    dt : float
        Knot spacing in seconds.
    n_knots : int
        Number of knots (``0 .. (n_knots - 1) dt``).
    oversampling : int, default=10
        Sub-samples per ``dt`` used to integrate events with a duration.

    Returns
    -------
    ndarray, shape (n_scans, len(conditions) * n_knots)
        Column ``m * n_knots + k``: the response of condition ``m`` to a unit value at knot
        ``k``. An event of duration 0 contributes ``tent((t - onset) / dt - k)``; an event
        of duration ``D`` the integral of that over the event (seconds), so its
        coefficients are responses per second of stimulation.
    """
    frame_times = np.asarray(frame_times, dtype=float)
    out = np.zeros((frame_times.size, len(conditions) * n_knots))
    knots = np.arange(n_knots)
    tt = events["trial_type"].astype(str) if "trial_type" in events else None
    values = events["modulation"].to_numpy(float) if "modulation" in events else None
    step = dt / oversampling
    for m, cond in enumerate(conditions):
        sel = np.ones(len(events), bool) if tt is None else (tt == cond).to_numpy()
        for i in np.flatnonzero(sel):
            onset = float(events["onset"].iloc[i])
            dur = float(events["duration"].iloc[i])
            amp = 1.0 if values is None else float(values[i])
            if dur > 0:
                n_sub = max(1, int(np.ceil(dur / step)))
                starts = onset + (np.arange(n_sub) + 0.5) * dur / n_sub
                weight = amp * dur / n_sub
            else:
                starts = np.array([onset])
                weight = amp
            lag = (frame_times[:, None] - starts[None, :]) / dt  # (n_scans, n_sub)
            tent = np.clip(1.0 - np.abs(lag[:, :, None] - knots), 0.0, None)
            out[:, m * n_knots:(m + 1) * n_knots] += weight * tent.sum(axis=1)
    return out


def _fit_fir(Y, runs_ev, runs_ft, runs_conf, conditions, dt, fir_duration, drift_model,
             high_pass, noise_model):
    """Fit the stacked FIR GLM; None when the design is rank deficient.

    Returns (theta (p, n_parcels), FIR covariance (n_parcels, n_fir, n_fir), dof, n_knots).
    """
    n_knots = int(np.ceil(fir_duration / dt - 1e-9)) + 1
    n_fir = len(conditions) * n_knots
    fir_blocks, nuis_blocks = [], []
    for ev, ft, conf in zip(runs_ev, runs_ft, runs_conf, strict=True):
        ft = np.asarray(ft, dtype=float)
        fir_blocks.append(tent_regressors(ev, conditions, ft, dt, n_knots))
        nuis = make_first_level_design_matrix(
            ft, None, drift_model=drift_model, high_pass=high_pass, add_regs=conf
        )
        nuis_blocks.append(nuis.to_numpy())
    n_nuis = sum(b.shape[1] for b in nuis_blocks)
    X = np.zeros((Y.shape[0], n_fir + n_nuis))
    row, col = 0, n_fir
    for fb, nb in zip(fir_blocks, nuis_blocks, strict=True):
        X[row:row + fb.shape[0], :n_fir] = fb
        X[row:row + fb.shape[0], col:col + nb.shape[1]] = nb
        row += fb.shape[0]
        col += nb.shape[1]
    if np.linalg.matrix_rank(X) < X.shape[1]:
        return None
    labels, results = run_glm(Y, X, noise_model=noise_model)
    n_par = Y.shape[1]
    theta = np.zeros((X.shape[1], n_par))
    cov = np.zeros((n_par, n_fir, n_fir))
    dof = np.zeros(n_par)
    for lab, res in results.items():
        sel = labels == lab
        theta[:, sel] = res.theta
        unscaled = np.asarray(res.cov)[:n_fir, :n_fir]
        cov[sel] = unscaled[None] * np.atleast_1d(res.dispersion)[:, None, None]
        dof[sel] = res.df_residuals
    return theta, cov, dof, n_knots


def estimate_fir(
    parcel_timeseries: np.ndarray | Sequence[np.ndarray],
    events: pd.DataFrame | Sequence[pd.DataFrame],
    frame_times: np.ndarray | Sequence[np.ndarray],
    tr: float,
    parcel_names: Sequence[str],
    confounds: pd.DataFrame | Sequence[pd.DataFrame | None] | None = None,
    fir_duration: float = 24.0,
    high_pass: float = 0.01,
    dt: float | None = None,
    noise_model: str = "ar1",
    drift_model: str | None = "cosine",
) -> HRFEstimate:
    """Estimate one HRF per parcel by FIR deconvolution, shared across conditions.

    Parameters
    ----------
    parcel_timeseries : ndarray (n_scans, n_parcels) or list of them (one per run)
        Mean time series of each parcel.
    events : pandas.DataFrame or list of them (one per run)
        BIDS events; every condition shares the parcel's HRF shape.
    frame_times : ndarray or list of them (one per run)
        Scan times in seconds.
    tr : float
        Repetition time in seconds (default knot spacing).
    parcel_names : sequence of str
        One name per parcel column.
    confounds : pandas.DataFrame or list (one per run, entries may be None), optional
    fir_duration : float, default=24.0
        Last knot in seconds (rounded up to a multiple of ``dt``).
    high_pass : float, default=0.01
        Cosine drift cut-off in Hz.
    dt : float, optional
        Knot spacing; defaults to ``tr``. A finer spacing needs onsets jittered relative to
        the scans: when the design is rank deficient at ``dt < tr``, the knots are placed
        every TR instead and the piecewise-linear HRF is sampled every ``dt`` (with a
        warning; ``parameters["knot_spacing"]`` records it).
    noise_model : str, default="ar1"
        nilearn ``run_glm`` noise model. With several runs the runs are stacked (separate
        drifts and confounds, shared FIR coefficients); the AR model ignores run
        boundaries.
    drift_model : {"cosine", "polynomial", None}, default="cosine"

    Returns
    -------
    HRFEstimate
        ``method="fir"``; ``hrfs`` unit-norm shapes at ``time = 0, dt, ..., K dt``;
        ``variance`` the sampling variance of each sample (GLM covariance propagated
        through the rank-1 weights, the singular vectors held fixed); ``parameters`` with
        the knots (``delays``), ``dt``, conditions, noise model; ``parcel_tables``:
        ``"fir-amplitudes"`` (per parcel, the amplitude of each condition and
        ``rank1_fraction``, the share of the coefficient energy explained by one shape).

    Raises
    ------
    ValueError
        Inconsistent shapes, bad events, or a rank-deficient FIR design.
    """
    if not np.isfinite(tr) or tr <= 0:
        raise ValueError(f"tr must be a positive number of seconds, got {tr}")
    dt = float(tr) if dt is None else float(dt)
    if not np.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be positive, got {dt}")
    if fir_duration < dt:
        raise ValueError(f"fir_duration ({fir_duration} s) must be at least dt ({dt} s)")
    runs_y, runs_ev, runs_ft, runs_conf, names = _check_runs(
        parcel_timeseries, events, frame_times, confounds, parcel_names)
    n_runs = len(runs_y)
    conditions = sorted(
        {str(c) for ev in runs_ev for c in (ev["trial_type"] if "trial_type" in ev else ["dummy"])}
    )
    Y = np.vstack(runs_y)
    knot_dt = dt
    fitted = _fit_fir(Y, runs_ev, runs_ft, runs_conf, conditions, knot_dt, fir_duration,
                      drift_model, high_pass, noise_model)
    if fitted is None and dt < tr:
        knot_dt = float(tr)
        warnings.warn(
            f"FIR knots every dt={dt} s are not identifiable (onsets locked to the scans): "
            f"estimated every TR={tr} s and linearly interpolated to dt (exact for the "
            "piecewise-linear FIR)", UserWarning, stacklevel=2,
        )
        fitted = _fit_fir(Y, runs_ev, runs_ft, runs_conf, conditions, knot_dt, fir_duration,
                          drift_model, high_pass, noise_model)
    if fitted is None:
        raise ValueError(
            f"FIR design is rank deficient with knots every {knot_dt} s over {fir_duration} s: "
            "the onsets do not sample every lag or the FIR window is too long for the runs; "
            "use a shorter fir_duration or more (jittered) events"
        )
    theta, cov, dof, n_knots = fitted
    h, amplitudes, cov_h, singular, h_raw = _rank_one(theta, cov, len(names),
                                                      len(conditions), n_knots)
    knots = np.arange(n_knots) * knot_dt
    time, h, variance, amplitudes = _on_time_grid(h, cov_h, amplitudes, h_raw, knots,
                                                  knot_dt, dt)
    energy = np.sum(singular**2, axis=1)
    rank1 = np.divide(singular[:, 0] ** 2, energy, out=np.zeros(len(names)),
                      where=energy > 0)
    table = pd.DataFrame(amplitudes, columns=conditions)
    table.insert(0, "parcel", names)
    table["rank1_fraction"] = rank1
    table["dof"] = dof
    return HRFEstimate(
        time=time,
        hrfs=h.T,
        labels=names,
        method="fir",
        variance=variance.T,
        parameters={
            "basis": "piecewise-linear (tent) FIR, rank-1 across conditions",
            "dt": dt,
            "knot_spacing": knot_dt,
            "fir_duration": float(time[-1]),
            "delays": knots.tolist(),
            "n_runs": n_runs,
            "conditions": conditions,
            "noise_model": noise_model,
            "drift_model": drift_model,
            "high_pass": high_pass,
            "normalisation": "unit Euclidean norm, largest-magnitude sample positive",
        },
        parcel_tables={"fir-amplitudes": table},
    )


def _check_runs(parcel_timeseries, events, frame_times, confounds, parcel_names):
    """The runs' series (2-D, finite), events (checked), frame times, confounds and names."""
    runs_y = (
        [np.asarray(parcel_timeseries, dtype=float)]
        if isinstance(parcel_timeseries, np.ndarray)
        else [np.asarray(y, dtype=float) for y in parcel_timeseries]
    )
    n_runs = len(runs_y)
    if n_runs == 0:
        raise ValueError("estimate_fir needs at least one run")
    runs_ev = _as_list(events, n_runs, "events")
    runs_ft = (
        _as_list(frame_times, n_runs, "frame_times")
        if isinstance(frame_times, (list, tuple)) else [frame_times] * n_runs
    )
    runs_conf = _as_list(confounds, n_runs, "confounds")
    names = [str(p) for p in parcel_names]
    for r, y in enumerate(runs_y):
        if y.ndim == 1:
            runs_y[r] = y = y[:, None]
        if y.shape[1] != len(names):
            raise ValueError(
                f"run {r}: {y.shape[1]} parcel time series but {len(names)} parcel names"
            )
        if np.asarray(runs_ft[r]).size != y.shape[0]:
            raise ValueError(f"run {r}: {np.size(runs_ft[r])} frame times for {y.shape[0]} scans")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"run {r}: parcel time series contain NaN or inf")
    runs_ev = [check_events(ev, np.asarray(ft)) for ev, ft in zip(runs_ev, runs_ft, strict=True)]
    return runs_y, runs_ev, runs_ft, runs_conf, names


def _rank_one(theta, cov, n_par, n_cond, n_knots):
    """The shared shape of each parcel's condition x lag FIR coefficients (first singular
    vectors, largest sample positive), its amplitudes and the covariance of the shape."""
    n_fir = n_cond * n_knots
    B = theta[:n_fir].T.reshape(n_par, n_cond, n_knots).transpose(0, 2, 1)  # (P, K, M)
    U, S, Vt = np.linalg.svd(B, full_matrices=False)
    h = U[:, :, 0]  # (P, K)
    v = Vt[:, 0, :]  # (P, M)
    peak = np.take_along_axis(h, np.argmax(np.abs(h), axis=1)[:, None], axis=1)[:, 0]
    sign = np.where(peak < 0, -1.0, 1.0)
    h *= sign[:, None]
    amplitudes = S[:, 0:1] * v * sign[:, None]  # (P, M): B ~ h amplitudes^T
    # h = B v / s: each knot k is sum_m w_m b_{m,k} with w = sign * v / s
    s1 = np.where(S[:, 0] > 0, S[:, 0], np.inf)
    w = sign[:, None] * v / s1[:, None]  # (P, M)
    cov4 = cov.reshape(n_par, n_cond, n_knots, n_cond, n_knots)
    cov_h = np.einsum("pm,pmknl,pn->pkl", w, cov4, w)  # (P, K, K)
    return h, amplitudes, cov_h, S, U[:, :, 0]


def _on_time_grid(h, cov_h, amplitudes, h_raw, knots, knot_dt, dt):
    """Shapes, variances and amplitudes on the ``dt`` grid (interpolated from the knots
    when they had to be spaced by TR)."""
    if knot_dt != dt:
        time = np.arange(int(np.floor(knots[-1] / dt + 1e-9)) + 1) * dt
        J = np.clip(1.0 - np.abs(time[:, None] - knots[None, :]) / knot_dt, 0.0, None)
        h = h @ J.T
        h /= np.linalg.norm(h, axis=1, keepdims=True)
        scale = np.linalg.norm(h_raw @ J.T, axis=1)
        variance = np.einsum("fk,pkl,fl->pf", J, cov_h, J) / scale[:, None] ** 2
        amplitudes = amplitudes * scale[:, None]
    else:
        time = knots
        variance = np.diagonal(cov_h, axis1=1, axis2=2).copy()
    return time, h, variance, amplitudes
