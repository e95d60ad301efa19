"""Cluster-extent permutation inference on a sample graph (cortical mesh, grayordinates).

nilearn's permutation tests measure clusters on the voxel grid; surface samples need them
measured on the mesh. For a second-level design ``X`` (maps x regressors) and a contrast
``c``, the tested effect and the nuisance are separated as in Winkler et al. (2014,
NeuroImage 92: 381-397): ``Z = X (I - c c+)`` spans the nuisance. Under the null hypothesis

* without nuisance (one-sample tests: ``Z = 0``), the maps' signs are flipped at random
  (symmetric errors);
* otherwise the residuals of the nuisance-only model are permuted (Freedman & Lane, 1983)
  and added back to its fit.

Each permutation's t map is thresholded (cluster-forming height) and its largest cluster
on the graph recorded; an observed cluster's family-wise error p value is the share of
permutations whose largest cluster is at least as large (the observed labelling counted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy import stats as sstats

from bids_hrf.surface.clusters import graph_clusters


@dataclass
class GraphClusterInference:
    """Result of :func:`graph_cluster_permutation`.

    Attributes
    ----------
    t : ndarray (n_samples,)
        Observed t map.
    logp_cluster : ndarray (n_samples,)
        -log10 FWE p value of the cluster each sample belongs to (0 outside clusters).
    clusters : pandas.DataFrame
        :func:`bids_hrf.surface.clusters.graph_clusters` table with ``p_fwe``.
    t_threshold : float
        Cluster-forming height on ``|t|``.
    max_sizes : ndarray (n_perm,)
        Largest cluster of each permutation (the null distribution).
    """

    t: np.ndarray
    logp_cluster: np.ndarray
    clusters: object
    t_threshold: float
    max_sizes: np.ndarray


def _t_map(Y: np.ndarray, X: np.ndarray, c: np.ndarray, pinv: np.ndarray,
           scale: float, dof: int) -> np.ndarray:
    beta = pinv @ Y
    resid = Y - X @ beta
    sigma2 = np.einsum("ij,ij->j", resid, resid) / dof
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (c @ beta) / np.sqrt(sigma2 * scale)
    return np.nan_to_num(t)


def graph_cluster_permutation(Y: np.ndarray, X: np.ndarray, contrast: np.ndarray,
                              adjacency: sparse.spmatrix, alpha: float = 0.001,
                              n_perm: int = 1000, two_sided: bool = True,
                              random_state: int = 0) -> GraphClusterInference:
    """Cluster-size permutation test of a t contrast, clusters measured on a graph.

    Parameters
    ----------
    Y : ndarray (n_maps, n_samples)
        The subject-level maps (samples outside the analysis: any constant, e.g. 0).
    X : ndarray (n_maps, n_regressors)
        Second-level design.
    contrast : ndarray (n_regressors,)
    adjacency : sparse (n_samples, n_samples)
    alpha : float
        Uncorrected p value of the cluster-forming threshold.
    n_perm : int
    two_sided : bool
    random_state : int

    Returns
    -------
    GraphClusterInference
    """
    Y = np.asarray(Y, dtype=float)
    X = np.asarray(X, dtype=float)
    c = np.asarray(contrast, dtype=float).ravel()
    n, p = X.shape
    rank = np.linalg.matrix_rank(X)
    dof = n - rank
    if dof < 1:
        raise ValueError(f"{n} maps and a design of rank {rank}: no degree of freedom")
    if n_perm < 1:
        raise ValueError("n_perm must be >= 1")
    pinv = np.linalg.pinv(X)
    scale = float(c @ pinv @ pinv.T @ c)
    t_thr = float(sstats.t.isf(alpha / (2 if two_sided else 1), dof))
    t_obs = _t_map(Y, X, c, pinv, scale, dof)
    _, table = graph_clusters(t_obs, adjacency, t_thr, 0, two_sided)
    nuisance = X @ (np.eye(p) - np.outer(c, c) / (c @ c))
    has_nuisance = np.linalg.matrix_rank(nuisance) > 0
    if has_nuisance:
        fit_z = nuisance @ np.linalg.pinv(nuisance) @ Y
        resid_z = Y - fit_z
    rng = np.random.default_rng(random_state)
    max_sizes = np.zeros(n_perm, dtype=int)
    for k in range(n_perm):
        if has_nuisance:
            Yp = fit_z + resid_z[rng.permutation(n)]
        else:
            Yp = Y * rng.choice((-1.0, 1.0), size=n)[:, None]
        _, perm_table = graph_clusters(_t_map(Yp, X, c, pinv, scale, dof), adjacency,
                                       t_thr, 0, two_sided)
        max_sizes[k] = int(perm_table["Size (samples)"].max()) if len(perm_table) else 0
    sizes = table["Size (samples)"].to_numpy(dtype=int)
    p_fwe = (1 + (max_sizes[None, :] >= sizes[:, None]).sum(axis=1)) / (n_perm + 1)
    table["p_fwe"] = p_fwe
    logp = np.zeros(Y.shape[1])
    if len(table):
        labels = _cluster_labels(t_obs, adjacency, t_thr, two_sided)
        for peak, pval in zip(table["Peak sample"].to_numpy(dtype=int), p_fwe, strict=True):
            logp[labels == labels[peak]] = -np.log10(pval)
    return GraphClusterInference(t=t_obs, logp_cluster=logp, clusters=table,
                                 t_threshold=t_thr, max_sizes=max_sizes)


def _cluster_labels(values: np.ndarray, adjacency: sparse.spmatrix, threshold: float,
                    two_sided: bool) -> np.ndarray:
    """A distinct label (>= 1) for each supra-threshold cluster of same-sign samples."""
    from scipy.sparse.csgraph import connected_components

    graph = sparse.csr_matrix(adjacency)
    labels = np.zeros(values.size, dtype=int)
    next_label = 1
    for sign in ((1, -1) if two_sided else (1,)):
        supra = np.flatnonzero(sign * values >= threshold)
        if not supra.size:
            continue
        n_comp, comp = connected_components(graph[supra][:, supra], directed=False)
        labels[supra] = comp + next_label
        next_label += n_comp
    return labels
