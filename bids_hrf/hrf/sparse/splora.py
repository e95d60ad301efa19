"""Low-rank plus sparse deconvolution (SPLORA; Urunuela et al. 2021).

``Y = H S + L + E``: ``S`` sparse activity (per voxel), ``L`` a low-rank component absorbing
global structured signals shared across voxels. Alternate

1. ``S`` given ``L``: sparse deconvolution of ``Y - L`` (:class:`SparseDeconvolution`);
2. ``L`` given ``S``: singular-value (hard) thresholding of ``Y - H S``: the components whose
   singular value exceeds ``threshold * sigma_1`` (``sigma_1`` the largest) are kept
   unshrunk (soft thresholding would shrink the global signal and leak it into ``S``),

until the relative change of ``S`` is below ``tol``; the final ``S`` is debiased on ``Y - L``.

:class:`SPLORA` is the published formulation (Urunuela et al. 2021): the convex problem
``min 1/2 ||Y - H S - L||_F^2 + sum_v lambda_v ||s_v||_1 + rho ||L||_*`` (nuclear norm, not a
hard rank truncation), solved by accelerated proximal gradient on ``(S, L)`` jointly, the
proximal operators being soft thresholding of ``S`` and singular-value soft thresholding of
``L``.
"""

from __future__ import annotations

import numpy as np

from bids_hrf.hrf._hrf_matrix import hrf_matrix
from bids_hrf.hrf.sparse._fista import noise_sigma
from bids_hrf.hrf.sparse.deconvolution import SparseDeconvolution
from bids_hrf.hrf.sparse.stability import debias as _debias


class LowRankPlusSparse:
    """Low-rank plus sparse deconvolution of many voxels.

    Parameters
    ----------
    tr : float
        Repetition time (s).
    hrf_model : {"spm", "glover"} or ndarray
        HRF shape or samples at TR.
    criterion : str
        Lambda rule of the sparse step (any :class:`SparseDeconvolution` criterion).
    factor : float
        Parameter of the ``factor`` rule.
    threshold : float
        Singular-value threshold, as a fraction of the largest singular value (0, 1).
    max_iter : int
        Alternations.
    tol : float
        Relative change of the sparse component at which to stop.
    debias : bool
        Least-squares amplitudes on the final support.

    Attributes
    ----------
    coef_ : ndarray, shape (n_scans, n_voxels)
    low_rank_ : ndarray, shape (n_scans, n_voxels)
    rank_ : int
    fitted_ : ndarray, shape (n_scans, n_voxels)
        ``H coef_ + low_rank_``.
    hrf_matrix_ : ndarray
    n_iter_ : int
    """

    def __init__(
        self,
        tr: float,
        hrf_model: str | np.ndarray = "spm",
        criterion: str = "bic",
        factor: float = 1.0,
        threshold: float = 0.5,
        max_iter: int = 10,
        tol: float = 1e-3,
        debias: bool = True,
    ):
        self.tr = tr
        self.hrf_model = hrf_model
        self.criterion = criterion
        self.factor = factor
        self.threshold = threshold
        self.max_iter = max_iter
        self.tol = tol
        self.debias = debias

    def fit(self, Y: np.ndarray, y=None) -> LowRankPlusSparse:
        """Decompose ``Y`` (n_scans, n_voxels).

        Returns
        -------
        self
        """
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        Y = np.asarray(Y, dtype=float)
        if Y.ndim != 2 or Y.shape[1] < 2:
            raise ValueError("Y must be (n_scans, n_voxels) with at least 2 voxels")
        sparse = SparseDeconvolution(
            self.tr,
            hrf_model=self.hrf_model,
            criterion=self.criterion,
            factor=self.factor,
            debias=False,
        )
        low = np.zeros_like(Y)
        coef = np.zeros_like(Y)
        rank = 0
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007 - reported after the loop
            coef_new = sparse.fit(Y - low).coef_
            H = sparse.hrf_matrix_
            u, s, vt = np.linalg.svd(Y - H @ coef_new, full_matrices=False)
            s_thr = np.where(s > self.threshold * s[0], s, 0.0)
            rank = int(np.count_nonzero(s_thr))
            low = (u[:, :rank] * s_thr[:rank]) @ vt[:rank]
            change = np.linalg.norm(coef_new - coef) / max(np.linalg.norm(coef_new), 1e-12)
            coef = coef_new
            if change < self.tol:
                break
        if self.debias:
            coef = _debias(H, Y - low, coef != 0)
        self.coef_ = coef
        self.low_rank_ = low
        self.rank_ = rank
        self.hrf_matrix_ = H
        self.lambda_ = sparse.lambda_
        self.fitted_ = H @ coef + low
        self.n_iter_ = n_iter
        return self

    def fit_transform(self, Y: np.ndarray, y=None) -> np.ndarray:
        """Fit and return ``coef_``."""
        return self.fit(Y).coef_


class SPLORA:
    """Sparse and low-rank paradigm free mapping with a nuclear-norm penalty.

    Solves ``min_{S, L} 1/2 ||Y - H S - L||_F^2 + sum_v lambda_v ||s_v||_1 + rho ||L||_*``
    by FISTA on ``(S, L)`` jointly (step ``1 / (||H||_2^2 + 1)``, the Lipschitz constant of
    ``[H, I]``): soft thresholding of ``S`` and singular-value soft thresholding of ``L``.

    Parameters
    ----------
    tr : float
        Repetition time (s).
    hrf_model : {"spm", "glover"} or ndarray
        HRF shape or samples at TR.
    lambda_factor : float
        ``lambda_v = lambda_factor * sigma_v`` (``sigma_v``: MAD noise level of voxel ``v``).
    rho_factor : float
        ``rho = rho_factor * sigma (sqrt(n_scans) + sqrt(n_voxels))``, the expected largest
        singular value of Gaussian noise of level ``sigma`` (median of the ``sigma_v``).
    max_iter : int
        FISTA iterations.
    tol : float
        Relative change of ``(S, L)`` at which to stop.
    debias : bool
        Least-squares amplitudes on the support of ``S`` (on ``Y - L``).

    Attributes
    ----------
    coef_, low_rank_, fitted_ : ndarray, shape (n_scans, n_voxels)
    rank_ : int
        Number of non-zero singular values of ``low_rank_``.
    lambda_ : ndarray (n_voxels,)
    rho_ : float
    objective_ : list of float
        Objective after each iteration.
    n_iter_ : int
    """

    def __init__(self, tr: float, hrf_model: str | np.ndarray = "spm",
                 lambda_factor: float = 1.0, rho_factor: float = 1.0, max_iter: int = 400,
                 tol: float = 1e-6, debias: bool = True):
        self.tr = tr
        self.hrf_model = hrf_model
        self.lambda_factor = lambda_factor
        self.rho_factor = rho_factor
        self.max_iter = max_iter
        self.tol = tol
        self.debias = debias

    def fit(self, Y: np.ndarray, y=None) -> SPLORA:
        """Decompose ``Y`` (n_scans, n_voxels).

        Returns
        -------
        self
        """
        if self.lambda_factor < 0 or self.rho_factor < 0:
            raise ValueError("lambda_factor and rho_factor must be >= 0")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        Y = np.asarray(Y, dtype=float)
        if Y.ndim != 2 or Y.shape[1] < 2:
            raise ValueError("Y must be (n_scans, n_voxels) with at least 2 voxels")
        n, v = Y.shape
        H = hrf_matrix(self.tr, n, self.hrf_model)
        sigma = noise_sigma(Y)
        lam = self.lambda_factor * sigma
        rho = self.rho_factor * float(np.median(sigma)) * (np.sqrt(n) + np.sqrt(v))
        step = 1.0 / (np.linalg.norm(H, 2) ** 2 + 1.0)

        def objective(s_, l_, nuc):
            r = Y - H @ s_ - l_
            return float(0.5 * np.sum(r**2) + np.sum(lam * np.abs(s_).sum(axis=0)) + rho * nuc)

        s = np.zeros_like(Y)
        low = np.zeros_like(Y)
        zs, zl = s.copy(), low.copy()
        t = 1.0
        trace = []
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007 - reported after the loop
            r = Y - H @ zs - zl
            gs = zs + step * (H.T @ r)
            s_new = np.sign(gs) * np.maximum(np.abs(gs) - step * lam[None, :], 0.0)
            u, sv, vt = np.linalg.svd(zl + step * r, full_matrices=False)
            sv = np.maximum(sv - step * rho, 0.0)
            l_new = (u * sv) @ vt
            t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
            change = np.sqrt(np.sum((s_new - s) ** 2) + np.sum((l_new - low) ** 2)) / max(
                np.sqrt(np.sum(s_new**2) + np.sum(l_new**2)), 1e-12)
            zs = s_new + ((t - 1.0) / t_new) * (s_new - s)
            zl = l_new + ((t - 1.0) / t_new) * (l_new - low)
            s, low, t = s_new, l_new, t_new
            trace.append(objective(s, low, float(sv.sum())))
            if change < self.tol:
                break
        rank = int(np.count_nonzero(np.linalg.svd(low, compute_uv=False) > 1e-8 * max(
            1.0, float(np.abs(low).max()))))
        if self.debias and np.any(s):
            s = _debias(H, Y - low, s != 0)
        self.coef_ = s
        self.low_rank_ = low
        self.rank_ = rank
        self.fitted_ = H @ s + low
        self.lambda_ = lam
        self.rho_ = rho
        self.objective_ = trace
        self.n_iter_ = n_iter
        self.hrf_matrix_ = H
        return self

    def fit_transform(self, Y: np.ndarray, y=None) -> np.ndarray:
        """Fit and return ``coef_``."""
        return self.fit(Y).coef_
