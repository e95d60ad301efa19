"""Rank-one GLM: one HRF per voxel shared across conditions (Pedregosa et al., 2015).

Model of one voxel (after AR(1) prewhitening and removal of the nuisance regressors, see
:mod:`bids_hrf.hrf._voxel`)::

    y = sum_m beta_m X_m B c + e

``X_m`` is the FIR design of condition ``m`` (knots ``0, dt, ...``), ``B`` an HRF basis
sampled at the knots (``"3hrf"``: SPM's canonical HRF, its time and dispersion
derivatives; ``"fir"``: the identity), ``c`` the basis coefficients of the voxel's HRF
and ``beta`` the per-condition amplitudes: the coefficient matrix ``B c beta'`` has rank
one. The least-squares problem is solved by alternating least squares (each step is an
exact linear least-squares fit), from the canonical HRF, for all voxels of a chunk at
once: every quantity is computed from the shared Gram matrix ``X' X`` and the per-voxel
``X' y``, so the cost per iteration is a few small batched solves. The HRF is scaled to a
unit peak (``||B c||_inf = 1``) and signed to correlate positively with the canonical HRF,
the amplitudes absorbing the scale (the paper's normalisation).

:func:`single_trial_betas` is R1-GLMS (the paper's "separate designs"): for each trial,
a rank-one model with two regressors, the trial and all other trials, the HRF
re-estimated each time; the trial's amplitude is kept.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import gamma

from bids_hrf.hrf._voxel import EventDesign, ar1_bins, as_runs, whitened_bins

__all__ = ["RankOneGLM", "hrf_basis", "rank_one_als"]


def _spm(t: np.ndarray, delay: float = 6.0, dispersion: float = 1.0) -> np.ndarray:
    peak = gamma.pdf(t, delay / dispersion, scale=dispersion)
    under = gamma.pdf(t, 16.0, scale=1.0)
    return peak - under / 6.0


def hrf_basis(time: np.ndarray, kind: str = "3hrf") -> np.ndarray:
    """HRF basis sampled at ``time`` (seconds after onset).

    Parameters
    ----------
    time : ndarray (n_knots,)
    kind : {"3hrf", "fir"}
        ``"3hrf"``: SPM's canonical double gamma, its time derivative (finite difference
        over 1 s, as SPM) and its dispersion derivative (over 0.01), as in
        ``hrf_estimation``; ``"fir"``: one column per knot.

    Returns
    -------
    ndarray (n_knots, n_basis)
        Columns scaled to unit norm (the canonical one has a positive peak).
    """
    t = np.asarray(time, dtype=float)
    if kind == "fir":
        return np.eye(t.size)
    if kind != "3hrf":
        raise ValueError(f"basis must be '3hrf' or 'fir', got {kind!r}")
    h = _spm(t)
    dh = h - _spm(t - 1.0)
    dd = (h - _spm(t, dispersion=1.01)) / 0.01
    B = np.column_stack([h, dh, dd])
    return B / np.linalg.norm(B, axis=0)


def rank_one_als(G: np.ndarray, C: np.ndarray, yy: np.ndarray, B: np.ndarray,
                 c0: np.ndarray, ref: np.ndarray, max_iter: int = 100, tol: float = 1e-6,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Batched alternating least squares of the rank-one model.

    Parameters
    ----------
    G : ndarray (M, K, M, K)
        Gram matrix of the FIR design (conditions x knots).
    C : ndarray (M, K, n_voxels)
        ``X' y`` per voxel.
    yy : ndarray (n_voxels,)
        ``y' y`` per voxel.
    B : ndarray (K, n_basis)
    c0 : ndarray (n_basis,)
        Starting HRF coefficients (all voxels).
    ref : ndarray (K,)
        Reference HRF for the sign (the estimate correlates positively with it).
    max_iter : int
    tol : float
        Stop when the residual sum of squares of every voxel changes by less than ``tol``
        times its ``y' y``.

    Returns
    -------
    c : ndarray (n_basis, n_voxels)
    beta : ndarray (M, n_voxels)
    rss : ndarray (n_voxels,)
    n_iter : int
    """
    M, K = G.shape[:2]
    v = C.shape[2]
    nb = B.shape[1]
    c = np.repeat(np.asarray(c0, float)[:, None], v, axis=1)
    GB = np.einsum("mknl,lb->mknb", G, B)  # (M, K, M, nb)
    BGB = np.einsum("ka,mknb->manb", B, GB)  # (M, nb, M, nb)
    CB = np.einsum("kb,mkv->mbv", B, C)  # (M, nb, v)
    scale = np.maximum(yy, 1e-300)
    rss_old = yy.copy()
    eye_m = np.eye(M)[None]
    eye_b = np.eye(nb)[None]
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        # amplitudes given the HRF
        A = np.einsum("av,manb,bv->vmn", c, BGB, c)
        rhs = np.einsum("av,mav->vm", c, CB)
        ridge = 1e-12 * np.trace(A, axis1=1, axis2=2)[:, None, None] + 1e-300
        beta = np.linalg.solve(A + ridge * eye_m, rhs[..., None])[..., 0].T  # (M, v)
        # HRF given the amplitudes
        H = np.einsum("mv,manb,nv->vab", beta, BGB, beta)
        rhs = np.einsum("mv,mav->va", beta, CB)
        ridge = 1e-12 * np.trace(H, axis1=1, axis2=2)[:, None, None] + 1e-300
        c = np.linalg.solve(H + ridge * eye_b, rhs[..., None])[..., 0].T  # (nb, v)
        fit = np.einsum("av,mav->v", c, np.einsum("mv,mav->mav", beta, CB))
        quad = np.einsum("av,vab,bv->v", c, H, c)
        rss = yy - 2 * fit + quad
        done = np.all(np.abs(rss_old - rss) <= tol * scale)
        rss_old = rss
        if done:
            break
    h = B @ c
    peak = np.max(np.abs(h), axis=0)
    sign = np.where(ref @ h < 0, -1.0, 1.0)
    norm = np.where(peak > 0, peak, 1.0) * sign
    return c / norm, beta * norm, np.maximum(rss_old, 0), n_iter


class RankOneGLM:
    """Voxel-wise rank-one GLM: one HRF per voxel in a basis, amplitudes per condition.

    Parameters
    ----------
    basis : {"3hrf", "fir"}, default="3hrf"
    noise_model : {"ar1", "ols"}, default="ar1"
    max_iter : int, default=100
    tol : float, default=1e-6
    ar1_precision : float, default=0.01
    chunk_size : int, default=20000

    Attributes
    ----------
    time_ : ndarray (n_knots,)
    basis_ : ndarray (n_knots, n_basis)
    coef_ : ndarray (n_basis, n_voxels)
    hrfs_ : ndarray (n_knots, n_voxels)
        Unit-peak HRFs (``basis_ @ coef_``).
    betas_ : ndarray (n_conditions, n_voxels)
        Amplitudes (data units at the HRF peak per unit event).
    r2_ : ndarray (n_voxels,)
        In-sample R^2 (whitened, nuisance removed).
    rho_ : ndarray (n_voxels,)
    n_iter_ : int
        Largest number of ALS iterations over the chunks.
    conditions_ : list of str
    """

    def __init__(self, basis: str = "3hrf", noise_model: str = "ar1", max_iter: int = 100,
                 tol: float = 1e-6, ar1_precision: float = 0.01, chunk_size: int = 20000):
        self.basis = basis
        self.noise_model = noise_model
        self.max_iter = max_iter
        self.tol = tol
        self.ar1_precision = ar1_precision
        self.chunk_size = chunk_size

    def _check(self, design: EventDesign) -> np.ndarray:
        if self.noise_model not in ("ar1", "ols"):
            raise ValueError(f"noise_model must be 'ar1' or 'ols', got {self.noise_model!r}")
        if int(self.max_iter) < 1 or not self.tol > 0:
            raise ValueError("max_iter must be >= 1 and tol > 0")
        if int(self.chunk_size) < 1:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        return hrf_basis(design.time, self.basis)

    def fit(self, Y, design: EventDesign) -> RankOneGLM:
        """Estimate each voxel's HRF and per-condition amplitudes.

        Parameters
        ----------
        Y : ndarray (n_scans, n_voxels) or list of them (one per run)
        design : EventDesign

        Returns
        -------
        self
        """
        B = self._check(design)
        runs = as_runs(Y, design)
        n_vox = runs[0].shape[1]
        M, K = len(design.conditions), design.n_knots
        ref = _spm(design.time)
        c0 = np.linalg.lstsq(B, ref, rcond=None)[0]
        rho = (ar1_bins(runs, design, self.ar1_precision, self.chunk_size)
               if self.noise_model == "ar1" else None)
        coef = np.zeros((B.shape[1], n_vox))
        betas = np.zeros((M, n_vox))
        r2 = np.zeros(n_vox)
        self.n_iter_ = 0
        for b in whitened_bins(runs, design, rho, self.chunk_size):
            X = np.vstack(b.X)
            Yb = np.vstack(b.Y)
            G = (X.T @ X).reshape(M, K, M, K)
            C = (X.T @ Yb).reshape(M, K, -1)
            yy = np.sum(Yb * Yb, axis=0)
            c, beta, rss, it = rank_one_als(G, C, yy, B, c0, ref, self.max_iter, self.tol)
            coef[:, b.voxels], betas[:, b.voxels] = c, beta
            r2[b.voxels] = np.divide(yy - rss, yy, out=np.zeros_like(yy), where=yy > 0)
            self.n_iter_ = max(self.n_iter_, it)
        self.time_, self.basis_ = design.time, B
        self.coef_, self.hrfs_, self.betas_, self.r2_ = coef, B @ coef, betas, r2
        self.rho_ = np.zeros(n_vox) if rho is None else rho
        self.conditions_ = list(design.conditions)
        return self

    def single_trial_betas(self, Y, design: EventDesign) -> np.ndarray:
        """R1-GLMS: one amplitude per trial from separate designs sharing the voxel's HRF.

        For each trial ``j`` the model has two regressors, the trial (amplitude ``v_j``)
        and all other trials of all runs (amplitude ``z_j``), both convolved with the
        voxel's HRF ``B c``; ``c`` is shared by all the trial models and fitted jointly
        (``min sum_j ||y - v_j X_j B c - z_j X_-j B c||^2``, Pedregosa et al. 2015,
        section 2.4), by alternating least squares.

        Parameters
        ----------
        Y : ndarray (n_scans, n_voxels) or list of them (one per run)
        design : EventDesign
            Built with ``single_trials=True``.

        Returns
        -------
        ndarray (n_trials, n_voxels)
            ``v_j`` for trials in run order, then event order within the run, with the
            HRF scaled to a unit peak.
        """
        B = self._check(design)
        if design.trials is None:
            raise ValueError("single-trial betas need a design built with single_trials=True")
        runs = as_runs(Y, design)
        K = design.n_knots
        ref = _spm(design.time)
        c0 = np.linalg.lstsq(B, ref, rcond=None)[0]
        rho = (ar1_bins(runs, design, self.ar1_precision, self.chunk_size)
               if self.noise_model == "ar1" else None)
        n_tr = [t.shape[1] // K for t in design.trials]
        total = sum(n_tr)
        extra, col = [], 0
        for t, k in zip(design.trials, n_tr, strict=True):
            e = np.zeros((t.shape[0], total * K))
            e[:, col * K:(col + k) * K] = t
            extra.append(e)
            col += k
        out = np.zeros((total, runs[0].shape[1]))
        for b in whitened_bins(runs, design, rho, self.chunk_size, extra=extra):
            E = np.vstack(b.extra) @ np.kron(np.eye(total), B)  # trials x basis
            Yb = np.vstack(b.Y)
            out[:, b.voxels] = _separate_als(E, Yb, B, c0, ref, total, self.max_iter,
                                             self.tol)
        return out


def _separate_als(E, Y, B, c0, ref, n_trials, max_iter, tol):
    """ALS of the separate-designs rank-one model for one block of voxels."""
    nb = B.shape[1]
    GE = (E.T @ E).reshape(n_trials, nb, n_trials, nb)
    CE = (E.T @ Y).reshape(n_trials, nb, -1)  # (T, nb, v)
    yy = np.sum(Y * Y, axis=0)
    diag = np.einsum("jajb->jab", GE)  # G_jj
    row = GE.sum(axis=2)  # (T, nb, nb): X_j' X_all
    tot = row.sum(axis=0)
    g_jo = row - diag  # X_j' X_-j
    g_oo = tot[None] - row - row.transpose(0, 2, 1) + diag
    c_all = CE.sum(axis=0)
    c_o = c_all[None] - CE
    v_n = Y.shape[1]
    c = np.repeat(c0[:, None], v_n, axis=1)
    rss_old = np.full(v_n, np.inf)
    for _ in range(max_iter):
        # per trial 2x2 least squares given the HRF
        a11 = np.einsum("av,jab,bv->jv", c, diag, c)
        a12 = np.einsum("av,jab,bv->jv", c, g_jo, c)
        a22 = np.einsum("av,jab,bv->jv", c, g_oo, c)
        r1 = np.einsum("av,jav->jv", c, CE)
        r2 = np.einsum("av,jav->jv", c, c_o)
        det = a11 * a22 - a12**2
        det = np.where(np.abs(det) > 1e-300, det, 1e-300)
        v = (a22 * r1 - a12 * r2) / det
        z = (a11 * r2 - a12 * r1) / det
        # HRF given the amplitudes
        H = (np.einsum("jv,jab->vab", v * v, diag) + np.einsum("jv,jab->vab", v * z, g_jo)
             + np.einsum("jv,jba->vab", v * z, g_jo) + np.einsum("jv,jab->vab", z * z, g_oo))
        rhs = np.einsum("jv,jav->va", v, CE) + np.einsum("jv,jav->va", z, c_o)
        ridge = 1e-12 * np.trace(H, axis1=1, axis2=2)[:, None, None] + 1e-300
        c = np.linalg.solve(H + ridge * np.eye(nb)[None], rhs[..., None])[..., 0].T
        rss = n_trials * yy - 2 * np.einsum("av,va->v", c, rhs) + np.einsum(
            "av,vab,bv->v", c, H, c)
        if np.all(np.abs(rss_old - rss) <= tol * n_trials * np.maximum(yy, 1e-300)):
            break
        rss_old = rss
    # final amplitudes with the final HRF, HRF scaled to a unit peak
    h = B @ c
    peak = np.max(np.abs(h), axis=0)
    norm = np.where(peak > 0, peak, 1.0) * np.where(ref @ h < 0, -1.0, 1.0)
    c = c / norm
    a11 = np.einsum("av,jab,bv->jv", c, diag, c)
    a12 = np.einsum("av,jab,bv->jv", c, g_jo, c)
    a22 = np.einsum("av,jab,bv->jv", c, g_oo, c)
    r1 = np.einsum("av,jav->jv", c, CE)
    r2 = np.einsum("av,jav->jv", c, c_o)
    det = a11 * a22 - a12**2
    return (a22 * r1 - a12 * r2) / np.where(np.abs(det) > 1e-300, det, 1e-300)
