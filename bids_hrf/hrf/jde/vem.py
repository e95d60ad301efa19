"""Joint detection-estimation of a parcel's HRF and activations by variational EM (JDE-VEM).

A modern re-implementation of PyHRF's JDE-VEM (Chaari, Vincent, Forbes, Dojat, Ciuciu,
IEEE TMI 32(5), 2013). Per parcel, ``y_j = sum_m a_jm X_m h + P l_j + b_j``: one HRF ``h``
shared by the parcel's voxels and conditions (smoothness prior), neural response levels
``a_jm`` drawn from a two-class mixture whose labels follow an Ising field on the voxel
graph, run-specific drifts and white noise. See :mod:`bids_hrf.hrf.jde._updates`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse, stats
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import ThreadpoolController

from bids_hrf.hrf.jde import _design as design
from bids_hrf.hrf.jde import _evidence as evidence
from bids_hrf.hrf.jde import _updates as steps

__all__ = ["JDEVEM"]

_CONTROLLER: ThreadpoolController | None = None


def _blas_single_thread():
    """Context manager holding BLAS to one thread (libraries are looked up once)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def _as_list(x, n: int | None, what: str) -> list:
    if isinstance(x, (list, tuple)):
        out = list(x)
    else:
        out = [x] * (n or 1)
    if n is not None and len(out) != n:
        raise ValueError(f"got {len(out)} {what} for {n} runs; give one per run")
    return out


def _shared_noise_factor(nrls: np.ndarray, resid: list[np.ndarray]) -> float:
    """Variance inflation of the HRF's data term from noise shared by the parcel's voxels.

    The HRF update pools ``sum_j a_jm e_j / s_j^2`` over voxels; with independent noise its
    variance is ``sum_j a_jm^2 / s_j^2`` per scan, with noise common to the voxels it is
    larger by the returned factor (>= 1), measured on the residuals.
    """
    num = den = 0.0
    for e in resid:
        s2 = np.maximum(np.mean(e**2, axis=0), 1e-300)
        W = nrls / s2[:, None]  # (J, M)
        agg = e @ W  # (N, M)
        num += float(np.sum(agg**2))
        den += e.shape[0] * float(np.sum(nrls**2 / s2[:, None]))
    if not (den > 0 and np.isfinite(num)):
        return 1.0
    return max(1.0, num / den)


class JDEVEM:
    """JDE-VEM estimator for one parcel.

    Parameters
    ----------
    tr : float
        Repetition time (s).
    dt : float, optional
        HRF sampling step (s). Default: ``tr / k`` with the smallest integer ``k`` giving a
        step <= 0.6 s. Any value works: stimulus matrices are exact for any ``tr / dt``.
    hrf_duration : float
        HRF length (s); ``D = ceil(hrf_duration / dt) + 1`` samples.
    beta : float
        Initial Ising interaction (per condition).
    sigma_h : float
        Initial HRF prior scale ``s_h``.
    hrf_hyperprior : float or None
        None (default): the HRF smoothness is chosen from the data. ``s_h`` is estimated by
        maximum likelihood inside the VEM, and the HRF update weighs the data by
        ``1 / kappa``, where ``kappa >= 1`` (``hrf_tempering_``) measures, on the residuals
        of the canonical-HRF fit, how much more the voxel-pooled noise varies than it would
        if the voxels' noise were independent (noise shared by the voxels of a parcel,
        e.g. physiological, would otherwise be fitted by the HRF). A number: PyHRF's fixed
        rate of an exponential hyperprior on ``s_h`` (1000 in PyHRF; higher: smoother;
        0: maximum likelihood), with ``kappa = 1``.
    hrf_model : str
        Canonical HRF (``"spm"``, ``"glover"``, derivative variants giving their main HRF,
        or a shape of :mod:`bids_hrf.hrf.presets`) used as the initial HRF, as the fixed
        HRF when ``estimate_hrf`` is False, and as the reference orientation of the estimate.
    n_iter_min, n_iter_max : int
        Iteration bounds.
    tol : float
        Stop when the change of the free energy divided by the number of data points
        (scans x voxels, all runs) is below ``tol`` on two successive iterations (after
        ``n_iter_min``). Normalising by the data size rather than by ``|F|`` makes the
        rule invariant to the units of the data (``F`` shifts by ``n log c`` when the data
        are multiplied by ``c``).
    zero_constraint : bool
        Fix the first and last HRF samples to 0.
    drift_model : {"cosine", "polynomial", None}
    high_pass : float
        Cosine drift cut-off (Hz).
    drift_order : int
        Polynomial drift order.
    estimate_hrf : bool
        If False the HRF stays the canonical one of ``hrf_model``.
    estimate_beta : bool
        If False ``beta`` stays at its initial value.
    random_state : int, optional
        Unused by the deterministic algorithm; kept for API compatibility.

    Attributes
    ----------
    hrf_ : ndarray (n_samples,)
        Posterior mean HRF, normalised to unit norm (NRLs rescaled accordingly) and
        oriented to correlate positively with the canonical HRF.
    hrf_var_ : ndarray (n_samples,)
        Posterior variance of each HRF sample (0 where fixed by the zero constraint).
    hrf_time_ : ndarray (n_samples,)
    nrls_ : ndarray (n_conditions, n_voxels)
    nrls_var_ : ndarray (n_conditions, n_voxels)
    nrls_cov_ : ndarray (n_voxels, n_conditions, n_conditions)
    labels_proba_ : ndarray (n_conditions, n_voxels, 2)
        Posterior probabilities of the inactive (0) and active (1) classes.
    ppm_ : ndarray (n_conditions, n_voxels)
        ``P(a > delta)`` with ``delta`` where the class densities cross (``P(a < delta)``
        when the active class mean is negative).
    ppm_threshold_ : ndarray (n_conditions,)
    mixture_ : dict
        ``mean`` and ``var`` arrays (n_conditions, 2), class 0 inactive, class 1 active.
    beta_ : ndarray (n_conditions,)
    sigma_h_ : float
    hrf_tempering_ : float
        ``kappa`` (1 unless ``hrf_hyperprior`` is None).
    response_pvalue_ : float
        p-value of "the parcel responds to the paradigm": per-voxel F-tests of the
        conditions with the canonical HRF and its time and dispersion derivatives
        (AR(1) GLM with the drifts), combined over voxels by Simes' test and with the test
        of the parcel's mean time series by Bonferroni (see
        :mod:`bids_hrf.hrf.jde._evidence`). Independent of the JDE fit, so it is valid
        whatever the fitted mixture.
    noise_var_ : ndarray (n_runs, n_voxels)
    free_energy_ : ndarray (n_iter_,)
    n_iter_ : int
    converged_ : bool
    conditions_ : list of str
    dt_ : float
    """

    def __init__(
        self,
        tr: float,
        dt: float | None = None,
        hrf_duration: float = 25.0,
        beta: float = 1.0,
        sigma_h: float = 0.1,
        hrf_hyperprior: float | None = None,
        hrf_model: str = "spm",
        n_iter_min: int = 5,
        n_iter_max: int = 100,
        tol: float = 1e-4,
        zero_constraint: bool = True,
        drift_model: str | None = "cosine",
        high_pass: float = 0.01,
        drift_order: int = 3,
        estimate_hrf: bool = True,
        estimate_beta: bool = True,
        random_state: int | None = None,
    ):
        self.tr = tr
        self.dt = dt
        self.hrf_duration = hrf_duration
        self.beta = beta
        self.sigma_h = sigma_h
        self.hrf_hyperprior = hrf_hyperprior
        self.hrf_model = hrf_model
        self.n_iter_min = n_iter_min
        self.n_iter_max = n_iter_max
        self.tol = tol
        self.zero_constraint = zero_constraint
        self.drift_model = drift_model
        self.high_pass = high_pass
        self.drift_order = drift_order
        self.estimate_hrf = estimate_hrf
        self.estimate_beta = estimate_beta
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters (scikit-learn convention)."""
        names = self.__init__.__code__.co_varnames[1 : self.__init__.__code__.co_argcount]
        return {k: getattr(self, k) for k in names}

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        if not self.hrf_duration > 0:
            raise ValueError(f"hrf_duration must be > 0 s, got {self.hrf_duration}")
        for name in ("sigma_h",):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.hrf_hyperprior is not None and not self.hrf_hyperprior >= 0:
            raise ValueError(f"hrf_hyperprior must be None (data-driven) or >= 0, got "
                             f"{self.hrf_hyperprior}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not (1 <= self.n_iter_min <= self.n_iter_max):
            raise ValueError(
                f"need 1 <= n_iter_min <= n_iter_max, got {self.n_iter_min}, {self.n_iter_max}"
            )
        if not self.tol > 0:
            raise ValueError(f"tol must be > 0, got {self.tol}")
        ref = design.canonical_hrf(np.linspace(0.0, self.hrf_duration, 64), self.hrf_model)
        if not (np.all(np.isfinite(ref)) and np.any(ref)):
            raise ValueError(f"hrf_model {self.hrf_model!r} is zero or not finite over "
                             f"0..{self.hrf_duration:g} s")

    def _prepare(self, Y, events, frame_times):
        Ys = [np.asarray(y, dtype=float) for y in _as_list(Y, None, "arrays")]
        Ys = [y[:, None] if y.ndim == 1 else y for y in Ys]
        n_runs = len(Ys)
        evs = _as_list(events, n_runs, "events tables")
        fts = _as_list(frame_times, n_runs, "frame_times arrays")
        n_vox = Ys[0].shape[1]
        if n_vox < 1:
            raise ValueError("the parcel has no voxel: Y must have at least one column")
        for r, (y, ft) in enumerate(zip(Ys, fts, strict=True)):
            if y.ndim != 2 or y.shape[1] != n_vox:
                raise ValueError(
                    f"run {r}: Y must be (n_scans, {n_vox}) like run 0, got {y.shape}"
                )
            if not np.all(np.isfinite(y)):
                raise ValueError(f"run {r}: Y contains NaN or inf; mask or impute those voxels")
            if np.asarray(ft).shape != (y.shape[0],):
                raise ValueError(
                    f"run {r}: frame_times has shape {np.asarray(ft).shape}, expected "
                    f"({y.shape[0]},) (one time per scan)"
                )
            if y.shape[0] < 3:
                raise ValueError(f"run {r}: {y.shape[0]} scans; at least 3 are needed")
        evs = [design.validate_events(e, r) for r, e in enumerate(evs)]
        conditions = design.condition_names(evs)
        if not conditions:
            raise ValueError("no events in any run: JDE-VEM needs at least one condition")
        return Ys, evs, [np.asarray(f, dtype=float) for f in fts], conditions

    # ------------------------------------------------------------------ fit
    def fit(self, Y, events, frame_times, neighbours=None) -> JDEVEM:
        """Fit the model to one parcel.

        Parameters
        ----------
        Y : ndarray (n_scans, n_voxels) or list of them (one per run)
        events : DataFrame or list of DataFrame
            onset, duration, trial_type and optional modulation (one table per run).
        frame_times : ndarray or list of ndarray
            Acquisition time (s) of each scan, per run.
        neighbours : scipy.sparse matrix (n_voxels, n_voxels), optional
            Symmetric voxel adjacency for the Ising label prior; None: independent labels.

        Returns
        -------
        self

        Notes
        -----
        BLAS runs single-threaded during the fit: the linear algebra of one parcel is too
        small to gain from threads, and on a loaded machine threads slow it down tenfold.
        Parallelise over parcels instead.
        """
        with _blas_single_thread():
            return self._fit(Y, events, frame_times, neighbours)

    def _fit(self, Y, events, frame_times, neighbours) -> JDEVEM:
        self._check_params()
        Ys, evs, fts, conditions = self._prepare(Y, events, frame_times)
        self.conditions_ = conditions
        dt = design.choose_dt(self.tr, self.dt)
        n_lags = int(np.ceil(self.hrf_duration / dt - 1e-9)) + 1
        self.dt_ = dt
        self.hrf_time_ = dt * np.arange(n_lags)
        free = slice(1, n_lags - 1) if self.zero_constraint else slice(0, n_lags)
        J, M = Ys[0].shape[1], len(conditions)

        Xs = [design.condition_matrices(e, f, conditions, dt, n_lags) for e, f in zip(
            evs, fts, strict=True)]
        has_events = np.array([[np.any(X[m]) for m in range(M)] for X in Xs]).any(0)
        if not has_events.any():
            raise ValueError(
                "no event falls within the scanning window of any run; check onsets against "
                "frame_times"
            )
        for m in np.flatnonzero(~has_events):
            warnings.warn(
                f"condition {conditions[m]!r} has no event within the scanning window: its "
                "NRLs stay at their prior", RuntimeWarning, stacklevel=2
            )
        Ps = [design.drift_basis(f, self.drift_model, self.high_pass, self.drift_order)
              for f in fts]
        p_vox, p_mean = evidence.response_pvalues(Ys, Xs, Ps, evidence.hrf_basis(
            self.hrf_time_))
        self.response_pvalue_ = float(min(1.0, 2.0 * min(evidence.simes(p_vox), p_mean)))

        adjacency = None
        if neighbours is not None:
            adjacency = sparse.csr_matrix(neighbours, dtype=float)
            if adjacency.shape != (J, J):
                raise ValueError(
                    f"neighbours must be ({J}, {J}) for {J} voxels, got {adjacency.shape}"
                )
            adjacency = ((adjacency + adjacency.T) > 0).astype(float).tocsr()
            adjacency.setdiag(0)
            adjacency.eliminate_zeros()
        colours = (design.graph_colours(adjacency) if adjacency is not None
                   else np.zeros(J, dtype=int))

        # canonical initial HRF, data scaled so that the initial NRLs have unit RMS
        h0 = design.canonical_hrf(self.hrf_time_, self.hrf_model)
        if self.zero_constraint:
            h0[0] = h0[-1] = 0.0
        h0 /= np.linalg.norm(h0)
        a_ols, resid = self._ols_init(Ys, Xs, Ps, h0)
        scale = float(np.sqrt(np.mean(a_ols**2)))
        noise_rms = float(np.sqrt(np.mean([np.mean(e**2) for e in resid])))
        if not np.isfinite(scale) or scale <= 1e-3 * noise_rms or scale <= 1e-300:
            # no response at all (or constant data): scale by the noise, or leave as is
            scale = noise_rms if noise_rms > 1e-300 else 1.0
        runs = [steps.RunData(y / scale, X[:, :, free], P) for y, X, P in zip(
            Ys, Xs, Ps, strict=True)]
        Rinv = design.hrf_precision(n_lags, dt, self.zero_constraint)
        noise0 = np.stack([np.maximum(np.mean(e**2, 0), 1e-12) for e in resid]) / scale**2
        kappa = 1.0
        if self.hrf_hyperprior is None:
            kappa = _shared_noise_factor(a_ols, resid)
        self.hrf_tempering_ = kappa
        lam = 0.0 if self.hrf_hyperprior is None else float(self.hrf_hyperprior)
        pb = steps.Problem(
            runs=runs, Rinv=Rinv, adjacency=adjacency, colours=colours,
            hrf_hyperprior=lam, hrf_tempering=kappa,
            noise_floor=1e-8 * max(float(np.mean(noise0)), 1e-12),
        )
        st = steps.State(
            m_H=h0[free].copy(), S_H=np.zeros((pb.n_free, pb.n_free)),
            m_A=a_ols / scale, S_A=np.zeros((J, M, M)),
            q=np.full((M, J, 2), 0.5),
            mu=np.tile([0.0, 2.0], (M, 1)), v=np.full((M, 2), 0.3),
            beta=np.full(M, float(self.beta)), s_h=float(self.sigma_h),
            drift=[P.T @ (run.y - (run.X @ h0[free]).T @ (a_ols / scale).T)
                   for P, run in zip(Ps, runs, strict=True)],
            noise=np.maximum(noise0, pb.noise_floor),
        )
        trace = self._iterate(pb, st, sum(y.size for y in Ys))
        self._finalise(pb, st, trace, scale, free, n_lags, Ys)
        return self

    @staticmethod
    def _ols_init(Ys, Xs, Ps, h0):
        """Least-squares NRLs (shared over runs) and residuals with the canonical HRF."""
        blocks, n_drift = [], []
        for X, P in zip(Xs, Ps, strict=True):
            blocks.append(((X @ h0).T, P))
            n_drift.append(P.shape[1])
        M = Xs[0].shape[0]
        n_tot = sum(b[0].shape[0] for b in blocks)
        A = np.zeros((n_tot, M + sum(n_drift)))
        row, col = 0, M
        for (g, P), L in zip(blocks, n_drift, strict=True):
            A[row : row + g.shape[0], :M] = g
            A[row : row + g.shape[0], col : col + L] = P
            row, col = row + g.shape[0], col + L
        coef = np.linalg.lstsq(A, np.vstack(Ys), rcond=None)[0]
        fitted = A @ coef
        resid, row = [], 0
        for y in Ys:
            resid.append(y - fitted[row : row + y.shape[0]])
            row += y.shape[0]
        return coef[:M].T, resid

    def _iterate(self, pb: steps.Problem, st: steps.State, n_obs: int) -> list[float]:
        trace: list[float] = []
        small = 0
        self.converged_ = False
        for it in range(self.n_iter_max):
            steps.ve_a(pb, st)
            steps.ve_q(pb, st)
            if self.estimate_hrf:
                steps.ve_h(pb, st)
                steps.m_sigma_h(pb, st)
            steps.m_mixture(pb, st)
            if self.estimate_beta:
                steps.m_beta(pb, st)
            steps.m_drift(pb, st)
            steps.m_noise(pb, st)
            trace.append(steps.free_energy(pb, st, self.estimate_hrf))
            if len(trace) > 1:
                # change per data point (nats): unlike |dF / F|, invariant to the data units
                rel = abs(trace[-1] - trace[-2]) / n_obs
                small = small + 1 if rel < self.tol else 0
                if it + 1 >= self.n_iter_min and small >= 2:
                    self.converged_ = True
                    break
        if not self.converged_:
            warnings.warn(
                f"JDE-VEM did not converge in {self.n_iter_max} iterations (free-energy change "
                f"per data point above tol={self.tol}); raise n_iter_max or tol",
                ConvergenceWarning, stacklevel=3,
            )
        return trace

    def _finalise(self, pb, st, trace, scale, free, n_lags, Ys) -> None:
        h = np.zeros(n_lags)
        h[free] = st.m_H
        hv = np.zeros(n_lags)
        hv[free] = np.clip(np.diag(st.S_H), 0.0, None)
        norm = float(np.linalg.norm(h))
        if not np.isfinite(norm) or norm <= 0:
            norm = 1.0
        # (h, a) and (-h, -a) fit equally: orient h like the canonical HRF (the largest
        # sample decides when h is orthogonal to it), so that a parcel's HRF never comes out
        # upside down and activations give positive NRLs
        ref = design.canonical_hrf(self.hrf_time_, self.hrf_model)
        overlap = float(h @ ref)
        if abs(overlap) > 1e-3 * norm * np.linalg.norm(ref):
            sign = 1.0 if overlap >= 0 else -1.0
        else:
            sign = 1.0 if h[np.argmax(np.abs(h))] >= 0 else -1.0
        c = sign * norm * scale  # NRL factor
        self.hrf_ = sign * h / norm
        self.hrf_var_ = hv / norm**2
        self.nrls_ = (st.m_A * c).T
        self.nrls_cov_ = st.S_A * c**2
        self.nrls_var_ = np.diagonal(self.nrls_cov_, axis1=1, axis2=2).T.copy()
        self.labels_proba_ = st.q.copy()
        mean = st.mu * c
        var = st.v * c**2
        self.mixture_ = {"mean": mean, "var": var}
        self.beta_ = st.beta.copy()
        self.sigma_h_ = float(st.s_h)
        self.noise_var_ = st.noise * scale**2
        n_obs = sum(y.size for y in Ys)
        self.free_energy_ = np.asarray(trace) - n_obs * np.log(scale)
        self.n_iter_ = len(trace)
        delta = steps.crossing_threshold(mean[:, 1], var[:, 0], var[:, 1])
        self.ppm_threshold_ = delta
        sd = np.sqrt(np.maximum(self.nrls_var_, 1e-300))
        z = (self.nrls_ - delta[:, None]) / sd
        up = mean[:, 1] >= 0
        self.ppm_ = np.where(up[:, None], stats.norm.cdf(z), stats.norm.sf(z))

    # ------------------------------------------------------------------ outputs
    def contrast(
        self, weights: Sequence[float] | np.ndarray, threshold: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Linear combination of NRLs per voxel.

        Parameters
        ----------
        weights : array-like (n_conditions,)
            Weights over ``conditions_`` (sorted trial types).
        threshold : float
            PPM threshold on the contrast.

        Returns
        -------
        effect, variance, ppm : ndarray (n_voxels,) each
            Posterior mean, posterior variance and ``P(effect > threshold)``.
        """
        if not hasattr(self, "nrls_"):
            raise ValueError("call fit() before contrast()")
        w = np.asarray(weights, dtype=float).ravel()
        if w.size != len(self.conditions_):
            raise ValueError(
                f"contrast has {w.size} weights but the model has {len(self.conditions_)} "
                f"conditions {self.conditions_}; give one weight per condition, in that order"
            )
        effect = w @ self.nrls_
        var = np.einsum("jmn,m,n->j", self.nrls_cov_, w, w)
        sd = np.sqrt(np.maximum(var, 1e-300))
        return effect, var, stats.norm.sf((threshold - effect) / sd)

    def convergence_frame(self) -> pd.DataFrame:
        """Convergence trace as a DataFrame (iteration, free_energy)."""
        return pd.DataFrame(
            {"iteration": np.arange(1, self.n_iter_ + 1), "free_energy": self.free_energy_}
        )
