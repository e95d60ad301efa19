"""Regularised FIR HRF per voxel and condition (Ciuciu et al., IEEE TMI 2003).

Model of one voxel (after AR(1) prewhitening and removal of the nuisance regressors, see
:mod:`bids_hrf.hrf._voxel`)::

    y = sum_m X_m h_m + e,        e ~ N(0, s2 I)
    h_m ~ N(0, (s2 / lam) (D' D)^-1)    independently for each condition m

``h_m`` holds the HRF of condition ``m`` at the FIR knots ``dt, ..., (K - 2) dt``; the
first and last knots are fixed at 0 (the paper's boundary constraints ``h(0) = h(T) = 0``)
and ``D`` is the second-order difference operator with those zero boundaries, which makes
``D' D`` invertible. ``lam`` (the ratio of noise to prior variance) and ``s2`` are
estimated per voxel by maximum marginal likelihood (type-II ML): with ``Z = X D^-1 =
U S V'``, the marginal likelihood of ``y`` is ``N(0, s2 (I + Z Z' / lam))``, whose
determinant and quadratic form are sums over the singular values, so a grid of ``lam``
costs one SVD per AR(1) bin and one matrix product per chunk of voxels; ``s2`` is profiled
out. The posterior mean and the posterior variance of each HRF sample follow in closed
form.
"""

from __future__ import annotations

import numpy as np

from bids_hrf.hrf._voxel import EventDesign, ar1_bins, as_runs, r2_score, whitened_bins

__all__ = ["RegularizedFIR", "smoothness_matrix"]


def smoothness_matrix(n_knots: int) -> np.ndarray:
    """Second-difference operator on the interior knots with zero boundaries.

    Parameters
    ----------
    n_knots : int
        Knots including both (zero) boundary knots; at least 3.

    Returns
    -------
    ndarray (n_knots - 2, n_knots - 2)
        ``D`` with rows ``h[k-1] - 2 h[k] + h[k+1]`` (``h[0] = h[K-1] = 0``); ``D' D`` is
        the prior precision (up to ``lam / s2``).
    """
    if n_knots < 3:
        raise ValueError(f"the regularised FIR needs at least 3 knots, got {n_knots}")
    n = n_knots - 2
    return (np.diag(np.full(n, -2.0)) + np.diag(np.ones(n - 1), 1)
            + np.diag(np.ones(n - 1), -1))


class RegularizedFIR:
    """Voxel-wise, condition-wise regularised FIR HRF with a smoothness prior.

    Parameters
    ----------
    shared_hrf : bool, default=False
        One HRF per voxel for all conditions (their FIR regressors summed: each condition
        is assumed to evoke the same response); otherwise one HRF per condition.
    noise_model : {"ar1", "ols"}, default="ar1"
    n_lambdas : int, default=61
        Size of the log-spaced grid of ``lam`` (1e-6 to 1e3 times the largest squared
        singular value of the design in each AR(1) bin).
    ar1_precision : float, default=0.01
        Rounding of the AR(1) coefficients (voxels of one bin share the design).
    chunk_size : int, default=20000
        Voxels processed together (bounds memory).

    Attributes
    ----------
    time_ : ndarray (n_knots,)
        Seconds after onset of each HRF sample.
    hrfs_ : ndarray (n_knots, n_hrfs, n_voxels)
        Posterior mean HRFs (``n_hrfs`` = conditions, or 1 with ``shared_hrf``), in data
        units per unit event (first and last samples 0).
    hrf_var_ : ndarray like ``hrfs_``
        Posterior variance of each sample.
    lambda_, sigma2_, rho_ : ndarray (n_voxels,)
        Selected prior ratio, noise variance, AR(1) coefficient.
    log_evidence_ : ndarray (n_voxels,)
        Profiled log marginal likelihood at ``lambda_`` (up to a constant).
    r2_ : ndarray (n_voxels,)
        In-sample R^2 of the posterior-mean fit (whitened, nuisance removed).
    conditions_ : list of str
    """

    def __init__(self, shared_hrf: bool = False, noise_model: str = "ar1",
                 n_lambdas: int = 61, ar1_precision: float = 0.01, chunk_size: int = 20000):
        self.shared_hrf = shared_hrf
        self.noise_model = noise_model
        self.n_lambdas = n_lambdas
        self.ar1_precision = ar1_precision
        self.chunk_size = chunk_size

    def _check(self) -> None:
        if self.noise_model not in ("ar1", "ols"):
            raise ValueError(f"noise_model must be 'ar1' or 'ols', got {self.noise_model!r}")
        if int(self.n_lambdas) < 2:
            raise ValueError(f"n_lambdas must be at least 2, got {self.n_lambdas}")
        if not 0 < self.ar1_precision <= 0.5:
            raise ValueError(f"ar1_precision must be in (0, 0.5], got {self.ar1_precision}")
        if int(self.chunk_size) < 1:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")

    def fit(self, Y, design: EventDesign) -> RegularizedFIR:
        """Estimate the HRFs of every voxel.

        Parameters
        ----------
        Y : ndarray (n_scans, n_voxels) or list of them (one per run)
        design : EventDesign
            From :func:`bids_hrf.hrf._voxel.make_event_design`.

        Returns
        -------
        self
        """
        self._check()
        runs = as_runs(Y, design)
        n_vox = runs[0].shape[1]
        K = design.n_knots
        M = len(design.conditions)
        n_h = 1 if self.shared_hrf else M
        D = smoothness_matrix(K)
        Dinv = np.linalg.inv(D)
        Ki = K - 2
        rho = (ar1_bins(runs, design, self.ar1_precision, self.chunk_size)
               if self.noise_model == "ar1" else None)
        hrfs = np.zeros((K, n_h, n_vox))
        var = np.zeros((K, n_h, n_vox))
        lam_out, s2_out = np.zeros(n_vox), np.zeros(n_vox)
        ev_out, r2_out = np.zeros(n_vox), np.zeros(n_vox)
        for b in whitened_bins(runs, design, rho, self.chunk_size):
            X = np.vstack(b.X).reshape(-1, M, K)[:, :, 1:K - 1]  # interior knots
            X = X.sum(axis=1) if self.shared_hrf else X.reshape(X.shape[0], M * Ki)
            Yb = np.vstack(b.Y)
            Z = X @ np.kron(np.eye(n_h), Dinv)
            U, s, Vt = np.linalg.svd(Z, full_matrices=False)
            keep = s > s[0] * 1e-10
            U, s, Vt = U[:, keep], s[keep], Vt[keep]
            s2 = s**2
            grid = s2[0] * np.logspace(-6, 3, int(self.n_lambdas))
            P = U.T @ Yb  # (r, v)
            yy = np.sum(Yb * Yb, axis=0)
            shrink = s2[None, :] / (s2[None, :] + grid[:, None])  # (G, r)
            quad = np.maximum(yy[None, :] - shrink @ (P * P), 1e-300)  # (G, v)
            logdet = np.sum(np.log1p(s2[None, :] / grid[:, None]), axis=1)  # (G,)
            # null directions of Z carry no data: prior = posterior there, no evidence term
            n_eff = b.dof
            loglik = -0.5 * n_eff * np.log(quad / n_eff) - 0.5 * logdet[:, None]
            best = np.argmax(loglik, axis=0)
            lam = grid[best]
            cols = np.arange(Yb.shape[1])
            sig2 = quad[best, cols] / n_eff
            f = s[:, None] / (s2[:, None] + lam[None, :])  # (r, v)
            gamma = Vt.T @ (f * P)  # (n_h * Ki, v)
            W = np.kron(np.eye(n_h), Dinv)
            h_int = W @ gamma
            WV = W @ Vt.T  # (p, r)
            post = (WV**2) @ (1.0 / (s2[:, None] + lam[None, :]))
            if WV.shape[1] < WV.shape[0]:  # prior variance along the null space of Z
                null = np.sum(W**2, axis=1)[:, None] - (WV**2).sum(axis=1)[:, None]
                post = post + np.maximum(null, 0) / lam[None, :]
            post *= sig2[None, :]
            v = b.voxels
            hrfs[1:K - 1, :, v] = h_int.reshape(n_h, Ki, -1).transpose(1, 0, 2)
            var[1:K - 1, :, v] = post.reshape(n_h, Ki, -1).transpose(1, 0, 2)
            lam_out[v], s2_out[v] = lam, sig2
            ev_out[v] = loglik[best, cols]
            r2_out[v] = r2_score(Yb, X @ h_int)
        self.time_ = design.time
        self.conditions_ = ["all"] if self.shared_hrf else list(design.conditions)
        self.hrfs_, self.hrf_var_ = hrfs, var
        self.lambda_, self.sigma2_, self.log_evidence_, self.r2_ = lam_out, s2_out, ev_out, r2_out
        self.rho_ = np.zeros(n_vox) if rho is None else rho
        return self

    def voxel_hrf(self) -> tuple[np.ndarray, np.ndarray]:
        """One HRF per voxel: the conditions' HRFs averaged, with its variance.

        Returns
        -------
        hrf, variance : ndarray (n_knots, n_voxels)
            The mean over conditions (the posterior variances averaged over the
            conditions and divided by their number, the conditions being independent
            a posteriori up to the design's correlations).
        """
        n_h = self.hrfs_.shape[1]
        return self.hrfs_.mean(axis=1), self.hrf_var_.sum(axis=1) / n_h**2
