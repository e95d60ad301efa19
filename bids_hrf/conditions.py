"""Event tables and condition labels, shared by HRF estimation and the GLM.

The bottom of the numerical core: :func:`check_events` validates a BIDS events table the
same way for every HRF method and the first-level GLM, and :func:`clean_label` is the one
cleaner that turns a condition or contrast name into the BIDS label of its outputs
(``contrast-<label>``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

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


def clean_label(name: str) -> str:
    """Turn a contrast name into an alphanumeric camelCase BIDS label.

    Follows nilearn's ``save_glm_to_bids`` convention (``_clean_contrast_name``): ``-`` ->
    ``Minus``, ``+`` -> ``Plus``, ``>`` -> ``Gt``, ``<`` -> ``Lt``, ``_`` -> space; the
    first word lower-cased, the others title-cased; non-alphanumerics removed. E.g.
    ``"audio - visual"`` -> ``"audioMinusVisual"``.
    """
    new = str(name)
    for old, word in (("-", " Minus "), ("+", " Plus "), (">", " Gt "), ("<", " Lt ")):
        new = new.replace(old, word)
    words = new.replace("_", " ").split(" ")
    words[0] = words[0].lower()
    words[1:] = [w.title() for w in words[1:]]
    label = "".join(ch for ch in " ".join(words) if ch.isalnum() and ch.isascii())
    if not label:
        raise ValueError(f"Contrast name {name!r} has no alphanumeric character to label it")
    return label
