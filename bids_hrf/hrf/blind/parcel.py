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
from scipy import fft as sfft

from bids_hrf.hrf.sparse._fista import noise_sigma

__all__ = ["ParcelBlindHRF", "double_gamma", "pooled_series"]

#: Length (s) of the candidate kernels in the fit (covers a late peak and its undershoot).
_KERNEL_DURATION = 32.0


def _width_table() -> tuple[np.ndarray, np.ndarray]:
    """FWHM / mode of a gamma density as a function of ``a - 1`` (decreasing), tabulated.

    In terms of its mode ``m`` the log-density is ``(a - 1)(log x - x + 1)``, ``x = t / m``,
    so the half-maximum crossings are the roots of ``log x - x + 1 = -log 2 / (a - 1)``.
    """
    am1 = np.logspace(-2, 4, 600)
    c = -np.log(2.0) / am1
    # g(x) = log x - x + 1 is increasing on (0, 1) and decreasing on (1, inf): bisect each side
    lo_l, hi_l = np.full(am1.size, 1e-300), np.ones(am1.size)
    lo_r, hi_r = np.ones(am1.size), np.full(am1.size, 1e3)
    for _ in range(200):
        mid = 0.5 * (lo_l + hi_l)
        below = np.log(mid) - mid + 1 < c
        lo_l, hi_l = np.where(below, mid, lo_l), np.where(below, hi_l, mid)
        mid = 0.5 * (lo_r + hi_r)
        above = np.log(mid) - mid + 1 > c
        lo_r, hi_r = np.where(above, mid, lo_r), np.where(above, hi_r, mid)
    return am1, hi_r - lo_l


_AM1, _RATIO = _width_table()


def _shape_for_width(ttp: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """``a - 1`` of the gamma density with mode ``ttp`` and full width at half max ``fwhm``."""
    ratio = np.clip(np.asarray(fwhm) / np.asarray(ttp), _RATIO[-1], _RATIO[0])
    return np.exp(np.interp(np.log(ratio), np.log(_RATIO[::-1]), np.log(_AM1[::-1])))


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


def _nonneg_sparse_fit(y: np.ndarray, k: np.ndarray, u: int, lead: int, q: np.ndarray,
                       lam: float, n_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """``min_{s >= 0} ||y - P A_c s||^2 / 2 + lam sum(s)`` for every kernel ``c`` (FISTA).

    ``A_c`` convolves events on a grid of ``TR / u`` (starting ``lead`` scans before the run)
    with kernel ``k[c]`` (samples every ``TR / u``) and samples the result at the scans; ``P``
    removes the span of ``q`` (the drifts removed by cleaning). All kernels in one batch.

    Returns
    -------
    s : ndarray (n_kernels, (n_scans + lead) u)
    residual : ndarray (n_kernels, n_scans)
    """
    n_c, n_k = k.shape
    n = y.size
    m = (n + lead) * u
    p = sfft.next_fast_len(m + n_k + 1, real=True)
    kf = sfft.rfft(k.astype(np.float32), p, axis=1)
    kf_conj = np.conj(kf)
    lip = np.max(np.abs(kf) ** 2, axis=1, keepdims=True) / u + 1e-12
    obs = (np.arange(n) + lead) * u
    y = y.astype(np.float32)
    q = q.astype(np.float32)

    def forward(x):
        full = sfft.irfft(sfft.rfft(x, p, axis=1) * kf, p, axis=1)[:, obs]
        return full - (full @ q) @ q.T  # the cleaning's high-pass applies to the model

    def adjoint(r):
        up = np.zeros((n_c, p), dtype=np.float32)
        up[:, obs] = r - (r @ q) @ q.T
        return sfft.irfft(sfft.rfft(up, axis=1) * kf_conj, p, axis=1)[:, :m]

    s = np.zeros((n_c, m), dtype=np.float32)
    z = s.copy()
    tk = 1.0
    for _ in range(n_iter):
        grad = adjoint(forward(z) - y[None, :])
        s_new = np.maximum(z - (grad + lam) / lip, 0.0)
        tk_new = 0.5 * (1 + np.sqrt(1 + 4 * tk * tk))
        z = s_new + ((tk - 1) / tk_new) * (s_new - s)
        s, tk = s_new, tk_new
    return s, y[None, :] - forward(s)


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
    prior_ttp, prior_fwhm, prior_sd : float
        Gaussian prior (s) on the time to peak and FWHM; ``prior_sd=0`` for a flat prior.
        Without a paradigm the time to peak is only weakly identifiable (a later HRF is close
        to earlier events), so the prior keeps flat directions near the canonical values.
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
        Step and length (s) of the output HRF (the fit itself uses kernels of at least
        32 s).

    Attributes
    ----------
    time_ : ndarray
    hrf_ : ndarray
        Weighted-mean HRF over the candidates (unit peak).
    ttp_, fwhm_, ttp_sd_, fwhm_sd_ : float
    n_events_ : int
    identifiable_ : bool
    weights_ : ndarray (n_voxels,)
        Voxel weights of the pooled series.
    scores_ : ndarray (n_candidates,)
        ``J`` of every candidate of ``grid_`` (time to peak, FWHM, undershoot, lag).
    candidate_weights_ : ndarray (n_candidates,)
        Posterior weights of the candidates.
    undershoot_, sigma_ : float
        Weighted undershoot ratio; noise SD of the pooled series.
    """

    def __init__(self, tr: float, ttp_range: tuple[float, float] = (3.0, 9.0),
                 fwhm_range: tuple[float, float] = (2.5, 8.0),
                 upsample: int = 2, penalty: float = 3.0, temperature: float = 1.0,
                 prior_ttp: float = 5.5, prior_fwhm: float = 5.0, prior_sd: float = 1.0,
                 min_events: int = 8, max_ttp_sd: float = 1.0, n_iter: int = 60,
                 high_pass: float = 0.01, dt: float = 0.1, hrf_duration: float = 32.0):
        self.tr = tr
        self.ttp_range = ttp_range
        self.fwhm_range = fwhm_range
        self.upsample = upsample
        self.penalty = penalty
        self.temperature = temperature
        self.prior_ttp = prior_ttp
        self.prior_fwhm = prior_fwhm
        self.prior_sd = prior_sd
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
        k = _kernels(grid, step, max(_KERNEL_DURATION, self.hrf_duration))
        # unit-norm columns: average over the u phases of the squared samples at TR
        k = k / np.sqrt(np.sum(k**2, axis=1, keepdims=True) / u)
        n_c, n_k = k.shape
        lead = int(np.ceil(n_k / u))  # scans of events before the run that reach it
        total = np.zeros(n_c)
        rss = np.zeros(n_c)
        n_events = np.zeros(n_c)
        lam = self.penalty * sigma
        for y in series:
            q = _drift_basis(y.size, self.tr, self.high_pass)
            s, res = _nonneg_sparse_fit(y, k, u, lead, q, lam, self.n_iter)
            r2 = np.sum(res**2, axis=1)
            rss += r2
            total += 0.5 * r2 / sigma**2 + lam * s.sum(axis=1) / sigma**2
            n_events += np.count_nonzero(s[:, lead * u:] > 1e-3 * sigma, axis=1)
        return total, n_events, rss

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
        n_total = sum(s.size for s in series)
        t_lo, t_hi = self.ttp_range
        f_lo, f_hi = self.fwhm_range
        grid = _Grid.product(np.arange(t_lo, t_hi + 1e-9, 0.75),
                             np.arange(f_lo, f_hi + 1e-9, 1.5), 0.15, 9.0)
        score, n_ev, rss = self._scores(series, sigma, grid)

        def log_post() -> np.ndarray:
            # misfit beyond the noise level (model error) widens the posterior
            temp = self.temperature * max(1.0, rss[np.argmin(score)] / (sigma**2 * n_total))
            out = -(score - score.min()) / temp
            if self.prior_sd > 0:
                out = out - 0.5 * (((grid.ttp - self.prior_ttp) / self.prior_sd) ** 2
                                   + ((grid.fwhm - self.prior_fwhm) / self.prior_sd) ** 2)
            return out

        def refine(new: _Grid) -> None:
            nonlocal grid, score, n_ev, rss
            sc, ne, rs = self._scores(series, sigma, new)
            grid = grid + new
            score, n_ev, rss = (np.concatenate(v) for v in ((score, sc), (n_ev, ne), (rss, rs)))

        # undershoot (ratio x lag) at the best (time to peak, FWHM), then a finer
        # (time to peak, FWHM) grid with the best undershoot
        b = np.argmax(log_post())
        refine(_Grid.product(grid.ttp[b], grid.fwhm[b], np.array([0.0, 0.1, 0.2, 0.35]),
                             np.array([6.0, 9.0, 12.0])))
        b = np.argmax(log_post())
        refine(_Grid.product(grid.ttp[b] + np.arange(-0.5, 0.51, 0.25),
                             np.clip(grid.fwhm[b] + np.arange(-1.0, 1.01, 0.5), 1.5, None),
                             grid.undershoot[b], grid.lag[b]))
        # drop duplicated candidates before weighting
        keys = np.round(np.column_stack([grid.ttp, grid.fwhm, grid.undershoot, grid.lag]), 6)
        _, first = np.unique(keys, axis=0, return_index=True)
        grid = _Grid(*(getattr(grid, f)[first] for f in ("ttp", "fwhm", "undershoot", "lag")))
        score, n_ev, rss = score[first], n_ev[first], rss[first]
        lp = log_post()
        wts = np.exp(lp - lp.max())
        wts /= wts.sum()
        fine = grid
        ttp = float(np.sum(wts * fine.ttp))
        fwhm = float(np.sum(wts * fine.fwhm))
        self.time_ = np.arange(0.0, self.hrf_duration + self.dt / 2, self.dt)
        self.candidate_weights_ = wts
        self.grid_ = fine
        self.hrf_ = self.hrf_at(self.time_)
        self.ttp_ = ttp
        self.fwhm_ = fwhm
        self.ttp_sd_ = float(np.sqrt(np.sum(wts * (fine.ttp - ttp) ** 2)))
        self.fwhm_sd_ = float(np.sqrt(np.sum(wts * (fine.fwhm - fwhm) ** 2)))
        self.n_events_ = int(n_ev[np.argmax(lp)])
        self.identifiable_ = bool(self.n_events_ >= self.min_events
                                  and self.ttp_sd_ <= self.max_ttp_sd)
        self.weights_ = w
        self.scores_ = score
        self.undershoot_ = float(np.sum(wts * fine.undershoot))
        self.sigma_ = sigma
        return self

    def hrf_at(self, t: np.ndarray) -> np.ndarray:
        """The fitted HRF (candidate curves averaged with their weights) at times ``t`` (s),
        scaled to a unit peak over ``time_``."""
        ref = self.grid_.curves(np.arange(0.0, self.hrf_duration + self.dt / 2, self.dt))
        peak = np.max(ref @ self.candidate_weights_)
        return (self.grid_.curves(np.asarray(t, dtype=float)) @ self.candidate_weights_) / peak
