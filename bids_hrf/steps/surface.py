"""File-level steps of surface runs: samples on the mesh and parcellations on the surface.

A surface run (GIFTI pair or CIFTI dtseries) is read once, in its preparation step, and
written as a surface NIfTI of samples (:mod:`bids_hrf.surface.samples`) with its geometry;
every later step reads those like a volume run's BOLD and brain mask.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from bids_hrf.errors import DataError, NoInputError, UsageError
from bids_hrf.io.surface import load_surface_bold, read_dlabel
from bids_hrf.surface.meshes import sample_graph
from bids_hrf.surface.samples import SampleGeometry, sample_image


def surface_samples_step(run: dict, space: str, out_dir: str | Path) -> dict:
    """Write a surface run's samples as surface NIfTI: BOLD, valid-sample mask, geometry.

    Returns
    -------
    dict
        ``bold``, ``mask`` (surface NIfTI paths) and ``geometry`` (``.npz``).
    """
    out_dir = Path(out_dir)
    bold, geometry = load_surface_bold(run["bold"], space)
    if not bold.valid.any():
        raise DataError(f"{Path(run['bold']).name} has no sample with a finite, varying signal",
                        fix="check the file", path=str(run["bold"]))
    # the series uncompressed: gzip took longer than everything else of the step (~4 s
    # per 91k-grayordinate run), and every later step reads it again
    paths = {"bold": out_dir / "samples_bold.nii", "mask": out_dir / "samples_mask.nii.gz",
             "geometry": out_dir / "geometry.npz"}
    img = sample_image(np.where(bold.valid, bold.data, 0.0))
    img.header.set_zooms((1.0, 1.0, 1.0, float(run["tr"])))
    nib.save(img, str(paths["bold"]))
    nib.save(sample_image(bold.valid.astype(np.uint8), dtype=np.uint8), str(paths["mask"]))
    geometry.save(paths["geometry"])
    return {key: str(path) for key, path in paths.items()}


def surface_atlas_step(atlas_spec: str, atlas_labels: str | None, space: str,
                       bold: str, out_dir: str | Path) -> dict:
    """Resolve ``--atlas`` for surface data: label files, CIFTI dlabel or ``data-driven:N``.

    Returns the same record as :func:`bids_hrf.steps.prepare.resolve_atlas_step`: the atlas
    as a surface NIfTI of labels (one per sample of the runs' geometry) and its labels TSV.
    """
    from bids_hrf.atlas.surface import cifti_labels, mesh_clusters, surface_labels
    from bids_hrf.atlas.templateflow import find_surface_templateflow_atlas
    from bids_hrf.steps.prepare import write_labels_tsv

    out_dir = Path(out_dir)
    data, geometry = load_surface_bold(bold, space)
    if atlas_spec.startswith("data-driven"):
        n_parcels = _n_parcels(atlas_spec)
        labels = mesh_clusters(data.data, sample_graph(geometry), data.valid, n_parcels)
        names = {k: f"cluster{k:03d}" for k in range(1, int(labels.max()) + 1)}
        name, source = f"datadriven{n_parcels}", f"data-driven:{n_parcels} (Ward on the mesh)"
    else:
        path = Path(atlas_spec)
        if not path.is_file():
            if path.suffix or "/" in atlas_spec:
                raise NoInputError(f"atlas {atlas_spec} not found", fix="check the path",
                                   path=atlas_spec)
            path = find_surface_templateflow_atlas(atlas_spec, space)
        if path.name.endswith(".dlabel.nii"):
            labels, names = cifti_labels(*read_dlabel(path), data.structure, data.vertex,
                                         data.ijk, data.valid, source=path)
        elif path.name.endswith((".label.gii", ".annot")):
            labels, names = surface_labels(path, data.structure, data.vertex, data.valid)
            labels, names = _structure_parcels(labels, names, data)
        else:
            raise DataError(f"atlas {path.name} is not a surface atlas",
                            fix="give a .dlabel.nii, .label.gii or .annot file for "
                                f"--space {space}", path=str(path))
        name = _atlas_name(path)
        source = str(path)
        if not names:
            raise DataError(f"atlas {path.name} labels no sample of the data",
                            fix="give an atlas of the data's surface space", path=str(path))
    atlas_path = out_dir / "atlas.nii.gz"
    nib.save(sample_image(labels.astype(np.int32), dtype=np.int32), str(atlas_path))
    labels_path = write_labels_tsv(out_dir / "labels.tsv", names)
    geometry.save(out_dir / "geometry.npz")
    return {"atlas": str(atlas_path), "labels": str(labels_path), "name": name,
            "source": source}


def _structure_parcels(labels: np.ndarray, names: dict[int, str], data
                       ) -> tuple[np.ndarray, dict[int, str]]:
    """CIFTI subcortical structures a cortical atlas does not label: one parcel each
    (``thalamus_left``...), so that grayordinate data keep their subcortex."""
    names = dict(names)
    next_label = max(names, default=0) + 1
    for structure in dict.fromkeys(data.structure[data.vertex < 0].tolist()):
        members = (data.structure == structure) & data.valid & (labels == 0)
        if members.any():
            labels = np.where(members, next_label, labels)
            names[next_label] = structure.replace("CIFTI_STRUCTURE_", "").lower()
            next_label += 1
    return labels, names


def _n_parcels(spec: str) -> int:
    parts = spec.split(":")
    try:
        n = int(parts[1])
    except (IndexError, ValueError):
        raise UsageError(f"--atlas {spec}: give the number of parcels, e.g. data-driven:100",
                         fix="use --atlas data-driven:N") from None
    if n < 2:
        raise UsageError(f"--atlas {spec}: at least 2 parcels", fix="use data-driven:N, N >= 2")
    return n


def _atlas_name(path: Path) -> str:
    """A BIDS-like label for an atlas file (its ``atlas-`` entity or its stem)."""
    stem = path.name.split(".")[0]
    for part in stem.split("_"):
        if part.startswith("atlas-"):
            return part[6:]
    for mark in ("lh", "hemi-L"):
        stem = stem.replace(mark, "")
    return "".join(ch for ch in stem if ch.isalnum()) or "atlas"


def read_geometry(prepared: dict) -> SampleGeometry | None:
    """The geometry of a prepared run (None for volume runs)."""
    path = prepared.get("geometry")
    return SampleGeometry.load(path) if path else None
