"""Paradigm-free parcel HRF: marginal-likelihood fit of a parametric HRF to pooled voxels.

For one parcel, its voxels share one HRF and one train of sparse spontaneous events, with
voxel-specific amplitudes (rank one). The estimator

1. pools the voxels into one series per run: the voxel weights are the leading right singular
   vector of the parcel's voxels (all runs stacked), which weights each voxel by its share of
   the common signal (the least-squares rank-one fit);
2. for every candidate HRF of a grid of double gammas (time to peak, FWHM; the undershoot of
   SPM's canonical shape), deconvolves the pooled series of all runs with non-negative sparse
   events on a grid of ``TR / upsample`` (so events need not fall on a scan), by FISTA, all
   candidates in one batch through FFT convolutions;
3. scores each candidate by its penalised negative log-likelihood ``J(h) = ||y - A_h s||^2 /
   (2 sigma^2) + lambda ||s||_1 / sigma`` (the MAP objective of the exponential event prior,
   columns of ``A_h`` of unit norm so that no shape is favoured by its scale), turns the
   scores into weights ``exp(-(J - J_min) / T)`` and refines the grid around the best one;
4. reports the weighted mean and SD of time to peak and FWHM over the candidate grid (the
   uncertainty), the weighted-mean HRF, and flags the parcel as not identifiable when too few
   events are found or the time-to-peak SD exceeds a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_hrf.hrf._fista import noise_sigma

__all__ = ["ParcelBlindHRF", "double_gamma", "pooled_series"]


def _shape_for_width(ttp: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """``a - 1`` of the gamma density with mode ``ttp`` and full width at half max ``fwhm``.

    In terms of its mode ``m`` the log-density is ``(a - 1)(log x - x + 1)``, ``x = t / m``,
    so the half-maximum crossings solve ``(a - 1)(log x - x + 1) = -log 2``: bisection on
    ``a - 1``, vectorised over candidates.
    """
    lo = np.full(ttp.shape, 1e-3)
    hi = np.full(ttp.shape, 1e4)
    x = np.linspace(1e-4, 8.0, 8000)[:, None]
    g = np.log(x) - x + 1.0  # <= 0
    for _ in range(50):
        mid = np.sqrt(lo * hi)
        inside = mid * g >= -np.log(2.0)
        width = (np.where(inside, x, -np.inf).max(axis=0)
                 - np.where(inside, x, np.inf).min(axis=0)) * ttp
        too_wide = width > fwhm
        lo = np.where(too_wide, mid, lo)
        hi = np.where(too_wide, hi, mid)
    return np.sqrt(lo * hi)


def _gamma_mode(t: np.ndarray, mode: np.ndarray, am1: np.ndarray) -> np.ndarray:
    """Gamma density with mode ``mode`` and shape ``am1 + 1``, scaled to 1 at its mode."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(t > 0, t / mode, 1e-300)
        return np.where(t > 0, np.exp(am1 * (np.log(np.maximum(r, 1e-300)) - r + 1.0)), 0.0)


def double_gamma(t: np.ndarray, ttp: np.ndarray, fwhm: np.ndarray,
                 undershoot: np.ndarray | float = 0.15,
                 lag: np.ndarray | float = 9.0) -> np.ndarray:
    """Double-gamma HRFs parametrised by time to peak, FWHM, undershoot ratio and lag.

    The positive lobe is a gamma density with mode ``ttp`` and FWHM ``fwhm``; the undershoot a
    gamma density with mode ``ttp + lag`` and twice that FWHM, of height ``undershoot``
    relative to the peak (SPM's canonical HRF is close to ``ttp=5.0, fwhm=5.2,
    undershoot=0.1, lag=10``).

    Parameters
    ----------
    t : ndarray, shape (n_t,)
        Seconds after the event.
    ttp, fwhm, undershoot, lag : ndarray, shape (n,) or float
        Parameters of each of the ``n`` curves (s; ``undershoot`` a ratio).

    Returns
    -------
    ndarray, shape (n_t, n)
        The curves (positive lobe of unit height).
    """
    ttp, fwhm, undershoot, lag = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(v, dtype=float)) for v in (ttp, fwhm, undershoot, lag)))
    t = np.asarray(t, dtype=float)[:, None]
    pos = _gamma_mode(t, ttp[None], _shape_for_width(ttp, fwhm)[None])
    u_mode = ttp + lag
    neg = _gamma_mode(t, u_mode[None], _shape_for_width(u_mode, 2.0 * fwhm)[None])
    return pos - undershoot[None] * neg


def pooled_series(runs: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Rank-one pooling of a parcel's voxels: one series per run and the voxel weights.

    Parameters
    ----------
    runs : list of ndarray, each (n_scans, n_voxels)
        The parcel's voxels in each run (same voxels in every run).

    Returns
    -------
    series : list of ndarray (n_scans,)
    weights : ndarray (n_voxels,)
        Unit-norm leading right singular vector, oriented so that its sum is positive.
    """
    cent = [r - r.mean(axis=0) for r in runs]
    stacked = np.vstack(cent)
    if stacked.shape[1] == 1:
        w = np.ones(1)
    else:
        _, _, vt = np.linalg.svd(stacked, full_matrices=False)
        w = vt[0]
        if w.sum() < 0:
            w = -w
    return [c @ w for c in cent], w


def _drift_basis(n: int, tr: float, high_pass: float) -> np.ndarray:
    """Orthonormal basis of what confound cleaning removes: constant, linear trend, and the
    discrete cosines below ``high_pass`` Hz (nilearn's cosine drift model)."""
    frame = np.arange(n)
    cols = [np.ones(n), frame - frame.mean()]
    n_cos = int(np.floor(2 * n * tr * high_pass)) if high_pass > 0 else 0
    cols += [np.cos(np.pi * k * (frame + 0.5) / n) for k in range(1, n_cos + 1)]
    q, _ = np.linalg.qr(np.column_stack(cols))
    return q


@dataclass
class _Grid:
    ttp: np.ndarray
    fwhm: np.ndarray
    undershoot: np.ndarray
    lag: np.ndarray

    @classmethod
    def product(cls, ttp, fwhm, undershoot, lag) -> _Grid:
        mesh = np.meshgrid(*(np.atleast_1d(v) for v in (ttp, fwhm, undershoot, lag)),
                           indexing="ij")
        return cls(*(m.ravel() for m in mesh))

    def __add__(self, other: _Grid) -> _Grid:
        return _Grid(*(np.concatenate([getattr(self, f), getattr(other, f)])
                       for f in ("ttp", "fwhm", "undershoot", "lag")))

    def curves(self, t: np.ndarray) -> np.ndarray:
        return double_gamma(t, self.ttp, self.fwhm, self.undershoot, self.lag)


def _kernels(grid: _Grid, step: float, duration: float) -> np.ndarray:
    return grid.curves(np.arange(0.0, duration + step / 2, step)).T  # (C, K)


class ParcelBlindHRF:
    """Paradigm-free HRF of one parcel from its voxels in one or more runs.

    Parameters
    ----------
    tr : float
        Repetition time (s).
    ttp_range, fwhm_range : tuple of float
        Search ranges (s) of the time to peak and FWHM.
    upsample : int
        Events are placed on a grid of ``tr / upsample``.
    penalty : float
        ``lambda`` in units of the noise SD.
    temperature : float
        ``T`` of the candidate weights ``exp(-(J - J_min) / T)``.
    min_events : int
        Parcels with fewer deconvolved events (over all runs) are flagged not identifiable.
    max_ttp_sd : float
        Parcels whose time-to-peak SD exceeds this (s) are flagged not identifiable.
    n_iter : int
        FISTA iterations per candidate.
    high_pass : float
        Cut-off (Hz) of the high-pass filter applied when the data were cleaned: the same
        projection (with the constant and linear trend) is applied to every model fit, so that
        the filtered data are compared with filtered responses.
    dt, hrf_duration : float
        Step and length (s) of the output HRF.

    Attributes
    ----------
    time_ : ndarray
    hrf_ : ndarray
        Weighted-mean HRF over the candidates (unit peak).
    ttp_, fwhm_, ttp_sd_, fwhm_sd_ : float
    n_events_ : int
    identifiable_ : bool
    weights_ : ndarray (n_voxels,)
    scores_ : ndarray (n_candidates,) and ``grid_`` (ttp, fwhm arrays) of the final grid.
    """

    def __init__(self, tr: float, ttp_range: tuple[float, float] = (3.0, 9.0),
                 fwhm_range: tuple[float, float] = (2.5, 8.0),
                 upsample: int = 2, penalty: float = 1.0, temperature: float = 1.0,
                 min_events: int = 8, max_ttp_sd: float = 1.0, n_iter: int = 150,
                 high_pass: float = 0.01, dt: float = 0.1, hrf_duration: float = 32.0):
        self.tr = tr
        self.ttp_range = ttp_range
        self.fwhm_range = fwhm_range
        self.upsample = upsample
        self.penalty = penalty
        self.temperature = temperature
        self.min_events = min_events
        self.max_ttp_sd = max_ttp_sd
        self.n_iter = n_iter
        self.high_pass = high_pass
        self.dt = dt
        self.hrf_duration = hrf_duration

    # -- core -----------------------------------------------------------------------------
    def _scores(self, series: list[np.ndarray], sigma: float, grid: _Grid):
        u = int(self.upsample)
        step = self.tr / u
        k = _kernels(grid, step, self.hrf_duration)
        # unit-norm columns: average over the u phases of the squared samples at TR
        k = k / np.sqrt(np.sum(k**2, axis=1, keepdims=True) / u)
        n_c, n_k = k.shape
        lead = int(np.ceil(n_k / u))  # scans of events before the run that reach it
        total = np.zeros(n_c)
        n_events = np.zeros(n_c)
        lam = self.penalty * sigma
        for y in series:
            n = y.size
            m = (n + lead) * u
            p = int(2 ** np.ceil(np.log2(m + n_k + 1)))
            kf = np.fft.rfft(k, p, axis=1)
            lip = np.max(np.abs(kf) ** 2, axis=1, keepdims=True) / u + 1e-12
            obs = (np.arange(n) + lead) * u
            s = np.zeros((n_c, m))
            z = s.copy()
            tk = 1.0

            q = _drift_basis(n, self.tr, self.high_pass)

            def forward(x):
                full = np.fft.irfft(np.fft.rfft(x, p, axis=1) * kf, p, axis=1)[:, obs]
                return full - (full @ q) @ q.T  # the cleaning's high-pass applies to the model

            def adjoint(r):
                up = np.zeros((n_c, p))
                up[:, obs] = r - (r @ q) @ q.T
                return np.fft.irfft(np.fft.rfft(up, axis=1) * np.conj(kf), p, axis=1)[:, :m]

            for _ in range(self.n_iter):
                grad = adjoint(forward(z) - y[None, :])
                s_new = np.maximum(z - (grad + lam) / lip, 0.0)
                tk_new = 0.5 * (1 + np.sqrt(1 + 4 * tk * tk))
                z = s_new + ((tk - 1) / tk_new) * (s_new - s)
                s, tk = s_new, tk_new
            res = y[None, :] - forward(s)
            total += 0.5 * np.sum(res**2, axis=1) / sigma**2 + lam * s.sum(axis=1) / sigma**2
            n_events += np.count_nonzero(s[:, lead * u:] > 1e-3 * sigma, axis=1)
        return total, n_events

    def fit(self, runs: list[np.ndarray], y=None) -> ParcelBlindHRF:
        """Estimate the parcel's HRF from its voxels.

        Parameters
        ----------
        runs : list of ndarray, each (n_scans, n_voxels), or one such array
            Confound-cleaned voxel series of the parcel, same voxels in every run.

        Returns
        -------
        self
        """
        if self.tr <= 0:
            raise ValueError(f"tr must be positive, got {self.tr}")
        if int(self.upsample) < 1:
            raise ValueError(f"upsample must be >= 1, got {self.upsample}")
        if isinstance(runs, np.ndarray):
            runs = [runs]
        runs = [np.asarray(r, dtype=float).reshape(r.shape[0], -1) for r in runs]
        if not runs or len({r.shape[1] for r in runs}) != 1:
            raise ValueError("runs must hold the same voxels (columns) in every run")
        series, w = pooled_series(runs)
        sigma = float(np.median([noise_sigma(s[:, None])[0] for s in series]))
        sigma = sigma if sigma > 0 else float(np.std(np.concatenate(series))) or 1.0
        # coarse (time to peak, FWHM) grid, then the undershoot around the best candidate,
        # then a finer (time to peak, FWHM) grid
        t_lo, t_hi = self.ttp_range
        f_lo, f_hi = self.fwhm_range
        u0, l0 = 0.15, 9.0
        grid = _Grid.product(np.arange(t_lo, t_hi + 1e-9, 0.5), np.arange(f_lo, f_hi + 1e-9, 1.0),
                             u0, l0)
        score, n_ev = self._scores(series, sigma, grid)

        def refine(new: _Grid) -> None:
            nonlocal grid, score, n_ev
            sc, ne = self._scores(series, sigma, new)
            grid, score, n_ev = grid + new, np.concatenate([score, sc]), np.concatenate([n_ev, ne])

        b = np.argmin(score)
        refine(_Grid.product(grid.ttp[b] + np.array([-0.5, 0.0, 0.5]),
                             np.clip(grid.fwhm[b] + np.array([-1.0, 0.0, 1.0]), 1.5, None),
                             np.array([0.0, 0.1, 0.2, 0.35]), np.array([6.0, 9.0, 12.0])))
        b = np.argmin(score)
        refine(_Grid.product(grid.ttp[b] + np.arange(-0.75, 0.76, 0.25),
                             np.clip(grid.fwhm[b] + np.arange(-1.0, 1.01, 0.5), 1.5, None),
                             grid.undershoot[b], grid.lag[b]))
        fine = grid
        wts = np.exp(-(score - score.min()) / self.temperature)
        wts /= wts.sum()
        ttp = float(np.sum(wts * fine.ttp))
        fwhm = float(np.sum(wts * fine.fwhm))
        self.time_ = np.arange(0.0, self.hrf_duration + self.dt / 2, self.dt)
        curves = fine.curves(self.time_)
        hrf = curves @ wts
        self.hrf_ = hrf / hrf.max()
        self.ttp_ = ttp
        self.fwhm_ = fwhm
        self.ttp_sd_ = float(np.sqrt(np.sum(wts * (fine.ttp - ttp) ** 2)))
        self.fwhm_sd_ = float(np.sqrt(np.sum(wts * (fine.fwhm - fwhm) ** 2)))
        self.n_events_ = int(n_ev[np.argmin(score)])
        self.identifiable_ = bool(self.n_events_ >= self.min_events
                                  and self.ttp_sd_ <= self.max_ttp_sd)
        self.weights_ = w
        self.scores_ = score
        self.grid_ = fine
        self.undershoot_ = float(np.sum(wts * fine.undershoot))
        self.sigma_ = sigma
        return self
