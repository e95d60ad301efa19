"""Low-rank plus sparse deconvolution (SPLORA; Urunuela et al. 2021).

``Y = H S + L + E``: ``S`` sparse activity (per voxel), ``L`` a low-rank component absorbing
global structured signals shared across voxels. Alternate

1. ``S`` given ``L``: sparse deconvolution of ``Y - L`` (:class:`SparseDeconvolution`);
2. ``L`` given ``S``: singular-value (hard) thresholding of ``Y - H S``: the components whose
   singular value exceeds ``threshold * sigma_1`` (``sigma_1`` the largest) are kept
   unshrunk (soft thresholding would shrink the global signal and leak it into ``S``),

until the relative change of ``S`` is below ``tol``; the final ``S`` is debiased on ``Y - L``.
"""

from __future__ import annotations

import numpy as np

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
