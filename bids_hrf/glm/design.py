"""First-level design matrices: a validating wrapper of nilearn's design builder."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from nilearn.glm.first_level import make_first_level_design_matrix

from bids_hrf.conditions import EVENT_COLUMNS, check_events
from bids_hrf.hrf.basis import nilearn_hrf_model

__all__ = ["EVENT_COLUMNS", "check_events", "conditions_of", "make_design"]


def conditions_of(events: pd.DataFrame) -> list[str]:
    """Return the condition names of an events table, in nilearn's (sorted) order."""
    if "trial_type" not in events.columns:
        return ["dummy"]
    return sorted(pd.unique(events["trial_type"].astype(str)))


def _check_confounds(confounds: pd.DataFrame | None, n_scans: int) -> pd.DataFrame | None:
    if confounds is None:
        return None
    if isinstance(confounds, np.ndarray):
        arr = np.atleast_2d(confounds.T).T if confounds.ndim == 1 else confounds
        confounds = pd.DataFrame(arr, columns=[f"confound_{i}" for i in range(arr.shape[1])])
    if not isinstance(confounds, pd.DataFrame):
        raise ValueError(
            f"confounds must be a pandas DataFrame or None, got {type(confounds).__name__}"
        )
    if confounds.shape[1] == 0:
        return None
    if len(confounds) != n_scans:
        raise ValueError(
            f"confounds have {len(confounds)} rows but the run has {n_scans} scans; "
            "use the confounds file of this run (before removing dummy scans)"
        )
    values = confounds.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        cols = [str(c) for c in confounds.columns[bad.any(axis=0)]]
        raise ValueError(
            f"confounds have missing or non-numeric values in column(s) {cols}; "
            "fill them (e.g. 0 for the first row of derivatives) before the GLM"
        )
    return pd.DataFrame(values, columns=[str(c) for c in confounds.columns])


def make_design(
    frame_times: np.ndarray,
    events: pd.DataFrame,
    hrf_model: str | Callable | None = "spm",
    confounds: pd.DataFrame | None = None,
    drift_model: str | None = "cosine",
    high_pass: float = 0.01,
    drift_order: int = 1,
    fir_delays: Sequence[int] | None = None,
    min_onset: float = -24,
) -> pd.DataFrame:
    """Build a first-level design matrix with nilearn, after validating the inputs.

    Parameters
    ----------
    frame_times : ndarray, shape (n_scans,)
        Acquisition time of each scan in seconds (all scans of the run).
    events : pandas.DataFrame
        BIDS events (see :func:`check_events`).
    hrf_model : str, callable or None, default="spm"
        A preset name or alias (:func:`bids_hrf.hrf.basis.normalize_hrf_model`, including
        the shapes of :mod:`bids_hrf.hrf.presets`), ``"fir"``
        (with ``fir_delays`` in scans), ``None`` (no convolution) or a callable
        ``(t_r, oversampling) -> kernel`` such as
        :func:`bids_hrf.hrf.basis.sampled_hrf_model`. With a callable the task columns are
        named by condition only (nilearn would append the callable's name), so that
        designs built with different HRFs have the same columns.
    confounds : pandas.DataFrame, optional
        Nuisance regressors, one row per scan, no missing values.
    drift_model : {"cosine", "polynomial", None}, default="cosine"
    high_pass : float, default=0.01
        Cut-off frequency in Hz of the cosine drift.
    drift_order : int, default=1
        Order of the polynomial drift.
    fir_delays : sequence of int, optional
        FIR delays in scans (only with ``hrf_model="fir"``).
    min_onset : float, default=-24
        Events starting earlier than this (relative to the first scan) are ignored.

    Returns
    -------
    pandas.DataFrame
        Shape (n_scans, n_regressors), indexed by ``frame_times``: task regressors, then
        confounds, then drifts (with ``constant``).

    Raises
    ------
    ValueError
        Invalid events, confounds, HRF model or drift model; name clashes between
        conditions and confounds.
    """
    frame_times = np.asarray(frame_times, dtype=float).ravel()
    if frame_times.size < 2 or np.any(np.diff(frame_times) <= 0):
        raise ValueError("frame_times must be an increasing array of at least 2 scan times")
    ev = check_events(events, frame_times)
    conf = _check_confounds(confounds, frame_times.size)
    if drift_model not in ("cosine", "polynomial", None):
        raise ValueError(f"drift_model must be 'cosine', 'polynomial' or None, got {drift_model!r}")
    if drift_model == "cosine" and not (high_pass is not None and high_pass > 0):
        raise ValueError(f"high_pass must be a positive frequency in Hz, got {high_pass}")

    if isinstance(hrf_model, str):
        hrf_model = nilearn_hrf_model(hrf_model)
    is_callable = callable(hrf_model)
    if hrf_model is not None and not is_callable and not isinstance(hrf_model, str):
        raise ValueError(f"hrf_model must be a name, a callable or None, got {hrf_model!r}")
    if hrf_model == "fir":
        if fir_delays is None or len(fir_delays) == 0:
            raise ValueError("hrf_model='fir' needs fir_delays (delays in scans, e.g. 0..11)")
        fir_delays = [int(d) for d in fir_delays]
        if min(fir_delays) < 0:
            raise ValueError(f"fir_delays must be >= 0 scans, got {fir_delays}")

    conditions = conditions_of(ev)
    if conf is not None:
        clash = sorted(set(conditions) & set(conf.columns))
        if clash:
            raise ValueError(
                f"confound column(s) {clash} have the same name as event conditions; "
                "rename the confounds or the trial types"
            )

    design = make_first_level_design_matrix(
        frame_times,
        ev,
        hrf_model=hrf_model,
        drift_model=drift_model,
        high_pass=high_pass,
        drift_order=drift_order,
        fir_delays=fir_delays,
        add_regs=conf,
        min_onset=min_onset,
    )
    if is_callable:
        suffix = "_" + hrf_model.__name__
        design = design.rename(
            columns={f"{c}{suffix}": c for c in conditions if f"{c}{suffix}" in design.columns}
        )
    return design
