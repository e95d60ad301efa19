"""Sparse paradigm-free hemodynamic deconvolution (the model of pySPFM), all voxels at once.

Model per voxel: ``y = H s + e`` with ``H`` the HRF matrix of :mod:`bids_hrf.hrf._hrf_matrix`
(time convention: column ``i`` is the HRF starting at scan ``i``, so an event at scan ``i`` is
recovered at coefficient ``i``; pySPFM's coefficients are one scan earlier). ``s`` is the
activity-inducing signal (spike model) or the innovation signal (block model).

Lambda is chosen along the LARS path by BIC or AIC (:mod:`bids_hrf.hrf.sparse._lars`, one Gram for
all voxels), or set from the noise level for FISTA (:mod:`bids_hrf.hrf.sparse._fista`, batched
proximal gradient; ``group > 0`` adds an L2,1 norm over voxels at each time point). The
selected support is then debiased by least squares (:func:`bids_hrf.hrf.sparse.stability.debias`).
"""

from __future__ import annotations

import numpy as np

from bids_hrf.hrf._hrf_matrix import hrf_matrix
from bids_hrf.hrf.sparse._fista import FISTA_CRITERIA, fista_batched, noise_sigma, select_lambda
from bids_hrf.hrf.sparse._lars import LARS_CRITERIA, lars_batched
from bids_hrf.hrf.sparse.stability import debias as _debias


def _n_echoes(te) -> int:
    return len(te) if te is not None and len(te) > 1 else 1


class SparseDeconvolution:
    """Sparse hemodynamic deconvolution of many voxel time series.

    Parameters
    ----------
    tr : float
        Repetition time (s).
    hrf_model : {"spm", "glover"} or ndarray
        Canonical HRF or HRF samples at TR starting at onset.
    block_model : bool
        Estimate the innovation signal (onsets and offsets of sustained activity).
    te : list of float, optional
        Echo times in ms for multi-echo data; ``Y`` stacks the echoes along time.
    criterion : str
        ``bic``/``aic`` (LARS path) or ``mad``, ``mad_update``, ``ut``, ``lut``, ``factor``,
        ``pcg``, ``eigval`` (FISTA with a noise-based lambda).
    factor, pcg : float
        Parameters of the ``factor`` and ``pcg`` rules.
    group : float
        Weight in [0, 1] of the L2,1 norm over voxels (FISTA criteria only).
    positive_only : bool
        Keep only activations (coefficients with the sign of the HRF peak).
    debias : bool
        Re-estimate the amplitudes by least squares on the selected support.
    max_iter, tol : int, float
        FISTA iteration limit and relative-change tolerance.
    n_lambdas : int
        Breakpoints of the LARS path (``n_lambdas - 1`` steps). The BIC/AIC minimum lies in
        the first few tens of breakpoints in practice (pySPFM follows ``n_scans`` of them).
    n_jobs : int
        Threads over voxel blocks for the univariate solvers (1: no parallelism).

    Attributes
    ----------
    coef_ : ndarray, shape (n_scans, n_voxels)
    lambda_ : ndarray, shape (n_voxels,)
    hrf_matrix_ : ndarray, shape (n_scans * n_echoes, n_scans)
    fitted_ : ndarray, shape (n_scans * n_echoes, n_voxels)
        Denoised BOLD, ``H coef_``.
    noise_sigma_ : ndarray, shape (n_voxels,)
        MAD noise estimate (last echo).
    n_iter_ : int
        FISTA iterations (0 for LARS criteria).
    """

    def __init__(
        self,
        tr: float,
        hrf_model: str | np.ndarray = "spm",
        block_model: bool = False,
        te: list[float] | None = None,
        criterion: str = "bic",
        factor: float = 1.0,
        pcg: float = 0.8,
        group: float = 0.0,
        positive_only: bool = False,
        debias: bool = True,
        max_iter: int = 400,
        tol: float = 1e-6,
        n_lambdas: int = 50,
        n_jobs: int = 1,
    ):
        self.tr = tr
        self.hrf_model = hrf_model
        self.block_model = block_model
        self.te = te
        self.criterion = criterion
        self.factor = factor
        self.pcg = pcg
        self.group = group
        self.positive_only = positive_only
        self.debias = debias
        self.max_iter = max_iter
        self.tol = tol
        self.n_lambdas = n_lambdas
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ validation
    def _validate(self, Y: np.ndarray) -> tuple[np.ndarray, int]:
        if self.criterion not in LARS_CRITERIA + FISTA_CRITERIA:
            raise ValueError(
                f"Unknown criterion {self.criterion!r}; use one of {LARS_CRITERIA + FISTA_CRITERIA}"
            )
        if not 0.0 <= self.group <= 1.0:
            raise ValueError(f"group must be in [0, 1], got {self.group}")
        if self.group > 0 and self.criterion in LARS_CRITERIA:
            raise ValueError(
                f"group={self.group} (L2,1 over voxels) needs a FISTA criterion "
                f"{FISTA_CRITERIA}, not {self.criterion!r}"
            )
        if self.n_lambdas < 2:
            raise ValueError(f"n_lambdas must be >= 2, got {self.n_lambdas}")
        if self.max_iter < 1 or self.tol <= 0:
            raise ValueError("max_iter must be >= 1 and tol > 0")
        Y = np.asarray(Y, dtype=float)
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.ndim != 2:
            raise ValueError(f"Y must be (n_scans, n_voxels), got shape {Y.shape}")
        if not np.all(np.isfinite(Y)):
            raise ValueError("Y contains NaN or infinite values: clean or mask them first")
        n_echo = _n_echoes(self.te)
        if Y.shape[0] % n_echo:
            raise ValueError(
                f"Y has {Y.shape[0]} rows, not a multiple of the {n_echo} echoes in te"
            )
        return Y, Y.shape[0] // n_echo

    # ------------------------------------------------------------------ solving
    def _solve(self, Y: np.ndarray, H: np.ndarray, n_scans: int):
        sigma = noise_sigma(Y[-n_scans:])
        n_iter = 0
        if self.criterion in LARS_CRITERIA:
            res = lars_batched(
                H.T @ H,
                H.T @ Y,
                np.sum(Y**2, axis=0),
                Y.shape[0],
                self.n_lambdas - 1,
                criterion=self.criterion,
            )
            coef, lam = res.coef, res.lambda_
            if self.positive_only:
                sign = 1.0 if H[np.argmax(np.abs(H[:, 0])), 0] >= 0 else -1.0
                coef = np.where(sign * coef > 0, coef, 0.0)
        else:
            lam = select_lambda(self.criterion, Y, H, sigma, self.factor, self.pcg)
            # Single precision (as pySPFM) halves the cost of the products; float32 resolves
            # relative changes down to ~1e-7, so tighter tolerances keep float64.
            work = np.float32 if self.tol >= 1e-7 else np.float64
            res = fista_batched(
                H.astype(work),
                Y.astype(work),
                lam,
                group=self.group,
                positive_only=self.positive_only,
                max_iter=self.max_iter,
                tol=self.tol,
                sigma_update=sigma if self.criterion == "mad_update" else None,
            )
            coef, lam, n_iter = res.coef, res.lambda_, res.n_iter
        if self.debias:
            coef = _debias(H, Y, coef != 0, positive_only=self.positive_only)
        return coef, lam, sigma, n_iter

    def _solve_parallel(self, Y: np.ndarray, H: np.ndarray, n_scans: int):
        if self.n_jobs == 1 or self.group > 0 or Y.shape[1] < 2 * abs(self.n_jobs):
            return self._solve(Y, H, n_scans)
        from joblib import Parallel, delayed, effective_n_jobs

        n = effective_n_jobs(self.n_jobs)
        chunks = np.array_split(np.arange(Y.shape[1]), n)
        parts = Parallel(n_jobs=n, prefer="threads")(
            delayed(self._solve)(Y[:, c], H, n_scans) for c in chunks
        )
        coef = np.concatenate([p[0] for p in parts], axis=1)
        lam = np.concatenate(
            [np.broadcast_to(p[1], (len(c),)) for p, c in zip(parts, chunks, strict=True)]
        )
        sigma = np.concatenate([p[2] for p in parts])
        return coef, lam, sigma, max(p[3] for p in parts)

    def fit(self, Y: np.ndarray, y=None) -> SparseDeconvolution:
        """Deconvolve every column of ``Y``.

        Parameters
        ----------
        Y : ndarray, shape (n_scans * n_echoes, n_voxels)
        y : None
            Ignored (scikit-learn API).

        Returns
        -------
        self
        """
        Y, n_scans = self._validate(Y)
        H = hrf_matrix(self.tr, n_scans, self.hrf_model, self.block_model, self.te)
        coef, lam, sigma, n_iter = self._solve_parallel(Y, H, n_scans)
        self.hrf_matrix_ = H
        self.coef_ = coef
        self.lambda_ = np.broadcast_to(np.asarray(lam, dtype=float), (Y.shape[1],)).copy()
        self.noise_sigma_ = sigma
        self.fitted_ = H @ coef
        self.n_iter_ = n_iter
        return self

    def transform(self, Y: np.ndarray) -> np.ndarray:
        """Deconvolve ``Y`` with the fitted settings and return the coefficients.

        Parameters
        ----------
        Y : ndarray, shape (n_scans * n_echoes, n_voxels)

        Returns
        -------
        ndarray, shape (n_scans, n_voxels)
        """
        if not hasattr(self, "hrf_matrix_"):
            raise ValueError("This SparseDeconvolution is not fitted yet: call fit(Y) first")
        Y, n_scans = self._validate(Y)
        if self.hrf_matrix_.shape[1] != n_scans:
            raise ValueError(
                f"Y has {n_scans} scans but the model was fitted on "
                f"{self.hrf_matrix_.shape[1]}: fit it on this run"
            )
        return self._solve_parallel(Y, self.hrf_matrix_, n_scans)[0]

    def fit_transform(self, Y: np.ndarray, y=None) -> np.ndarray:
        """Fit and return ``coef_``."""
        return self.fit(Y).coef_
