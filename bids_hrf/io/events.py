"""BIDS events files: the one reader (read and checked here, used by every step).

:func:`read_events` reads a run's ``_events.tsv`` and checks it with
:func:`bids_hrf.glm.design.check_events` (columns, types, ignored rows); the input query
(:mod:`bids_hrf.io.inputs`) calls it once per run before any work starts and records the
run's conditions, so that nothing later has to re-read a file to know them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bids_hrf.conditions import check_events
from bids_hrf.errors import DataError
from bids_hrf.io.paradigm import read_paradigm_csv, session_events

#: marks a reference to one session of a PyHRF paradigm CSV (``--events-csv``)
PARADIGM_MARK = "#session="


def paradigm_ref(csv: str | Path, session: int) -> Path:
    """Reference to one session of a PyHRF paradigm CSV, usable wherever an events file
    path is (:func:`read_events` reads it)."""
    return Path(f"{Path(csv).absolute()}{PARADIGM_MARK}{int(session)}")


def is_paradigm_ref(path: str | Path | None) -> bool:
    """Whether ``path`` was made by :func:`paradigm_ref`."""
    return path is not None and PARADIGM_MARK in str(path)


def read_events(path: str | Path | None) -> pd.DataFrame | None:
    """Read and check a BIDS events file (None, ``""`` and ``"None"`` give None).

    Parameters
    ----------
    path : str or Path or None
        The ``_events.tsv`` file, or one session of a PyHRF paradigm CSV
        (:func:`paradigm_ref`).

    Returns
    -------
    pandas.DataFrame or None
        ``onset``, ``duration`` and, when present, ``trial_type`` and ``modulation``
        (dropped when all ones: the same as no modulation).

    Raises
    ------
    DataError
        The file cannot be read as TSV or its content is unusable (names the file).
    """
    if path is None or str(path) in ("", "None"):
        return None
    if is_paradigm_ref(path):
        csv, session = str(path).rsplit(PARADIGM_MARK, 1)
        events = session_events(read_paradigm_csv(csv), int(session), csv)
        try:
            return check_events(events)
        except ValueError as exc:
            raise DataError(f"paradigm file {csv}, session {session}: {exc}",
                            path=csv) from exc
    try:
        events = pd.read_csv(path, sep="\t", na_values=["n/a"])
    except Exception as exc:
        raise DataError(f"events file {path} cannot be read as TSV ({exc})",
                        fix="fix the file (tab-separated, header with onset, duration, "
                            "trial_type)", path=str(path)) from exc
    if "modulation" in events.columns and pd.to_numeric(events["modulation"],
                                                        errors="coerce").eq(1).all():
        events = events.drop(columns="modulation")  # all ones: the same as no modulation
    try:
        return check_events(events)
    except ValueError as exc:
        raise DataError(f"events file {path}: {exc}", path=str(path)) from exc


def event_conditions(events: pd.DataFrame | None) -> tuple[str, ...]:
    """Sorted ``trial_type`` values of an events table (empty without the column)."""
    if events is None or "trial_type" not in events.columns:
        return ()
    return tuple(sorted(set(events["trial_type"].astype(str))))
