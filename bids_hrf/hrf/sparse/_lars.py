"""Batched LARS-lasso homotopy sharing one Gram matrix across all voxels.

Every voxel is deconvolved with the same design ``H``, so the Gram ``G = H'H`` is computed once
and the lasso path (Efron et al. 2004, lasso modification: a variable leaves the active set when
its coefficient crosses zero) is followed for a whole block of voxels at once: each voxel keeps
its own active set in ``K`` slots and the inverse of its active Gram block, updated by rank-one
block-inverse formulas when a variable enters or leaves, so one step costs a few batched
matrix products instead of one Python LARS step per voxel.

The path is the one of :func:`sklearn.linear_model.lars_path_gram` with ``method="lasso"``;
here ``lambda`` is the penalty of ``1/2 ||y - H s||^2 + lambda ||s||_1`` (sklearn's ``alpha``
times the number of observations). Along the path the model is selected by

* BIC = N log(RSS / N) + log(N) k,
* AIC = N log(RSS / N) + 2 k,

with k the number of non-zero coefficients (the null model is a candidate). The RSS of each
breakpoint comes from ``RSS = y'y - s'(H'y + c)`` with ``c`` the current correlations, so no
``H s`` product is needed. Optionally the stability-selection accumulators are kept: for each
coefficient the sum over breakpoints of ``lambda_k * [s_k != 0]`` and the sum of ``lambda_k``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

LARS_CRITERIA = ("bic", "aic")


@dataclass
class LarsResult:
    """Output of :func:`lars_batched` (arrays are voxel-last, like the data).

    Attributes
    ----------
    coef : ndarray, shape (n_features, n_voxels)
        Coefficients at the selected breakpoint (zeros when no criterion).
    lambda_ : ndarray, shape (n_voxels,)
        Lambda of the selected breakpoint.
    n_steps : ndarray, shape (n_voxels,)
        Number of path steps taken.
    auc_num : ndarray, shape (n_features, n_voxels) or None
        Sum over breakpoints of lambda times the selection indicator.
    lambda_sum : ndarray, shape (n_voxels,) or None
        Sum of the breakpoint lambdas.
    path : list of (coef, lambda) or None
        Every breakpoint when ``return_path=True`` (for tests and small problems).
    """

    coef: np.ndarray
    lambda_: np.ndarray
    n_steps: np.ndarray
    auc_num: np.ndarray | None = None
    lambda_sum: np.ndarray | None = None
    path: list | None = None


def lars_batched(
    gram: np.ndarray,
    xy: np.ndarray,
    yy: np.ndarray,
    n_obs: int,
    max_steps: int,
    criterion: str | None = "bic",
    keep_auc: bool = False,
    return_path: bool = False,
    max_block_bytes: float = 32e6,
) -> LarsResult:
    """Follow the lasso path of many voxels sharing one Gram matrix.

    Parameters
    ----------
    gram : ndarray, shape (n_features, n_features)
        ``H'H``.
    xy : ndarray, shape (n_features, n_voxels)
        ``H'Y``.
    yy : ndarray, shape (n_voxels,)
        ``sum(Y ** 2, axis=0)``.
    n_obs : int
        Number of observations (rows of ``H``) used by the information criteria.
    max_steps : int
        Maximum number of LARS steps (additions or removals) per voxel.
    criterion : {"bic", "aic"} or None
        Model selection along the path; None keeps no selected model.
    keep_auc : bool
        Accumulate the stability-selection sums.
    return_path : bool
        Keep every breakpoint (memory: steps x features x voxels).
    max_block_bytes : float
        Memory budget of the per-voxel inverse Gram blocks; sets how many voxels go together.

    Returns
    -------
    LarsResult
    """
    if criterion is not None and criterion not in LARS_CRITERIA:
        raise ValueError(f"Unknown LARS criterion {criterion!r}; use one of {LARS_CRITERIA}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    xy = np.asarray(xy, dtype=float)
    if xy.ndim == 1:
        xy = xy[:, None]
    yy = np.atleast_1d(np.asarray(yy, dtype=float))
    n_feat, n_vox = xy.shape
    n_slots = min(max_steps, n_feat)
    block = int(max(8, min(n_vox, max_block_bytes // (16 * n_slots * n_slots + 1))))
    out = LarsResult(
        coef=np.zeros((n_feat, n_vox)),
        lambda_=np.zeros(n_vox),
        n_steps=np.zeros(n_vox, dtype=int),
        auc_num=np.zeros((n_feat, n_vox)) if keep_auc else None,
        lambda_sum=np.zeros(n_vox) if keep_auc else None,
        path=[] if return_path else None,
    )
    for start in range(0, n_vox, block):
        sl = slice(start, min(n_vox, start + block))
        _lars_block(gram, xy[:, sl], yy[sl], n_obs, max_steps, n_slots, criterion, out, sl)
    return out


def _lars_block(gram, xy, yy, n_obs, max_steps, n_slots, criterion, out, sl):  # noqa: C901
    n_feat, n_vox = xy.shape
    rows = np.arange(n_vox)
    diag = np.diag(gram)
    xy_t = np.ascontiguousarray(xy.T)  # (V, N)
    c = xy_t.copy()  # current correlations H'(y - H beta)
    beta = np.zeros((n_vox, n_feat))
    active = np.zeros((n_vox, n_feat), dtype=bool)
    slot_var = np.full((n_vox, n_slots), -1, dtype=int)
    slot_sign = np.zeros((n_vox, n_slots))
    ginv = np.zeros((n_vox, n_slots, n_slots))
    buf = np.empty_like(ginv)
    cmax = np.max(np.abs(c), axis=1)
    add_var = np.argmax(np.abs(c), axis=1)
    alive = cmax > 1e-12 * np.sqrt(np.maximum(yy, 1e-300))
    need_add = alive.copy()
    dropped = np.full(n_vox, -1)
    n_steps = np.zeros(n_vox, dtype=int)

    pen = None
    if criterion is not None:
        pen = np.log(n_obs) if criterion == "bic" else 2.0
        best_crit = n_obs * np.log(np.maximum(yy, 1e-300) / n_obs)
        best_beta = np.zeros((n_vox, n_feat))
        best_lam = cmax.copy()
    auc_num = np.zeros((n_vox, n_feat)) if out.auc_num is not None else None
    lam_sum = cmax * alive if out.lambda_sum is not None else None
    path = [] if out.path is not None else None
    if path is not None:
        path.append((beta.T.copy(), cmax.copy()))

    for step in range(max_steps):
        if not alive.any():
            break
        ks = min(step + 1, n_slots)
        # --- add the variable that reached the correlation boundary -------------------------
        m = need_add & alive
        if m.any():
            # Block-inverse update of the active Gram inverse, in place for the whole block
            # (voxels that do not add a variable get a zero update).
            gv = ginv[:, :ks, :ks]
            sv = slot_var[:, :ks]
            valid = sv >= 0
            j = np.where(m, add_var, 0)
            g = gram[j[:, None], np.where(valid, sv, 0)] * (valid & m[:, None])
            b = np.matmul(gv, g[:, :, None])[:, :, 0]
            d = diag[j] - np.sum(g * b, axis=1)
            ok = d > 1e-10 * diag[j]
            alive &= ~(m & ~ok)  # collinear with the active set: end of this path
            mm = m & ok
            inv = np.where(mm, 1.0 / np.where(ok, d, 1.0), 0.0)
            bs = b * np.sqrt(inv)[:, None]
            tmp = buf[:, :ks, :ks]
            np.multiply(bs[:, :, None], bs[:, None, :], out=tmp)
            gv += tmp
            r = rows[mm]
            if r.size:
                p = np.argmax(sv[r] == -1, axis=1)
                br = -b[r] * inv[r, None]
                ginv[r, p, :ks] = br
                ginv[r, :ks, p] = br
                ginv[r, p, p] = inv[r]
                jr = j[r]
                slot_var[r, p] = jr
                slot_sign[r, p] = np.sign(c[r, jr])
                active[r, jr] = True
        # --- equiangular direction ---------------------------------------------------------
        sv = slot_var[:, :ks]
        valid = sv >= 0
        sg = slot_sign[:, :ks]
        w = np.matmul(ginv[:, :ks, :ks], sg[:, :, None])[:, :, 0]
        q = np.sum(sg * w, axis=1)
        alive &= q > 0
        aa = np.where(alive, 1.0 / np.sqrt(np.where(q > 0, q, 1.0)), 0.0)
        u = w * aa[:, None]
        u = np.where(valid, u, 0.0)
        sv0 = np.where(valid, sv, 0)
        # Change of correlations per unit step, a = G u: u has at most ks non-zeros per voxel,
        # so a sparse product is several times cheaper than the dense one.
        big_u = sparse.csr_matrix(
            (u.ravel(), sv0.ravel(), np.arange(0, n_vox * ks + 1, ks)), shape=(n_vox, n_feat)
        )
        a = np.asarray(big_u @ gram)
        # --- step length: next variable to enter ------------------------------------------
        cm = cmax[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            g1 = (cm - c) / (aa[:, None] - a)
            g2 = (cm + c) / (aa[:, None] + a)
        g1 = np.where(g1 > 0, g1, np.inf)
        g2 = np.where(g2 > 0, g2, np.inf)
        cand = np.minimum(g1, g2)
        cand[active] = np.inf
        dm = dropped >= 0
        cand[rows[dm], dropped[dm]] = np.inf
        jmin = np.argmin(cand, axis=1)
        gam_add = cand[rows, jmin]
        with np.errstate(divide="ignore", invalid="ignore"):
            gam_end = np.where(aa > 0, cmax / aa, 0.0)
        hit_end = gam_end <= gam_add
        gam_add = np.minimum(gam_add, gam_end)
        # --- step length: an active coefficient crossing zero (lasso modification) --------
        bs = beta[rows[:, None], sv0]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = -bs / u
        z = np.where(valid & (z > 0) & np.isfinite(z), z, np.inf)
        pd = np.argmin(z, axis=1)
        gam_drop = z[rows, pd]
        do_drop = alive & (gam_drop < gam_add)
        gam = np.where(do_drop, gam_drop, gam_add)
        gam = np.where(alive, gam, 0.0)
        # --- move along the path ------------------------------------------------------------
        vr, vc = np.nonzero(valid)
        beta[vr, sv[vr, vc]] += gam[vr] * u[vr, vc]
        c -= gam[:, None] * a
        cmax = np.where(alive, np.maximum(cmax - gam * aa, 0.0), cmax)
        n_steps += alive
        dropped[:] = -1
        if do_drop.any():
            r = rows[do_drop]
            p = pd[do_drop]
            jd = slot_var[r, p]
            beta[r, jd] = 0.0
            active[r, jd] = False
            ar = np.arange(r.size)
            col = ginv[r, :ks, p]
            piv = ginv[r, p, p]
            gi = ginv[r, :ks, :ks]
            gi -= col[:, :, None] * col[:, None, :] / piv[:, None, None]
            gi[ar, p, :] = 0.0
            gi[ar, :, p] = 0.0
            ginv[r, :ks, :ks] = gi
            slot_var[r, p] = -1
            slot_sign[r, p] = 0.0
            dropped[r] = jd
        recorded = alive.copy()
        need_add = alive & ~do_drop
        add_var = jmin
        alive &= ~(hit_end & ~do_drop) & (cmax > 0)
        # --- record the breakpoint ---------------------------------------------------------
        if pen is not None:
            rss = yy - np.sum(beta * (xy_t + c), axis=1)
            rss = np.maximum(rss, 1e-12 * np.maximum(yy, 1e-300))
            crit = n_obs * np.log(rss / n_obs) + pen * np.sum(active, axis=1)
            better = recorded & (crit < best_crit)
            if better.any():
                best_crit[better] = crit[better]
                best_beta[better] = beta[better]
                best_lam[better] = cmax[better]
        if auc_num is not None:
            lam_rec = np.where(recorded, cmax, 0.0)
            auc_num += (beta != 0) * lam_rec[:, None]
            lam_sum += lam_rec
        if path is not None:
            path.append((beta.T.copy(), cmax.copy()))

    if pen is not None:
        out.coef[:, sl] = best_beta.T
        out.lambda_[sl] = best_lam
    out.n_steps[sl] = n_steps
    if auc_num is not None:
        out.auc_num[:, sl] = auc_num.T
        out.lambda_sum[sl] = lam_sum
    if path is not None:
        out.path.extend(path)
