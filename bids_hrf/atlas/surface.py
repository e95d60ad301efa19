"""Parcellations of surface and grayordinate data (issue 12).

- A GIFTI ``.label.gii`` pair or a FreeSurfer ``.annot`` pair (left file given, its right
  twin found by name: ``hemi-L``/``hemi-R``, ``lh.``/``rh.``, ``.L.``/``.R.``);
- a CIFTI ``.dlabel.nii`` (labels per grayordinate, subcortical structures included);
- ``data-driven:N`` on the mesh: spatially contiguous parcels by Ward clustering of the
  samples' time series under the neighbourhood graph (:mod:`bids_hrf.surface.graph`).

Every reader returns one label per sample of a :class:`~bids_hrf.io.surface.SurfaceBold`
(0: no parcel; the medial wall and the invalid samples are always 0) and the label names.
Density or hemisphere mismatches are one clear error naming the file.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import sparse

from bids_hrf.errors import DataError, NoInputError

_PAIRS = (("hemi-L", "hemi-R"), ("lh.", "rh."), (".L.", ".R."), ("_L_", "_R_"))
CORTEX = {"L": "CIFTI_STRUCTURE_CORTEX_LEFT", "R": "CIFTI_STRUCTURE_CORTEX_RIGHT"}


def label_pair(left: str | Path) -> tuple[Path, Path]:
    """``left`` and its right-hemisphere twin (a clear error if ``left`` is a right file)."""
    left = Path(left)
    for lmark, rmark in _PAIRS:
        if lmark in left.name:
            right = left.with_name(left.name.replace(lmark, rmark))
            if not right.is_file():
                raise NoInputError(f"the right hemisphere of the atlas is missing: {right}",
                                   fix="give both hemispheres' label files", path=str(right))
            return left, right
        if rmark in left.name:
            raise DataError(f"{left.name} is a right-hemisphere label file",
                            fix=f"give the left one ({lmark}); its {rmark} twin is found by "
                                "name", path=str(left))
    raise DataError(f"{left.name}: cannot tell its hemisphere",
                    fix="name label files with hemi-L/hemi-R, lh./rh. or .L./.R.",
                    path=str(left))


def _read_hemisphere(path: Path) -> tuple[np.ndarray, dict[int, str]]:
    try:
        if path.name.endswith(".annot"):
            labels, _, names = nib.freesurfer.read_annot(str(path))
            names = {i: (n.decode() if isinstance(n, bytes) else str(n))
                     for i, n in enumerate(names)}
            labels = np.where(labels < 0, 0, labels + 1)  # -1: unlabelled; index 0 -> 1
            return labels.astype(int), {k + 1: v for k, v in names.items()}
        img = nib.load(str(path))
        labels = np.asarray(img.darrays[0].data).astype(int)
        names = {int(k): str(v) for k, v in img.labeltable.get_labels_as_dict().items()}
        return labels, names
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path} cannot be read as a label file ({exc})",
                        fix="give a .label.gii or FreeSurfer .annot file", path=str(path)) from exc


def _unlabelled(names: dict[int, str]) -> set[int]:
    return {k for k, v in names.items()
            if k == 0 or v.lower() in ("???", "unknown", "medial_wall", "medialwall")}


def surface_labels(left: str | Path, structure: np.ndarray, vertex: np.ndarray,
                   valid: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """Labels of each sample from a GIFTI/annot pair (right labels offset after the left).

    Parameters
    ----------
    left : path
        The left hemisphere's label file.
    structure, vertex, valid : ndarray (n_samples,)
        From :class:`~bids_hrf.io.surface.SurfaceBold`.

    Returns
    -------
    labels : ndarray (n_samples,) of int (0: none)
    names : dict of int to str (``L_<name>``, ``R_<name>``)
    """
    out = np.zeros(len(structure), dtype=int)
    names: dict[int, str] = {}
    offset = 0
    for hemi, path in zip("LR", label_pair(left), strict=True):
        values, table = _read_hemisphere(path)
        mine = structure == CORTEX[hemi]
        if vertex[mine].size and vertex[mine].max() >= values.size:
            raise DataError(f"{path.name} labels {values.size} vertices but the data have "
                            f"vertex {int(vertex[mine].max())} (another mesh density)",
                            fix="give the atlas at the data's density (e.g. fsaverage5: "
                                "10242 vertices per hemisphere)", path=str(path))
        skip = _unlabelled(table)
        hemi_labels = np.where(np.isin(values, list(skip)), 0, values)
        used = sorted(set(np.unique(hemi_labels)) - {0})
        relabel = {old: offset + i + 1 for i, old in enumerate(used)}
        out[mine] = [relabel.get(v, 0) for v in hemi_labels[vertex[mine]]]
        names.update({new: f"{hemi}_{table.get(old, old)}" for old, new in relabel.items()})
        offset += len(used)
    out[~valid] = 0
    return out, names


def cifti_labels(values: np.ndarray, table: dict[int, str], models, structure: np.ndarray,
                 vertex: np.ndarray, ijk: np.ndarray, valid: np.ndarray,
                 source: str | Path = "dlabel") -> tuple[np.ndarray, dict[int, str]]:
    """Labels of each sample from a CIFTI ``.dlabel.nii`` (matched by structure and vertex
    or voxel; a grayordinate absent from the atlas gets 0).

    Parameters
    ----------
    values : ndarray (n_grayordinates,)
        The atlas's label of each of its grayordinates (first map).
    table : dict of int to str
        Its label table (key -> name).
    models : BrainModels
        Its grayordinates (``structure``, ``vertex``, ``ijk``, ``mesh_size``), as
        :func:`bids_hrf.io.surface.read_dlabel` gives them.
    structure, vertex, ijk, valid
        The data's samples (as in :class:`~bids_hrf.surface.samples.SampleGeometry`).
    source : str or Path
        The atlas file, for messages.
    """
    path = Path(source)
    values = np.asarray(values).astype(int)
    atlas_structure = np.asarray(models.structure)
    for name in set(structure) & set(models.mesh_size):
        data_n = int(vertex[structure == name].max()) + 1
        if data_n > models.mesh_size[name]:
            raise DataError(f"{path.name}: {name} has {models.mesh_size[name]} vertices, the data "
                            f"at least {data_n} (another density)",
                            fix="give the atlas at the data's density (e.g. fsLR 32k for "
                                "91k grayordinates)", path=str(path))
    # a sample takes the label of the atlas grayordinate of its structure at its vertex (or
    # voxel); matched on integer keys, vectorised (a dict of 91k tuples took ~4 s)
    names = np.unique(np.concatenate([atlas_structure, np.asarray(structure)]))
    atlas_keys = _grayordinate_keys(np.searchsorted(names, atlas_structure), models.vertex,
                                    models.ijk)
    data_keys = _grayordinate_keys(np.searchsorted(names, structure), vertex, ijk)
    # as a dict built in file order: a repeated grayordinate keeps its last label
    last = len(atlas_keys) - 1 - np.unique(atlas_keys[::-1], return_index=True)[1]
    keys, label_of = atlas_keys[last], values[last]
    pos = np.clip(np.searchsorted(keys, data_keys), 0, max(len(keys) - 1, 0))
    found = (keys[pos] == data_keys) if len(keys) else np.zeros(len(data_keys), bool)
    out = np.where(found, label_of[pos] if len(keys) else 0, 0).astype(int)
    out[np.isin(out, list(_unlabelled(table)))] = 0
    out[~valid] = 0
    return out, {k: table[k] for k in sorted(set(np.unique(out)) - {0})}


def _grayordinate_keys(structure_id: np.ndarray, vertex: np.ndarray,
                       ijk: np.ndarray) -> np.ndarray:
    """One int64 per grayordinate: its structure, and its vertex (vertex >= 0) or its
    voxel indices (each < 2**16), with a flag telling the two apart."""
    vertex = np.asarray(vertex, dtype=np.int64)
    ijk = np.asarray(ijk, dtype=np.int64)
    if ijk.size and (ijk.max() >= 2**16 or vertex.max(initial=0) >= 2**48):
        raise DataError("grayordinate indices too large to match (voxel index >= 65536)")
    on_surface = vertex >= 0
    voxel = (ijk[:, 0] << 32) | (ijk[:, 1] << 16) | ijk[:, 2]
    index = np.where(on_surface, vertex, voxel | (1 << 48))
    return (np.asarray(structure_id, dtype=np.int64) << 50) | index


def mesh_clusters(data: np.ndarray, adjacency: sparse.spmatrix, valid: np.ndarray,
                  n_parcels: int) -> np.ndarray:
    """``data-driven:N`` on a mesh: contiguous parcels of similar time series.

    Ward clustering (scikit-learn) of the standardised time series of the valid samples,
    under ``adjacency``, so every parcel is connected on the mesh (or grid).

    Returns
    -------
    ndarray (n_samples,) of int: 1..N, 0 for invalid samples
    """
    from scipy.sparse.csgraph import connected_components
    from sklearn.cluster import AgglomerativeClustering

    keep = np.flatnonzero(valid)
    if keep.size < n_parcels:
        raise DataError(f"data-driven:{n_parcels} needs at least {n_parcels} samples with "
                        f"signal, the data have {keep.size}", fix="ask for fewer parcels")
    x = data[:, keep]
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    graph = sparse.csr_matrix(adjacency)[keep][:, keep]
    # each connected piece (a hemisphere, a subcortical structure) is clustered on its own:
    # scikit-learn would otherwise join the pieces and a parcel could straddle them
    n_comp, comp = connected_components(graph, directed=False)
    if n_comp > n_parcels:
        raise DataError(f"data-driven:{n_parcels}: the samples form {n_comp} disconnected "
                        "pieces, each needs a parcel", fix=f"ask for at least {n_comp} parcels")
    sizes = np.bincount(comp)
    quota = np.maximum(1, np.floor(n_parcels * sizes / sizes.sum()).astype(int))
    for k in np.argsort(-(n_parcels * sizes / sizes.sum() - quota)):
        if quota.sum() >= n_parcels:
            break
        quota[k] += 1
    while quota.sum() > n_parcels:  # the minimum of 1 per piece overshot: take from the largest
        quota[np.argmax(quota)] -= 1
    out = np.zeros(data.shape[1], dtype=int)
    next_label = 1
    for k in range(n_comp):
        members = np.flatnonzero(comp == k)
        n_k = int(min(quota[k], members.size))
        if n_k == 1:
            labels = np.zeros(members.size, dtype=int)
        else:
            labels = AgglomerativeClustering(
                n_clusters=n_k, linkage="ward",
                connectivity=graph[members][:, members]).fit(x[:, members].T).labels_
        out[keep[members]] = labels + next_label
        next_label += n_k
    return out
