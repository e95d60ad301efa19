"""Parcellation tools on label arrays: extract, relabel, split into connected regions, info.

Pure functions on integer arrays (0 = background) and ``{index: name}`` label tables; the
``bids-hrf-parcellation`` command (:mod:`bids_hrf.cli.parcellation`) reads and writes files.
Every function that changes label values returns the mapping, so that a labels table can be
kept in step with :func:`relabel_table`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = ["as_labels", "extract", "relabel_contiguous", "split_connected", "label_info",
           "relabel_table", "split_table", "present_labels", "check_willard", "WILLARD"]

#: PyHRF's copy of the Stanford FIND-lab "Willard" atlas (Richiardi et al. 2015)
WILLARD = {"file": "stanford_willard_parcellation_3x3x3mm.nii.gz", "shape": (53, 63, 52),
           "zooms": (3.0, 3.0, 3.0), "n_parcels": 499}

_STRUCTURE = {6: 1, 18: 2, 26: 3}


def as_labels(data: np.ndarray, source: str = "the parcellation") -> np.ndarray:
    """Check that ``data`` holds non-negative integer labels and return them as int64.

    Raises
    ------
    ValueError
        Non-finite, negative or non-integer values; the message names ``source`` and an
        example value.
    """
    data = np.asarray(data)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if np.issubdtype(data.dtype, np.integer):
        out = data.astype(np.int64)
    else:
        values = np.asarray(data, dtype=float)
        if not np.isfinite(values).all():
            raise ValueError(f"{source} holds NaN or infinite values, not labels")
        frac = np.abs(values - np.rint(values))
        if frac.max(initial=0.0) > 1e-3:
            example = values.flat[int(np.argmax(frac))]
            raise ValueError(f"{source} holds non-integer values (e.g. {example:g}): a "
                             "probabilistic map or labels resampled with interpolation?")
        out = np.rint(values).astype(np.int64)
    if out.size and out.min() < 0:
        raise ValueError(f"{source} has negative labels (min {out.min()})")
    return out


def present_labels(labels: np.ndarray) -> list[int]:
    """Sorted non-zero labels present in ``labels``."""
    return [int(v) for v in np.unique(labels) if v != 0]


def _apply(labels: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    lut = np.zeros(int(labels.max(initial=0)) + 1, dtype=np.int64)
    for old, new in mapping.items():
        lut[old] = new
    return lut[labels]


def extract(labels: np.ndarray, ids: Iterable[int], contiguous: bool = False
            ) -> tuple[np.ndarray, dict[int, int]]:
    """Keep only the parcels ``ids`` (PyHRF's ``pyhrf_parcellation_extract``).

    Parameters
    ----------
    labels : ndarray of int
    ids : iterable of int
        Parcels to keep, each present in ``labels``.
    contiguous : bool
        Renumber the kept parcels 1..N in increasing order of their old label.

    Returns
    -------
    out : ndarray of int
        Same shape; other parcels set to 0.
    mapping : dict old -> new label

    Raises
    ------
    ValueError
        An ID that is not a parcel of ``labels`` (the message lists them), or no ID.
    """
    ids = sorted({int(i) for i in ids})
    if not ids:
        raise ValueError("give at least one parcel ID to extract")
    present = set(present_labels(labels))
    missing = [i for i in ids if i not in present]
    if missing:
        shown = sorted(present)
        raise ValueError(f"parcel ID(s) {missing} not in the parcellation (it has "
                         f"{len(shown)} parcels: {_ranges(shown)})")
    mapping = {old: (k if contiguous else old) for k, old in enumerate(ids, start=1)}
    return _apply(labels, mapping), mapping


def relabel_contiguous(labels: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Renumber the parcels 1..N in increasing order of their labels."""
    mapping = {old: k for k, old in enumerate(present_labels(labels), start=1)}
    return _apply(labels, mapping), mapping


def split_connected(labels: np.ndarray, min_size: int = 1, connectivity: int = 26
                    ) -> tuple[np.ndarray, pd.DataFrame]:
    """Split every parcel into its spatially connected components.

    Useful for network atlases whose labels are networks spread over the brain: each
    connected piece becomes a region of its own.

    Parameters
    ----------
    labels : ndarray of int (3-D)
    min_size : int
        Components with fewer voxels are dropped (set to 0).
    connectivity : {6, 18, 26}
        Voxel neighbourhood: faces, faces + edges, or faces + edges + corners.

    Returns
    -------
    out : ndarray of int
        New labels 1..N, numbered by source label, then by decreasing size, then by the
        position of the component's first voxel (C order).
    table : DataFrame
        One row per new region: ``index``, ``source``, the source label, ``component``
        (1 = the largest piece of the source), ``n_voxels``; ``table.attrs["dropped"]``
        lists ``(source, n_voxels)`` of the components under ``min_size``.
    """
    if connectivity not in _STRUCTURE:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    if int(min_size) < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    structure = ndimage.generate_binary_structure(labels.ndim, _STRUCTURE[connectivity]
                                                  if labels.ndim == 3 else labels.ndim)
    out = np.zeros_like(labels, dtype=np.int64)
    rows, dropped = [], []
    objects = ndimage.find_objects(labels)
    new = 0
    for value in present_labels(labels):
        box = objects[value - 1]
        comp, n = ndimage.label(labels[box] == value, structure=structure)
        sizes = np.bincount(comp.ravel(), minlength=n + 1)[1:]
        first = ndimage.minimum(np.arange(comp.size).reshape(comp.shape), comp,
                                index=np.arange(1, n + 1))
        order = sorted(range(n), key=lambda k: (-sizes[k], first[k]))
        rank = 0
        view = out[box]
        for k in order:
            if sizes[k] < min_size:
                dropped.append((value, int(sizes[k])))
                continue
            new += 1
            rank += 1
            view[comp == k + 1] = new
            rows.append((new, value, rank, int(sizes[k])))
    table = pd.DataFrame(rows, columns=["index", "source", "component", "n_voxels"])
    table.attrs["dropped"] = dropped
    return out, table


def label_info(labels: np.ndarray, voxel_volume: float = 1.0,
               names: Mapping[int, str] | None = None) -> pd.DataFrame:
    """Size, pieces and holes of each parcel.

    Returns
    -------
    DataFrame
        ``index``, ``name`` (when ``names``), ``n_voxels``, ``volume_mm3``,
        ``n_components`` (26-connected pieces), ``n_hole_voxels`` (voxels of other labels or
        background fully enclosed by the parcel, per slice-free 3-D hole filling) and
        ``centroid_ijk``. ``attrs``: ``absent`` (labels of ``names`` without voxels) and
        ``gaps`` (missing numbers between 1 and the largest label).
    """
    present = present_labels(labels)
    structure = ndimage.generate_binary_structure(labels.ndim, labels.ndim)
    objects = ndimage.find_objects(labels)
    rows = []
    for value in present:
        box = objects[value - 1]
        # pad the box by one voxel so that holes touching the box edge are not counted
        sub = np.pad(labels[box] == value, 1)
        _, n_comp = ndimage.label(sub, structure=structure)
        holes = int(ndimage.binary_fill_holes(sub).sum() - sub.sum())
        centre = ndimage.center_of_mass(sub)
        centroid = tuple(round(float(c) - 1 + s.start, 1) for c, s in zip(centre, box,
                                                                          strict=True))
        rows.append({"index": value, "n_voxels": int(sub.sum()),
                     "volume_mm3": float(sub.sum() * voxel_volume), "n_components": n_comp,
                     "n_hole_voxels": holes, "centroid_ijk": centroid})
    table = pd.DataFrame(rows, columns=["index", "n_voxels", "volume_mm3", "n_components",
                                        "n_hole_voxels", "centroid_ijk"])
    if names is not None:
        table.insert(1, "name", [str(names.get(i, i)) for i in table["index"]])
    table.attrs["absent"] = sorted(set(names or {}) - set(present))
    table.attrs["gaps"] = sorted(set(range(1, max(present, default=0) + 1)) - set(present))
    return table


def relabel_table(names: Mapping[int, str], mapping: Mapping[int, int],
                  networks: Mapping[int, str] | None = None
                  ) -> tuple[dict[int, str], dict[int, str] | None]:
    """Carry a labels table through a relabelling: ``{new: name}`` for the kept labels."""
    out = {new: str(names.get(old, old)) for old, new in sorted(mapping.items(),
                                                                 key=lambda kv: kv[1])}
    nets = None
    if networks is not None:
        nets = {new: networks[old] for old, new in mapping.items() if old in networks}
    return out, nets


def split_table(table: pd.DataFrame, names: Mapping[int, str] | None = None,
                networks: Mapping[int, str] | None = None) -> pd.DataFrame:
    """Labels table of :func:`split_connected`'s output: ``index``, ``name``, ``network``
    (the source's name: the network each region came from), ``source``, ``n_voxels``."""
    names = names or {}
    src_name = [str(names.get(s, s)) for s in table["source"]]
    return pd.DataFrame({
        "index": table["index"],
        "name": [f"{n}_{c}" for n, c in zip(src_name, table["component"], strict=True)],
        "network": [networks.get(s, n) if networks else n
                    for s, n in zip(table["source"], src_name, strict=True)],
        "source": table["source"], "n_voxels": table["n_voxels"]})


def _ranges(values: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    parts, start = [], None
    for k, v in enumerate(values):
        if start is None:
            start = v
        if k + 1 == len(values) or values[k + 1] != v + 1:
            parts.append(f"{start}-{v}" if v != start else f"{v}")
            start = None
    return ", ".join(parts)


def check_willard(name: str, shape: Sequence[int], zooms: Sequence[float],
                  labels: np.ndarray) -> bool:
    """Check a file named like PyHRF's Willard atlas against that atlas's grid and labels.

    Returns
    -------
    bool
        True when ``name`` is the Willard file (and it checks out), False for other files.

    Raises
    ------
    ValueError
        The file is named like the Willard atlas but has another grid (53x63x52 at 3 mm)
        or not its 499 parcels.
    """
    if "willard" not in str(name).lower():
        return False
    problems = []
    if tuple(int(s) for s in shape[:3]) != WILLARD["shape"]:
        problems.append(f"shape {tuple(shape[:3])} instead of {WILLARD['shape']}")
    if not np.allclose(np.abs(np.asarray(zooms[:3], float)), WILLARD["zooms"], atol=1e-3):
        problems.append(f"voxels {tuple(float(z) for z in zooms[:3])} mm instead of 3 mm")
    n = len(present_labels(labels))
    if n != WILLARD["n_parcels"]:
        problems.append(f"{n} parcels instead of {WILLARD['n_parcels']}")
    if problems:
        raise ValueError(f"{name} is named like the Willard atlas ({WILLARD['file']}) but has "
                         + "; ".join(problems))
    return True
