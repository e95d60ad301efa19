"""Stability selection for sparse deconvolution, AUC thresholding and batched debiasing.

Stability selection (Urunuela et al. 2020, 2024): each surrogate keeps a random subset of
the time points (rows of ``H`` and ``Y``; the same subset for all voxels so that the Gram
matrix is shared and the batched LARS of :mod:`bids_hrf.hrf.sparse._lars` applies) and follows the
lasso path. For each coefficient, the area under the stability path is::

    AUC(t) = sum_{surrogates, breakpoints k} lambda_k [s_k(t) != 0] / sum lambda_k

the selection probability weighted by lambda, as pySPFM computes it (its surrogates draw a
subset per voxel; the estimate of the selection probability is the same in expectation).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

from bids_hrf.hrf._hrf_matrix import hrf_matrix
from bids_hrf.hrf.sparse._lars import lars_batched


class StabilitySelection:
    """Area under the stability path of every coefficient, for all voxels at once.

    Parameters
    ----------
    tr : float
        Repetition time (s).
    hrf_model : {"spm", "glover"} or ndarray
        HRF shape or samples at TR.
    n_surrogates : int
        Number of random subsamples.
    subsample_fraction : float
        Fraction of time points kept in each surrogate.
    n_lambdas : int
        Breakpoints per path (``n_lambdas - 1`` LARS steps); pySPFM uses ``n_scans``.
    block_model : bool
        Innovation (block) model.
    te : list of float, optional
        Echo times (ms) for multi-echo data stacked along time.
    random_state : int, optional
        Seed of the subsampling.

    Attributes
    ----------
    auc_ : ndarray, shape (n_scans, n_voxels)
        Area under the stability path, in [0, 1].
    hrf_matrix_ : ndarray
        HRF matrix used.
    """

    def __init__(
        self,
        tr: float,
        hrf_model: str | np.ndarray = "spm",
        n_surrogates: int = 50,
        subsample_fraction: float = 0.6,
        n_lambdas: int = 50,
        block_model: bool = False,
        te: list[float] | None = None,
        random_state: int | None = 0,
    ):
        self.tr = tr
        self.hrf_model = hrf_model
        self.n_surrogates = n_surrogates
        self.subsample_fraction = subsample_fraction
        self.n_lambdas = n_lambdas
        self.block_model = block_model
        self.te = te
        self.random_state = random_state

    def fit(self, Y: np.ndarray) -> StabilitySelection:
        """Compute the AUC of every coefficient.

        Parameters
        ----------
        Y : ndarray, shape (n_scans * n_echoes, n_voxels)

        Returns
        -------
        self
        """
        if self.n_surrogates < 1:
            raise ValueError(f"n_surrogates must be >= 1, got {self.n_surrogates}")
        if not 0.0 < self.subsample_fraction < 1.0:
            raise ValueError(f"subsample_fraction must be in (0, 1), got {self.subsample_fraction}")
        if self.n_lambdas < 2:
            raise ValueError(f"n_lambdas must be >= 2, got {self.n_lambdas}")
        Y = np.asarray(Y, dtype=float)
        if Y.ndim == 1:
            Y = Y[:, None]
        n_echo = len(self.te) if self.te is not None and len(self.te) > 1 else 1
        if Y.shape[0] % n_echo:
            raise ValueError(f"Y has {Y.shape[0]} rows, not a multiple of {n_echo} echoes")
        n_scans = Y.shape[0] // n_echo
        H = hrf_matrix(self.tr, n_scans, self.hrf_model, self.block_model, self.te)
        rng = np.random.default_rng(self.random_state)
        n_keep = int(self.subsample_fraction * n_scans)
        num = np.zeros((n_scans, Y.shape[1]))
        den = np.zeros(Y.shape[1])
        for _ in range(self.n_surrogates):
            keep = np.sort(rng.choice(n_scans, n_keep, replace=False))
            rows = np.concatenate([keep + e * n_scans for e in range(n_echo)])
            h_s, y_s = H[rows], Y[rows]
            res = lars_batched(
                h_s.T @ h_s,
                h_s.T @ y_s,
                np.sum(y_s**2, axis=0),
                rows.size,
                self.n_lambdas - 1,
                criterion=None,
                keep_auc=True,
            )
            num += res.auc_num
            den += res.lambda_sum
        with np.errstate(divide="ignore", invalid="ignore"):
            self.auc_ = np.where(den > 0, num / den, 0.0)
        self.hrf_matrix_ = H
        return self

    def fit_transform(self, Y: np.ndarray) -> np.ndarray:
        """Fit and return ``auc_``."""
        return self.fit(Y).auc_


def threshold_auc(
    auc: np.ndarray,
    threshold: float = 95.0,
    mask: np.ndarray | None = None,
    strategy: str = "static",
) -> np.ndarray:
    """Binary support from an AUC map.

    Parameters
    ----------
    auc : ndarray, shape (n_scans, n_voxels)
    threshold : float
        Percentile in (1, 100] of the AUC values in the reference ``mask`` (e.g. white matter
        or CSF voxels, where no neuronal events are expected), or an absolute AUC in [0, 1).
    mask : ndarray of bool, shape (n_voxels,), optional
        Reference voxels for the percentile (all voxels when omitted).
    strategy : {"static", "time"}
        ``static``: one threshold for the whole run; ``time``: one per time point.

    Returns
    -------
    ndarray of bool, shape (n_scans, n_voxels)
        True where the AUC exceeds the threshold.
    """
    auc = np.asarray(auc, dtype=float)
    if mask is None:
        mask = np.ones(auc.shape[1], dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (auc.shape[1],) or not mask.any():
        raise ValueError("mask must be a non-empty boolean array with one value per voxel")
    if 0.0 <= threshold < 1.0:
        return auc > threshold
    if not 1.0 <= threshold <= 100.0:
        raise ValueError(
            f"threshold must be a percentile in [1, 100] or an AUC in [0, 1), got {threshold}"
        )
    ref = auc[:, mask]
    if strategy == "static":
        return auc > np.percentile(ref, threshold)
    if strategy == "time":
        return auc > np.percentile(ref, threshold, axis=1)[:, None]
    raise ValueError(f"strategy must be 'static' or 'time', got {strategy!r}")


def debias(
    hrf_mat: np.ndarray,
    Y: np.ndarray,
    support: np.ndarray,
    positive_only: bool = False,
    max_block_bytes: float = 16e6,
) -> np.ndarray:
    """Least squares on the selected support of each voxel, batched over voxels.

    Parameters
    ----------
    hrf_mat : ndarray, shape (n_rows, n_scans)
    Y : ndarray, shape (n_rows, n_voxels)
    support : ndarray of bool, shape (n_scans, n_voxels)
    positive_only : bool
        Non-negative least squares (sign of the HRF peak), one voxel at a time.
    max_block_bytes : float
        Memory budget of the batched normal equations.

    Returns
    -------
    ndarray, shape (n_scans, n_voxels)
        Unpenalised amplitudes on the support, zero elsewhere.
    """
    support = np.asarray(support, dtype=bool)
    n_scans, n_vox = support.shape
    out = np.zeros((n_scans, n_vox))
    if positive_only:
        sign = 1.0 if hrf_mat[np.argmax(np.abs(hrf_mat[:, 0])), 0] >= 0 else -1.0
        for v in np.flatnonzero(support.any(axis=0)):
            idx = np.flatnonzero(support[:, v])
            x, _ = nnls(sign * hrf_mat[:, idx], Y[:, v])
            out[idx, v] = sign * x
        return out
    gram = hrf_mat.T @ hrf_mat
    xy = hrf_mat.T @ Y
    counts = support.sum(axis=0)
    order = np.argsort(counts)  # voxels with similar support sizes go together
    start = 0
    ridge = 1e-10 * np.trace(gram) / n_scans
    while start < n_vox:
        k = max(int(counts[order[min(n_vox - 1, start)]]), 1)
        # grow the block while the padded system fits the budget
        stop = start + 1
        while stop < n_vox:
            k_next = max(int(counts[order[stop]]), 1)
            if (stop - start + 1) * k_next * k_next * 8 > max_block_bytes:
                break
            k = k_next
            stop += 1
        vox = order[start:stop]
        start = stop
        if k == 0 or counts[vox].max() == 0:
            continue
        sup = support[:, vox].T  # (B, n_scans)
        # indices of the support, padded with -1 (sorted so that True come first)
        pos = np.argsort(~sup, axis=1, kind="stable")[:, :k]
        valid = np.take_along_axis(sup, pos, axis=1)
        a = gram[pos[:, :, None], pos[:, None, :]] * (valid[:, :, None] & valid[:, None, :])
        a += np.eye(k)[None] * np.where(valid, ridge, 1.0)[:, None, :]
        rhs = xy[pos, vox[:, None]] * valid
        x = np.linalg.solve(a, rhs[:, :, None])[:, :, 0]
        rr, cc = np.nonzero(valid)
        out[pos[rr, cc], vox[rr]] = x[rr, cc]
    return out
