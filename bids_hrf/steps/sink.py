"""What each step's files become in OUTPUT_DIR: records, then one sink that writes them.

A record names a working file (``src``), the BIDS entities and suffix of its output name,
and the metadata of its sidecar. :func:`sink_step` writes every record atomically through
:mod:`bids_hrf.io.derivatives`, the one place that builds names.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib

from bids_hrf.hrf.registry import get_method
from bids_hrf.io.derivatives import (
    atomic_path,
    bids_label,
    ensure_bidsignore,
    output_entities,
    output_path,
    parse_fragment,
    write_json,
)
from bids_hrf.io.surface_writers import parcel_cifti, parcels_axis, surface_files
from bids_hrf.surface.samples import SampleGeometry, sample_values

STAT_NAMES = {"effect": "effect", "variance": "variance", "z": "z", "p": "p"}


def output(src: str, kind: str, entities: dict, metadata: dict | None = None,
           datatype: str | None = "func") -> dict:
    """Return a record: ``src`` becomes the output ``kind`` (named by
    :data:`bids_hrf.io.derivatives.OUTPUT_NAMES` from ``entities``) with a JSON sidecar."""
    ents, suffix = output_entities(kind, entities)
    return {"src": str(src), "entities": ents, "suffix": suffix,
            "metadata": metadata or {}, "datatype": datatype}


def record(src: str, fragment: str, entities: dict, metadata: dict | None = None,
           datatype: str | None = "func") -> dict:
    """Return a record: ``src`` becomes ``<entities>_<fragment>`` with a JSON sidecar.

    Only for the maps and tables an HRF method names itself (``contrast-a_stat-ppm_statmap``
    keys of :class:`~bids_hrf.hrf.base.HRFEstimate`); every other output goes through
    :func:`output`.
    """
    frag_entities, suffix = parse_fragment(fragment)
    return {"src": str(src), "entities": {**entities, **frag_entities}, "suffix": suffix,
            "metadata": metadata or {}, "datatype": datatype}


def method_label(method: str) -> str:
    """BIDS ``desc`` label of an HRF method (``jde-vem`` -> ``jdevem``)."""
    return bids_label(method).lower() if method else "canonical"


def contrast_records(contrasts: dict, entities: dict, metadata: dict) -> list[dict]:
    """Records of contrast maps (``contrast-<label>_stat-<stat>_statmap``).

    Labels are the contrasts' own (:attr:`bids_hrf.glm.contrasts.ContrastSpec.label`, made
    once by :func:`bids_hrf.conditions.clean_label`); they are not cleaned again here, and
    :func:`bids_hrf.io.derivatives.build_name` rejects one that is not alphanumeric.
    """
    out = []
    for label, paths in contrasts.items():
        ctype = paths.get("type", "t")
        for stat in ("effect", "variance", "stat", "z", "p"):
            if stat not in paths:
                continue
            name = ctype if stat == "stat" else STAT_NAMES[stat]
            meta = {**metadata, "Contrast": label, "ContrastType": ctype,
                    "Statistic": name}
            if "n_runs" in paths:
                meta["NumberOfRunsCombined"] = paths["n_runs"]
            out.append(output(paths[stat], "statmap",
                              {**entities, "contrast": label, "stat": name}, meta))
    return out


def hrf_records(hrf: dict, entities: dict, atlas_name: str, metadata: dict) -> list[dict]:
    """Records of an HRF step's outputs: table, variance, voxel maps, parcel tables."""
    params = json.loads(Path(hrf["parameters"]).read_text())
    desc = method_label(hrf["method"])
    spec = get_method(hrf["method"])
    seg = bids_label(atlas_name)
    table_meta = {
        **metadata, "SamplingPeriod": params["SamplingPeriod"], "HRFMethod": hrf["method"],
        "MethodParameters": params["parameters"],
        "time": {"Description": "time after stimulus onset", "Units": "s"},
        "Columns": "one column per parcel, named by the atlas label",
    }
    out = [record(hrf["hrf"], f"seg-{seg}_desc-{desc}_hrf", entities, table_meta)]
    if hrf.get("hrf_variance"):
        out.append(record(hrf["hrf_variance"], f"seg-{seg}_stat-variance_desc-{desc}_hrf",
                          entities, {**table_meta, "Statistic": "posterior variance"}))
    for item in hrf.get("maps", []):
        ents = dict(entities)
        if item.get("run_entities"):
            ents.update(item["run_entities"])
        frag = item["fragment"]
        if item.get("kind") == "table":
            frag = f"seg-{seg}_desc-{desc}_{bids_label(frag)}"
            out.append(record(item["path"], frag, ents,
                              {**metadata, "HRFMethod": hrf["method"]}))
            continue
        meta = {**metadata, "HRFMethod": hrf["method"]}
        if spec.map_metadata is not None:
            meta.update(spec.map_metadata(frag, params["parameters"]))
        meta.update(item.get("metadata", {}))
        if frag.endswith("_bold"):
            # 4D maps: volumes are scans (activity, denoised, AUC) or HRF samples.
            meta["RepetitionTime"] = (params["SamplingPeriod"] if "Hrf" in frag
                                      else metadata.get("RepetitionTime"))
            meta["TaskName"] = entities.get("task")
        out.append(record(item["path"], frag, ents, meta))
    for item in hrf.get("tables", []):
        frag = f"seg-{seg}_desc-{desc}_{bids_label(item['fragment'])}"
        out.append(record(item["path"], frag, entities,
                          {**metadata, "HRFMethod": hrf["method"]}))
    return out


def sink_step(output_dir: str, records: list[Any], geometry: str | None = None,
              parcels: tuple[str, str] | None = None) -> list[str]:
    """Write records into OUTPUT_DIR (atomic copies plus sidecars); return written paths.

    ``geometry`` (surface runs: the ``.npz`` of :class:`~bids_hrf.surface.samples.
    SampleGeometry`) turns every surface NIfTI into the input's format (GIFTI pair or
    CIFTI, :mod:`bids_hrf.io.surface_writers`); with ``parcels`` (the label of each sample as
    surface NIfTI, and the labels TSV), CIFTI runs' parcel time series and HRF parameter
    tables also become ``.ptseries.nii`` and ``.pscalar.nii``.
    """
    flat: list[dict] = []
    for item in records:
        if isinstance(item, list):
            flat.extend(item)
        elif item:
            flat.append(item)
    written: list[str] = []
    samples = SampleGeometry.load(geometry) if geometry else None
    ensure_bidsignore(output_dir, {rec["suffix"] for rec in flat},
                      _surface_patterns(flat, samples))
    for rec in flat:
        src = Path(rec["src"])
        ext = ".nii.gz" if src.name.endswith(".nii.gz") else src.suffix
        metadata = dict(rec["metadata"])
        if samples is not None:
            metadata.update(spatial_reference(samples))
        if samples is not None and ext in (".nii", ".nii.gz"):
            files = _surface_outputs(rec, samples, output_dir)
        else:
            ents = rec["entities"] if samples is None else _surface_entities(
                rec["entities"], samples)
            dest = output_path(output_dir, ents, rec["suffix"], ext, rec["datatype"])
            with atomic_path(dest) as tmp:
                if ext in (".nii", ".nii.gz"):
                    _write_nifti_with_units(src, tmp, metadata.get("RepetitionTime"))
                else:
                    shutil.copyfile(src, tmp)
            files = [(dest, ext)]
        written += [str(dest) for dest, _ in files]
        if samples is not None and samples.kind == "cifti" and parcels and ext == ".tsv":
            written += _parcel_cifti(rec, samples, parcels, output_dir)
        if not rec.get("sidecar", True):
            continue  # a parcellation's .tsv shares the image's sidecar (a pair's too)
        if rec["suffix"] == "bold" and samples is None:
            # every 4D series we write is unmasked from the brain mask: zero outside it
            metadata.setdefault("SkullStripped", True)
        dest, dest_ext = files[0]
        if samples is not None and samples.kind == "gifti":
            # one sidecar for the pair, without 'hemi' (BIDS inheritance applies it to both)
            dest = output_path(output_dir, _surface_entities(rec["entities"], samples),
                               rec["suffix"], dest_ext, rec["datatype"])
        sidecar = dest.with_name(dest.name[: -len(dest_ext)] + ".json")
        write_json(sidecar, metadata)
        written.append(str(sidecar))
    return written


def _surface_entities(entities: dict, samples: SampleGeometry) -> dict:
    """A CIFTI run's outputs in a space carry its ``den``."""
    add = samples.den and entities.get("space")
    return {**entities, **({"den": samples.den} if add else {})}


def _surface_outputs(rec: dict, samples: SampleGeometry,
                     output_dir: str) -> list[tuple[Path, str]]:
    """Write a record's surface NIfTI as GIFTI/CIFTI file(s); return (path, extension)s."""
    src = Path(rec["src"])
    labels = None
    if rec["suffix"] == "dseg":
        for name in ("labels_kept.tsv", "labels.tsv"):
            if (src.parent / name).is_file():
                labels = read_labels(src.parent / name)
                break
    out = []
    for extra, ext, write in surface_files(src, samples, rec["suffix"], labels,
                                           rec["metadata"].get("RepetitionTime")):
        dest = output_path(output_dir, {**_surface_entities(rec["entities"], samples),
                                        **extra}, rec["suffix"], ext, rec["datatype"])
        with atomic_path(dest) as tmp:
            write(tmp)
        out.append((dest, ext))
    return out


#: Parcel tables that get a CIFTI twin: suffix -> (CIFTI kind, extension).
_PARCEL_CIFTI = {"timeseries": ("series", ".ptseries.nii"),
                 "hrfparams": ("scalar", ".pscalar.nii")}


def _parcel_cifti(rec: dict, samples: SampleGeometry, parcels: tuple[str, str],
                  output_dir: str) -> list[str]:
    """Write the CIFTI twin of a parcel table of a CIFTI run (next to the TSV)."""
    import pandas as pd

    if rec["suffix"] not in _PARCEL_CIFTI:
        return []
    kind, ext = _PARCEL_CIFTI[rec["suffix"]]
    table = pd.read_csv(rec["src"], sep="\t")
    wanted = ([str(c) for c in table.columns] if kind == "series"
              else [str(p) for p in table["parcel"]])
    axis = parcels_axis(samples, sample_values(nib.load(parcels[0])).astype(int),
                        read_labels(Path(parcels[1])), wanted)
    if axis is None:
        return []  # a parcel of the table has no sample in the first run's parcellation
    dest = output_path(output_dir, _surface_entities(rec["entities"], samples), rec["suffix"],
                       ext, rec["datatype"])
    with atomic_path(dest) as tmp:
        parcel_cifti(table, kind, axis, rec["metadata"].get("RepetitionTime"))(tmp)
    return [str(dest)]


def _surface_patterns(flat: list[dict], samples: SampleGeometry | None) -> list[str]:
    """.bidsignore patterns of surface files: the BIDS schema (bids-validator 2.x) has no
    rule for surface or CIFTI derivatives, not even fMRIPrep's own
    ``hemi-L_space-fsaverage5_bold.func.gii`` (tests/test_surface_app.py)."""
    if samples is None:
        return []
    exts = (".shape.gii", ".func.gii", ".label.gii") if samples.kind == "gifti" else (
        ".dscalar.nii", ".dtseries.nii", ".dlabel.nii")
    suffixes = {rec["suffix"] for rec in flat if rec["src"].endswith((".nii", ".nii.gz"))}
    patterns = [f"*_{suffix}{ext}" for suffix in sorted(suffixes) for ext in exts]
    # their sidecars and the parcellation's label table, named without the extension
    # (one space per OUTPUT_DIR: the space is part of the configuration hash, so these
    # patterns hide no volume file; bids-validator does not apply patterns with two
    # wildcards to sidecars of schema suffixes)
    if samples.kind == "cifti":
        patterns += ["*_timeseries.ptseries.nii", "*_hrfparams.pscalar.nii"]
    patterns += [f"*_{suffix}.json" for suffix in sorted(suffixes)]
    return patterns + (["*_dseg.tsv"] if "dseg" in suffixes else [])


_TEMPLATEFLOW = "https://templateflow.s3.amazonaws.com"


def spatial_reference(samples: SampleGeometry, hemi: str | None = None) -> dict:
    """``SpatialReference`` (and ``Density``) of a surface output's sidecar."""
    if samples.kind == "gifti":
        den = {642: "1k", 2562: "3k", 10242: "10k", 40962: "41k", 163842: "164k"}.get(
            max(samples.mesh_size.values()), "")
        sphere = "tpl-fsaverage/tpl-fsaverage_hemi-{}_den-" + den + "_sphere.surf.gii"
        if hemi:
            return {"SpatialReference": f"{_TEMPLATEFLOW}/{sphere.format(hemi)}"}
        return {"SpatialReference": {f"CIFTI_STRUCTURE_CORTEX_{side}": f"{_TEMPLATEFLOW}/"
                                     + sphere.format(h) for h, side in (("L", "LEFT"),
                                                                        ("R", "RIGHT"))}}
    sphere = "tpl-fsLR/tpl-fsLR_hemi-{}_den-32k_sphere.surf.gii"
    ref = {f"CIFTI_STRUCTURE_CORTEX_{side}": f"{_TEMPLATEFLOW}/{sphere.format(h)}"
           for h, side in (("L", "LEFT"), ("R", "RIGHT"))}
    if (samples.vertex < 0).any():
        ref["VolumeReference"] = (f"{_TEMPLATEFLOW}/tpl-MNI152NLin6Asym/"
                                  "tpl-MNI152NLin6Asym_res-02_T1w.nii.gz")
    density = {"91k": "91,282 grayordinates: 32k vertices per hemisphere (medial wall "
                      "excluded) and 2 mm subcortical voxels",
               "170k": "170,494 grayordinates: 59k vertices per hemisphere and 1.6 mm "
                       "subcortical voxels"}
    out = {"SpatialReference": ref}
    if samples.den:
        out["Density"] = density.get(samples.den, f"{samples.n_samples} grayordinates")
    return out


def read_labels(path: Path) -> dict[int, str]:
    """Parcel names of a labels TSV (``index``, ``name``)."""
    import pandas as pd

    table = pd.read_csv(path, sep="\t", dtype={"name": str})
    return {int(i): str(n) for i, n in zip(table["index"], table["name"], strict=True)}


def _write_nifti_with_units(src: Path, dest: Path, tr: float | None) -> None:
    """Copy a NIfTI, giving it spatial (mm) and temporal (s) units and, for a time series
    with a ``RepetitionTime``, that TR as its 4th voxel size (what the BIDS validator checks).
    Files whose header already says so are copied byte for byte."""
    img = nib.load(str(src))
    header = img.header
    zooms = header.get_zooms()
    want_tr = tr is not None and len(img.shape) == 4
    units_ok = header.get_xyzt_units() == ("mm", "sec")
    tr_ok = not want_tr or abs(float(zooms[3]) - float(tr)) < 1e-6
    if units_ok and tr_ok:
        shutil.copyfile(src, dest)
        return
    header = header.copy()
    header.set_xyzt_units("mm", "sec")
    if want_tr:
        header.set_zooms((*zooms[:3], float(tr), *zooms[4:]))
    # dest is atomic_path's temporary name, which ends like the final one (.nii.gz)
    nib.save(img.__class__(img.dataobj, img.affine, header), str(dest))
