"""Small statistical helpers shared by the group-level modules."""

from __future__ import annotations

import numpy as np
from scipy import stats


def fdr_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p values; NaN entries are ignored and stay NaN.

    Parameters
    ----------
    p : array-like
        p values of the family (any shape).

    Returns
    -------
    ndarray
        Adjusted p values (q values), same shape as ``p``.
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out
