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

import copy
from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh
from threadpoolctl import threadpool_limits

from bids_hrf.hrf.blind._deconv import nonneg_sparse_fit
from bids_hrf.hrf.sparse._fista import noise_sigma

__all__ = ["ParcelBlindHRF", "double_gamma", "pooled_series"]

#: Length (s) of the candidate kernels in the fit (covers a late peak and its undershoot).
_KERNEL_DURATION = 32.0
#: Parcels fitted together in one batch by :meth:`ParcelBlindHRF.fit_parcels`.
_BATCH = 64


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
    n, v = stacked.shape
    if v == 1:
        w = np.ones(1)
    else:
        # leading eigenvector of the smaller Gram matrix (a full SVD costs far more)
        gram = stacked.T @ stacked if v <= n else stacked @ stacked.T
        _, vec = eigh(gram, subset_by_index=[gram.shape[0] - 1, gram.shape[0] - 1])
        w = vec[:, 0] if v <= n else stacked.T @ vec[:, 0]
        w = w / (np.linalg.norm(w) or 1.0)
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

    def take(self, index) -> _Grid:
        return _Grid(*(np.atleast_1d(getattr(self, f)[index])
                       for f in ("ttp", "fwhm", "undershoot", "lag")))

    def curves(self, t: np.ndarray) -> np.ndarray:
        return double_gamma(t, self.ttp, self.fwhm, self.undershoot, self.lag)


def _kernels(grid: _Grid, step: float, duration: float) -> np.ndarray:
    return grid.curves(np.arange(0.0, duration + step / 2, step)).T  # (C, K)


def log_posterior(score: np.ndarray, grid: _Grid, temperature: float, prior_ttp: float,
                  prior_fwhm: float, prior_sd: float) -> np.ndarray:
    """``-(J - J_min) / T`` plus the Gaussian log-prior on time to peak and FWHM."""
    out = -(score - score.min()) / temperature
    if prior_sd > 0:
        out = out - 0.5 * (((grid.ttp - prior_ttp) / prior_sd) ** 2
                           + ((grid.fwhm - prior_fwhm) / prior_sd) ** 2)
    return out


def profile_sd(values: np.ndarray, log_post: np.ndarray, step: float = 0.05) -> float:
    """SD of one parameter under its profile posterior, on a uniform axis.

    The profile (the best log-posterior of the candidates at each value of the parameter) is
    interpolated linearly over the range of the candidates and integrated with a uniform
    step, so that the result does not depend on how densely each region was searched.
    """
    xs = np.unique(values)
    if xs.size < 2:
        return 0.0
    prof = np.array([log_post[values == x].max() for x in xs])
    axis = np.arange(xs[0], xs[-1] + step / 2, step)
    dens = np.exp(np.interp(axis, xs, prof) - prof.max())
    dens /= dens.sum()
    mean = np.sum(dens * axis)
    return float(np.sqrt(np.sum(dens * (axis - mean) ** 2)))


def _keys(grid: _Grid) -> np.ndarray:
    return np.round(np.column_stack([grid.ttp, grid.fwhm, grid.undershoot, grid.lag]), 6)


def _in_grid(new: _Grid, old: _Grid) -> np.ndarray:
    """Which candidates of ``new`` are already in ``old``."""
    seen = {tuple(row) for row in _keys(old)}
    return np.array([tuple(row) in seen for row in _keys(new)], dtype=bool)


@dataclass
class _Parcel:
    """One parcel's pooled series, noise level and candidates scored so far."""

    series: list[np.ndarray]
    weights: np.ndarray
    sigma: float
    grid: _Grid | None = None
    score: np.ndarray | None = None
    n_events: np.ndarray | None = None
    rss: np.ndarray | None = None
    #: events (one array per run) of the best candidate so far: warm start of later stages
    events: list[np.ndarray] | None = None

    def add(self, grid: _Grid, score, n_events, rss) -> None:
        if self.grid is None:
            self.grid, self.score, self.n_events, self.rss = grid, score, n_events, rss
            return
        self.grid = self.grid + grid
        self.score, self.n_events, self.rss = (
            np.concatenate(v) for v in ((self.score, score), (self.n_events, n_events),
                                        (self.rss, rss)))


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
        Parcels whose time-to-peak SD exceeds this (s) are flagged not identifiable (the
        default is the prior's SD: the data must narrow the prior to count).
    n_iter : int
        Maximum FISTA iterations per candidate (each stops earlier once converged).
    tol : float
        FISTA stops a candidate when its events change by less than this fraction.
    high_pass : float
        Cut-off (Hz) of the high-pass filter applied when the data were cleaned: the same
        projection (with the constant and linear trend) is applied to every model fit, so that
        the filtered data are compared with filtered responses.
    dt, hrf_duration : float
        Step and length (s) of the output HRF (the fit itself uses kernels of at least
        32 s).
    sd_inflation : float
        Factor on the posterior SDs of time to peak and FWHM. The posterior alone is
        overconfident (the blind likelihood is flat and biased in the time to peak, see
        docs/sparse.md); 2.0 was calibrated so that the true value lies within +-2 SD in
        ~95 % of simulated parcels (SNR 1, seeds 100-105) and checked on other seeds and SNRs
        by benchmarks/bench_blind_identifiability.py.

    Attributes
    ----------
    time_ : ndarray
    hrf_ : ndarray
        Weighted-mean HRF over the candidates (unit peak).
    ttp_, fwhm_, ttp_sd_, fwhm_sd_ : float
        Posterior means, and calibrated SDs (see ``sd_inflation``).
    temperature_ : float
        ``T`` of the candidate weights (the misfit beyond the noise level widens it).
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
                 min_events: int = 8, max_ttp_sd: float = 1.0, n_iter: int = 300,
                 tol: float = 2e-3, high_pass: float = 0.01, dt: float = 0.1,
                 hrf_duration: float = 32.0, sd_inflation: float = 2.0):
        self.tr = tr
        self.ttp_range = ttp_range
        self.fwhm_range = fwhm_range
        self.upsample = upsample
        self.penalty = penalty
        self.temperature = temperature
        self.sd_inflation = sd_inflation
        self.prior_ttp = prior_ttp
        self.prior_fwhm = prior_fwhm
        self.prior_sd = prior_sd
        self.min_events = min_events
        self.max_ttp_sd = max_ttp_sd
        self.n_iter = n_iter
        self.tol = tol
        self.high_pass = high_pass
        self.dt = dt
        self.hrf_duration = hrf_duration

    # -- core -----------------------------------------------------------------------------
    def _score(self, parcels: list[_Parcel], grids: list[_Grid]) -> None:
        """Score ``grids[i]`` for ``parcels[i]``, all parcels and candidates in one batch per
        run, and add them to the parcels' candidates (those already scored are skipped)."""
        grids = [g if p.grid is None else g.take(~_in_grid(g, p.grid))
                 for p, g in zip(parcels, grids, strict=True)]
        if not any(g.ttp.size for g in grids):
            return
        u = int(self.upsample)
        step = self.tr / u
        duration = max(_KERNEL_DURATION, self.hrf_duration)
        ks = []
        for g in grids:
            k = _kernels(g, step, duration)
            # unit-norm columns: average over the u phases of the squared samples at TR
            ks.append(k / np.sqrt(np.sum(k**2, axis=1, keepdims=True) / u))
        k = np.vstack(ks)
        lead = int(np.ceil(k.shape[1] / u))  # scans of events before the run that reach it
        owner = np.repeat(np.arange(len(parcels)), [g.ttp.size for g in grids])
        sigma = np.array([p.sigma for p in parcels])[owner]
        lam = self.penalty * sigma
        total, rss, n_events = (np.zeros(owner.size) for _ in range(3))
        bounds = np.cumsum([0] + [g.ttp.size for g in grids])
        events = []
        for r in range(len(parcels[0].series)):
            y = np.vstack([p.series[r] for p in parcels])
            q = _drift_basis(y.shape[1], self.tr, self.high_pass)
            init = (None if parcels[0].events is None
                    else np.vstack([p.events[r] for p in parcels])[owner])
            s, res, _ = nonneg_sparse_fit(y[owner], k, lam, u, lead, q, self.tol, self.n_iter,
                                          init)
            r2 = np.sum(res.astype(float) ** 2, axis=1)
            rss += r2
            total += 0.5 * r2 / sigma**2 + lam * s.sum(axis=1, dtype=float) / sigma**2
            n_events += np.count_nonzero(s[:, lead * u:] > 1e-3 * sigma[:, None], axis=1)
            events.append(s)
        for i, (p, g) in enumerate(zip(parcels, grids, strict=True)):
            sl = slice(bounds[i], bounds[i + 1])
            p.add(g, total[sl], n_events[sl], rss[sl])
            best = int(np.argmax(self._log_post(p))) - (p.score.size - g.ttp.size)
            if best >= 0:  # the best candidate is a new one: its events start later stages
                p.events = [e[bounds[i] + best][None] for e in events]

    def _temperature(self, p: _Parcel) -> float:
        # misfit beyond the noise level (model error) widens the posterior
        n_total = sum(s.size for s in p.series)
        return self.temperature * max(1.0, p.rss[np.argmin(p.score)] / (p.sigma**2 * n_total))

    def _log_post(self, p: _Parcel) -> np.ndarray:
        return log_posterior(p.score, p.grid, self._temperature(p), self.prior_ttp,
                             self.prior_fwhm, self.prior_sd)

    def _prepare(self, runs) -> _Parcel:
        if isinstance(runs, np.ndarray):
            runs = [runs]
        runs = [np.asarray(r, dtype=float).reshape(r.shape[0], -1) for r in runs]
        if not runs or len({r.shape[1] for r in runs}) != 1:
            raise ValueError("runs must hold the same voxels (columns) in every run")
        series, w = pooled_series(runs)
        sigma = float(np.median([noise_sigma(s[:, None])[0] for s in series]))
        sigma = sigma if sigma > 0 else float(np.std(np.concatenate(series))) or 1.0
        return _Parcel(series, w, sigma)

    def fit_parcels(self, runs: list[np.ndarray], labels: np.ndarray) -> dict:
        """Estimate the HRF of every parcel of ``labels`` at once (one batch per run).

        Parameters
        ----------
        runs : list of ndarray, each (n_scans, n_voxels)
            Confound-cleaned voxel series, same voxels in every run.
        labels : ndarray of int, shape (n_voxels,)
            Parcel of each voxel; 0 is background (not fitted).

        Returns
        -------
        dict of int to ParcelBlindHRF
            One fitted estimator per parcel label (same parameters as this one).
        """
        labels = np.asarray(labels)
        if isinstance(runs, np.ndarray):
            runs = [runs]
        names = [int(v) for v in np.unique(labels) if v != 0]
        fits = []
        with threadpool_limits(limits=1, user_api="blas"):  # small problems: no threads
            # batches of parcels bound the memory (~0.7 MB per parcel and run)
            for start in range(0, len(names), _BATCH):
                parcels = [self._prepare([r[:, labels == v] for r in runs])
                           for v in names[start:start + _BATCH]]
                fits += self._search(parcels)
        return dict(zip(names, fits, strict=True))

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
        with threadpool_limits(limits=1, user_api="blas"):  # small problems: no threads
            self._search([self._prepare(runs)], into=[self])
        return self

    def _search(self, parcels: list[_Parcel], into: list | None = None) -> list:
        if self.tr <= 0:
            raise ValueError(f"tr must be positive, got {self.tr}")
        if int(self.upsample) < 1:
            raise ValueError(f"upsample must be >= 1, got {self.upsample}")
        t_lo, t_hi = self.ttp_range
        f_lo, f_hi = self.fwhm_range
        # coarse (time to peak, FWHM) grid, then the undershoot at the best, then a finer
        # grid around the best; later stages start from the best candidate's events
        coarse = _Grid.product(np.arange(t_lo, t_hi + 1e-9, 1.0),
                               np.linspace(f_lo + 0.5, f_hi - 1.0, 3), 0.15, 9.0)
        self._score(parcels, [coarse] * len(parcels))
        best = [p.grid.take(np.argmax(self._log_post(p))) for p in parcels]
        self._score(parcels, [_Grid(np.repeat(b.ttp, 3), np.repeat(b.fwhm, 3),
                                    np.array([0.0, 0.3, 0.15]), np.array([9.0, 9.0, 12.0]))
                              for b in best])
        best = [p.grid.take(np.argmax(self._log_post(p))) for p in parcels]
        self._score(parcels, [_Grid.product(b.ttp + np.arange(-1.0, 1.01, 0.5),
                                            np.clip(b.fwhm + np.array([-1.0, 0.0, 1.0]), 1.5,
                                                    None), b.undershoot, b.lag)
                              for b in best])
        if into is None:
            into = [copy.copy(self) for _ in parcels]
        for fit, p in zip(into, parcels, strict=True):
            fit._finish(p)
        return into

    def _finish(self, p: _Parcel) -> None:
        # drop duplicated candidates before weighting
        g = p.grid
        _, first = np.unique(_keys(g), axis=0, return_index=True)
        p.grid = g.take(first)
        p.score, p.n_events, p.rss = p.score[first], p.n_events[first], p.rss[first]
        lp = self._log_post(p)
        wts = np.exp(lp - lp.max())
        wts /= wts.sum()
        fine = p.grid
        ttp = float(np.sum(wts * fine.ttp))
        fwhm = float(np.sum(wts * fine.fwhm))
        self.time_ = np.arange(0.0, self.hrf_duration + self.dt / 2, self.dt)
        self.candidate_weights_ = wts
        self.grid_ = fine
        self.hrf_ = self.hrf_at(self.time_)
        self.ttp_ = ttp
        self.fwhm_ = fwhm
        # uncertainty: SD of the profile posterior on a uniform axis (the candidates are
        # denser near the best one, so their weights alone understate the spread), times
        # the inflation calibrated on simulations (benchmarks/bench_blind_identifiability.py)
        self.temperature_ = self._temperature(p)
        self.ttp_sd_ = self.sd_inflation * profile_sd(fine.ttp, lp)
        self.fwhm_sd_ = self.sd_inflation * profile_sd(fine.fwhm, lp)
        self.n_events_ = int(p.n_events[np.argmax(lp)])
        self.identifiable_ = bool(self.n_events_ >= self.min_events
                                  and self.ttp_sd_ <= self.max_ttp_sd)
        self.weights_ = p.weights
        self.scores_ = p.score
        self.undershoot_ = float(np.sum(wts * fine.undershoot))
        self.sigma_ = p.sigma

    def hrf_at(self, t: np.ndarray) -> np.ndarray:
        """The fitted HRF (candidate curves averaged with their weights) at times ``t`` (s),
        scaled to a unit peak over ``time_``."""
        ref = self.grid_.curves(np.arange(0.0, self.hrf_duration + self.dt / 2, self.dt))
        peak = np.max(ref @ self.candidate_weights_)
        return (self.grid_.curves(np.asarray(t, dtype=float)) @ self.candidate_weights_) / peak
