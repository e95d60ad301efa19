"""HRF chosen per voxel from a library by cross-validated fit across runs.

GLMsingle's idea (Prince et al., eLife 2022) with cross-validation where it can help.
Every library HRF has the same number of free amplitudes, so in-sample fit is not biased
toward any of them and the all-runs log-likelihood ``log L_lv = -(N / 2) log(SSE_lv / N)``
is the voxel's evidence for HRF ``l``. What in-sample fit cannot judge is how far to trust
one voxel's preference against its parcel's: it always prefers the voxel's own best HRF,
noise included. With ``cv`` and ``shrinkage`` each voxel's choice is

    argmax_l  log L_lv + w_p * mean_{u in parcel p} log L_lu

and the weight ``w_p`` of parcel ``p`` (0: the voxel's own maximum-likelihood HRF, inf: the
parcel's) is chosen from :data:`POOLING_GRID` by leave-one-run-out cross-validation: in each
fold the choices are made from the training runs and scored by the held-out residuals of
the left-out run (amplitudes fitted on the training runs), summed over the parcel's voxels
(:func:`cv_pooling_weights`). Low SNR pulls ``w_p`` up (the parcel's HRF predicts new runs
better than a voxel's noisy pick), high SNR down. Without parcels the voxels form one
group; without shrinkage the choice is the voxel's own maximum-likelihood HRF and
cross-validation only reports the held-out R^2.

The in-sample variant (``cv=False``, GLMsingle's) with ``shrinkage`` adds a fixed prior
instead: ``log p_l``, the share of the parcel's voxels whose maximum-likelihood choice is
``l`` (add-one smoothed; :func:`parcel_prior_choice`).

Each library HRF ``L_l`` (sampled at the FIR knots) gives the design ``X_r (I_M kron L_l)``
of run ``r``; all the quantities of every fit come from the per-run Gram matrix of the FIR
design and the per-voxel ``X_r' y``, so scoring the whole library costs a few batched
small solves per chunk of voxels.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import gamma

from bids_hrf.hrf._voxel import EventDesign, ar1_bins, as_runs, whitened_bins

__all__ = ["POOLING_GRID", "HRFLibrary", "cv_pooling_weights", "default_library",
           "parcel_prior_choice", "pooled_choice", "resample_library"]


def default_library(time_to_peak: np.ndarray | None = None,
                    dispersions: tuple[float, ...] = (0.7, 1.0, 1.4),
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Double-gamma HRFs spanning times to peak 3-9 s and three widths.

    The peak gamma has its mode at the time to peak ``T`` (shape ``T / d + 1``, scale
    ``d``: the width grows with the dispersion ``d``); the undershoot is SPM's (mode
    ``T + 10`` s, scale 1 s, ratio 1/6).

    Parameters
    ----------
    time_to_peak : ndarray, optional
        Defaults to 3, 3.5, ..., 9 s.
    dispersions : tuple of float
        Scales of the peak gamma (s); SPM's canonical HRF has 1.

    Returns
    -------
    time : ndarray (n_samples,)
        0 to 32 s every 0.1 s.
    values : ndarray (n_samples, n_hrfs)
        Unit-peak HRFs.
    names : list of str
        ``ttp-<T>_disp-<d>``.
    """
    ttps = np.arange(3.0, 9.01, 0.5) if time_to_peak is None else np.asarray(time_to_peak)
    time = np.round(np.arange(0, 32.0001, 0.1), 10)
    cols, names = [], []
    for d in dispersions:
        for t in ttps:
            h = (gamma.pdf(time, t / d + 1.0, scale=d)
                 - gamma.pdf(time, t + 11.0, scale=1.0) / 6.0)
            cols.append(h / np.max(h))
            names.append(f"ttp-{t:g}_disp-{d:g}")
    return time, np.column_stack(cols), names


def resample_library(time: np.ndarray, values: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Interpolate library HRFs at the FIR knots (zero outside their time span).

    Returns
    -------
    ndarray (n_knots, n_hrfs)
        Scaled to a unit peak.
    """
    out = np.column_stack([np.interp(knots, time, values[:, j], left=0.0, right=0.0)
                           for j in range(values.shape[1])])
    peak = np.max(np.abs(out), axis=0)
    if np.any(peak == 0):
        raise ValueError(
            "a library HRF is zero over the FIR window: its time column must cover "
            f"{knots[0]:g}-{knots[-1]:g} s")
    return out / peak


def parcel_prior_choice(loglik: np.ndarray, parcels: np.ndarray) -> np.ndarray:
    """Choose each voxel's HRF by maximum a posteriori with its parcel's choices as prior.

    Parameters
    ----------
    loglik : ndarray (n_hrfs, n_voxels)
        Log-likelihood of each library HRF in each voxel.
    parcels : ndarray (n_voxels,)

    Returns
    -------
    ndarray (n_voxels,) of int
        ``argmax_l loglik[l, v] + log p_parcel(v)(l)``, with ``p`` the frequencies of the
        maximum-likelihood choices in the parcel (add-one smoothed).
    """
    n_lib = loglik.shape[0]
    ml = np.argmax(loglik, axis=0)
    choice = ml.copy()
    for p in np.unique(parcels):
        sel = parcels == p
        counts = np.bincount(ml[sel], minlength=n_lib) + 1.0
        prior = np.log(counts / counts.sum())
        choice[sel] = np.argmax(loglik[:, sel] + prior[:, None], axis=0)
    return choice


#: Candidate weights of the parcel's mean log-likelihood in a voxel's choice (``inf``: the
#: parcel's choice for every voxel); cross-validation picks one per parcel.
POOLING_GRID = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, np.inf)


def _sse(A: np.ndarray, C: np.ndarray, yy: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Residual sum of squares of every library fit from its Gram matrix and ``X'y``."""
    return (yy[None] - 2 * np.einsum("lmv,lmv->lv", beta, C)
            + np.einsum("lmv,lmk,lkv->lv", beta, A, beta))


def _loglik(sse: np.ndarray, n: float) -> np.ndarray:
    """Profiled Gaussian log-likelihood ``-(n / 2) log(SSE / n)``."""
    return -0.5 * n * np.log(np.maximum(sse, 1e-300) / n)


def _pool(loglik: np.ndarray, weight: float) -> np.ndarray:
    """Choices of a group of voxels: ``argmax_l loglik[l, v] + weight * mean_v loglik[l]``."""
    pooled = loglik.mean(axis=1)
    if np.isinf(weight):
        return np.full(loglik.shape[1], np.argmax(pooled))
    return np.argmax(loglik + weight * pooled[:, None], axis=0)


def pooled_choice(loglik: np.ndarray, groups: np.ndarray, weights: dict) -> np.ndarray:
    """Choose each voxel's HRF with its group's mean log-likelihood added with a weight.

    Parameters
    ----------
    loglik : ndarray (n_hrfs, n_voxels)
    groups : ndarray (n_voxels,)
        Group (parcel) label of each voxel.
    weights : dict
        Weight of each group's mean log-likelihood (:data:`POOLING_GRID` values).

    Returns
    -------
    ndarray (n_voxels,) of int
    """
    choice = np.empty(loglik.shape[1], int)
    for g in np.unique(groups):
        sel = groups == g
        choice[sel] = _pool(loglik[:, sel], weights[g])
    return choice


def cv_pooling_weights(train: list[np.ndarray], sse_test: np.ndarray, yy_test: np.ndarray,
                       groups: np.ndarray, grid: tuple[float, ...] = POOLING_GRID) -> dict:
    """Per group, the pooling weight whose choices predict the left-out runs best.

    In each fold, every voxel's HRF is chosen from the training runs' log-likelihoods with
    each candidate weight (:func:`pooled_choice`); the weight with the smallest held-out
    error, ``sum_v SSE_test(choice_v, v) / y'y_test(v)`` summed over folds, wins (the
    smallest weight on ties). In-sample fit always prefers weight 0 (each voxel's own
    best HRF); held-out fit tells how much of that preference is noise.

    Parameters
    ----------
    train : list of ndarray (n_hrfs, n_voxels)
        Training log-likelihood of every library HRF, one per fold.
    sse_test : ndarray (n_folds, n_hrfs, n_voxels)
        Held-out residual sum of squares (amplitudes fitted on the training runs).
    yy_test : ndarray (n_folds, n_voxels)
        Held-out sum of squares of the data.
    groups : ndarray (n_voxels,)
    grid : tuple of float

    Returns
    -------
    dict
        Group label -> weight.
    """
    scale = np.maximum(yy_test.sum(axis=0), 1e-300)
    out = {}
    for g in np.unique(groups):
        sel = np.flatnonzero(groups == g)
        err = np.zeros(len(grid))
        for f, ll in enumerate(train):
            te = sse_test[f][:, sel] / scale[sel]
            for i, w in enumerate(grid):
                err[i] += te[_pool(ll[:, sel], w), np.arange(sel.size)].sum()
        out[g] = grid[int(np.argmin(err))]
    return out


class HRFLibrary:
    """Per-voxel HRF chosen from a library by cross-validated fit across runs.

    Parameters
    ----------
    library : tuple (time, values) or None
        Library HRFs sampled at ``time`` (s); None for :func:`default_library`.
    cv : {"auto", True, False}, default="auto"
        Leave-one-run-out choice of the pooling toward the parcel (module docstring) and
        held-out R^2. ``"auto"``: cross-validate when there are at least two
        runs, otherwise choose in sample with a warning; ``True``: require two runs;
        ``False``: in-sample R^2 (GLMsingle's choice).
    shrinkage : bool, default=True
        Shrink each voxel's choice toward its parcel's (module docstring): by a
        cross-validated weight with ``cv``, by a fixed prior in sample (needs parcels).
    noise_model : {"ar1", "ols"}, default="ar1"
    ar1_precision : float, default=0.01
    chunk_size : int, default=20000

    Attributes
    ----------
    time_ : ndarray (n_knots,)
    library_ : ndarray (n_knots, n_hrfs)
        Library at the knots (unit peak).
    choice_ : ndarray (n_voxels,) of int
        Chosen library column per voxel.
    hrfs_ : ndarray (n_knots, n_voxels)
    betas_ : ndarray (n_conditions, n_voxels)
        Amplitudes of the chosen HRF, fitted on all runs.
    scores_ : ndarray (n_hrfs, n_voxels)
        Held-out R^2 of every library HRF (in-sample R^2 when not cross-validated).
    heldout_r2_ : ndarray (n_voxels,) or None
        Held-out R^2 of the chosen HRF (pooled over the left-out runs); None in sample.
    insample_r2_ : ndarray (n_voxels,)
        In-sample R^2 of the chosen HRF on all runs.
    cv_ : bool
    rho_ : ndarray (n_voxels,)
    pooling_ : dict
        Cross-validated pooling weight per parcel (empty without cross-validation or
        shrinkage).
    conditions_ : list of str
    """

    def __init__(self, library: tuple[np.ndarray, np.ndarray] | None = None, cv="auto",
                 shrinkage: bool = True, noise_model: str = "ar1", ar1_precision: float = 0.01,
                 chunk_size: int = 20000):
        self.library = library
        self.cv = cv
        self.shrinkage = shrinkage
        self.noise_model = noise_model
        self.ar1_precision = ar1_precision
        self.chunk_size = chunk_size

    def _check(self, n_runs: int) -> bool:
        if self.cv not in ("auto", True, False):
            raise ValueError(f"cv must be 'auto', True or False, got {self.cv!r}")
        if not isinstance(self.shrinkage, (bool, np.bool_)):
            raise ValueError(f"shrinkage must be True or False, got {self.shrinkage!r}")
        if self.noise_model not in ("ar1", "ols"):
            raise ValueError(f"noise_model must be 'ar1' or 'ols', got {self.noise_model!r}")
        if n_runs < 2:
            if self.cv is True:
                raise ValueError(
                    "cross-validated HRF choice needs at least 2 runs, got 1: add runs or "
                    "choose in sample (--library-cv off)")
            if self.cv == "auto":
                warnings.warn("only one run: the library HRF is chosen on in-sample R^2 "
                              "(no held-out run to cross-validate)", UserWarning, stacklevel=3)
            return False
        return bool(self.cv)

    def fit(self, Y, design: EventDesign, parcels: np.ndarray | None = None) -> HRFLibrary:
        """Choose each voxel's HRF and fit its amplitudes.

        Parameters
        ----------
        Y : ndarray (n_scans, n_voxels) or list of them (one per run)
        design : EventDesign
        parcels : ndarray (n_voxels,), optional
            Parcel label of each voxel (for the shrinkage).

        Returns
        -------
        self
        """
        runs = as_runs(Y, design)
        cv = self._check(len(runs))
        n_vox = runs[0].shape[1]
        if parcels is not None:
            parcels = np.asarray(parcels).ravel()
            if parcels.size != n_vox:
                raise ValueError(f"{parcels.size} parcel labels for {n_vox} voxels")
        lt, lv = default_library()[:2] if self.library is None else self.library
        L = resample_library(np.asarray(lt, float), np.asarray(lv, float), design.time)
        M, K, n_lib = len(design.conditions), design.n_knots, L.shape[1]
        R = len(runs)
        rho = (ar1_bins(runs, design, self.ar1_precision, self.chunk_size)
               if self.noise_model == "ar1" else None)
        scores = np.zeros((n_lib, n_vox))
        sse_in = np.zeros((n_lib, n_vox))
        sse_tr = np.zeros((R if cv else 0, n_lib, n_vox))
        sse_te = np.zeros_like(sse_tr)
        yy_te = np.zeros((R if cv else 0, n_vox))
        betas_all = np.zeros((n_lib, M, n_vox))
        ins = np.zeros((n_lib, n_vox))
        for b in whitened_bins(runs, design, rho, self.chunk_size):
            # per run: Gram (l, M, M), X'y (l, M, v), y'y (v)
            A, C, yy = [], [], []
            for X, Yr in zip(b.X, b.Y, strict=True):
                XL = (X.reshape(-1, M, K) @ L).transpose(2, 0, 1)  # (l, n, M)
                A.append(np.einsum("lnm,lnk->lmk", XL, XL))
                C.append(np.einsum("lnm,nv->lmv", XL, Yr))
                yy.append(np.sum(Yr * Yr, axis=0))
            A, C, yy = np.stack(A), np.stack(C), np.stack(yy)  # (R, l, M, M) ...
            ridge = 1e-10 * np.trace(A.sum(0), axis1=1, axis2=2)[:, None, None]
            eye = np.eye(M)[None]
            At, Ct, yt = A.sum(0), C.sum(0), yy.sum(0)
            beta = np.linalg.solve(At + ridge * eye, Ct)
            v = b.voxels
            sse_in[:, v] = _sse(At, Ct, yt, beta)
            betas_all[:, :, v] = beta
            ins[:, v] = 1 - np.divide(sse_in[:, v], yt[None], out=np.ones_like(sse_in[:, v]),
                                      where=yt[None] > 0)
            for f in range(R if cv else 0):
                bf = np.linalg.solve(At - A[f] + ridge * eye, Ct - C[f])
                sse_tr[f][:, v] = _sse(At - A[f], Ct - C[f], yt - yy[f], bf)
                sse_te[f][:, v] = _sse(A[f], C[f], yy[f], bf)
                yy_te[f, v] = yy[f]
        n_scans = np.array([y.shape[0] for y in runs], float)
        loglik = _loglik(sse_in, n_scans.sum())
        if cv:
            ss = yy_te.sum(0)[None]
            scores = 1 - np.divide(sse_te.sum(0), ss, out=np.ones_like(sse_in), where=ss > 0)
            groups = (parcels if parcels is not None and self.shrinkage
                      else np.zeros(n_vox, int) if self.shrinkage else None)
            train = [_loglik(sse_tr[f], n_scans.sum() - n_scans[f]) for f in range(R)]
            if groups is None:
                weights = {}
                choice = np.argmax(loglik, axis=0)
            else:
                weights = cv_pooling_weights(train, sse_te, yy_te, groups)
                choice = pooled_choice(loglik, groups, weights)
        else:
            scores = ins
            weights = {}
            if parcels is not None and self.shrinkage:
                choice = parcel_prior_choice(loglik, parcels)
            else:
                choice = np.argmax(loglik, axis=0)
        cols = np.arange(n_vox)
        self.time_, self.library_, self.cv_ = design.time, L, cv
        self.choice_, self.hrfs_ = choice, L[:, choice]
        self.betas_ = betas_all[choice, :, cols].T
        self.scores_ = scores
        self.heldout_r2_ = scores[choice, cols] if cv else None
        self.insample_r2_ = ins[choice, cols]
        self.rho_ = np.zeros(n_vox) if rho is None else rho
        self.pooling_ = weights
        self.conditions_ = list(design.conditions)
        return self

    def score(self, Y, design: EventDesign) -> np.ndarray:
        """R^2 per voxel of the fitted HRFs and amplitudes on other runs (e.g. a test run).

        The data and the design are freed of the design's nuisance regressors (drifts,
        confounds) by least squares, without prewhitening; the prediction is
        ``sum_m betas_[m] X_m hrfs_``.

        Parameters
        ----------
        Y : ndarray (n_scans, n_voxels) or list of them (one per run)
        design : EventDesign
            Same conditions and knots as the fit.

        Returns
        -------
        ndarray (n_voxels,)
            ``1 - SSE / y'y`` pooled over the runs.
        """
        if (list(design.conditions) != self.conditions_
                or design.time.shape != self.time_.shape
                or not np.allclose(design.time, self.time_)):
            raise ValueError("score: the design must have the fit's conditions and knots")
        runs = as_runs(Y, design)
        M, K = len(self.conditions_), self.time_.size
        sse = np.zeros(runs[0].shape[1])
        ss = np.zeros_like(sse)
        for b in whitened_bins(runs, design, None, self.chunk_size):
            for X, y in zip(b.X, b.Y, strict=True):
                pred = np.einsum("nmk,kv,mv->nv", X.reshape(-1, M, K),
                                 self.hrfs_[:, b.voxels], self.betas_[:, b.voxels])
                sse[b.voxels] += np.sum((y - pred) ** 2, axis=0)
                ss[b.voxels] += np.sum(y * y, axis=0)
        return 1 - np.divide(sse, ss, out=np.ones_like(sse), where=ss > 0)
