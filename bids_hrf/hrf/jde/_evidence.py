"""Evidence that a parcel responds to the paradigm, for JDE-VEM's "silent parcel" flag.

The JDE-VEM fit itself cannot tell a weak response from none: its NRL mixture is fitted
to whatever the voxels hold, and a degenerate mixture gives high PPMs to noise voxels,
while at low SNR the classes of a truly active parcel overlap. The flag therefore rests on
a classical test that is calibrated under the null whatever the HRF estimate: per voxel,
an F-test of the paradigm with a flexible HRF basis (SPM canonical HRF with its time and
dispersion derivatives, so HRFs peaking early or late are caught) in nilearn's AR(1) GLM,
with the parcel's drifts; the voxel p-values of a parcel are combined by Simes' test (valid
under the positive dependence of spatially correlated noise), the parcel mean time series
is tested the same way (diffuse weak responses), the two are combined by Bonferroni, and
the parcels are compared across the whole atlas with Benjamini-Hochberg's FDR.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

__all__ = ["hrf_basis", "response_pvalues", "simes", "fdr_bh"]


def hrf_basis(time: np.ndarray) -> np.ndarray:
    """SPM canonical HRF, time derivative and dispersion derivative at ``time`` (s).

    Returns
    -------
    ndarray, shape (n_samples, 3)
        Columns scaled to unit norm (the F-test does not depend on the scaling).
    """
    t = np.asarray(time, dtype=float)

    def spm(t, disp=1.0):
        return stats.gamma.pdf(t, 6.0 / disp, scale=disp) - stats.gamma.pdf(
            t, 16.0 / disp, scale=disp) / 6.0

    h = spm(t)
    dh = (h - spm(t - 0.1)) / 0.1
    dd = (h - spm(t, 1.01)) / 0.01
    basis = np.column_stack([h, dh, dd])
    return basis / np.maximum(np.linalg.norm(basis, axis=0), 1e-300)


def response_pvalues(
    Ys: list[np.ndarray],
    Xs: list[np.ndarray],
    Ps: list[np.ndarray],
    basis: np.ndarray,
) -> tuple[np.ndarray, float]:
    """F-test p-values of the paradigm per voxel and for the parcel mean.

    Parameters
    ----------
    Ys : list of ndarray (n_scans_r, n_voxels)
        BOLD of the parcel, per run.
    Xs : list of ndarray (n_conditions, n_scans_r, n_lags)
        Stimulus lag matrices (:func:`bids_hrf.hrf.jde._design.condition_matrices`).
    Ps : list of ndarray (n_scans_r, n_drifts_r)
        Drift bases (constant included), per run.
    basis : ndarray (n_lags, k)
        HRF basis (:func:`hrf_basis`).

    Returns
    -------
    p_voxels : ndarray (n_voxels,)
    p_mean : float
        p-value of the parcel-mean time series.
    """
    from nilearn.glm import compute_contrast
    from nilearn.glm.first_level import run_glm

    M, k = Xs[0].shape[0], basis.shape[1]
    task = np.vstack([np.einsum("mnd,dk->nmk", X, basis).reshape(X.shape[1], M * k)
                      for X in Xs])
    n_tot = task.shape[0]
    drifts = np.zeros((n_tot, sum(P.shape[1] for P in Ps)))
    row = col = 0
    for P in Ps:
        drifts[row : row + P.shape[0], col : col + P.shape[1]] = P
        row, col = row + P.shape[0], col + P.shape[1]
    # keep the task columns that carry signal (a condition absent from every run has none)
    keep = np.linalg.norm(task, axis=0) > 1e-12 * max(1.0, float(np.abs(task).max()))
    X = np.hstack([task[:, keep], drifts])
    n_task = int(keep.sum())
    Y = np.vstack(Ys)
    Y = np.column_stack([Y, Y.mean(axis=1)])
    con = np.eye(X.shape[1])[:n_task]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels, results = run_glm(Y, X, noise_model="ar1", n_jobs=1)
        p = compute_contrast(labels, results, con, stat_type="F").p_value()
    p = np.clip(np.nan_to_num(np.asarray(p, dtype=float), nan=1.0), 0.0, 1.0)
    return p[:-1], float(p[-1])


def simes(p: np.ndarray) -> float:
    """Simes' combined p-value ``min_k n p_(k) / k``."""
    p = np.sort(np.asarray(p, dtype=float).ravel())
    if p.size == 0:
        return 1.0
    return float(min(1.0, np.min(p * p.size / np.arange(1, p.size + 1))))


def fdr_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values)."""
    p = np.asarray(p, dtype=float)
    n = p.size
    if n == 0:
        return p.copy()
    order = np.argsort(p)
    q = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.clip(q, 0.0, 1.0)
    return out
