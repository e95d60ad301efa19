"""Neighbourhood graphs of spatial samples: mesh vertices, grid voxels, or both.

Every function returns a symmetric boolean ``scipy.sparse.csr_matrix`` adjacency without
self-loops, so that volume, surface and grayordinate data share one representation.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def mesh_adjacency(faces: np.ndarray, n_vertices: int | None = None) -> sparse.csr_matrix:
    """Vertex adjacency of a triangle mesh (vertices sharing an edge).

    Parameters
    ----------
    faces : ndarray (n_faces, 3) of int
        Vertex indices of each triangle.
    n_vertices : int, optional
        Number of vertices (default: the largest index + 1); isolated vertices have no
        neighbour.

    Returns
    -------
    scipy.sparse.csr_matrix (n_vertices, n_vertices) of bool
    """
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (n_faces, 3), got shape {faces.shape}")
    if faces.size and (faces.min() < 0 or not np.issubdtype(faces.dtype, np.integer)):
        raise ValueError("faces must hold non-negative integer vertex indices")
    n = int(faces.max()) + 1 if n_vertices is None and faces.size else int(n_vertices or 0)
    if faces.size and faces.max() >= n:
        raise ValueError(f"faces refer to vertex {int(faces.max())} of a mesh of {n} vertices")
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    return _symmetric(rows, cols, n)


def grid_adjacency(ijk: np.ndarray) -> sparse.csr_matrix:
    """6-connectivity of voxels given by their integer grid coordinates.

    Parameters
    ----------
    ijk : ndarray (n_voxels, 3) of int

    Returns
    -------
    scipy.sparse.csr_matrix (n_voxels, n_voxels) of bool
    """
    ijk = np.asarray(ijk, dtype=np.int64)
    if ijk.ndim != 2 or ijk.shape[1] != 3:
        raise ValueError(f"ijk must be (n_voxels, 3), got shape {ijk.shape}")
    n = len(ijk)
    if n == 0:
        return sparse.csr_matrix((0, 0), dtype=bool)
    shifted = ijk - ijk.min(axis=0)
    dims = shifted.max(axis=0) + 2
    keys = np.ravel_multi_index(shifted.T, dims)
    order = np.argsort(keys)
    rows, cols = [], []
    for axis in range(3):
        step = np.zeros(3, dtype=np.int64)
        step[axis] = 1
        neighbour = np.ravel_multi_index((shifted + step).T, dims)
        pos = np.searchsorted(keys[order], neighbour)
        pos = np.minimum(pos, n - 1)
        hit = keys[order][pos] == neighbour
        rows.append(np.flatnonzero(hit))
        cols.append(order[pos[hit]])
    return _symmetric(np.concatenate(rows), np.concatenate(cols), n)


def block_adjacency(*blocks: sparse.spmatrix) -> sparse.csr_matrix:
    """One graph of disjoint sample sets (e.g. left cortex, right cortex, subcortex)."""
    return sparse.block_diag(blocks, format="csr").astype(bool)


def _symmetric(rows: np.ndarray, cols: np.ndarray, n: int) -> sparse.csr_matrix:
    keep = rows != cols
    rows, cols = rows[keep], cols[keep]
    data = np.ones(2 * rows.size, dtype=bool)
    adj = sparse.coo_matrix((data, (np.concatenate([rows, cols]), np.concatenate([cols, rows]))),
                            shape=(n, n)).tocsr()
    adj.sum_duplicates()
    adj.data[:] = True
    return adj
