"""Functional connectivity between parcels and its comparison between groups.

Per-subject parcel time series -> connectivity matrices (nilearn's
:class:`~nilearn.connectome.ConnectivityMeasure`: correlation, partial correlation,
tangent, covariance, precision) -> edge-wise group comparison (Welch t test on Fisher
z-transformed correlations, Benjamini-Hochberg FDR over the unique edges) and network
summaries (mean connectivity within and between networks, e.g. default-mode
intra-network connectivity, compared between groups).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bids_hrf.stats import fdr_bh as _fdr

__all__ = [
    "compare_edges",
    "compare_networks",
    "connectivity_matrices",
    "fisher_z",
    "network_summary",
    "read_networks_tsv",
]

KINDS = ("correlation", "partial correlation", "tangent", "covariance", "precision")




def _welch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Welch t (``b - a``) and two-sided p per column."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(b, a, axis=0, equal_var=False)
    return np.asarray(res.statistic, dtype=float), np.asarray(res.pvalue, dtype=float)


def fisher_z(r: np.ndarray, clip: float = 1 - 1e-7) -> np.ndarray:
    """Fisher z transform ``arctanh(r)``, with ``|r|`` clipped below 1 (diagonals).

    Parameters
    ----------
    r : ndarray
        Correlations in [-1, 1].
    clip : float
        Largest ``|r|`` kept (ones on a diagonal become ``arctanh(clip)``).

    Returns
    -------
    ndarray
        z values, same shape.
    """
    r = np.asarray(r, dtype=float)
    if np.nanmax(np.abs(r)) > 1 + 1e-9:
        raise ValueError(
            "Fisher z needs correlations in [-1, 1]; for tangent or covariance matrices "
            "set fisher_z=False"
        )
    return np.arctanh(np.clip(r, -clip, clip))


_fisher_z = fisher_z  # the comparison functions have a ``fisher_z`` flag


def connectivity_matrices(
    timeseries: Sequence[np.ndarray | pd.DataFrame],
    kinds: Sequence[str] = ("correlation", "partial correlation", "tangent"),
    cov_estimator=None,
) -> dict[str, np.ndarray]:
    """Connectivity matrices of each subject with nilearn's ConnectivityMeasure.

    Parameters
    ----------
    timeseries : list of ndarray or DataFrame, each (n_volumes, n_parcels)
        One array per subject (or run); parcels in the same order for all.
    kinds : sequence of str
        Any of ``"correlation"``, ``"partial correlation"``, ``"tangent"`` (needs >= 2
        subjects), ``"covariance"``, ``"precision"``.
    cov_estimator : sklearn covariance estimator, optional
        Default: the sample covariance for ``correlation`` and ``covariance`` (Pearson
        correlation, as ``numpy.corrcoef``) and nilearn's Ledoit-Wolf shrinkage for the
        kinds that invert the covariance. Ledoit-Wolf shrinks each subject by an amount
        that depends on the subject's whole matrix, so a group difference in some edges
        shifts every shrunk correlation and can make unchanged edges differ.

    Returns
    -------
    dict of str to ndarray, shape (n_subjects, n_parcels, n_parcels)
        One stack of matrices per kind.
    """
    from nilearn.connectome import ConnectivityMeasure
    from sklearn.base import clone
    from sklearn.covariance import EmpiricalCovariance

    if isinstance(kinds, str):
        kinds = (kinds,)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown connectivity kind(s) {unknown}; choose from {list(KINDS)}")
    series, names = [], None
    for i, ts in enumerate(timeseries):
        if isinstance(ts, pd.DataFrame):
            cols = [str(c) for c in ts.columns]
            if names is not None and cols != names:
                raise ValueError(f"time series {i} has parcels {cols[:5]}... but the first "
                                 f"has {names[:5]}...; use the same parcels in the same order")
            names = cols
        arr = np.asarray(ts, dtype=float)
        if arr.ndim != 2:
            raise ValueError(f"time series {i} must be 2-D (n_volumes, n_parcels), "
                             f"got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"time series {i} contains NaN or inf")
        if arr.shape[0] < 3:
            raise ValueError(f"time series {i} has {arr.shape[0]} volumes; at least 3 needed")
        if series and arr.shape[1] != series[0].shape[1]:
            raise ValueError(f"time series {i} has {arr.shape[1]} parcels, the first has "
                             f"{series[0].shape[1]}")
        series.append(arr)
    if not series:
        raise ValueError("no time series given")
    if "tangent" in kinds and len(series) < 2:
        raise ValueError(
            "tangent connectivity is defined relative to the group mean and needs at least "
            f"2 subjects, got {len(series)}; use 'correlation' or 'partial correlation'"
        )
    out = {}
    for kind in kinds:
        if cov_estimator is not None:
            kwargs = {"cov_estimator": clone(cov_estimator)}
        elif kind in ("correlation", "covariance"):
            kwargs = {"cov_estimator": EmpiricalCovariance()}
        else:
            kwargs = {}
        measure = ConnectivityMeasure(kind=kind, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            out[kind] = np.asarray(measure.fit_transform(series))
    return out


def _labels(groups, n: int, subjects: Sequence[str] | None) -> np.ndarray:
    """Group label of each matrix, from a list (positional) or a Series (by subject)."""
    if isinstance(groups, pd.Series) and subjects is not None:
        def strip(s):
            s = str(s)
            return s[4:] if s.startswith("sub-") else s

        lookup = pd.Series(groups.to_numpy(), index=groups.index.map(strip))
        labels = lookup.reindex([strip(s) for s in subjects]).to_numpy()
    else:
        labels = np.asarray(groups, dtype=object)
    if labels.shape != (n,):
        raise ValueError(f"groups has {labels.size} labels for {n} subjects")
    return labels


def _two_levels(labels: np.ndarray) -> list[str]:
    levels = sorted({str(v) for v in labels if not pd.isna(v)})
    if len(levels) != 2:
        raise ValueError(
            f"group comparison needs exactly two groups, found {len(levels)}: {levels}"
        )
    return levels


def _stack(matrices) -> np.ndarray:
    m = np.asarray(matrices, dtype=float)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or m.shape[1] != m.shape[2]:
        raise ValueError(f"matrices must be (n_subjects, P, P), got shape {m.shape}")
    return m


def compare_edges(
    matrices: np.ndarray,
    groups,
    alpha: float = 0.05,
    names: Sequence[str] | None = None,
    fisher_z: bool = True,
    subjects: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Compare every edge between two groups (Welch t test, BH-FDR over unique edges).

    Parameters
    ----------
    matrices : ndarray, shape (n_subjects, P, P)
        One symmetric matrix per subject.
    groups : sequence or pandas.Series
        Group of each subject (by position, or a Series indexed by subject with
        ``subjects``); exactly two groups.
    alpha : float
        FDR level.
    names : sequence of str, optional
        Parcel names (default ``"0"``, ``"1"``, ...).
    fisher_z : bool
        Test Fisher z-transformed values (correlation and partial correlation); set False
        for tangent or covariance matrices.
    subjects : sequence of str, optional
        Subject of each matrix, to look ``groups`` up by subject.

    Returns
    -------
    pandas.DataFrame
        One row per edge ``i < j``: ``i, j, name_i, name_j, mean_<A>, mean_<B>`` (in the
        input units), ``difference`` (``B - A``), ``t, p, p_fdr, significant``.
    """
    m = _stack(matrices)
    n, p = m.shape[:2]
    labels = _labels(groups, n, subjects)
    a_lab, b_lab = _two_levels(labels)
    names = [str(i) for i in range(p)] if names is None else [str(x) for x in names]
    if len(names) != p:
        raise ValueError(f"{len(names)} names for {p} parcels")
    iu, ju = np.triu_indices(p, k=1)
    edges = m[:, iu, ju]
    tested = _fisher_z(edges) if fisher_z else edges
    is_a, is_b = labels == a_lab, labels == b_lab
    if min(is_a.sum(), is_b.sum()) < 2:
        raise ValueError(f"each group needs at least 2 subjects, got {a_lab}: {is_a.sum()}, "
                         f"{b_lab}: {is_b.sum()}")
    t, pval = _welch(tested[is_a], tested[is_b])
    p_fdr = _fdr(pval)
    mean_a, mean_b = edges[is_a].mean(0), edges[is_b].mean(0)
    return pd.DataFrame({
        "i": iu, "j": ju,
        "name_i": [names[k] for k in iu], "name_j": [names[k] for k in ju],
        f"mean_{a_lab}": mean_a, f"mean_{b_lab}": mean_b, "difference": mean_b - mean_a,
        "t": t, "p": pval, "p_fdr": p_fdr,
        "significant": np.nan_to_num(p_fdr, nan=1.0) <= alpha,
    })


def _network_members(networks: dict, names: Sequence[str] | None, p: int) -> dict[str, list]:
    members: dict[str, list[int]] = {}
    name_pos = {str(x): k for k, x in enumerate(names)} if names is not None else {}
    for key, net in networks.items():
        if isinstance(key, (int, np.integer)) and not name_pos:
            pos = int(key)
        elif str(key) in name_pos:
            pos = name_pos[str(key)]
        elif isinstance(key, (int, np.integer)):
            pos = int(key)
        else:
            raise ValueError(f"parcel {key!r} of the network table is not among the parcel "
                             f"names; give names= or key networks by column index")
        if not 0 <= pos < p:
            raise ValueError(f"parcel index {pos} out of range for {p} parcels")
        members.setdefault(str(net), []).append(pos)
    if not members:
        raise ValueError("networks is empty")
    return {k: sorted(v) for k, v in sorted(members.items())}


def network_summary(
    matrices: np.ndarray,
    networks: dict,
    names: Sequence[str] | None = None,
    subjects: Sequence[str] | None = None,
    fisher_z: bool = True,
) -> pd.DataFrame:
    """Mean connectivity within and between networks, per subject.

    Parameters
    ----------
    matrices : ndarray, shape (n_subjects, P, P) or (P, P)
        Connectivity matrices.
    networks : dict
        Parcel (column index, or name when ``names`` is given) -> network name; parcels
        not listed are ignored.
    names : sequence of str, optional
        Parcel names, to key ``networks`` by name.
    subjects : sequence of str, optional
        Subject labels (default ``"0"``, ``"1"``, ...).
    fisher_z : bool
        Average Fisher z values (and report the mean in z units) rather than raw values.

    Returns
    -------
    pandas.DataFrame
        One row per subject and network pair (``network_a <= network_b``): ``subject,
        network_a, network_b, kind`` (``within``/``between``), ``value`` (mean over the
        unique off-diagonal edges), ``n_edges``. Within-network rows of one-parcel
        networks are left out.
    """
    m = _stack(matrices)
    n, p = m.shape[:2]
    subjects = [str(i) for i in range(n)] if subjects is None else [str(s) for s in subjects]
    if len(subjects) != n:
        raise ValueError(f"{len(subjects)} subject labels for {n} matrices")
    values = _fisher_z(m) if fisher_z else m
    members = _network_members(networks, names, p)
    nets = list(members)
    rows = []
    for x, net_a in enumerate(nets):
        for net_b in nets[x:]:
            ia, ib = members[net_a], members[net_b]
            if net_a == net_b:
                ii, jj = np.triu_indices(len(ia), k=1)
                if ii.size == 0:
                    continue
                idx_i, idx_j = np.asarray(ia)[ii], np.asarray(ia)[jj]
            else:
                idx_i, idx_j = (g.ravel() for g in np.meshgrid(ia, ib, indexing="ij"))
            mean = values[:, idx_i, idx_j].mean(axis=1)
            kind = "within" if net_a == net_b else "between"
            for s, val in zip(subjects, mean, strict=True):
                rows.append((s, net_a, net_b, kind, float(val), int(idx_i.size)))
    return pd.DataFrame(rows, columns=["subject", "network_a", "network_b", "kind", "value",
                                       "n_edges"])


def compare_networks(
    summary: pd.DataFrame,
    groups,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Compare within/between-network connectivity between two groups.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`network_summary`.
    groups : pandas.Series or sequence
        Subject -> group (a Series indexed by the ``subject`` labels of ``summary``, or
        one label per subject in order of first appearance); exactly two groups.
    alpha : float
        FDR level (Benjamini-Hochberg over network pairs).

    Returns
    -------
    pandas.DataFrame
        One row per network pair: ``network_a, network_b, kind, n_<A>, n_<B>, mean_<A>,
        mean_<B>, difference`` (``B - A``), ``t, p, p_fdr, significant``.
    """
    need = {"subject", "network_a", "network_b", "kind", "value"}
    if need - set(summary.columns):
        raise ValueError(f"summary lacks columns {sorted(need - set(summary.columns))}")
    subjects = list(dict.fromkeys(summary["subject"].astype(str)))
    labels = _labels(groups if isinstance(groups, pd.Series) else list(groups),
                     len(subjects), subjects if isinstance(groups, pd.Series) else None)
    a_lab, b_lab = _two_levels(labels)
    wide = summary.assign(subject=summary["subject"].astype(str)).pivot_table(
        index="subject", columns=["network_a", "network_b", "kind"], values="value",
        sort=False).reindex(subjects)
    values = wide.to_numpy(dtype=float)
    is_a, is_b = labels == a_lab, labels == b_lab
    if min(is_a.sum(), is_b.sum()) < 2:
        raise ValueError("each group needs at least 2 subjects")
    t, pval = _welch(values[is_a], values[is_b])
    p_fdr = _fdr(pval)
    keys = wide.columns.to_frame(index=False)
    out = keys.assign(**{
        f"n_{a_lab}": np.isfinite(values[is_a]).sum(0),
        f"n_{b_lab}": np.isfinite(values[is_b]).sum(0),
        f"mean_{a_lab}": np.nanmean(values[is_a], 0),
        f"mean_{b_lab}": np.nanmean(values[is_b], 0),
    })
    out["difference"] = out[f"mean_{b_lab}"] - out[f"mean_{a_lab}"]
    out["t"], out["p"], out["p_fdr"] = t, pval, p_fdr
    out["significant"] = np.nan_to_num(p_fdr, nan=1.0) <= alpha
    return out


def read_networks_tsv(path: str | Path) -> dict:
    """Read a parcel -> network table.

    Parameters
    ----------
    path : str or Path
        TSV with a ``network`` column and a ``name`` column (parcel names) or an ``index``
        column (column positions / label values).

    Returns
    -------
    dict
        Parcel name (str) or index (int) -> network name.

    Raises
    ------
    bids_hrf.errors.DataError
        The file cannot be read or lacks the columns.
    """
    from bids_hrf.errors import DataError

    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read network table: {err}", path=str(path)) from err
    if "network" not in table.columns or not ({"name", "index"} & set(table.columns)):
        raise DataError(
            f"network table has columns {list(table.columns)}",
            fix="give a TSV with a 'network' column and a 'name' or 'index' column",
            path=str(path),
        )
    table = table[table["network"].str.strip().ne("") & table["network"].ne("n/a")]
    if "name" in table.columns:
        return dict(zip(table["name"].astype(str), table["network"], strict=True))
    try:
        keys = [int(v) for v in table["index"]]
    except ValueError as err:
        raise DataError("network table 'index' column must hold integers",
                        path=str(path)) from err
    return dict(zip(keys, table["network"], strict=True))
