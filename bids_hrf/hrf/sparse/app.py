"""App driver for sparse deconvolution: one run, all parcels, filled into an HRFEstimate."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bids_hrf.hrf._hrf_matrix import canonical_hrf
from bids_hrf.hrf._memory import release_free_memory
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.blind.parcel import ParcelBlindHRF
from bids_hrf.hrf.sparse._lars import LARS_CRITERIA
from bids_hrf.hrf.sparse.deconvolution import SparseDeconvolution
from bids_hrf.hrf.sparse.stability import StabilitySelection


def hrf_parameter_table(time: np.ndarray, hrfs: np.ndarray, labels: list[str]) -> dict:
    """``{"hrfparams": table}`` of HRF parameters (time to peak, FWHM...) per parcel."""
    try:
        from bids_hrf.hrf.params import hrf_parameters
    except ImportError:  # pragma: no cover - the module is part of the package
        return {}
    return {"hrfparams": hrf_parameters(hrfs, time).to_frame(labels)}


class _Deconvolver:
    """Sparse deconvolution of chosen voxels of ``Y`` with a given HRF, filling whole-brain
    maps (activity, fit, lambda, stability AUC) as parcels are done.

    The scan-wise maps are float32 (as they are written). With the LARS criteria (bic,
    aic) every voxel follows its own lasso path, so a parcel (or all voxels) is
    deconvolved in batches of at most ``max_block_bytes`` of float64 data each: the
    solvers' working copies (``H'Y``, coefficients, fit, debiasing, stability sums) then
    scale with a batch, not with the whole brain, and every voxel gets the numbers it
    gets in one call; so with FISTA and the spike model. The other FISTA settings keep one
    call per parcel (see :meth:`_voxelwise`).
    """

    def __init__(
        self,
        Y: np.ndarray,
        tr: float,
        criterion: str,
        group: float,
        block_model: bool,
        n_surrogates: int,
        n_jobs: int,
        te: list[float] | None = None,
        max_block_bytes: float = 24e6,
    ):
        self.Y, self.tr, self.criterion, self.group = Y, tr, criterion, group
        self.block_model, self.n_surrogates, self.n_jobs = block_model, n_surrogates, n_jobs
        self.te = list(te) if te else None
        n_rows, n_vox = Y.shape
        self.batch = max(1, int(max_block_bytes // (8 * n_rows)))
        self.coef = np.zeros((n_rows // len(self.te or [0]), n_vox), dtype=np.float32)
        self.denoised = np.zeros((n_rows, n_vox), dtype=np.float32)
        self.lam = np.zeros(n_vox)
        self.auc = np.zeros(self.coef.shape, dtype=np.float32) if n_surrogates > 0 else None

    def run(self, mask: np.ndarray, h_model) -> None:
        """Deconvolve the voxels of ``mask`` with HRF ``h_model`` (a name or samples)."""
        voxels = np.flatnonzero(mask)
        if not self._voxelwise():
            self._fit(voxels, h_model)
            return
        for start in range(0, voxels.size, self.batch):
            self._fit(voxels[start : start + self.batch], h_model)

    def _voxelwise(self) -> bool:
        """Whether each voxel's solution is its own, whatever the voxels solved with it.

        LARS criteria: always. FISTA with the spike model: each voxel iterates and stops on
        its own (measured: batches give the same numbers). Not with the L2,1 penalty (couples
        the voxels of a parcel), ``eigval`` (one lambda from all voxels of the call) or the
        block model under FISTA (its ill-conditioned float32 iterations end elsewhere when
        the voxels are partitioned differently, as already with ``n_jobs``): one call.
        """
        if self.group > 0:
            return False
        if self.criterion in LARS_CRITERIA:
            return True
        return self.criterion != "eigval" and not self.block_model

    def _fit(self, voxels: np.ndarray, h_model) -> None:
        Y = self.Y[:, voxels]
        model = SparseDeconvolution(
            self.tr,
            hrf_model=h_model,
            block_model=self.block_model,
            criterion=self.criterion,
            group=self.group,
            n_jobs=self.n_jobs,
            te=self.te,
        ).fit(Y)
        # multi-echo: the model's HRF is -TE_k h (coefficients ~ dR2*); the activity map
        # keeps the single-echo sign (> 0: BOLD increase), in % change at the last echo
        self.coef[:, voxels] = -model.coef_ if self.te and len(self.te) > 1 else model.coef_
        self.denoised[:, voxels] = model.fitted_
        self.lam[voxels] = model.lambda_
        del model
        if self.auc is not None:
            self.auc[:, voxels] = (
                StabilitySelection(
                    self.tr,
                    hrf_model=h_model,
                    n_surrogates=self.n_surrogates,
                    block_model=self.block_model,
                    te=self.te,
                )
                .fit(Y)
                .auc_
            )
        del Y
        release_free_memory()  # the batch's freed working arrays, back to the system


def estimate_sparse(
    Y: np.ndarray,
    tr: float,
    parcel_labels: np.ndarray,
    parcel_names: dict[int, str],
    criterion: str = "bic",
    group: float = 0.0,
    block_model: bool = False,
    n_surrogates: int = 0,
    estimate_hrf: bool = True,
    hrf_model: str = "spm",
    dt: float = 0.1,
    hrf_duration: float = 25.0,
    high_pass: float = 0.01,
    n_jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
    te: list[float] | None = None,
    max_block_bytes: float = 24e6,
) -> HRFEstimate:
    """Sparse paradigm-free deconvolution of one run, with an HRF per parcel.

    Parameters
    ----------
    Y : ndarray, shape (n_scans, n_voxels)
        Confound-cleaned voxel time series of one run.
    tr : float
        Repetition time (s).
    parcel_labels : ndarray of int, shape (n_voxels,)
        Parcel of each voxel; 0 is background (deconvolved with the canonical HRF, no HRF
        column in the table).
    parcel_names : dict of int to str
        Column name of each parcel label (``str(label)`` when missing).
    criterion : str
        Lambda selection (see :class:`bids_hrf.hrf.sparse.SparseDeconvolution`).
    group : float
        L2,1 weight over the voxels of a parcel (FISTA criteria).
    block_model : bool
        Innovation (block) model instead of spikes.
    n_surrogates : int
        When > 0, stability selection with that many surrogates (AUC map output).
    estimate_hrf : bool
        Estimate each parcel's HRF without a paradigm (:mod:`bids_hrf.hrf.blind.estimator`) and
        deconvolve the parcel with it; otherwise use the canonical HRF everywhere.
    hrf_model : {"spm", "glover"}
        Canonical HRF (used where the HRF is not estimated, and for the background).
    dt, hrf_duration : float
        Grid step and length (s) of the HRF table.
    high_pass : float
        High-pass cut-off (Hz) the data were cleaned with (the HRF fit filters its model
        the same way).
    n_jobs : int
        Processes for the voxel-wise solvers.
    progress : callable, optional
        Called as ``progress(done, total)`` after each parcel.
    te : list of float, optional
        Echo times (ms) of multi-echo data: ``Y`` stacks the echoes along time (all scans
        of echo 1, then echo 2...), each in percent signal change; the echoes are
        deconvolved jointly (one activity signal, the BOLD of echo k scaled by -TE_k, as in
        pySPFM), with stability selection over the echoes when ``n_surrogates > 0``.
        Not with ``estimate_hrf``.
    max_block_bytes : float
        Size of the float64 data of one batch of voxels deconvolved together (LARS
        criteria, and FISTA criteria other than ``eigval`` with the spike model and
        ``group == 0``); the memory of the solvers scales with it, not with the number
        of voxels. Results do not depend on it.

    Returns
    -------
    HRFEstimate
        ``method="sparse"``; ``voxel_maps`` holds ``desc-activity_bold`` (or
        ``desc-innovation_bold``) and ``desc-denoised_bold`` (n_scans, n_voxels),
        ``desc-sparse_stat-lambda_statmap`` (n_voxels,) and, with surrogates,
        ``desc-sparse_stat-auc_bold`` (n_scans, n_voxels). With ``te``, the denoised BOLD
        is one map per echo, ``echo-<k>_desc-denoised_bold``. The scan-wise maps are
        float32 (the precision they are written in), lambda float64.
    """
    Y = np.asarray(Y, dtype=float)
    _check_echoes(te, Y.shape[0], estimate_hrf)
    if Y.ndim != 2:
        raise ValueError(f"Y must be (n_scans, n_voxels), got shape {Y.shape}")
    labels_arr = np.asarray(parcel_labels)
    if labels_arr.shape != (Y.shape[1],):
        raise ValueError(
            f"parcel_labels has shape {labels_arr.shape} but Y has {Y.shape[1]} voxels: "
            "give one label per voxel column"
        )
    if not np.issubdtype(labels_arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels_arr, 1), 0)):
            raise ValueError("parcel_labels must be integers (0 = background)")
        labels_arr = labels_arr.astype(int)
    parcels = [int(p) for p in np.unique(labels_arr) if p != 0]
    if not parcels:
        raise ValueError("parcel_labels has no parcel (all voxels are background, label 0)")
    if dt <= 0 or hrf_duration <= dt:
        raise ValueError(f"dt must be positive and below hrf_duration, got {dt}, {hrf_duration}")

    time = np.arange(0.0, hrf_duration + dt / 2, dt)
    solver = _Deconvolver(
        Y,
        tr,
        criterion=criterion,
        group=group,
        block_model=block_model,
        n_surrogates=n_surrogates,
        n_jobs=n_jobs,
        te=te,
        max_block_bytes=max_block_bytes,
    )
    hrfs = np.zeros((time.size, len(parcels)))
    blind_rows = []
    canonical = canonical_hrf(time, hrf_model)
    background = labels_arr == 0
    n_steps = len(parcels) + int(background.any())
    done = 0
    if not estimate_hrf and group == 0 and n_surrogates <= 0:
        # Same HRF everywhere and voxels independent: all voxels in memory-bounded batches.
        solver.run(np.ones(Y.shape[1], dtype=bool), hrf_model)
        hrfs[:] = canonical[:, None]
        if progress is not None:
            progress(n_steps, n_steps)
    else:
        if estimate_hrf:  # all parcels in one batch
            fits = ParcelBlindHRF(
                tr, high_pass=high_pass, dt=dt, hrf_duration=hrf_duration
            ).fit_parcels(Y, labels_arr)
        for i, label in enumerate(parcels):
            mask = labels_arr == label
            if estimate_hrf:
                fit = fits[label]
                hrfs[:, i] = fit.hrf_at(time)
                blind_rows.append((fit.ttp_sd_, fit.fwhm_sd_, fit.n_events_, fit.identifiable_))
                solver.run(mask, fit.hrf_at(np.arange(0.0, hrf_duration + 1e-9, tr)))
            else:
                hrfs[:, i] = canonical
                solver.run(mask, hrf_model)
            done += 1
            if progress is not None:
                progress(done, n_steps)
        if background.any():
            solver.run(background, hrf_model)
            if progress is not None:
                progress(n_steps, n_steps)
    coef, denoised, lam, auc = solver.coef, solver.denoised, solver.lam, solver.auc

    names = [parcel_names.get(p, str(p)) for p in parcels]
    kind = "innovation" if block_model else "activity"
    voxel_maps = {
        f"desc-{kind}_bold": coef,
        **_denoised_maps(denoised, te),
        "desc-sparse_stat-lambda_statmap": lam,
    }
    if auc is not None:
        voxel_maps["desc-sparse_stat-auc_bold"] = auc
    parameters = {
        "criterion": criterion,
        "group": group,
        "block_model": block_model,
        "n_surrogates": n_surrogates,
        "estimate_hrf": estimate_hrf,
        "hrf_model": hrf_model,
        "dt": dt,
        "hrf_duration": hrf_duration,
        "tr": tr,
        "time_convention": "coefficient i = event at scan i (HRF column i starts at scan i)",
    }
    if te:
        parameters["echo_times_ms"] = [float(t) for t in te]
    tables = hrf_parameter_table(time, hrfs, names)
    if blind_rows and "hrfparams" in tables:
        parameters["blind_estimator"] = "parcel double-gamma marginal likelihood (ParcelBlindHRF)"
        table = tables["hrfparams"]
        ttp_sd, fwhm_sd, n_events, ident = (list(c) for c in zip(*blind_rows, strict=True))
        table["time_to_peak_sd"] = ttp_sd
        table["fwhm_sd"] = fwhm_sd
        table["n_events"] = n_events
        table["identifiable"] = ident
    return HRFEstimate(
        time=time,
        hrfs=hrfs,
        labels=names,
        method="sparse",
        parameters=parameters,
        voxel_maps=voxel_maps,
        parcel_tables=tables,
    )


def _check_echoes(te, n_rows: int, estimate_hrf: bool) -> None:
    if not te:
        return
    if estimate_hrf:
        raise ValueError(
            "multi-echo deconvolution (te) takes the canonical HRF: set estimate_hrf=False"
        )
    if n_rows % len(te):
        raise ValueError(f"Y has {n_rows} rows, not a multiple of the {len(te)} echoes in te")


def _denoised_maps(denoised: np.ndarray, te: list[float] | None) -> dict[str, np.ndarray]:
    """The denoised BOLD: one map, or one per echo (``echo-<k>_desc-denoised_bold``)."""
    if not te:
        return {"desc-denoised_bold": denoised}
    n = denoised.shape[0] // len(te)
    return {
        f"echo-{k + 1}_desc-denoised_bold": denoised[k * n : (k + 1) * n] for k in range(len(te))
    }


_MAP_TEXT = {
    "activity": (
        "activity-inducing signal (sparse spike model): one volume per scan, "
        "amplitude of the neural event starting at that scan",
        "percent signal change",
    ),
    "innovation": (
        "innovation signal (sparse block model): one volume per scan, onset (>0) "
        "or offset (<0) of sustained activity at that scan",
        "percent signal change",
    ),
    "denoised": (
        "denoised BOLD: the activity convolved with the parcel HRF (H s), one volume per scan",
        "percent signal change",
    ),
    "lambda": ("regularisation parameter lambda selected for each voxel", "percent signal change"),
    "auc": (
        "stability-selection area under the curve: fraction of surrogates and lambdas "
        "selecting a non-zero coefficient at each scan",
        "fraction in [0, 1]",
    ),
}


def map_metadata(fragment: str, parameters: dict) -> dict:
    """Sidecar metadata of one sparse-deconvolution voxel map, from its name fragment.

    Parameters
    ----------
    fragment : str
        A key of :attr:`HRFEstimate.voxel_maps` made by :func:`estimate_sparse`, e.g.
        ``"desc-activity_bold"`` or ``"desc-sparse_stat-lambda_statmap"``.
    parameters : dict
        :attr:`HRFEstimate.parameters` of the same estimate.

    Returns
    -------
    dict
        ``Description``, ``Units``, the lambda ``Criterion`` and, for scan-wise maps, the
        ``TimeConvention`` of the coefficients.
    """
    ents = dict(part.split("-", 1) for part in fragment.split("_") if "-" in part)
    key = ents.get("stat") or ents.get("desc", "")
    text, units = _MAP_TEXT.get(key, (f"sparse deconvolution map {fragment}", "arbitrary"))
    meta = {
        "Description": f"Sparse paradigm-free deconvolution: {text}",
        "Units": units,
        "Criterion": parameters.get("criterion"),
        "BlockModel": bool(parameters.get("block_model", False)),
        "HRFEstimated": bool(parameters.get("estimate_hrf", False)),
    }
    if fragment.endswith("_bold"):
        meta["TimeConvention"] = parameters.get("time_convention")
    if key == "auc":
        meta["NumberOfSurrogates"] = parameters.get("n_surrogates")
    if parameters.get("echo_times_ms"):
        tes = [t / 1000.0 for t in parameters["echo_times_ms"]]  # s, as BIDS
        meta["EchoTime"] = tes
        if "echo" in ents and ents["echo"].isdigit() and 0 < int(ents["echo"]) <= len(tes):
            meta["Description"] += f" (echo {ents['echo']})"
            meta["EchoTime"] = tes[int(ents["echo"]) - 1]
    if key in ("activity", "innovation", "lambda") and parameters.get("group"):
        meta["GroupWeight"] = parameters.get("group")
    return meta


def detect_events(
    activity: np.ndarray,
    frame_times: np.ndarray,
    onsets: np.ndarray,
    parcel_labels: np.ndarray,
    parcel_names: dict[int, str] | None = None,
    window: int = 1,
    threshold: float = 1.0,
    max_lag: int = 2,
):
    """Deconvolved activity against paradigm onsets, per parcel.

    For each parcel, ``a(t)`` is the mean activity of its voxels, standardised over the run
    (``(a - mean) / sd``). A scan is *active* when ``a`` exceeds ``threshold``; an onset is
    *detected* when an active scan lies within ``window`` scans of it (coefficient ``i`` is
    an event at scan ``i``), and ``chance`` is the same rate over every scan of the run (the
    detection rate of onsets placed at random). ``response`` is the peak of the event-triggered
    average of ``a`` at lags 0 to ``max_lag`` scans after the onsets, and ``lag`` the lag of
    the largest event-triggered average between -3 and +6 scans.

    Parameters
    ----------
    activity : ndarray, shape (n_scans, n_voxels)
        Activity-inducing (or innovation) signal.
    frame_times : ndarray, shape (n_scans,)
        Acquisition time of each scan (s), in the clock of the onsets.
    onsets : ndarray
        Paradigm onsets (s); those outside the run are left out.
    parcel_labels : ndarray of int, shape (n_voxels,)
        Parcel of each voxel (0: background, skipped).
    parcel_names : dict of int to str, optional
    window : int
        Tolerance in scans on each side.
    threshold : float
        Standardised parcel activity above which a scan is active.
    max_lag : int
        Last lag (scans) of the ``response`` window.

    Returns
    -------
    pandas.DataFrame
        Columns ``parcel``, ``n_onsets``, ``detected``, ``chance`` (fractions), ``response``
        (SD units) and ``lag`` (scans), sorted by ``response`` (most paradigm-locked first).
    """
    import pandas as pd

    activity = np.asarray(activity, dtype=float)
    frame_times = np.asarray(frame_times, dtype=float)
    labels = np.asarray(parcel_labels)
    if activity.shape != (frame_times.size, labels.size):
        raise ValueError(
            f"activity has shape {activity.shape}; expected (n_scans, n_voxels) = "
            f"({frame_times.size}, {labels.size})"
        )
    onsets = np.asarray(onsets, dtype=float).ravel()
    tr = float(np.median(np.diff(frame_times))) if frame_times.size > 1 else 1.0
    onsets = onsets[(onsets >= frame_times[0] - tr / 2) & (onsets <= frame_times[-1] + tr / 2)]
    scans = np.abs(frame_times[None, :] - onsets[:, None]).argmin(axis=1)
    n = frame_times.size
    lags = np.arange(-3, 7)
    names = parcel_names or {}
    rows = []
    for label in (int(p) for p in np.unique(labels) if p != 0):
        a = activity[:, labels == label].mean(axis=1)
        sd = a.std()
        a = (a - a.mean()) / sd if sd > 0 else np.zeros_like(a)
        active = a > threshold
        padded = np.pad(active, window)
        near = np.zeros(n, dtype=bool)  # near[i]: an active scan within +-window of scan i
        for k in range(2 * window + 1):
            near |= padded[k : k + n]
        eta = (
            np.array(
                [
                    np.mean(a[(scans + k)[(scans + k >= 0) & (scans + k < n)]])
                    if np.any((scans + k >= 0) & (scans + k < n))
                    else np.nan
                    for k in lags
                ]
            )
            if onsets.size
            else np.full(lags.size, np.nan)
        )
        rows.append(
            {
                "parcel": names.get(label, str(label)),
                "n_onsets": int(onsets.size),
                "detected": float(near[scans].mean()) if onsets.size else np.nan,
                "chance": float(near.mean()),
                "response": float(np.nanmax(eta[3 : 4 + max_lag])) if onsets.size else np.nan,
                "lag": int(lags[np.nanargmax(eta)]) if onsets.size and sd > 0 else 0,
            }
        )
    table = pd.DataFrame(
        rows, columns=["parcel", "n_onsets", "detected", "chance", "response", "lag"]
    )
    order = np.argsort(-table["response"].fillna(-np.inf).to_numpy(), kind="stable")
    return table.iloc[order].reset_index(drop=True)
