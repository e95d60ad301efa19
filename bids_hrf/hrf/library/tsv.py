"""Read a user HRF library: a TSV with a ``time`` column and one column per HRF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bids_hrf.errors import DataError

__all__ = ["read_library_tsv"]


def read_library_tsv(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read and check an HRF library table.

    Parameters
    ----------
    path : str or Path
        Tab-separated file: a ``time`` column (seconds after onset, strictly increasing)
        and one numeric column per HRF, no missing values.

    Returns
    -------
    time : ndarray (n_samples,)
    values : ndarray (n_samples, n_hrfs)
    names : list of str

    Raises
    ------
    DataError
        Unreadable file, no ``time`` column, no HRF column, NaN or non-numeric values,
        non-increasing time, an all-zero HRF; the message names the file and the fix.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the HRF library {path}: {err}",
                        "give a tab-separated file with a 'time' column", path) from None
    if "time" not in table.columns:
        raise DataError(
            f"the HRF library {path} has no 'time' column (columns: {list(table.columns)})",
            "add a 'time' column (seconds after onset) and one column per HRF", path)
    names = [c for c in table.columns if c != "time"]
    if not names or len(table) < 3:
        raise DataError(f"the HRF library {path} needs at least one HRF column and 3 rows",
                        "add one column per HRF sampled at the times of 'time'", path)
    values = table.apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any()
    if bad.any():
        cols = [str(c) for c in values.columns[bad.to_numpy()]]
        raise DataError(f"the HRF library {path} has missing or non-numeric values in {cols}",
                        "fill every cell with a number (no n/a)", path)
    time = values["time"].to_numpy(float)
    if np.any(np.diff(time) <= 0):
        raise DataError(f"the 'time' column of the HRF library {path} is not increasing",
                        "sort the rows by time, without repeated times", path)
    hrfs = values[names].to_numpy(float)
    zero = [n for n, z in zip(names, ~np.any(hrfs, axis=0), strict=True) if z]
    if zero:
        raise DataError(f"the HRF library {path} has all-zero HRFs: {zero}",
                        "remove them", path)
    return time, hrfs, [str(n) for n in names]
