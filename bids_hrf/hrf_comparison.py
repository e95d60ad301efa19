"""Group summaries and group comparisons of parcel HRFs.

Inputs are the per-subject HRF tables the participant level writes (first column
``time``, one column per parcel). They are stacked into a long table, summarised per
parcel and time (mean, sd, sem, n), reduced to shape parameters (time to peak, FWHM,
height) and compared between two groups per parcel (Welch t test or a permutation test),
with Benjamini-Hochberg FDR across parcels.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from bids_hrf.stats import fdr_bh as _fdr

__all__ = [
    "compare_hrf_parameters",
    "gather_hrf_tables",
    "group_hrf_summary",
    "hrf_parameters_long",
    "welch_t",
]

PARAMETERS = ("time_to_peak", "fwhm", "height")




def _check_table(subject: str, table: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame) or table.shape[1] < 2:
        raise ValueError(
            f"HRF table of subject {subject!r} must be a DataFrame with a 'time' column and "
            "one column per parcel"
        )
    if table.columns[0] != "time":
        raise ValueError(
            f"HRF table of subject {subject!r} must start with a 'time' column, found "
            f"{table.columns[0]!r}"
        )
    time = pd.to_numeric(table["time"], errors="coerce").to_numpy()
    if not np.all(np.isfinite(time)) or np.any(np.diff(time) <= 0):
        raise ValueError(f"HRF table of subject {subject!r}: 'time' must increase strictly")
    return table


def gather_hrf_tables(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Stack per-subject HRF tables into one long table.

    Parameters
    ----------
    tables : dict of str to pandas.DataFrame
        Subject -> HRF table (first column ``time``, one column per parcel).

    Returns
    -------
    pandas.DataFrame
        Columns ``subject, parcel, time, value``; one row per subject, parcel and sample.
        Parcel names are strings.
    """
    if not tables:
        raise ValueError("no HRF tables given")
    frames = []
    for subject, table in tables.items():
        table = _check_table(subject, table)
        long = table.melt(id_vars="time", var_name="parcel", value_name="value")
        long.insert(0, "subject", str(subject))
        frames.append(long)
    out = pd.concat(frames, ignore_index=True)
    out["parcel"] = out["parcel"].astype(str)
    out["time"] = out["time"].astype(float)
    out["value"] = pd.to_numeric(out["value"], errors="coerce").astype(float)
    return out[["subject", "parcel", "time", "value"]]


def _local_parameters(hrfs: np.ndarray, time: np.ndarray) -> dict[str, np.ndarray]:
    """Time to peak, FWHM and height per column (fallback when hrf.params is absent).

    The peak is the largest sample, refined by a parabola through it and its neighbours;
    the half-maximum crossings are interpolated linearly. NaN where undefined.
    """
    h = np.atleast_2d(np.asarray(hrfs, dtype=float).T).T
    t = np.asarray(time, dtype=float)
    n_t, n = h.shape
    cols = np.arange(n)
    k = np.nanargmax(np.where(np.isfinite(h), h, -np.inf), axis=0)
    km, kp = np.clip(k - 1, 0, n_t - 1), np.clip(k + 1, 0, n_t - 1)
    y0, y1, y2 = h[km, cols], h[k, cols], h[kp, cols]
    denom = y0 - 2 * y1 + y2
    inner = (k > 0) & (k < n_t - 1) & (denom < 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(inner, 0.5 * (y0 - y2) / denom, 0.0)
    step = np.where(shift >= 0, t[kp] - t[k], t[k] - t[km])
    ttp = t[k] + shift * step
    height = np.where(inner, y1 - 0.25 * (y0 - y2) * shift, y1)
    half = height / 2
    idx = np.arange(n_t)[:, None]
    below = h < half
    left = np.where(below & (idx < k), idx, -1).max(axis=0)
    right = np.where(below & (idx > k), idx, n_t).min(axis=0)
    ok = (left >= 0) & (right < n_t) & (height > 0)
    li, ri = np.clip(left, 0, n_t - 2), np.clip(right, 1, n_t - 1)

    def cross(i0, i1):
        a, b = h[i0, cols], h[i1, cols]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(b != a, (half - a) / (b - a), 0.0)
        return t[i0] + frac * (t[i1] - t[i0])

    fwhm = np.where(ok, cross(ri - 1, ri) - cross(li, li + 1), np.nan)
    positive = height > 0
    return {
        "time_to_peak": np.where(positive, ttp, np.nan),
        "fwhm": fwhm,
        "height": np.where(positive, height, np.nan),
    }


def _shared_parameters() -> Callable | None:
    try:
        from bids_hrf.hrf.params import hrf_parameters
    except ImportError:
        return None
    return hrf_parameters


def _call_params(fn: Callable, time: np.ndarray, hrfs: np.ndarray) -> dict[str, np.ndarray]:
    try:
        names = set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        names = set()
    if {"hrf", "time"} <= names:
        result = fn(hrf=hrfs, time=time)
    elif {"hrfs", "time"} <= names:
        result = fn(time=time, hrfs=hrfs)
    else:
        result = fn(time, hrfs)
    n = hrfs.shape[1]
    out = {}
    for name in PARAMETERS:
        if isinstance(result, pd.DataFrame):
            values = result[name].to_numpy() if name in result.columns else result.loc[name]
        elif isinstance(result, dict):
            values = result[name]
        else:
            values = getattr(result, name)
        values = np.asarray(values, dtype=float).ravel()
        if values.size != n:
            raise ValueError(f"params_fn returned {values.size} values of {name} for {n} HRFs")
        out[name] = values
    return out


def hrf_parameters_long(
    tables: dict[str, pd.DataFrame], params_fn: Callable | None = None
) -> pd.DataFrame:
    """Shape parameters of every subject's parcel HRFs, as a long table.

    Parameters
    ----------
    tables : dict of str to pandas.DataFrame
        Subject -> HRF table (first column ``time``, one column per parcel).
    params_fn : callable, optional
        ``params_fn(time, hrfs)`` (or with keywords ``hrf=``/``time=``) returning, per
        column of ``hrfs``, ``time_to_peak``, ``fwhm`` and ``height`` (attributes, dict keys
        or DataFrame columns). Default: :func:`bids_hrf.hrf.params.hrf_parameters` when it
        can be imported, else a local peak/half-maximum estimate.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject, parcel, time_to_peak, fwhm, height`` (seconds, seconds, signal
        units); NaN where a parameter is undefined (e.g. no positive peak).
    """
    if not tables:
        raise ValueError("no HRF tables given")
    fn = params_fn if params_fn is not None else _shared_parameters()
    frames = []
    for subject, table in tables.items():
        table = _check_table(subject, table)
        time = table["time"].to_numpy(dtype=float)
        hrfs = table.iloc[:, 1:].to_numpy(dtype=float)
        finite = np.all(np.isfinite(hrfs), axis=0)
        params = {name: np.full(hrfs.shape[1], np.nan) for name in PARAMETERS}
        if finite.any():
            sub = hrfs[:, finite]
            got = _call_params(fn, time, sub) if fn is not None else _local_parameters(sub, time)
            for name in PARAMETERS:
                params[name][finite] = got[name]
        frame = pd.DataFrame({"subject": str(subject),
                              "parcel": [str(c) for c in table.columns[1:]], **params})
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _subject_groups(groups, subjects: list[str]) -> pd.Series:
    if not isinstance(groups, pd.Series):
        groups = pd.Series(groups)
    index = groups.index.map(lambda s: str(s)[4:] if str(s).startswith("sub-") else str(s))
    groups = pd.Series(groups.to_numpy(), index=index)
    keys = [s[4:] if s.startswith("sub-") else s for s in subjects]
    return pd.Series(groups.reindex(keys).to_numpy(), index=subjects)


def group_hrf_summary(long: pd.DataFrame, groups: pd.Series | None = None) -> pd.DataFrame:
    """Mean HRF per parcel (and group) with its spread across subjects.

    Parameters
    ----------
    long : pandas.DataFrame
        From :func:`gather_hrf_tables`.
    groups : pandas.Series, optional
        Subject -> group label; adds a ``group`` column and summarises each group.

    Returns
    -------
    pandas.DataFrame
        Columns ``[group,] parcel, time, mean, sd, sem, n`` (sd with ``ddof=1``; NaN values
        are ignored and not counted in ``n``).
    """
    missing = {"subject", "parcel", "time", "value"} - set(long.columns)
    if missing:
        raise ValueError(f"long HRF table lacks columns {sorted(missing)}")
    keys = ["parcel", "time"]
    data = long
    if groups is not None:
        labels = _subject_groups(groups, sorted(long["subject"].astype(str).unique()))
        data = long.assign(group=long["subject"].astype(str).map(labels)).dropna(
            subset=["group"])
        keys = ["group", *keys]
    agg = data.groupby(keys, sort=True)["value"].agg(["mean", "std", "count"]).reset_index()
    agg = agg.rename(columns={"std": "sd", "count": "n"})
    with np.errstate(invalid="ignore", divide="ignore"):
        agg["sem"] = agg["sd"] / np.sqrt(agg["n"])
    return agg[[*keys, "mean", "sd", "sem", "n"]]


def _two_groups(labels: pd.Series) -> list[str]:
    levels = sorted({str(v) for v in labels.dropna()})
    if len(levels) != 2:
        raise ValueError(
            f"group comparison needs exactly two groups, found {len(levels)}: {levels}"
        )
    return levels


def welch_t(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Welch's t (``B - A``) and two-sided p per column, ignoring NaN.

    Parameters
    ----------
    a, b : ndarray, shape (n_a, n_columns) and (n_b, n_columns)
        Samples of the two groups.

    Returns
    -------
    t, p : ndarray, shape (n_columns,)
        NaN where a group has fewer than two values or both variances are zero.
    """
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        n_a, n_b = np.isfinite(a).sum(0), np.isfinite(b).sum(0)
        va, vb = np.nanvar(a, 0, ddof=1) / n_a, np.nanvar(b, 0, ddof=1) / n_b
        se2 = va + vb
        t = (np.nanmean(b, 0) - np.nanmean(a, 0)) / np.sqrt(se2)
        df = se2**2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
        p = 2 * stats.t.sf(np.abs(t), df)
    bad = (n_a < 2) | (n_b < 2) | ~(se2 > 0)
    return np.where(bad, np.nan, t), np.where(bad, np.nan, p)


def _permutation_p(a: np.ndarray, b: np.ndarray, n_perm: int, rng) -> tuple[float, float]:
    res = stats.ttest_ind(b, a, equal_var=False,
                          method=stats.PermutationMethod(n_resamples=n_perm, rng=rng))
    return float(res.statistic), float(res.pvalue)


def compare_hrf_parameters(
    params_df: pd.DataFrame,
    groups: pd.Series,
    parameter: str = "time_to_peak",
    test: str = "welch",
    alpha: float = 0.05,
    n_perm: int = 5000,
    random_state: int | None = 0,
) -> pd.DataFrame:
    """Compare an HRF parameter between two groups in every parcel.

    Parameters
    ----------
    params_df : pandas.DataFrame
        From :func:`hrf_parameters_long` (``subject``, ``parcel`` and ``parameter``).
    groups : pandas.Series
        Subject -> group label (exactly two groups; ``sub-`` prefixes are ignored).
    parameter : str
        ``time_to_peak``, ``fwhm``, ``height`` or any numeric column.
    test : {"welch", "permutation"}
        Welch's unequal-variance t test, or a permutation test of the Welch t.
    alpha : float
        FDR level (Benjamini-Hochberg across parcels).
    n_perm : int
        Permutations for ``test="permutation"``.
    random_state : int, optional
        Seed of the permutations.

    Returns
    -------
    pandas.DataFrame
        One row per parcel: ``parcel, n_<A>, n_<B>, mean_<A>, mean_<B>, difference``
        (``B - A``, groups in sorted order), ``t, p, p_fdr, significant``. Parcels with
        fewer than two values in a group get NaN statistics and are left out of the FDR.
    """
    if test not in ("welch", "permutation"):
        raise ValueError(f"test must be 'welch' or 'permutation', got {test!r}")
    if parameter not in params_df.columns:
        raise ValueError(f"parameter {parameter!r} not in table columns {list(params_df.columns)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    subjects = params_df["subject"].astype(str)
    if pd.DataFrame({"s": subjects, "p": params_df["parcel"].astype(str)}).duplicated().any():
        raise ValueError("params_df has several rows for one subject and parcel; average "
                         "runs or sessions first (one row per subject and parcel)")
    labels = _subject_groups(groups, sorted(subjects.unique()))
    a_lab, b_lab = _two_groups(labels)
    table = params_df.assign(group=subjects.map(labels)).dropna(subset=["group"])
    wide = table.pivot_table(index="subject", columns="parcel", values=parameter,
                             aggfunc="first", dropna=False, sort=False)
    parcels = list(dict.fromkeys(params_df["parcel"].astype(str)))
    wide.columns = wide.columns.astype(str)
    wide = wide.reindex(columns=parcels)
    grp = labels.reindex(wide.index.astype(str)).astype(str).to_numpy()
    a = wide.to_numpy(dtype=float)[grp == a_lab]
    b = wide.to_numpy(dtype=float)[grp == b_lab]
    n_a, n_b = np.isfinite(a).sum(0), np.isfinite(b).sum(0)
    testable = (n_a >= 2) & (n_b >= 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_a, mean_b = np.nanmean(a, 0), np.nanmean(b, 0)
        t, p = welch_t(a, b)
    t[~testable], p[~testable] = np.nan, np.nan
    if test == "permutation":
        rng = np.random.default_rng(random_state)
        for j in np.flatnonzero(testable):
            xa, xb = a[:, j][np.isfinite(a[:, j])], b[:, j][np.isfinite(b[:, j])]
            t[j], p[j] = _permutation_p(xa, xb, n_perm, rng)
    p_fdr = _fdr(p)
    return pd.DataFrame({
        "parcel": parcels,
        f"n_{a_lab}": n_a, f"n_{b_lab}": n_b,
        f"mean_{a_lab}": mean_a, f"mean_{b_lab}": mean_b,
        "difference": mean_b - mean_a,
        "t": t, "p": p, "p_fdr": p_fdr,
        "significant": np.nan_to_num(p_fdr, nan=1.0) <= alpha,
    })
