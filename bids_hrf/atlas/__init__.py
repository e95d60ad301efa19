"""Parcellations: label files, TemplateFlow atlases (offline) and data-driven parcels.

:func:`resolve_atlas` turns the ``--atlas`` argument into an :class:`Atlas`;
:func:`resample_atlas` brings it onto the BOLD grid and returns a coverage table.

Atlas specifications
--------------------
``/path/to/labels.nii.gz``
    A 3D integer label image (0 = background); names from ``labels_tsv``, or from a
    ``.tsv``/``.txt``/``.csv``/``.lut`` file next to it with the same stem (BIDS ``dseg.tsv``
    with ``index``/``name`` columns, or ``<index> <name>`` lines), else the index.
``[Template:]Atlas[:desc][:res]``
    A TemplateFlow atlas, e.g. ``Schaefer2018:400Parcels7Networks`` (template = ``space``),
    read from ``TEMPLATEFLOW_HOME`` without downloading.
``data-driven:N[:ward|kmeans]``
    ``N`` parcels clustered from the run's BOLD data inside its brain mask.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from bids_hrf.atlas.base import Atlas, bids_label, check_label_image, load_label_image
from bids_hrf.atlas.datadriven import data_driven_labels, parse_data_driven_spec
from bids_hrf.atlas.labels import read_label_table, reconcile_labels, schaefer_networks
from bids_hrf.atlas.resample import COVERAGE_COLUMNS, resample_atlas
from bids_hrf.atlas.templateflow import (
    TemplateFlowSpec,
    find_templateflow_atlas,
    parse_templateflow_spec,
    templateflow_home,
)
from bids_hrf.atlas.tools import check_willard
from bids_hrf.errors import DataError, UsageError

__all__ = [
    "COVERAGE_COLUMNS",
    "Atlas",
    "TemplateFlowSpec",
    "bids_label",
    "find_templateflow_atlas",
    "parse_templateflow_spec",
    "read_label_table",
    "resample_atlas",
    "resolve_atlas",
    "templateflow_home",
]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_TABLE_SUFFIXES = (".tsv", ".txt", ".csv", ".lut")


def _is_file_spec(spec: str) -> bool:
    return spec.endswith(_NIFTI_SUFFIXES) or Path(spec).exists() or "/" in spec


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _sidecar_table(path: Path) -> Path | None:
    stem = _stem(path)
    for suffix in _TABLE_SUFFIXES:
        candidate = path.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def _file_atlas_name(path: Path) -> str:
    stem = _stem(path)
    entities = dict(part.split("-", 1) for part in stem.split("_") if "-" in part)
    if "atlas" in entities:
        return bids_label(entities["atlas"] + entities.get("desc", ""))
    if "desc" in entities:
        return bids_label(entities["desc"])
    plain = [part for part in stem.split("_") if "-" not in part and part != "dseg"]
    if plain or not entities:
        return bids_label("".join(plain) if plain else stem)
    bids_keys = {"sub", "ses", "space", "tpl", "res", "den", "cohort", "hemi", "run", "task"}
    return "custom" if set(entities) <= bids_keys else bids_label(stem)


def _load_bold(bold_img, what: str):
    if bold_img is None:
        return None, what
    if isinstance(bold_img, str | Path):
        path = Path(bold_img)
        if not path.is_file():
            raise DataError(f"{what} {path} does not exist", path=str(path))
        return nib.load(str(path)), str(path)
    name = bold_img.get_filename() if hasattr(bold_img, "get_filename") else None
    return bold_img, str(name) if name else what


def _image_labels(img: nib.Nifti1Image) -> list[int]:
    data = np.asanyarray(img.dataobj)
    return [int(v) for v in np.unique(data[data > 0])]


def resolve_atlas(
    spec: str,
    labels_tsv: str | Path | None = None,
    space: str = "MNI152NLin2009cAsym",
    bold_img=None,
    mask_img=None,
    n_jobs: int = 1,
    random_state: int = 0,
    templateflow_dir: str | Path | None = None,
) -> Atlas:
    """Turn an atlas specification into an :class:`Atlas`.

    Parameters
    ----------
    spec : str
        A label image path, a TemplateFlow spec ``[Template:]Atlas[:desc][:res]`` or
        ``data-driven:N[:ward|kmeans]`` (see the module docstring).
    labels_tsv : path-like, optional
        Lookup table of parcel names for a label image (default: a table next to it with
        the same stem, if any).
    space : str, default="MNI152NLin2009cAsym"
        Template of a TemplateFlow spec that names none.
    bold_img : path or nibabel image, optional
        The BOLD run: required for ``data-driven``; for TemplateFlow atlases, the available
        resolution closest to its voxel size is chosen.
    mask_img : path or nibabel image, optional
        The run's brain mask (``data-driven`` parcels are built inside it).
    n_jobs : int, default=1
        Parallel jobs for the data-driven parcellation.
    random_state : int, default=0
        Seed of the data-driven parcellation.
    templateflow_dir : path-like, optional
        TemplateFlow folder (default ``$TEMPLATEFLOW_HOME`` or TemplateFlow's cache).

    Returns
    -------
    Atlas
        On the atlas's own grid (data-driven: the BOLD grid); use :func:`resample_atlas`.

    Raises
    ------
    bids_hrf.errors.NoInputError
        A missing label file, or a TemplateFlow atlas not available offline.
    bids_hrf.errors.DataError
        A corrupted label image or table, non-integer or negative labels, a 4D image.
    bids_hrf.errors.UsageError
        A specification that cannot be parsed.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError("--atlas is empty",
                         fix="give a label image, Atlas:desc (TemplateFlow) or data-driven:N")
    spec = spec.strip()
    if spec.lower().startswith(("data-driven", "datadriven")):
        return _data_driven_atlas(spec, bold_img, mask_img, n_jobs, random_state)
    if _is_file_spec(spec):
        return _file_atlas(Path(spec), labels_tsv)
    home = Path(templateflow_dir) if templateflow_dir is not None else templateflow_home()
    tf_spec = parse_templateflow_spec(spec, space, home)
    target_zoom = None
    ref, _ = _load_bold(bold_img, "BOLD run")
    if ref is not None:
        target_zoom = float(np.mean(ref.header.get_zooms()[:3]))
    image_path, table_path = find_templateflow_atlas(tf_spec, target_zoom, home)
    atlas = _file_atlas(image_path, labels_tsv if labels_tsv is not None else table_path,
                        use_sidecar=False)
    atlas.name = tf_spec.label
    atlas.source = f"templateflow:{tf_spec} ({image_path})"
    return atlas


def _file_atlas(path: Path, labels_tsv, use_sidecar: bool = True) -> Atlas:
    img = check_label_image(load_label_image(path), str(path))
    try:
        check_willard(path.name, img.shape, img.header.get_zooms(), np.asarray(img.dataobj))
    except ValueError as exc:
        raise DataError(str(exc), fix="use the file PyHRF ships (pyhrf 0.5 datafiles) or "
                        "rename your own atlas", path=str(path)) from exc
    image_labels = _image_labels(img)
    table = Path(labels_tsv) if labels_tsv is not None else (
        _sidecar_table(path) if use_sidecar else None)
    labels = networks = None
    if table is not None:
        labels, networks = read_label_table(table, image_labels)
    labels, networks = reconcile_labels(labels, networks, image_labels, str(path))
    if networks is None:
        networks = schaefer_networks(labels)
    return Atlas(img=img, labels=labels, networks=networks, name=_file_atlas_name(path),
                 source=str(path))


def _data_driven_atlas(spec, bold_img, mask_img, n_jobs, random_state) -> Atlas:
    n_parcels, method = parse_data_driven_spec(spec)
    bold, bold_name = _load_bold(bold_img, "BOLD run")
    if bold is None:
        raise ValueError("a data-driven atlas needs the BOLD run (bold_img)")
    mask, _ = _load_bold(mask_img, "brain mask")
    img = data_driven_labels(bold, mask, n_parcels, method=method, random_state=random_state,
                             n_jobs=n_jobs, where=bold_name)
    img = check_label_image(img, f"data-driven parcellation of {bold_name}")
    labels = {i: f"parcel{i:0{len(str(n_parcels))}d}" for i in _image_labels(img)}
    name = f"datadriven{n_parcels}" + ("" if method == "ward" else method)
    return Atlas(img=img, labels=labels, networks=None, name=name,
                 source=f"data-driven:{n_parcels}:{method} ({bold_name})")
