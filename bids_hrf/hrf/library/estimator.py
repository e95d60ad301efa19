"""HRF chosen per voxel from a library by cross-validated fit across runs.

GLMsingle's idea (Prince et al., eLife 2022) with two changes: the choice is made on
**held-out** runs (leave one run out: betas fitted on the other runs, R^2 computed on the
left-out run) rather than on in-sample R^2, and each voxel's scores are shrunk toward the
mean scores of its parcel before the choice (empirical Bayes, below).

Each library HRF ``L_l`` (sampled at the FIR knots) gives the design ``X_r (I_M kron L_l)``
of run ``r``; all the quantities of every fit come from the per-run Gram matrix of the FIR
design and the per-voxel ``X_r' y``, so scoring the whole library costs a few batched
small solves per chunk of voxels.

Shrinkage toward the parcel (``shrinkage=True``, with parcels): each voxel's choice is
the maximum a posteriori one, ``argmax_l [log L_lv + log p_l]``, where ``log L_lv =
-(N / 2) log(SSE_lv / N)`` is the profiled Gaussian log-likelihood of HRF ``l`` from the
held-out residuals (in-sample ones without cross-validation) and ``p_l`` the share of the
parcel's voxels whose maximum-likelihood choice is ``l`` (add-one smoothed): in a voxel
whose data barely separate the HRFs (log-likelihood differences of a few units) the
parcel's choice prevails, a voxel whose data clearly prefer another HRF keeps it.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import gamma

from bids_hrf.hrf._voxel import EventDesign, ar1_bins, as_runs, whitened_bins

__all__ = ["HRFLibrary", "default_library", "parcel_prior_choice", "resample_library"]


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


class HRFLibrary:
    """Per-voxel HRF chosen from a library by cross-validated fit across runs.

    Parameters
    ----------
    library : tuple (time, values) or None
        Library HRFs sampled at ``time`` (s); None for :func:`default_library`.
    cv : {"auto", True, False}, default="auto"
        Leave-one-run-out choice. ``"auto"``: cross-validate when there are at least two
        runs, otherwise choose in sample with a warning; ``True``: require two runs;
        ``False``: in-sample R^2 (GLMsingle's choice).
    shrinkage : bool, default=True
        Shrink each voxel's choice toward its parcel's (module docstring); needs parcels.
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
        sse_out = np.zeros((n_lib, n_vox))
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

            def _sse(Ai, Ci, yi, beta):
                return (yi[None] - 2 * np.einsum("lmv,lmv->lv", beta, Ci)
                        + np.einsum("lmv,lmk,lkv->lv", beta, Ai, beta))

            At, Ct, yt = A.sum(0), C.sum(0), yy.sum(0)
            beta = np.linalg.solve(At + ridge * eye, Ct)
            sse_in = _sse(At, Ct, yt, beta)
            v = b.voxels
            betas_all[:, :, v] = beta
            ins[:, v] = 1 - np.divide(sse_in, yt[None], out=np.ones_like(sse_in),
                                      where=yt[None] > 0)
            if cv:
                sse_cv = np.zeros((n_lib, v.size))
                for f in range(R):
                    bf = np.linalg.solve(At - A[f] + ridge * eye, Ct - C[f])
                    sse = _sse(A[f], C[f], yy[f], bf)
                    sse_cv += sse
                sse_out[:, v] = sse_cv
                scores[:, v] = 1 - np.divide(sse_cv, yt[None], out=np.ones_like(sse_cv),
                                             where=yt[None] > 0)
            else:
                scores[:, v] = ins[:, v]
                sse_out[:, v] = sse_in
        n_total = sum(y.shape[0] for y in runs)
        loglik = -0.5 * n_total * np.log(np.maximum(sse_out, 1e-300) / n_total)
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
        self.conditions_ = list(design.conditions)
        return self
