"""Batched non-negative sparse deconvolution for the paradigm-free parcel HRF (FISTA).

One row per (parcel, candidate HRF) pair: every row has its own series, kernel and penalty,
and all rows are solved together through FFT convolutions. Rows stop independently once the
relative change of their events falls below a tolerance (converged rows leave the batch), and
the momentum restarts when it points uphill (O'Donoghue & Candes, 2015), so the scores that
rank the candidates are those of (nearly) converged fits, not of a fixed iteration count.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from threadpoolctl import threadpool_limits

__all__ = ["nonneg_sparse_fit"]


@threadpool_limits.wrap(limits=1, user_api="blas")  # small matrices: threads only add contention
def nonneg_sparse_fit(
    y: np.ndarray,
    k: np.ndarray,
    lam: np.ndarray,
    u: int,
    lead: int,
    q: np.ndarray,
    tol: float = 3e-4,
    max_iter: int = 300,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``min_{s >= 0} ||y_r - P A_r s||^2 / 2 + lam_r sum(s)`` for every row ``r`` (FISTA).

    ``A_r`` convolves events on a grid of ``TR / u`` (starting ``lead`` scans before the run)
    with kernel ``k[r]`` (samples every ``TR / u``) and samples the result at the scans; ``P``
    removes the span of ``q`` (the drifts removed by cleaning).

    Parameters
    ----------
    y : ndarray, shape (n_rows, n_scans)
    k : ndarray, shape (n_rows, n_taps)
    lam : ndarray, shape (n_rows,)
    u, lead : int
    q : ndarray, shape (n_scans, n_drifts)
        Orthonormal columns.
    tol : float
        A row stops when ``||s_new - s|| <= tol ||s||`` (checked every 5 iterations).
    max_iter : int
    init : ndarray, shape (n_rows, (n_scans + lead) u), optional
        Starting events (warm start); zeros by default.

    Returns
    -------
    s : ndarray, shape (n_rows, (n_scans + lead) u)
    residual : ndarray, shape (n_rows, n_scans)
        ``y - P A s``.
    n_iter : ndarray of int, shape (n_rows,)
    """
    n_rows, _ = k.shape
    n = y.shape[1]
    m = (n + lead) * u
    # circular convolutions of length p = u * ps on the event grid (no wrap-around reaches
    # the scans); the scans are every u-th sample, so the model at the scans and the
    # residual put back on the event grid are transformed at the scan rate (length ps)
    ps = sfft.next_fast_len(-(-(m + k.shape[1] + 1) // u), real=True)
    while (u * ps) % 2:
        ps = sfft.next_fast_len(ps + 1, real=True)
    p = u * ps
    kf = sfft.rfft(k.astype(np.float32), p, axis=1)
    lip = (np.max(np.abs(kf) ** 2, axis=1) / u + 1e-12).astype(np.float32)
    y = np.ascontiguousarray(y, dtype=np.float32)
    q = q.astype(np.float32)
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float32), (n_rows,))
    half = ps // 2 + 1

    def forward(x, kf_rows):  # A x, not projected: decimating folds the spectrum
        spec = sfft.rfft(x, p, axis=1)
        spec *= kf_rows
        if u == 1:
            return sfft.irfft(spec, p, axis=1)[:, lead : lead + n]
        if u == 2:  # bins f and ps - f (conjugate) fold onto f
            folded = spec[:, :half] + np.conj(spec[:, ps : ps - half : -1])
        else:
            full = np.concatenate([spec, np.conj(spec[:, (p - 1) // 2 : 0 : -1])], axis=1)
            folded = full.reshape(full.shape[0], u, ps).sum(axis=1)[:, :half]
        return sfft.irfft(folded, ps, axis=1)[:, lead : lead + n] / u

    def adjoint_projected(r, kf_rows):  # A^T P r: zero-stuffing repeats the spectrum
        scans = np.zeros((r.shape[0], ps), dtype=np.float32)
        scans[:, lead : lead + n] = r - (r @ q) @ q.T
        spec = sfft.rfft(scans, axis=1)
        if u > 1:
            full = np.concatenate([spec, np.conj(spec[:, (ps - 1) // 2 : 0 : -1])], axis=1)
            spec = (
                np.tile(full, (1, u))[:, : p // 2 + 1]
                if u > 2
                else np.concatenate([full, full[:, :1]], axis=1)
            )
        spec *= np.conj(kf_rows)
        return sfft.irfft(spec, p, axis=1)[:, :m]

    out = np.zeros((n_rows, m), dtype=np.float32)
    n_iter = np.full(n_rows, max_iter)
    active = np.arange(n_rows)
    s = (
        np.zeros((n_rows, m), dtype=np.float32)
        if init is None
        else np.array(init, dtype=np.float32)
    )
    z = s.copy()
    tk = np.ones(n_rows, dtype=np.float32)
    kf_a, y_a, lam_a, lip_a = kf, y, lam, lip
    for it in range(max_iter):
        # P idempotent: A^T P (P A z - y) = A^T P (A z - y), one projection per iteration
        grad = adjoint_projected(forward(z, kf_a) - y_a, kf_a)
        s_new = np.maximum(z - (grad + lam_a[:, None]) / lip_a[:, None], 0.0)
        step = s_new - s
        uphill = np.einsum("ij,ij->i", z - s_new, step) > 0
        t_new = np.where(uphill, 1.0, 0.5 * (1 + np.sqrt(1 + 4 * tk * tk))).astype(np.float32)
        beta = np.where(uphill, 0.0, (tk - 1) / t_new).astype(np.float32)
        z = s_new + beta[:, None] * step
        s, tk = s_new, t_new
        if (it + 1) % 5 and it < max_iter - 1:
            continue
        change = np.einsum("ij,ij->i", step, step)
        done = (change <= tol**2 * np.einsum("ij,ij->i", s, s)) | (it == max_iter - 1)
        if done.any():
            out[active[done]] = s[done]
            n_iter[active[done]] = it + 1
            keep = ~done
            active = active[keep]
            if active.size == 0:
                break
            s, z, tk = s[keep], z[keep], tk[keep]
            kf_a, y_a, lam_a, lip_a = kf_a[keep], y_a[keep], lam_a[keep], lip_a[keep]
    full = forward(out, kf)
    return out, y - (full - (full @ q) @ q.T), n_iter
