"""Read fMRIPrep surface BOLD: a GIFTI pair per run, or CIFTI grayordinates (issue 12).

fMRIPrep writes ``--output-spaces fsaverage*`` as one ``.func.gii`` per hemisphere
(``..._hemi-L_space-fsaverage5_bold.func.gii`` and ``hemi-R``) and ``--cifti-output`` as a
``.dtseries.nii`` (cortex vertices per hemisphere plus subcortical voxels). Both are read
into one :class:`SurfaceBold`: a (scans x samples) array, where each sample comes from, and
which samples carry signal (the medial wall and constant or non-finite samples do not:
they are left out of every model, never counted as a parcel).
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_hrf.errors import DataError, NoInputError
from bids_hrf.io.cifti import BrainModels, CiftiFile, axis_name, read_cifti
from bids_hrf.surface.samples import CORTEX, FSAVERAGE_VERTICES, SampleGeometry, surface_kind


@dataclass
class SurfaceBold:
    """Surface or grayordinate BOLD of one run.

    Attributes
    ----------
    data : ndarray (n_scans, n_samples)
    structure : ndarray (n_samples,) of str
        ``CIFTI_STRUCTURE_*`` name of each sample (cortex hemispheres for GIFTI).
    vertex : ndarray (n_samples,) of int
        Vertex index in its hemisphere's mesh (-1 for voxels).
    ijk : ndarray (n_samples, 3) of int
        Voxel coordinates of volume samples (-1 for vertices).
    mesh_size : dict of str to int
        Vertices of each hemisphere's full mesh (medial wall included).
    valid : ndarray (n_samples,) of bool
        Finite and not constant over time.
    step : float or None
        Time between scans written in the file (CIFTI series axis), if any.
    volume_affine, volume_shape
        The grid of CIFTI's subcortical voxels (None without voxels or for GIFTI).
    """

    data: np.ndarray
    structure: np.ndarray
    vertex: np.ndarray
    ijk: np.ndarray
    mesh_size: dict
    valid: np.ndarray
    step: float | None = None
    volume_affine: np.ndarray | None = None
    volume_shape: tuple | None = None


def gifti_pair(left: str | Path) -> tuple[Path, Path]:
    """The ``hemi-L`` file of a GIFTI pair and its ``hemi-R`` twin (both must exist)."""
    left = Path(left)
    if "hemi-L" not in left.name:
        raise DataError(
            f"{left.name} is not a left-hemisphere file (no 'hemi-L' in its name)",
            fix="give the hemi-L file of the pair",
            path=str(left),
        )
    right = left.with_name(left.name.replace("hemi-L", "hemi-R"))
    for path, hemi in ((left, "left"), (right, "right")):
        if not path.is_file():
            raise NoInputError(
                f"the {hemi} hemisphere of the run is missing: {path}",
                fix="fMRIPrep writes both hemi-L and hemi-R files; copy both",
                path=str(path),
            )
    return left, right


def _gifti_series(path: Path) -> np.ndarray:
    try:
        img = nib.load(str(path))
        arrays = [np.asarray(d.data, dtype=float) for d in img.darrays]
    except Exception as exc:
        raise DataError(
            f"{path} cannot be read as GIFTI ({exc})",
            fix="check the file (fMRIPrep .func.gii)",
            path=str(path),
        ) from exc
    if _gifti_layout(path, [a.shape for a in arrays])[2]:
        return arrays[0].T
    return np.vstack(arrays)


def _gifti_layout(path: Path, dims: list[tuple[int, ...]]) -> tuple[int, int, bool]:
    """Vertices, time points and whether it is one (vertices, time) array, from the shapes
    of a ``.func.gii``'s data arrays (one 2-D array or one 1-D array per time point)."""
    if not dims:
        raise DataError(f"{path} holds no data array", path=str(path))
    if len(dims) == 1 and len(dims[0]) == 2:
        return dims[0][0], dims[0][1], True
    if any(len(d) != 1 or d != dims[0] for d in dims):
        raise DataError(
            f"{path}: expected one vertex array per time point",
            fix="give a .func.gii time series",
            path=str(path),
        )
    return dims[0][0], len(dims), False


def load_gifti_pair(left: str | Path) -> SurfaceBold:
    """Read a run's two hemispheres (``left`` names the ``hemi-L`` file)."""
    paths = gifti_pair(left)
    series = [_gifti_series(p) for p in paths]
    if series[0].shape[0] != series[1].shape[0]:
        raise DataError(
            f"{paths[0].name} has {series[0].shape[0]} volumes but "
            f"{paths[1].name} has {series[1].shape[0]}",
            fix="give the two hemispheres of the same run",
            path=str(paths[1]),
        )
    sizes = [s.shape[1] for s in series]
    structure = np.array([CORTEX["L"]] * sizes[0] + [CORTEX["R"]] * sizes[1])
    vertex = np.concatenate([np.arange(n) for n in sizes])
    data = np.hstack(series)
    return SurfaceBold(
        data=data,
        structure=structure,
        vertex=vertex,
        ijk=np.full((data.shape[1], 3), -1),
        valid=_valid(data, paths[0]),
        mesh_size={CORTEX["L"]: sizes[0], CORTEX["R"]: sizes[1]},
    )


def read_dtseries_header(path: str | Path) -> tuple[CiftiFile, int, int]:
    """A CIFTI-2 dense time series' header and maps (its data not read): the file, the
    index of its series dimension and of its brain-model dimension."""
    path = Path(path)
    try:
        cifti = read_cifti(path)
    except Exception as exc:
        raise DataError(
            f"{path} cannot be read as CIFTI-2 ({exc})",
            fix="give fMRIPrep's --cifti-output .dtseries.nii",
            path=str(path),
        ) from exc
    kinds = [m.kind for m in cifti.maps]
    if "SERIES" not in kinds or "BRAIN_MODELS" not in kinds:
        raise DataError(
            f"{path} is not a dense time series (axes: {', '.join(map(axis_name, kinds))})",
            fix="give a .dtseries.nii (a series axis and a brain-model axis)",
            path=str(path),
        )
    return cifti, kinds.index("SERIES"), kinds.index("BRAIN_MODELS")


def dtseries_step(cifti: CiftiFile, series_dim: int) -> float | None:
    """The time between scans a dtseries states (None unless its unit is seconds)."""
    _, step, _, unit = cifti.maps[series_dim].series()
    return float(step) if unit.upper() == "SECOND" else None


def load_cifti_dtseries(path: str | Path) -> SurfaceBold:
    """Read a CIFTI-2 dense time series (``.dtseries.nii``: a series and a brain-model axis)."""
    path = Path(path)
    cifti, series_dim, model_dim = read_dtseries_header(path)
    try:
        bm = cifti.maps[model_dim].brain_models()
        data = cifti.data(np.float64)
    except Exception as exc:
        raise DataError(
            f"{path} cannot be read as CIFTI-2 ({exc})",
            fix="give fMRIPrep's --cifti-output .dtseries.nii",
            path=str(path),
        ) from exc
    if series_dim == 1:
        data = data.T
    has_voxels = bool(bm.volume_mask.any())
    return SurfaceBold(
        data=data,
        structure=bm.structure,
        vertex=bm.vertex,
        ijk=bm.ijk,
        mesh_size=dict(bm.mesh_size),
        valid=_valid(data, path),
        step=dtseries_step(cifti, series_dim),
        volume_affine=bm.affine if has_voxels else None,
        volume_shape=bm.volume_shape if has_voxels else None,
    )


def read_dlabel(path: str | Path) -> tuple[np.ndarray, dict[int, str], BrainModels]:
    """A CIFTI ``.dlabel.nii``: the label of each grayordinate (first map), the label
    table of that map (key -> name) and the grayordinates."""
    path = Path(path)
    try:
        cifti = read_cifti(path)
        kinds = [m.kind for m in cifti.maps]
        if len(kinds) != 2 or kinds[0] != "LABELS" or kinds[1] != "BRAIN_MODELS":
            raise DataError(
                f"{path} is not a label file (axes: {', '.join(map(axis_name, kinds))})",
                fix="give a .dlabel.nii",
                path=str(path),
            )
        models = cifti.maps[1].brain_models()
        table = cifti.maps[0].label_tables()[0]
        values = cifti.data()[0]
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{path} cannot be read as a CIFTI dlabel ({exc})",
            fix="give a .dlabel.nii",
            path=str(path),
        ) from exc
    return values, table, models


def _valid(data: np.ndarray, path: Path) -> np.ndarray:
    finite = np.isfinite(data).all(axis=0)
    varies = data.max(axis=0) > data.min(axis=0)  # as ptp > 0, without copying the data
    n_nan = int((~finite).sum())
    if n_nan:
        warnings.warn(
            f"{path.name}: {n_nan} sample(s) with NaN/inf values left out",
            RuntimeWarning,
            stacklevel=3,
        )
    return finite & varies


def gifti_header(path: Path) -> tuple[int, int, float | None]:
    """Vertices, time points and ``TimeStep`` (s, from the first array's metadata; None if
    absent) of a ``.func.gii``, from its XML alone: no data array is decoded."""
    dims: list[tuple[int, ...]] = []
    step = None
    meta: dict[str, str] = {}
    try:
        for event, elem in ET.iterparse(str(path), events=("start", "end")):
            tag = elem.tag
            if event == "start" and tag == "DataArray":
                a = elem.attrib
                dims.append(tuple(int(a[f"Dim{k}"]) for k in range(int(a["Dimensionality"]))))
            elif event == "end" and len(dims) == 1 and tag in ("Name", "Value"):
                meta[tag] = elem.text or ""
            elif event == "end" and tag == "MD" and len(dims) == 1:
                if meta.get("Name") == "TimeStep" and meta.get("Value"):
                    step = float(meta["Value"]) / 1000.0  # GIFTI TimeStep: ms
                meta = {}
            elif event == "end" and tag in ("Data", "DataArray"):
                elem.clear()  # the encoded data are not kept
    except Exception as exc:
        raise DataError(
            f"{path} cannot be read as GIFTI ({exc})",
            fix="check the file (fMRIPrep .func.gii)",
            path=str(path),
        ) from exc
    n_vertices, n_scans, _ = _gifti_layout(path, dims)
    return n_vertices, n_scans, step


def surface_bold_info(path: str | Path, space: str) -> tuple[int, int, float | None]:
    """Samples, scans and stated time step (s) of a run's surface BOLD, with the checks of
    :func:`load_surface_bold` that need no data (both hemispheres there with as many
    volumes, the density of ``space``, a CIFTI series and brain-model map), from the
    files' headers: the data are read once, by the run's preparation."""
    kind = surface_kind(space)
    if kind == "gifti":
        paths = gifti_pair(path)
        (nl, tl, step), (nr, tr, _) = (gifti_header(p) for p in paths)
        if tl != tr:
            raise DataError(
                f"{paths[0].name} has {tl} volumes but {paths[1].name} has {tr}",
                fix="give the two hemispheres of the same run",
                path=str(paths[1]),
            )
        _check_density(path, space, [nl, nr])
        return nl + nr, tl, step
    if kind == "cifti":
        cifti, series_dim, model_dim = read_dtseries_header(path)
        try:
            n_samples = cifti.maps[model_dim].brain_models().vertex.size
        except Exception as exc:
            raise DataError(
                f"{path} cannot be read as CIFTI-2 ({exc})",
                fix="give fMRIPrep's --cifti-output .dtseries.nii",
                path=str(path),
            ) from exc
        return n_samples, cifti.shape[series_dim], dtseries_step(cifti, series_dim)
    raise ValueError(f"{space} is not a surface space")


def _check_density(path: str | Path, space: str, sizes: list[int]) -> None:
    expected = FSAVERAGE_VERTICES[space]
    if sorted(set(sizes)) != [expected]:
        raise DataError(
            f"{Path(path).name} has {sorted(set(sizes))} vertices per hemisphere, {space} has "
            f"{expected}",
            fix="choose --space to match the file's density",
            path=str(path),
        )


def load_surface_bold(path: str | Path, space: str) -> tuple[SurfaceBold, SampleGeometry]:
    """Read a run's surface BOLD (``hemi-L`` GIFTI of a pair, or a CIFTI dtseries)."""
    kind = surface_kind(space)
    if kind == "gifti":
        bold = load_gifti_pair(path)
        _check_density(path, space, list(bold.mesh_size.values()))
        affine = shape = None
    elif kind == "cifti":
        bold = load_cifti_dtseries(path)  # the file is read (and its axes built) once
        affine, shape = bold.volume_affine, bold.volume_shape
    else:
        raise ValueError(f"{space} is not a surface space")
    geometry = SampleGeometry(
        kind=kind,
        space=space,
        structure=bold.structure,
        vertex=bold.vertex,
        ijk=bold.ijk,
        mesh_size=bold.mesh_size,
        volume_affine=affine,
        volume_shape=shape,
        den=_entity(Path(path).name, "den"),
    )
    return bold, geometry


def _entity(name: str, key: str) -> str | None:
    """The value of a BIDS entity in a file name (None if absent)."""
    for part in name.split(".")[0].split("_"):
        if part.startswith(key + "-"):
            return part[len(key) + 1 :]
    return None


def load_surface_map(path: str | Path) -> tuple[nib.Nifti1Image, SampleGeometry]:
    """A map written for surface data (``hemi-L`` ``.shape.gii`` of a pair, or a
    ``.dscalar.nii``) as a surface NIfTI of samples, with its geometry."""
    from bids_hrf.surface.samples import sample_image

    path = Path(path)
    space = _entity(path.name, "space") or ""
    if path.name.endswith(".gii"):
        left, right = gifti_pair(path)
        parts = []
        for p in (left, right):
            try:
                parts.append(np.asarray(nib.load(str(p)).darrays[0].data, dtype=float))
            except Exception as exc:
                raise DataError(f"{p} cannot be read as GIFTI ({exc})", path=str(p)) from exc
        sizes = [part.size for part in parts]
        geometry = SampleGeometry(
            kind="gifti",
            space=space,
            structure=np.array([CORTEX["L"]] * sizes[0] + [CORTEX["R"]] * sizes[1]),
            vertex=np.concatenate([np.arange(n) for n in sizes]),
            ijk=np.full((sum(sizes), 3), -1),
            mesh_size={CORTEX["L"]: sizes[0], CORTEX["R"]: sizes[1]},
        )
        return sample_image(np.concatenate(parts)), geometry
    try:
        cifti = read_cifti(path)
        if len(cifti.maps) != 2 or cifti.maps[1].kind != "BRAIN_MODELS":
            raise ValueError("its second axis is not a brain-model axis")
        model = cifti.maps[1].brain_models()
        values = cifti.data(np.float64)[0]
    except Exception as exc:
        raise DataError(
            f"{path} cannot be read as a CIFTI dscalar ({exc})", path=str(path)
        ) from exc
    has_voxels = bool(model.volume_mask.any())
    geometry = SampleGeometry(
        kind="cifti",
        space=space,
        structure=model.structure,
        vertex=model.vertex,
        ijk=model.ijk,
        mesh_size=dict(model.mesh_size),
        volume_affine=model.affine if has_voxels else None,
        volume_shape=model.volume_shape if has_voxels else None,
        den=_entity(path.name, "den"),
    )
    return sample_image(values), geometry
