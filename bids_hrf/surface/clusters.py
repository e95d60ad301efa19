"""Clusters of supra-threshold samples on a neighbourhood graph (mesh vertices, voxels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components


def graph_clusters(values: np.ndarray, adjacency: sparse.spmatrix, threshold: float,
                   min_size: int = 0, two_sided: bool = True
                   ) -> tuple[np.ndarray, pd.DataFrame]:
    """Connected sets of samples beyond ``threshold`` (same sign), measured on the graph.

    Parameters
    ----------
    values : ndarray (n_samples,)
        A statistic per sample (NaN: left out).
    adjacency : sparse (n_samples, n_samples)
        Neighbourhood graph (e.g. :func:`bids_hrf.surface.meshes.sample_graph`).
    threshold : float
        Height threshold (``|value|`` when ``two_sided``).
    min_size : int
        Smallest cluster kept (samples); smaller ones are set to 0.
    two_sided : bool

    Returns
    -------
    thresholded : ndarray (n_samples,)
        ``values`` where a kept cluster is, 0 elsewhere.
    table : DataFrame
        ``Cluster ID``, ``Sign``, ``Size (samples)``, ``Peak Stat``, ``Peak sample``, largest
        first.
    """
    values = np.asarray(values, dtype=float)
    if adjacency.shape != (values.size, values.size):
        raise ValueError(f"adjacency {adjacency.shape} does not match {values.size} samples")
    out = np.zeros_like(values)
    rows = []
    graph = sparse.csr_matrix(adjacency)
    for sign in ((1, -1) if two_sided else (1,)):
        supra = np.flatnonzero(np.nan_to_num(sign * values, nan=-np.inf) >= threshold)
        if not supra.size:
            continue
        _, comp = connected_components(graph[supra][:, supra], directed=False)
        for k in np.unique(comp):
            members = supra[comp == k]
            if members.size < max(1, min_size):
                continue
            out[members] = values[members]
            peak = members[np.argmax(sign * values[members])]
            rows.append({"Sign": "+" if sign > 0 else "-", "Size (samples)": members.size,
                         "Peak Stat": float(values[peak]), "Peak sample": int(peak)})
    table = pd.DataFrame(rows, columns=["Sign", "Size (samples)", "Peak Stat", "Peak sample"])
    table = table.sort_values("Size (samples)", ascending=False, kind="stable")
    table.insert(0, "Cluster ID", np.arange(1, len(table) + 1))
    return out, table.reset_index(drop=True)
