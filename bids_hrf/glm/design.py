"""First-level design matrices: a validating wrapper of nilearn's design builder."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from nilearn.glm.first_level import make_first_level_design_matrix

from bids_hrf.hrf.basis import nilearn_hrf_model

#: Event columns nilearn uses; other columns (response_time, ...) are dropped.
EVENT_COLUMNS = ("onset", "duration", "trial_type", "modulation")


def _rows(mask: np.ndarray, limit: int = 10) -> str:
    idx = np.flatnonzero(mask)
    text = ", ".join(str(i) for i in idx[:limit])
    return text + (f", ... ({idx.size} rows)" if idx.size > limit else "")


def check_events(events: pd.DataFrame, frame_times: np.ndarray | None = None) -> pd.DataFrame:
    """Validate an events table and return the columns nilearn uses.

    Parameters
    ----------
    events : pandas.DataFrame
        BIDS events: ``onset`` and ``duration`` (seconds) required, ``trial_type`` and
        ``modulation`` optional; other columns are dropped.
    frame_times : ndarray, optional
        Scan times; events starting after the last scan raise a ``UserWarning``.

    Returns
    -------
    pandas.DataFrame
        A copy with only :data:`EVENT_COLUMNS`, numeric ``onset``/``duration``, string
        ``trial_type``; rows whose ``trial_type`` is missing (``n/a``) are dropped with a
        warning.

    Raises
    ------
    ValueError
        Missing ``onset``/``duration`` columns, non-numeric or missing values, negative
        durations (the message names the rows), no events left.
    """
    if not isinstance(events, pd.DataFrame):
        raise ValueError(f"events must be a pandas DataFrame, got {type(events).__name__}")
    missing = [c for c in ("onset", "duration") if c not in events.columns]
    if missing:
        raise ValueError(
            f"events table lacks the column(s) {missing} (has {list(events.columns)}); "
            "BIDS events need 'onset' and 'duration' in seconds"
        )
    ev = events[[c for c in EVENT_COLUMNS if c in events.columns]].copy()
    ev = ev.reset_index(drop=True)
    for col in ("onset", "duration") + (("modulation",) if "modulation" in ev else ()):
        values = pd.to_numeric(ev[col], errors="coerce")
        bad = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            raise ValueError(
                f"events column {col!r} has missing or non-numeric values in rows {_rows(bad)}; "
                "fill them with numbers (seconds) or remove those rows"
            )
        ev[col] = values.to_numpy(dtype=float)
    negative = ev["duration"].to_numpy() < 0
    if negative.any():
        raise ValueError(
            f"events have negative durations in rows {_rows(negative)}; durations must be "
            ">= 0 seconds (0 for impulse events)"
        )
    if "trial_type" in ev:
        tt = ev["trial_type"]
        na = tt.isna().to_numpy() | tt.astype(str).str.strip().isin(["", "n/a"]).to_numpy()
        if na.any():
            warnings.warn(
                f"events rows {_rows(na)} have no trial_type ('n/a') and are ignored",
                UserWarning,
                stacklevel=3,
            )
            ev = ev.loc[~na].reset_index(drop=True)
        ev["trial_type"] = ev["trial_type"].astype(str).str.strip()
    if len(ev) == 0:
        raise ValueError("events table has no usable events (all rows removed or empty)")
    if frame_times is not None and len(frame_times):
        late = ev["onset"].to_numpy() > float(np.max(frame_times))
        if late.any():
            warnings.warn(
                f"events rows {_rows(late)} start after the last scan "
                f"({float(np.max(frame_times)):.2f} s) and do not contribute to the design; "
                "check the events file matches this run",
                UserWarning,
                stacklevel=3,
            )
    return ev


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
