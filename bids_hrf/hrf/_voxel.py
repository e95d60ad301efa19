"""Shared pieces of the voxel-wise HRF methods (``rfir``, ``r1glm``, ``library``).

All three methods see the data through the same FIR design: for each run, the response of
each condition to a unit value at each knot ``0, dt, ..., (K - 1) dt`` of a
piecewise-linear HRF (:func:`bids_hrf.hrf.fir.estimator.tent_regressors`), plus nuisance regressors
(drifts, confounds, intercept) per run. Any HRF sampled at the knots, ``h``, gives the
regressor ``F_m h`` of condition ``m``; this design does not depend on the voxel, so it is
built once and factorised once (per AR(1) bin) for all voxels.

AR(1) noise is handled as nilearn does: one OLS fit of the full FIR model gives each
voxel's lag-1 autocorrelation of the residuals, which is rounded to a grid
(``precision``); voxels of one bin share the prewhitened design. The nuisance regressors
are then projected out of the whitened data and design, run by run (Frisch-Waugh), so the
methods only see the event part of the model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from nilearn.glm.first_level import make_first_level_design_matrix

from bids_hrf.conditions import check_events
from bids_hrf.hrf.fir.estimator import tent_regressors
from bids_hrf.hrf.params import hrf_parameters

__all__ = ["EventDesign", "make_event_design", "as_runs", "ar1_bins", "whitened_bins",
           "voxel_hrf_parameters", "r2_score", "voxel_glm", "pool_hrfs"]


@dataclass
class EventDesign:
    """FIR design of one or several runs, shared by all voxels.

    Attributes
    ----------
    fir : list of ndarray, each (n_scans_r, n_conditions * n_knots)
        Column ``m * n_knots + k``: response of condition ``m`` to a unit HRF value at knot
        ``k`` (piecewise-linear HRF).
    nuisance : list of ndarray, each (n_scans_r, q_r)
        Drifts, confounds and intercept of each run.
    conditions : list of str
    dt : float
        Knot spacing in seconds.
    n_knots : int
    trials : list of ndarray, each (n_scans_r, n_trials_r * n_knots), optional
        Per-trial FIR blocks (for single-trial estimates), built when asked for.
    """

    fir: list[np.ndarray]
    nuisance: list[np.ndarray]
    conditions: list[str]
    dt: float
    n_knots: int
    trials: list[np.ndarray] | None = None

    @property
    def time(self) -> np.ndarray:
        """Knot times in seconds (``0, dt, ...``)."""
        return np.arange(self.n_knots) * self.dt

    @property
    def n_runs(self) -> int:
        """Number of runs."""
        return len(self.fir)

    def condition_blocks(self, run: int) -> np.ndarray:
        """FIR design of ``run`` as ``(n_scans, n_conditions, n_knots)``."""
        f = self.fir[run]
        return f.reshape(f.shape[0], len(self.conditions), self.n_knots)


def _runs(x, n: int, what: str) -> list:
    if isinstance(x, (list, tuple)):
        if len(x) != n:
            raise ValueError(f"{what}: {len(x)} entries for {n} runs")
        return list(x)
    return [x] * n


def make_event_design(
    events: pd.DataFrame | Sequence[pd.DataFrame],
    frame_times: np.ndarray | Sequence[np.ndarray],
    confounds: pd.DataFrame | Sequence[pd.DataFrame | None] | None = None,
    dt: float | None = None,
    fir_duration: float = 24.0,
    high_pass: float = 0.01,
    drift_model: str | None = "cosine",
    conditions: Sequence[str] | None = None,
    single_trials: bool = False,
) -> EventDesign:
    """Build the FIR design of one or several runs.

    Parameters
    ----------
    events : DataFrame or list of them (one per run)
        BIDS events (``onset``, ``duration``, optional ``trial_type``, ``modulation``).
    frame_times : ndarray or list of them (one per run)
        Scan times in seconds (acquisition times of the volumes).
    confounds : DataFrame or list (one per run, entries may be None), optional
    dt : float, optional
        Knot spacing in seconds; defaults to the TR (spacing of the frame times).
    fir_duration : float, default=24.0
        Last knot in seconds (rounded up to a multiple of ``dt``).
    high_pass : float, default=0.01
        Cosine drift cut-off (Hz).
    drift_model : {"cosine", "polynomial", None}
    conditions : sequence of str, optional
        Condition order; defaults to the sorted trial types of all runs.
    single_trials : bool, default=False
        Also build one FIR block per event (``EventDesign.trials``).

    Returns
    -------
    EventDesign

    Raises
    ------
    ValueError
        Bad events, a non-positive ``dt``, or an FIR window longer than a run.
    """
    n_runs = len(events) if isinstance(events, (list, tuple)) else 1
    runs_ev = _runs(events, n_runs, "events")
    runs_ft = [np.asarray(ft, dtype=float) for ft in _runs(frame_times, n_runs, "frame_times")]
    runs_conf = _runs(confounds, n_runs, "confounds")
    if n_runs == 0:
        raise ValueError("the voxel-wise HRF methods need at least one run")
    tr = float(np.median(np.diff(runs_ft[0]))) if runs_ft[0].size > 1 else np.nan
    dt = tr if dt is None else float(dt)
    if not np.isfinite(dt) or dt <= 0:
        raise ValueError(f"FIR knot spacing dt must be a positive number of seconds, got {dt}")
    if not np.isfinite(fir_duration) or fir_duration < dt:
        raise ValueError(f"fir_duration ({fir_duration} s) must be at least dt ({dt} s)")
    for r, ft in enumerate(runs_ft):
        span = ft[-1] - ft[0] if ft.size > 1 else 0.0
        if fir_duration >= span:
            raise ValueError(
                f"run {r}: the FIR window ({fir_duration:g} s) is longer than the run "
                f"({ft.size} scans, {span:g} s): use a shorter --fir-duration"
            )
    runs_ev = [check_events(ev, ft) for ev, ft in zip(runs_ev, runs_ft, strict=True)]
    if conditions is None:
        conditions = sorted({str(c) for ev in runs_ev
                             for c in (ev["trial_type"] if "trial_type" in ev else ["dummy"])})
    conditions = [str(c) for c in conditions]
    n_knots = int(np.ceil(fir_duration / dt - 1e-9)) + 1
    fir, nuis, trials = [], [], []
    for ev, ft, conf in zip(runs_ev, runs_ft, runs_conf, strict=True):
        if "trial_type" not in ev:
            ev = ev.assign(trial_type=conditions[0])
        fir.append(tent_regressors(ev, conditions, ft, dt, n_knots))
        nuis.append(make_first_level_design_matrix(
            ft, None, drift_model=drift_model, high_pass=high_pass, add_regs=conf
        ).to_numpy(dtype=float))
        if single_trials:
            ev1 = ev.assign(trial_type=[f"t{i:05d}" for i in range(len(ev))])
            trials.append(tent_regressors(ev1, list(ev1["trial_type"]), ft, dt, n_knots))
    return EventDesign(fir, nuis, conditions, dt, n_knots, trials if single_trials else None)


def as_runs(Y, design: EventDesign) -> list[np.ndarray]:
    """Check voxel data against ``design`` and return one float array per run.

    Parameters
    ----------
    Y : ndarray (n_scans, n_voxels) or list of them (one per run)
    design : EventDesign

    Returns
    -------
    list of ndarray, each (n_scans_r, n_voxels)
    """
    runs = [np.asarray(Y, dtype=float)] if isinstance(Y, np.ndarray) else [
        np.asarray(y, dtype=float) for y in Y]
    if len(runs) != design.n_runs:
        raise ValueError(f"{len(runs)} runs of data for a design of {design.n_runs} runs")
    runs = [y[:, None] if y.ndim == 1 else y for y in runs]
    for r, (y, f) in enumerate(zip(runs, design.fir, strict=True)):
        if y.ndim != 2 or y.shape[0] != f.shape[0]:
            raise ValueError(f"run {r}: data of shape {y.shape} for a design of {f.shape[0]} scans")
        if y.shape[1] != runs[0].shape[1]:
            raise ValueError("every run must hold the same voxels (columns)")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"run {r}: voxel time series contain NaN or inf")
    return runs


def _whiten(x: np.ndarray, rho: float) -> np.ndarray:
    """AR(1) prewhitening along axis 0 (the first sample scaled by sqrt(1 - rho^2))."""
    out = np.empty_like(x)
    out[0] = np.sqrt(1.0 - rho**2) * x[0]
    out[1:] = x[1:] - rho * x[:-1]
    return out


def _residualise(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    return x - q @ (q.T @ x)


def ar1_bins(runs: list[np.ndarray], design: EventDesign, precision: float = 0.01,
             chunk_size: int = 20000) -> np.ndarray:
    """Per-voxel AR(1) coefficient of the OLS residuals of the full FIR model, binned.

    Parameters
    ----------
    runs : list of ndarray (n_scans_r, n_voxels)
    design : EventDesign
    precision : float, default=0.01
        Rounding step of the coefficient (nilearn's default is 0.01).
    chunk_size : int
        Voxels per block (bounds the temporaries).

    Returns
    -------
    ndarray (n_voxels,)
        Rounded lag-1 autocorrelation, clipped to [-0.9, 0.9].
    """
    n_vox = runs[0].shape[1]
    num = np.zeros(n_vox)
    den = np.zeros(n_vox)
    X = _block_design(design)
    pinv = np.linalg.pinv(X)
    starts = np.cumsum([0] + [y.shape[0] for y in runs])
    for lo in range(0, n_vox, chunk_size):
        sl = slice(lo, lo + chunk_size)
        Yc = np.vstack([y[:, sl] for y in runs])
        res = Yc - X @ (pinv @ Yc)
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            e = res[a:b]
            num[sl] += np.sum(e[1:] * e[:-1], axis=0)
            den[sl] += np.sum(e * e, axis=0)
    rho = np.divide(num, den, out=np.zeros(n_vox), where=den > 0)
    return np.clip(np.round(rho / precision) * precision, -0.9, 0.9)


def _block_design(design: EventDesign) -> np.ndarray:
    """Stacked [FIR | block-diagonal nuisance] design of all runs."""
    n = sum(f.shape[0] for f in design.fir)
    p = design.fir[0].shape[1]
    q = sum(nu.shape[1] for nu in design.nuisance)
    X = np.zeros((n, p + q))
    row, col = 0, p
    for f, nu in zip(design.fir, design.nuisance, strict=True):
        X[row:row + f.shape[0], :p] = f
        X[row:row + f.shape[0], col:col + nu.shape[1]] = nu
        row += f.shape[0]
        col += nu.shape[1]
    return X


@dataclass
class WhitenedBin:
    """One AR(1) bin: whitened, nuisance-free design and data of its voxels."""

    voxels: np.ndarray
    rho: float
    X: list[np.ndarray]  # per run, (n_scans_r, p)
    Y: list[np.ndarray]  # per run, (n_scans_r, n_bin_voxels)
    extra: list[np.ndarray] | None  # per run, whitened nuisance-free extra columns
    dof: int


def whitened_bins(runs: list[np.ndarray], design: EventDesign, rho: np.ndarray | None,
                  chunk_size: int = 20000, extra: list[np.ndarray] | None = None,
                  ) -> Iterator[WhitenedBin]:
    """Yield the voxels of each AR(1) bin with their whitened, nuisance-free design.

    Parameters
    ----------
    runs : list of ndarray (n_scans_r, n_voxels)
    design : EventDesign
    rho : ndarray (n_voxels,) or None
        Binned AR(1) coefficients (:func:`ar1_bins`); None for OLS (one bin, rho = 0).
    chunk_size : int
        At most this many voxels per yielded block.
    extra : list of ndarray, optional
        Further per-run columns (e.g. single-trial FIR blocks) to whiten and residualise
        along with the design.

    Yields
    ------
    WhitenedBin
    """
    n_vox = runs[0].shape[1]
    if rho is None:
        rho = np.zeros(n_vox)
    q_total = sum(nu.shape[1] for nu in design.nuisance)
    dof = sum(f.shape[0] for f in design.fir) - q_total
    for value in np.unique(rho):
        vox_all = np.flatnonzero(rho == value)
        Xw, Qs, Ew = [], [], []
        for r, (f, nu) in enumerate(zip(design.fir, design.nuisance, strict=True)):
            q, _ = np.linalg.qr(_whiten(nu, value))
            Qs.append(q)
            Xw.append(_residualise(_whiten(f, value), q))
            if extra is not None:
                Ew.append(_residualise(_whiten(extra[r], value), q))
        for lo in range(0, vox_all.size, chunk_size):
            vox = vox_all[lo:lo + chunk_size]
            Yw = [_residualise(_whiten(y[:, vox], value), q)
                  for y, q in zip(runs, Qs, strict=True)]
            yield WhitenedBin(vox, float(value), Xw, Yw, Ew if extra is not None else None,
                              dof)


def r2_score(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column (data already free of nuisance)."""
    ss = np.sum(y * y, axis=0)
    res = np.sum((y - pred) ** 2, axis=0)
    return np.divide(ss - res, ss, out=np.zeros(y.shape[1]), where=ss > 0)


def voxel_hrf_parameters(hrfs: np.ndarray, time: np.ndarray, chunk_size: int = 20000,
                         **kwargs) -> dict[str, np.ndarray]:
    """Time to peak, FWHM, height and undershoot of voxel HRFs (chunked).

    Parameters
    ----------
    hrfs : ndarray (n_samples, n_voxels)
    time : ndarray (n_samples,)
    chunk_size : int
    **kwargs
        Passed to :func:`bids_hrf.hrf.params.hrf_parameters` (e.g. ``variance``).

    Returns
    -------
    dict of str to ndarray (n_voxels,)
        ``time_to_peak``, ``fwhm``, ``height``, ``undershoot`` (depth of the minimum after
        the peak, relative to the height: ``-min / height``, >= 0 when there is a dip),
        and the ``*_sd`` entries when a variance was given.
    """
    n = hrfs.shape[1]
    out: dict[str, list] = {}
    variance = kwargs.pop("variance", None)
    for lo in range(0, n, chunk_size):
        sl = slice(lo, lo + chunk_size)
        h = hrfs[:, sl]
        p = hrf_parameters(h, time, variance=None if variance is None else variance[:, sl],
                           **kwargs)
        k = np.argmax(h, axis=0)
        after = np.where(np.arange(h.shape[0])[:, None] > k[None, :], h, np.inf)
        dip = np.min(after, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            under = np.where(np.isfinite(dip) & (p.height > 0), -dip / p.height, np.nan)
        vals = {"time_to_peak": p.time_to_peak, "fwhm": p.fwhm, "height": p.height,
                "undershoot": under}
        if variance is not None:
            vals.update(time_to_peak_sd=p.time_to_peak_sd, fwhm_sd=p.fwhm_sd,
                        height_sd=p.height_sd)
        for key, v in vals.items():
            out.setdefault(key, []).append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


def pool_hrfs(hrfs: np.ndarray, groups: np.ndarray, weights: np.ndarray | None = None,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted mean of the voxels' unit-peak HRFs per group (parcel).

    Parameters
    ----------
    hrfs : ndarray (n_knots, n_voxels)
    groups : ndarray (n_voxels,)
        Group label of each voxel.
    weights : ndarray (n_voxels,), optional
        Non-negative weights (e.g. each voxel's R^2); NaN counts as 0; a group whose
        weights are all zero gets the plain mean. Default: equal weights.

    Returns
    -------
    labels : ndarray (n_groups,)
    table : ndarray (n_knots, n_groups)
        Each group's mean HRF, unit peak.
    pooled : ndarray (n_knots, n_voxels)
        Each voxel's group HRF.
    """
    groups = np.asarray(groups).ravel()
    w_all = (np.ones(hrfs.shape[1]) if weights is None
             else np.clip(np.nan_to_num(np.asarray(weights, float)), 0, None))
    peak = np.max(np.abs(hrfs), axis=0)
    unit = np.divide(hrfs, peak, out=np.zeros_like(hrfs), where=peak > 0)
    labels, inverse = np.unique(groups, return_inverse=True)
    table = np.zeros((hrfs.shape[0], labels.size))
    for g in range(labels.size):
        sel = inverse == g
        w = w_all[sel] if w_all[sel].sum() > 0 else np.ones(sel.sum())
        mean = unit[:, sel] @ w / w.sum()
        top = np.max(np.abs(mean))
        table[:, g] = mean / top if top > 0 else mean
    return labels, table, table[:, inverse]


def voxel_glm(runs: list[np.ndarray], design: EventDesign, hrfs: np.ndarray,
              noise_model: str = "ar1", precision: float = 0.01, chunk_size: int = 20000,
              rho: np.ndarray | None = None, contrasts: dict | None = None,
              ) -> dict[str, np.ndarray]:
    """First-level GLM in which each voxel's regressors use that voxel's own HRF.

    The regressor of condition ``m`` in voxel ``v`` is ``X_m h_v`` (FIR design times the
    voxel's HRF at the knots); drifts and confounds as in the design; AR(1) noise as in
    :func:`whitened_bins`. Each voxel's ``M x M`` system is solved in a batch.

    Parameters
    ----------
    runs : list of ndarray (n_scans_r, n_voxels)
    design : EventDesign
    hrfs : ndarray (n_knots, n_voxels)
        One HRF per voxel at ``design.time`` (any scale; the amplitudes are per unit HRF).
    noise_model : {"ar1", "ols"}
    precision : float
        AR(1) rounding.
    chunk_size : int
    rho : ndarray (n_voxels,), optional
        Binned AR(1) coefficients already estimated (e.g. an estimator's ``rho_``).
    contrasts : dict of str to array (n_conditions,), optional
        Weights over ``design.conditions``; the effect and t of ``w' beta`` are returned as
        extra rows, after the conditions.

    Returns
    -------
    dict
        ``beta``, ``variance`` (of ``beta``), ``t``, ``z``
        (``(n_conditions + n_contrasts, n_voxels)``), ``names``
        (conditions then contrasts) and ``dof`` (int). NaN where the voxel's HRF is zero.
    """
    from scipy import stats

    if noise_model not in ("ar1", "ols"):
        raise ValueError(f"noise_model must be 'ar1' or 'ols', got {noise_model!r}")
    M, K = len(design.conditions), design.n_knots
    n_vox = runs[0].shape[1]
    contrasts = dict(contrasts or {})
    W = np.vstack([np.eye(M)] + [np.asarray(w, float).reshape(1, M) for w in contrasts.values()])
    if hrfs.shape != (K, n_vox):
        raise ValueError(f"hrfs must be ({K}, {n_vox}), got {hrfs.shape}")
    if noise_model == "ols":
        rho = None
    elif rho is None:
        rho = ar1_bins(runs, design, precision, chunk_size)
    beta = np.full((W.shape[0], n_vox), np.nan)
    tval = np.full((W.shape[0], n_vox), np.nan)
    var = np.full((W.shape[0], n_vox), np.nan)
    dof = 0
    for b in whitened_bins(runs, design, rho, chunk_size):
        X2 = np.vstack(b.X)
        Yb = np.vstack(b.Y)
        h = hrfs[:, b.voxels]
        G = (X2.T @ X2).reshape(M, K, M, K)
        A = np.einsum("kv,mkjl,lv->vmj", h, G, h, optimize=True)
        C = (X2.T @ Yb).reshape(M, K, -1)
        rhs = np.einsum("kv,mkv->vm", h, C)
        ok = np.abs(h).max(axis=0) > 0
        A[~ok] = np.eye(M)
        Ainv = np.linalg.inv(A)
        bt = np.einsum("vmj,vj->vm", Ainv, rhs)
        yy = np.sum(Yb * Yb, axis=0)
        rss = yy - np.einsum("vm,vm->v", bt, rhs)
        dof = b.dof - M
        s2 = np.maximum(rss, 0) / dof
        bt = bt @ W.T
        se = np.sqrt(s2[:, None] * np.einsum("cm,vmj,cj->vc", W, Ainv, W))
        with np.errstate(invalid="ignore", divide="ignore"):
            t = bt / se
        bt[~ok], t[~ok], se[~ok] = np.nan, np.nan, np.nan
        beta[:, b.voxels], tval[:, b.voxels], var[:, b.voxels] = bt.T, t.T, (se**2).T
    z = np.where(np.isfinite(tval),
                 -stats.norm.ppf(np.clip(stats.t.sf(np.nan_to_num(tval), dof), 1e-300, 1)),
                 np.nan)
    return {"beta": beta, "variance": var, "t": tval, "z": z, "dof": dof,
            "names": list(design.conditions) + list(contrasts)}
