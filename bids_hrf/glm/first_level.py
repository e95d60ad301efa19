"""First-level GLM on masked voxels, with a canonical HRF or one HRF per parcel.

With a canonical HRF this is exactly nilearn's path (``make_first_level_design_matrix`` +
``run_glm`` + ``compute_contrast``, the same as ``FirstLevelModel``). With an
:class:`~bids_hrf.hrf.base.HRFEstimate`, each parcel gets its own design, built by
convolving the events with that parcel's HRF, and is fitted on its own voxels.

The settings come as small frozen dataclasses: :class:`DesignSpec` (drifts, FIR delays),
:class:`NoiseSpec` (noise model, signal scaling) and, for per-parcel HRFs,
:class:`ParcelHRFs` (the estimate, the parcel of each voxel, the fallback model).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from nilearn.glm.contrasts import compute_contrast as nl_compute_contrast
from nilearn.glm.first_level import mean_scaling
from nilearn.glm.regression import SimpleRegressionResults

from bids_hrf.glm.ar1 import run_glm
from bids_hrf.glm.contrasts import ContrastResult, ContrastSpec, contrast_matrix
from bids_hrf.glm.design import check_events, conditions_of, make_design
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.basis import nilearn_hrf_model, sampled_hrf_model

CANONICAL = "canonical"


@dataclass(frozen=True)
class DesignSpec:
    """How the design matrix of a run is built (besides its events, HRF and confounds).

    Parameters are those of :func:`~bids_hrf.glm.design.make_design`.

    Parameters
    ----------
    drift_model : {"cosine", "polynomial", None}, default="cosine"
    high_pass : float, default=0.01
        Cut-off frequency in Hz of the cosine drift.
    drift_order : int, default=1
        Order of the polynomial drift.
    fir_delays : tuple of int, optional
        FIR delays in scans (only with the ``"fir"`` HRF model).
    min_onset : float, default=-24
        Events starting earlier than this (relative to the first scan) are ignored.
    """

    drift_model: str | None = "cosine"
    high_pass: float | None = 0.01
    drift_order: int = 1
    fir_delays: tuple[int, ...] | None = None
    min_onset: float = -24

    def __post_init__(self) -> None:
        if self.fir_delays is not None:
            object.__setattr__(self, "fir_delays", tuple(self.fir_delays))

    def make_design_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~bids_hrf.glm.design.make_design`."""
        return {"drift_model": self.drift_model, "high_pass": self.high_pass,
                "drift_order": self.drift_order, "fir_delays": self.fir_delays,
                "min_onset": self.min_onset}


@dataclass(frozen=True)
class NoiseSpec:
    """The noise model of the fit and how the data are scaled before it.

    Parameters
    ----------
    noise_model : str, default="ar1"
        ``"ols"`` or ``"arN"`` (nilearn's ``run_glm``).
    signal_scaling : False, 0, 1 or (0, 1), default=0
        As nilearn's ``FirstLevelModel``: ``0`` scales each voxel to percent signal change
        of its mean over the kept scans (FirstLevelModel's default), ``False`` fits the
        data as given.
    bins : int, default=100
        AR coefficient bins (nilearn's ``run_glm``).
    minimize_memory : bool, default=True
        Keep light regression results (no residuals), as nilearn's default.
    random_state : int, optional
        For AR(N>1) clustering.
    """

    noise_model: str = "ar1"
    signal_scaling: bool | int | tuple = 0
    bins: int = 100
    minimize_memory: bool = True
    random_state: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.signal_scaling, list):
            object.__setattr__(self, "signal_scaling", tuple(self.signal_scaling))
        if self.signal_scaling is not False and self.signal_scaling not in (0, 1, (0, 1)):
            raise ValueError("signal_scaling must be False, 0, 1 or (0, 1), got "
                             f"{self.signal_scaling}")


@dataclass(frozen=True, eq=False)
class ParcelHRFs:
    """One HRF per parcel for the GLM: an estimate and the parcel of each voxel.

    Parameters
    ----------
    estimate : HRFEstimate
        HRFs whose columns are parcels.
    voxel_parcels : ndarray of int, shape (n_voxels,)
        Parcel label of each voxel (0: none).
    parcel_names : mapping of int to str, optional
        Name (estimate column) of each label; default ``str(label)``.
    fallback : str, default="spm"
        HRF model (preset name) of the voxels without a usable parcel HRF.
    """

    estimate: HRFEstimate
    voxel_parcels: np.ndarray
    parcel_names: Mapping[int, str] | None = None
    fallback: str = "spm"

    def __post_init__(self) -> None:
        vp = np.asarray(self.voxel_parcels).ravel()
        if vp.dtype.kind == "f":
            if not np.all(np.isfinite(vp)) or np.any(vp != np.round(vp)):
                raise ValueError("voxel_parcels must hold integer parcel labels")
            vp = vp.astype(int)
        object.__setattr__(self, "voxel_parcels", vp)
        if self.parcel_names is not None:
            object.__setattr__(self, "parcel_names",
                               {int(k): str(v) for k, v in self.parcel_names.items()})

    def subset(self, voxels: slice | np.ndarray) -> ParcelHRFs:
        """The same HRFs for a subset of the voxels."""
        return replace(self, voxel_parcels=self.voxel_parcels[voxels])


@dataclass
class FirstLevelFit:
    """A fitted first-level GLM (one run).

    Attributes
    ----------
    design_matrices : dict of str to pandas.DataFrame
        ``"canonical"`` and/or one entry per parcel name; rows are the kept scans.
    voxel_index : dict of str to ndarray
        Indices (into the voxels of ``Y``) fitted with each design.
    labels, results : dict of str to ...
        nilearn's ``run_glm`` output (AR-coefficient labels per voxel, regression results
        per label) for each design.
    conditions : list of str
        Task conditions (design columns modelled by the HRF).
    n_voxels : int
    r_square : ndarray, shape (n_voxels,)
        (Pseudo-)R^2 of each voxel's model (whitened for AR models, as nilearn).
    hrf_source : dict of str to str
        For each parcel, ``"estimate"`` or ``"canonical"`` (fallback) HRF.
    scaling_mean : ndarray or None
        Per-voxel mean removed by the signal scaling.
    """

    design_matrices: dict[str, pd.DataFrame]
    voxel_index: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    results: dict[str, dict]
    conditions: list[str]
    n_voxels: int
    r_square: np.ndarray
    hrf_source: dict[str, str] = field(default_factory=dict)
    scaling_mean: np.ndarray | None = None
    sample_mask: np.ndarray | None = None

    @property
    def columns(self) -> list[str]:
        """Design-matrix columns (the same for every design)."""
        return list(next(iter(self.design_matrices.values())).columns)

    def compute_contrast(
        self,
        contrast: ContrastSpec | str | Sequence[str] | np.ndarray,
        stat_type: str | None = None,
    ) -> ContrastResult:
        """Compute a t or F contrast on every voxel.

        Parameters
        ----------
        contrast : ContrastSpec, str, list of str or ndarray
            A contrast spec, an expression over the design columns (t), a list of
            expressions (F), or weights over the columns: shape (n_columns,) (t) or
            (q, n_columns) (F).
        stat_type : {"t", "F"}, optional
            Defaults to the spec's type, else "t" for one row and "F" for several.

        Returns
        -------
        ContrastResult
        """
        columns = self.columns
        if isinstance(contrast, np.ndarray):
            con = np.asarray(contrast, dtype=float)
            if con.shape[-1] != len(columns) or con.ndim > 2:
                raise ValueError(
                    f"Contrast weights have shape {con.shape}; expected ({len(columns)},) or "
                    f"(q, {len(columns)}) for the design columns {columns}"
                )
        else:
            con = contrast_matrix(contrast, columns)
        if stat_type is None:
            if isinstance(contrast, ContrastSpec):
                stat_type = contrast.stat_type
            else:
                stat_type = "F" if con.ndim == 2 and con.shape[0] > 1 else "t"
        if stat_type not in ("t", "F"):
            raise ValueError(f"stat_type must be 't' or 'F', got {stat_type!r}")
        if stat_type == "t" and con.ndim == 2:
            if con.shape[0] != 1:
                raise ValueError(f"A t contrast needs one row of weights, got {con.shape[0]}")
            con = con[0]
        dim = con.shape[0] if (stat_type == "F" and con.ndim == 2) else 1
        n = self.n_voxels
        effect = np.zeros((dim, n)) if stat_type == "F" else np.zeros(n)
        variance, dof = np.zeros(n), np.full(n, np.nan)
        for key, idx in self.voxel_index.items():
            if idx.size == 0:
                continue
            c = nl_compute_contrast(self.labels[key], self.results[key], con, stat_type)
            effect[..., idx] = c.effect
            variance[idx] = c.variance
            dof[idx] = c.dof
        return ContrastResult.from_effects(effect, variance, dof, stat_type, dim)


def _sample_mask_indices(sample_mask: np.ndarray | None, n_scans: int) -> np.ndarray | None:
    if sample_mask is None:
        return None
    mask = np.asarray(sample_mask)
    if mask.dtype == bool:
        if mask.size != n_scans:
            raise ValueError(
                f"Boolean sample_mask has {mask.size} entries but there are {n_scans} scans"
            )
        mask = np.flatnonzero(mask)
    if mask.ndim != 1 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError("sample_mask must be a 1-D array of kept scan indices (or booleans)")
    if mask.size and (mask.min() < 0 or mask.max() >= n_scans):
        raise ValueError(f"sample_mask indices must be in [0, {n_scans - 1}]")
    if np.unique(mask).size != mask.size:
        raise ValueError("sample_mask has repeated scan indices")
    return mask


def _fit_design(Y: np.ndarray, design: pd.DataFrame, noise: NoiseSpec,
                n_jobs: int) -> tuple[np.ndarray, dict, np.ndarray]:
    """nilearn's ``run_glm`` on one design (:mod:`bids_hrf.glm.ar1`: the design's rank
    computed once for all AR bins): AR labels, results and each voxel's R^2."""
    labels, results = run_glm(
        Y, design.to_numpy(), noise_model=noise.noise_model, bins=noise.bins, n_jobs=n_jobs,
        random_state=noise.random_state,
    )
    r2 = np.zeros(Y.shape[1])
    for lab, res in results.items():
        r2[labels == lab] = np.nan_to_num(np.ravel(res.r_square))
    if noise.minimize_memory:
        results = {k: SimpleRegressionResults(v) for k, v in results.items()}
    return labels, results, r2


def _check_data(Y: np.ndarray, frame_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Y`` as a finite float (n_scans, n_voxels) array and ``frame_times`` as 1-D floats."""
    Y = np.asarray(Y)
    if Y.dtype not in (np.float32, np.float64):
        Y = Y.astype(float)
    # float32 data (NIfTI BOLD) stay float32, as in FirstLevelModel: the AR(1) coefficients
    # are binned to 1/bins, and a voxel at a bin edge would otherwise change bin.
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise ValueError(f"Y must have shape (n_scans, n_voxels), got {Y.shape}")
    frame_times = np.asarray(frame_times, dtype=float).ravel()
    if frame_times.size != Y.shape[0]:
        raise ValueError(f"frame_times has {frame_times.size} entries but Y has {Y.shape[0]} "
                         "scans")
    if not np.all(np.isfinite(Y)):
        raise ValueError("Y contains NaN or inf values; mask or fill them before the GLM")
    return Y, frame_times


def _parcel_kernel(estimate: HRFEstimate, name: str) -> tuple[Callable | None, str]:
    """A parcel's HRF as a nilearn ``hrf_model`` callable, or None and the reason why not."""
    if name not in estimate.labels:
        return None, f"parcel {name!r} has no HRF in the {estimate.method} estimate"
    try:
        return sampled_hrf_model(estimate.time, estimate.hrf_for(name), name="parcel_hrf"), ""
    except ValueError as e:
        return None, f"parcel {name!r}: HRF unusable ({e})"


def _hrf_models(hrf: str | ParcelHRFs, n_voxels: int) -> tuple[dict, dict, dict]:
    """The HRF model of each design and the voxels it fits.

    Returns
    -------
    models : dict of str to str or callable
        Design key (``"canonical"`` or a parcel name) -> nilearn ``hrf_model``; parcels in
        label order, then ``"canonical"`` when some voxels use the canonical HRF.
    index : dict of str to ndarray
        Design key -> indices of its voxels.
    hrf_source : dict of str to str
        Parcel name -> ``"estimate"`` or ``"canonical"`` (fallback, with a warning).
    """
    if isinstance(hrf, str):
        return {CANONICAL: nilearn_hrf_model(hrf)}, {CANONICAL: np.arange(n_voxels)}, {}
    if isinstance(hrf, HRFEstimate):
        raise ValueError("fit_first_level with an HRFEstimate needs voxel_parcels: pass "
                         "hrf=ParcelHRFs(estimate, voxel_parcels, parcel_names)")
    if not isinstance(hrf, ParcelHRFs):
        raise ValueError(f"hrf must be a model name or ParcelHRFs, got {type(hrf).__name__}")
    vp, estimate, fallback = hrf.voxel_parcels, hrf.estimate, hrf.fallback
    if vp.size != n_voxels:
        raise ValueError(f"voxel_parcels has {vp.size} entries but Y has {n_voxels} voxels")
    names = hrf.parcel_names
    models: dict = {}
    index: dict[str, np.ndarray] = {}
    hrf_source: dict[str, str] = {}
    canonical_voxels = []
    for lab in np.unique(vp):
        idx = np.flatnonzero(vp == lab)
        name = names.get(int(lab)) if names is not None else str(lab)
        if name is None or (names is None and name not in estimate.labels) or int(lab) == 0:
            canonical_voxels.append(idx)
            continue
        kernel, reason = _parcel_kernel(estimate, name)
        if kernel is None:
            warnings.warn(f"{reason}; its voxels use the canonical {fallback!r} HRF",
                          UserWarning, stacklevel=3)
            hrf_source[name] = "canonical"
            canonical_voxels.append(idx)
            continue
        models[name] = kernel
        index[name] = idx
        hrf_source[name] = "estimate"
    if canonical_voxels:
        models[CANONICAL] = nilearn_hrf_model(fallback)
        index[CANONICAL] = np.sort(np.concatenate(canonical_voxels))
    return models, index, hrf_source


def fit_first_level(
    Y: np.ndarray,
    frame_times: np.ndarray,
    events: pd.DataFrame,
    *,
    hrf: str | ParcelHRFs = "spm",
    confounds: pd.DataFrame | None = None,
    sample_mask: np.ndarray | None = None,
    design: DesignSpec | None = None,
    noise: NoiseSpec | None = None,
    n_jobs: int = 1,
) -> FirstLevelFit:
    """Fit a first-level GLM to the voxel time series of one run.

    Parameters
    ----------
    Y : ndarray, shape (n_scans, n_voxels)
        BOLD time series in masked-voxel space (all scans of the run). float32 data are
        fitted in float32 like ``FirstLevelModel`` does; other types become float64.
    frame_times : ndarray, shape (n_scans,)
        Acquisition time of each scan in seconds.
    events : pandas.DataFrame
        BIDS events of the run (``onset``, ``duration``, ``trial_type``).
    hrf : str or ParcelHRFs, default="spm"
        A preset name (``"spm"``, ``"glover + derivative"``..., or ``"fir"`` with
        ``design.fir_delays``): one design for all voxels, exactly nilearn's path. Or
        :class:`ParcelHRFs`: each parcel's voxels are fitted with a design convolved with
        that parcel's HRF (via :func:`~bids_hrf.hrf.basis.sampled_hrf_model`, kernel
        normalised to unit sum). Voxels outside any parcel of the estimate (label not in
        ``parcel_names``, label ``0``) use the canonical design of ``hrf.fallback``; so do
        parcels whose HRF is missing from the estimate or invalid (with a warning).
    confounds : pandas.DataFrame, optional
        Nuisance regressors, one row per scan of the run.
    sample_mask : ndarray, optional
        Indices (or a boolean mask) of the scans to keep (dummy scans, scrubbing). As in
        nilearn, the design is built on all scans and its rows are then selected, as are
        the rows of ``Y``.
    design : DesignSpec, optional
        Drifts, FIR delays and onset cut-off of the design (default: ``DesignSpec()``).
    noise : NoiseSpec, optional
        Noise model, signal scaling and ``run_glm`` settings (default: ``NoiseSpec()``).
    n_jobs : int, default=1
        Passed to ``run_glm``.

    Returns
    -------
    FirstLevelFit
    """
    design = DesignSpec() if design is None else design
    noise = NoiseSpec() if noise is None else noise
    Y, frame_times = _check_data(Y, frame_times)
    n_voxels = Y.shape[1]
    keep = _sample_mask_indices(sample_mask, Y.shape[0])
    if keep is not None:
        Y = Y[keep]
    scaling_mean = None
    if noise.signal_scaling is not False:
        Y, scaling_mean = mean_scaling(Y, noise.signal_scaling)
    ev = check_events(events, frame_times)
    models, index, hrf_source = _hrf_models(hrf, n_voxels)
    designs: dict[str, pd.DataFrame] = {}
    for key, model in models.items():
        table = make_design(frame_times, ev, model, confounds=confounds,
                            **design.make_design_kwargs())
        designs[key] = table.iloc[keep] if keep is not None else table
    columns = list(next(iter(designs.values())).columns)
    labels, results = {}, {}
    r_square = np.zeros(n_voxels)
    for key, table in designs.items():
        if list(table.columns) != columns:
            raise ValueError(
                f"design of {key!r} has columns {list(table.columns)}, expected {columns}"
            )
        idx = index[key]
        labels[key], results[key], r_square[idx] = _fit_design(Y[:, idx], table, noise, n_jobs)
    return FirstLevelFit(
        design_matrices=designs, voxel_index=index, labels=labels, results=results,
        conditions=conditions_of(ev), n_voxels=n_voxels, r_square=r_square,
        hrf_source=hrf_source, scaling_mean=scaling_mean, sample_mask=keep,
    )
