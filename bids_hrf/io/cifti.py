"""CIFTI-2 files read straight from their NIfTI-2 header and XML extension (issue 12).

nibabel builds a CIFTI file's brain-model axis element by element in Python: its parser
inserts each voxel's indices one at a time, ``Cifti2Image`` rebuilds every axis in its
constructor to check the data shape, and each ``header.get_axis`` builds them again (about
1-2 s per file at 91k grayordinates). Reading a run needs none of those objects: the
structure, vertex and voxel of each grayordinate and the series' time step are a few
attributes and index lists of the XML, parsed here with :mod:`xml.etree` and numpy, and the
data are the NIfTI-2 array (read through nibabel's array proxy, so scaling and byte order
are nibabel's). ``tests/test_cifti_reader.py`` checks every field against nibabel's axes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

CIFTI_ECODE = 32  # NIfTI extension code of CIFTI-2
SURFACE = "CIFTI_MODEL_TYPE_SURFACE"


@dataclass(frozen=True)
class BrainModels:
    """The brain-model map of a CIFTI file: where each grayordinate comes from.

    The fields are those of nibabel's ``BrainModelAxis`` (``name``, ``vertex``, ``voxel``,
    ``nvertices``, ``affine``, ``volume_shape``), as plain arrays.

    Attributes
    ----------
    structure : ndarray (n,) of str
        ``CIFTI_STRUCTURE_*`` name of each grayordinate.
    vertex : ndarray (n,) of int
        Vertex index in its surface (-1 for voxels).
    ijk : ndarray (n, 3) of int
        Voxel indices (-1 for vertices).
    mesh_size : dict of str to int
        ``SurfaceNumberOfVertices`` of each surface structure.
    affine : ndarray (4, 4) or None
        Voxel indices to millimetres (None without voxels).
    volume_shape : tuple of int or None
    """

    structure: np.ndarray
    vertex: np.ndarray
    ijk: np.ndarray
    mesh_size: dict = field(default_factory=dict)
    affine: np.ndarray | None = None
    volume_shape: tuple | None = None

    @property
    def volume_mask(self) -> np.ndarray:
        """Grayordinates that are voxels."""
        return self.vertex < 0


@dataclass(frozen=True)
class CiftiMap:
    """One ``MatrixIndicesMap`` of a CIFTI file (the axis of one data dimension).

    Attributes
    ----------
    kind : str
        ``IndicesMapToDataType`` without its prefix: ``SERIES``, ``BRAIN_MODELS``,
        ``SCALARS``, ``LABELS`` or ``PARCELS``.
    element : xml.etree.ElementTree.Element
        The map's XML element (its attributes and children, for what is not parsed here).
    """

    kind: str
    element: ET.Element

    def series(self) -> tuple[float, float, int, str]:
        """Start, step (both times ``10**SeriesExponent``), points and unit of a series."""
        a = self.element.attrib
        scale = 10.0 ** int(a.get("SeriesExponent", 0))
        return (
            float(a["SeriesStart"]) * scale,
            float(a["SeriesStep"]) * scale,
            int(a["NumberOfSeriesPoints"]),
            a["SeriesUnit"],
        )

    def label_tables(self) -> list[dict[int, str]]:
        """The label table (key -> name) of each named map of a ``LABELS`` map."""
        tables = []
        for named in self.element.findall("NamedMap"):
            table = named.find("LabelTable")
            labels = [] if table is None else table.findall("Label")
            tables.append({int(lab.attrib["Key"]): (lab.text or "") for lab in labels})
        return tables

    def brain_models(self) -> BrainModels:
        """The grayordinates of a ``BRAIN_MODELS`` map."""
        models = self.element.findall("BrainModel")
        n = sum(int(bm.attrib["IndexCount"]) for bm in models)
        structure = np.empty(n, dtype=object)
        vertex = np.full(n, -1, dtype=int)
        ijk = np.full((n, 3), -1, dtype=int)
        mesh_size: dict[str, int] = {}
        for bm in models:
            a = bm.attrib
            start, count = int(a["IndexOffset"]), int(a["IndexCount"])
            stop = start + count
            if stop > n:
                raise ValueError(
                    f"brain model {a['BrainStructure']} ends at {stop}, past the "
                    f"{n} grayordinates of the map"
                )
            structure[start:stop] = a["BrainStructure"]
            if a["ModelType"] == SURFACE:
                vertex[start:stop] = _indices(bm.find("VertexIndices"), count, 1)[:, 0]
                mesh_size[a["BrainStructure"]] = int(a["SurfaceNumberOfVertices"])
            else:
                ijk[start:stop] = _indices(bm.find("VoxelIndicesIJK"), count, 3)
        if any(s is None for s in structure):
            raise ValueError("the brain models do not cover every grayordinate of the map")
        affine = shape = None
        volume = self.element.find("Volume")
        if volume is not None and (vertex < 0).any():
            shape = tuple(int(x) for x in volume.attrib["VolumeDimensions"].split(","))
            matrix = volume.find("TransformationMatrixVoxelIndicesIJKtoXYZ")
            affine = np.array(matrix.text.split(), dtype=float).reshape(4, 4)
        return BrainModels(
            structure=structure.astype(str),
            vertex=vertex,
            ijk=ijk,
            mesh_size=mesh_size,
            affine=affine,
            volume_shape=shape,
        )


AXIS_NAMES = {
    "SERIES": "SeriesAxis",
    "BRAIN_MODELS": "BrainModelAxis",
    "SCALARS": "ScalarAxis",
    "LABELS": "LabelAxis",
    "PARCELS": "ParcelsAxis",
}


def axis_name(kind: str) -> str:
    """nibabel's axis class for an index-map kind (the name users of nibabel know)."""
    return AXIS_NAMES.get(kind, kind)


def _indices(element: ET.Element | None, count: int, width: int) -> np.ndarray:
    """The whitespace-separated integers of an index list, as ``count`` rows of ``width``."""
    text = "" if element is None or element.text is None else element.text
    values = np.array(text.split(), dtype=int)
    if values.size != count * width:
        raise ValueError(f"an index list holds {values.size} numbers, {count * width} expected")
    return values.reshape(count, width)


@dataclass(frozen=True)
class CiftiFile:
    """A CIFTI-2 file's NIfTI-2 header and index maps; its data are read on demand.

    Attributes
    ----------
    path : Path
    header : nibabel.Nifti2Header
        The 540-byte NIfTI-2 header (extensions not attached).
    maps : tuple of CiftiMap
        The index map of each data dimension (CIFTI dimension 0 = rows).
    """

    path: Path
    header: nib.Nifti2Header
    maps: tuple

    @property
    def shape(self) -> tuple[int, ...]:
        """The CIFTI matrix shape (one entry per index map)."""
        return tuple(int(s) for s in self.header.get_data_shape()[4:])

    def data(self, dtype: type = np.float64) -> np.ndarray:
        """The data matrix (rows = CIFTI dimension 0), scaled as nibabel does."""
        proxy = nib.arrayproxy.ArrayProxy(str(self.path), self.header)
        return np.asarray(proxy, dtype=dtype).reshape(self.shape)


def read_cifti(path: str | Path) -> CiftiFile:
    """Read a CIFTI-2 file's header and index maps (not its data).

    Raises
    ------
    ValueError
        Not a NIfTI-2 file, no CIFTI-2 extension, or an XML that does not give one index
        map per data dimension.
    """
    path = Path(path)
    with path.open("rb") as fh:
        block = fh.read(540)
        header = _nifti2_header(block)
        xml = _cifti_extension(fh, header)
    root = ET.fromstring(xml)
    matrix = root.find("Matrix")
    if matrix is None:
        raise ValueError("the CIFTI-2 XML has no Matrix element")
    shape = tuple(int(s) for s in header.get_data_shape()[4:])
    maps: list[CiftiMap | None] = [None] * len(shape)
    for mim in matrix.findall("MatrixIndicesMap"):
        kind = mim.attrib["IndicesMapToDataType"].replace("CIFTI_INDEX_TYPE_", "")
        for dim in mim.attrib["AppliesToMatrixDimension"].split(","):
            d = int(dim)
            if not 0 <= d < len(shape):
                raise ValueError(
                    f"an index map applies to dimension {d} of a {len(shape)}-D matrix"
                )
            maps[d] = CiftiMap(kind, mim)
    if any(m is None for m in maps):
        raise ValueError(
            f"the CIFTI-2 XML maps {sum(m is not None for m in maps)} of the "
            f"{len(shape)} data dimensions"
        )
    return CiftiFile(path=path, header=header, maps=tuple(maps))


def _nifti2_header(block: bytes) -> nib.Nifti2Header:
    if len(block) < 540:
        raise ValueError("shorter than a NIfTI-2 header")
    for endian in ("<", ">"):
        if int(np.frombuffer(block[:4], dtype=f"{endian}i4")[0]) == 540:
            return nib.Nifti2Header(block, endianness=endian, check=False)
    raise ValueError("not a NIfTI-2 file (sizeof_hdr is not 540)")


def _cifti_extension(fh, header: nib.Nifti2Header) -> bytes:
    """The XML of the CIFTI-2 extension (the header's extensions follow its 540 bytes)."""
    extender = fh.read(4)
    if len(extender) < 4 or extender[0] == 0:
        raise ValueError("no NIfTI extension (a CIFTI-2 file carries its XML in one)")
    end = int(header["vox_offset"])
    endian = header.endianness
    while fh.tell() + 8 <= end:
        esize, ecode = (int(x) for x in np.frombuffer(fh.read(8), dtype=f"{endian}i4"))
        if esize < 8:
            break
        content = fh.read(esize - 8)
        if ecode == CIFTI_ECODE:
            return content.rstrip(b"\x00")
    raise ValueError("no CIFTI-2 extension (code 32) in the NIfTI-2 header")
