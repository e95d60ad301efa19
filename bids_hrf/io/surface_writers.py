"""Write surface samples back in the input's format: GIFTI pairs or CIFTI-2 files.

The sink (:func:`bids_hrf.steps.sink.sink_step`) calls :func:`surface_files` for every
surface NIfTI it writes (:mod:`bids_hrf.surface.samples`):

* fsaverage (GIFTI): one file per hemisphere, ``hemi-L``/``hemi-R`` entities; maps are
  ``.shape.gii`` (one data array), series ``.func.gii`` (one array per volume, as fMRIPrep
  writes them), parcellations ``.label.gii`` with their label table; the medial wall and
  samples left out are 0.
* fsLR (CIFTI-2): maps ``.dscalar.nii`` (one named map), series ``.dtseries.nii`` (series
  axis in seconds), parcellations ``.dlabel.nii``; the brain-model axis is the input's
  (same structures, vertices, voxels, so Connectome Workbench shows them on its meshes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_hrf.surface.samples import CORTEX, SampleGeometry, sample_values

_GIFTI_INTENT = {
    "shape": "NIFTI_INTENT_SHAPE",
    "func": "NIFTI_INTENT_TIME_SERIES",
    "label": "NIFTI_INTENT_LABEL",
}


def surface_files(
    src: str | Path,
    geometry: SampleGeometry,
    suffix: str,
    labels: dict[int, str] | None = None,
    tr: float | None = None,
) -> list[tuple[dict, str, Callable[[Path], None]]]:
    """The files a surface NIfTI becomes: (extra entities, extension, writer) per file.

    Parameters
    ----------
    src : path
        A surface NIfTI (n_samples, 1, 1[, n_volumes]).
    geometry : SampleGeometry
    suffix : str
        BIDS suffix of the output (``dseg`` outputs become label files).
    labels : dict, optional
        Label names of a parcellation.
    tr : float, optional
        Step of a time series (s).

    Returns
    -------
    list of (dict, str, callable)
        The entities to add (``hemi``), the extension, and ``write(path)``.
    """
    values = sample_values(nib.load(str(src)))
    if values.shape[0] != geometry.n_samples:
        raise ValueError(
            f"{Path(src).name} has {values.shape[0]} samples, the geometry {geometry.n_samples}"
        )
    is_label = suffix == "dseg"
    is_series = values.ndim == 2 and values.shape[1] > 1 and not is_label
    if geometry.kind == "gifti":
        kind = "label" if is_label else ("func" if is_series else "shape")
        out = []
        for hemi in ("L", "R"):
            idx = geometry.hemisphere(hemi)
            full = np.zeros(
                (geometry.mesh_size[CORTEX[hemi]],) + values.shape[1:], dtype=values.dtype
            )
            full[geometry.vertex[idx]] = values[idx]
            out.append(({"hemi": hemi}, f".{kind}.gii", _gifti_writer(full, kind, hemi, labels)))
        return out
    if is_label:
        return [({}, ".dlabel.nii", _cifti_writer(values, geometry, "label", labels, tr))]
    kind = "series" if is_series else "scalar"
    ext = ".dtseries.nii" if is_series else ".dscalar.nii"
    return [({}, ext, _cifti_writer(values, geometry, kind, {0: suffix}, tr))]


def _gifti_writer(
    values: np.ndarray, kind: str, hemi: str, labels: dict[int, str] | None
) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        structure = "CortexLeft" if hemi == "L" else "CortexRight"
        meta = nib.gifti.GiftiMetaData({"AnatomicalStructurePrimary": structure})
        img = nib.gifti.GiftiImage(meta=meta)
        if kind == "label":
            table = nib.gifti.GiftiLabelTable()
            names = {0: "???", **(labels or {})}
            rng = np.random.default_rng(0)
            for key, name in names.items():
                label = nib.gifti.GiftiLabel(
                    key=int(key),
                    red=float(rng.random()),
                    green=float(rng.random()),
                    blue=float(rng.random()),
                    alpha=1.0,
                )
                label.label = str(name)
                table.labels.append(label)
            img.labeltable = table
            arrays = [values.astype(np.int32).ravel()]
        elif kind == "func":
            arrays = [values[:, t].astype(np.float32) for t in range(values.shape[1])]
        else:
            arrays = [values.astype(np.float32).ravel()]
        for data in arrays:
            img.add_gifti_data_array(
                nib.gifti.GiftiDataArray(data, intent=_GIFTI_INTENT[kind], datatype=data.dtype)
            )
        nib.save(img, str(path))

    return write


#: The last geometry's brain-model axis and its CIFTI mapping: nibabel builds both element
#: by element (~1 s each for 91k grayordinates), and a sink writes dozens of files of one
#: geometry (benchmarks/README.md, "Surface and CIFTI data vs volume").
_LAST_MODELS: list = []


def _brain_models(
    geometry: SampleGeometry,
) -> tuple[nib.cifti2.BrainModelAxis, nib.cifti2.Cifti2MatrixIndicesMap]:
    """Brain-model axis of ``geometry`` and its mapping (dimension 1), cached per object."""
    if _LAST_MODELS and _LAST_MODELS[0] is geometry:
        return _LAST_MODELS[1], _LAST_MODELS[2]
    surface = geometry.vertex >= 0
    voxel = np.where(surface[:, None], 0, geometry.ijk)
    nvertices = {name: int(n) for name, n in geometry.mesh_size.items()}
    affine = geometry.volume_affine if geometry.volume_affine is not None else None
    kwargs = {}
    if (~surface).any():
        kwargs = {"affine": affine, "volume_shape": tuple(geometry.volume_shape)}
    models = nib.cifti2.BrainModelAxis(
        name=geometry.structure.astype(str),
        vertex=np.where(surface, geometry.vertex, -1),
        voxel=voxel,
        nvertices=nvertices,
        **kwargs,
    )
    _LAST_MODELS[:] = [geometry, models, models.to_mapping(1)]
    return models, _LAST_MODELS[2]


def brain_model_axis(geometry: SampleGeometry) -> nib.cifti2.BrainModelAxis:
    """The CIFTI brain-model axis of the samples (vertices then voxels, by structure)."""
    return _brain_models(geometry)[0]


def _cifti_header(axis: nib.cifti2.Axis, geometry: SampleGeometry) -> nib.cifti2.Cifti2Header:
    """Header of (``axis``, the brain models): as ``Cifti2Header.from_axes`` with the brain
    models' mapping reused (it is not modified by writing)."""
    matrix = nib.cifti2.Cifti2Matrix()
    matrix.append(axis.to_mapping(0))
    matrix.append(_brain_models(geometry)[1])
    return nib.cifti2.Cifti2Header(matrix)


def save_cifti(data: np.ndarray, header: nib.cifti2.Cifti2Header, path: Path | str) -> None:
    """Write ``data`` (float32, CIFTI dimensions) with ``header`` as nibabel's
    ``Cifti2Image.to_filename`` does (same bytes, tested), without the two checks of the data
    shape against the header, each of which rebuilds every axis element by element (seconds
    per file at 91k grayordinates). The caller builds ``header`` from the data's axes."""
    from nibabel.cifti2.cifti2 import LimitedNifti2Header
    from nibabel.cifti2.parse_cifti2 import Cifti2Extension

    nifti = LimitedNifti2Header.from_header(None)
    nifti.set_data_dtype(data.dtype)
    nifti.set_data_shape((1, 1, 1, 1) + data.shape)
    nifti.extensions.append(Cifti2Extension.from_bytes(header.to_xml()))
    nifti.set_intent("NIFTI_INTENT_CONNECTIVITY_UNKNOWN")
    nifti["pixdim"][:4] = 1
    nib.Nifti2Image(data.reshape((1, 1, 1, 1) + data.shape), None, nifti).to_filename(str(path))


def _cifti_writer(
    values: np.ndarray,
    geometry: SampleGeometry,
    kind: str,
    labels: dict[int, str] | None,
    tr: float | None,
) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        data = values.reshape(values.shape[0], -1).T.astype(np.float32)
        if kind == "series":
            axis = nib.cifti2.SeriesAxis(
                start=0.0, step=float(tr or 1.0), size=data.shape[0], unit="SECOND"
            )
        elif kind == "label":
            rng = np.random.default_rng(0)
            table = {0: ("???", (0.0, 0.0, 0.0, 0.0))}
            table.update(
                {int(k): (str(v), (*rng.random(3), 1.0)) for k, v in (labels or {}).items()}
            )
            axis = nib.cifti2.LabelAxis(["parcellation"], [table])
            data = data[:1]
        else:
            axis = nib.cifti2.ScalarAxis([str(next(iter((labels or {0: "map"}).values())))])
            data = data[:1]
        if data.shape != (len(axis), geometry.structure.size):
            raise ValueError(
                f"CIFTI data {data.shape} do not match the axes "
                f"({len(axis)}, {geometry.structure.size})"
            )
        save_cifti(data, _cifti_header(axis, geometry), path)

    return write


def parcels_axis(
    geometry: SampleGeometry, sample_labels: np.ndarray, names: dict[int, str], wanted: list[str]
) -> nib.cifti2.ParcelsAxis | None:
    """CIFTI parcels axis of the parcels ``wanted`` (in that order), from the label of each
    sample; None if one of them labels no sample."""
    models = brain_model_axis(geometry)
    index = {name: label for label, name in names.items()}
    parts = []
    for name in wanted:
        members = np.flatnonzero(sample_labels == index.get(name, -1))
        if not members.size:
            return None
        parts.append((name, models[members]))
    return nib.cifti2.ParcelsAxis.from_brain_models(parts)


def parcel_cifti(
    table, kind: str, axis: nib.cifti2.ParcelsAxis, tr: float | None = None
) -> Callable[[Path], None]:
    """Writer of a parcel table as ``.ptseries.nii`` (``kind="series"``: rows are volumes,
    columns parcels) or ``.pscalar.nii`` (``kind="scalar"``: rows are parcels, numeric
    columns the maps)."""

    def write(path: Path) -> None:
        if kind == "series":
            data = table.to_numpy(dtype=np.float32)
            first = nib.cifti2.SeriesAxis(0.0, float(tr or 1.0), data.shape[0], "SECOND")
        else:
            numeric = table.select_dtypes(include=[np.number])
            data = numeric.to_numpy(dtype=np.float32).T
            first = nib.cifti2.ScalarAxis([str(c) for c in numeric.columns])
        nib.save(nib.cifti2.Cifti2Image(data, header=(first, axis)), str(path))

    return write
