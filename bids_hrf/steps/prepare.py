"""File-level steps before HRF estimation: atlas, confounds, parcel time series.

Each step reads its input files, calls the numerical core, and writes its results into a
working folder (a nipype node folder); nothing here writes into OUTPUT_DIR.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn.image import resample_to_img
from nilearn.masking import unmask

from bids_hrf.atlas import Atlas, resample_atlas, resolve_atlas
from bids_hrf.confounds import ConfoundsResult, load_run_confounds
from bids_hrf.errors import DataError
from bids_hrf.options import PrepareOptions
from bids_hrf.reports.figures_data import carpet_rows
from bids_hrf.steps.surface import surface_atlas_step, surface_samples_step
from bids_hrf.surface.samples import surface_kind
from bids_hrf.timeseries import extract_parcel_timeseries, masked_voxel_data

LOGGER = logging.getLogger("bids_hrf")


_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])
# nilearn's notes about its own expected behaviour, not about the user's data
_QUIET_WARNINGS = ("Cosine filter(s) exist",)


@contextlib.contextmanager
def relay_warnings(where: str) -> Iterator[None]:
    """Log the warnings of bids_hrf's own modules (skipped voxels, dropped parcels...) on the
    ``bids_hrf`` logger, which the command line shows; other libraries' stay quiet."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen: set[str] = set()
            for w in caught:
                text = str(w.message)
                if str(w.filename).startswith(_PACKAGE_DIR) and text not in seen \
                        and issubclass(w.category, UserWarning) \
                        and not text.startswith(_QUIET_WARNINGS):
                    seen.add(text)
                    LOGGER.warning("%s: %s", where, text)


def open_img(path: str | Path, what: str = "image"):
    """Open a NIfTI image without reading its data (read later in chunks, see
    :func:`bids_hrf.timeseries.masked_rows`); a missing or unreadable header is a
    :class:`DataError` naming the file."""
    try:
        return nib.load(str(path))
    except FileNotFoundError as exc:
        raise DataError(f"{what} {path} is missing", fix="restore the file",
                        path=str(path)) from exc
    except Exception as exc:
        raise DataError(f"{what} {path} cannot be read ({type(exc).__name__}: {exc})",
                        fix="the file is corrupted or not NIfTI: restore it",
                        path=str(path)) from exc


def load_img(path: str | Path, what: str = "image"):
    """Load a NIfTI image with its data in memory.

    Reading the data here (not lazily later) turns a truncated or corrupted file into one
    clear :class:`DataError` naming it, instead of a failure deep inside a computation.
    """
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except FileNotFoundError as exc:
        raise DataError(f"{what} {path} is missing", fix="restore the file",
                        path=str(path)) from exc
    except Exception as exc:
        raise DataError(f"{what} {path} cannot be read ({type(exc).__name__}: {exc})",
                        fix="the file is corrupted or not NIfTI: restore it",
                        path=str(path)) from exc
    return nib.Nifti1Image(data, img.affine, img.header)


def read_labels_tsv(path: str | Path) -> tuple[dict[int, str], dict[int, str] | None]:
    """Read a labels TSV written by :func:`write_labels_tsv`."""
    table = pd.read_csv(path, sep="\t", dtype={"name": str})
    labels = {int(i): str(n) for i, n in zip(table["index"], table["name"], strict=True)}
    networks = None
    if "network" in table.columns:
        networks = {int(i): str(n) for i, n in zip(table["index"], table["network"], strict=True)
                    if isinstance(n, str) and n}
    return labels, networks


def write_labels_tsv(path: str | Path, labels: dict[int, str],
                     networks: dict[int, str] | None = None) -> Path:
    """Write parcel labels as a BIDS dseg-style TSV (index, name[, network])."""
    rows = {"index": list(labels), "name": [labels[i] for i in labels]}
    if networks:
        rows["network"] = [networks.get(i, "n/a") for i in labels]
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return Path(path)


def resolve_atlas_step(atlas_spec: str, atlas_labels: str | None, space: str,
                       reference: dict, out_dir: str | Path, nprocs: int = 1) -> dict:
    """Resolve ``--atlas`` once for a subject/session/task group of runs.

    ``reference`` is the group's first run (``bold``, ``mask``): its grid (and, for
    ``data-driven:N``, its data) define the atlas.

    Returns
    -------
    dict
        ``atlas`` (NIfTI path), ``labels`` (TSV path), ``name`` (BIDS label of the atlas),
        ``source`` (where it came from).
    """
    out_dir = Path(out_dir)
    bold, mask = reference["bold"], reference["mask"]
    if surface_kind(space):
        return surface_atlas_step(atlas_spec, atlas_labels, space, bold, out_dir)
    if atlas_spec.startswith("data-driven"):
        bold_img, mask_img = load_img(bold, "BOLD image"), load_img(mask, "brain mask")
    else:  # only the header (voxel size) is used to pick a TemplateFlow resolution
        bold_img, mask_img = nib.load(str(bold)), None
    atlas = resolve_atlas(atlas_spec, labels_tsv=atlas_labels, space=space,
                          bold_img=bold_img, mask_img=mask_img, n_jobs=nprocs)
    if not atlas_spec.startswith("data-driven"):
        _check_atlas_overlap(atlas.img, mask, atlas_spec, space)
    atlas_path = out_dir / "atlas.nii.gz"
    nib.save(atlas.img, str(atlas_path))
    labels_path = write_labels_tsv(out_dir / "labels.tsv", atlas.labels, atlas.networks)
    return {"atlas": str(atlas_path), "labels": str(labels_path), "name": atlas.name,
            "source": atlas.source}


def _check_atlas_overlap(atlas_img, mask: str, atlas_spec: str, space: str) -> None:
    """An atlas that misses the brain mask entirely is in another space: say so, naming
    the user's atlas (not a working copy)."""
    mask_img = load_img(mask, "brain mask")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_mask = resample_to_img(atlas_img, mask_img, interpolation="nearest",
                                  force_resample=True, copy_header=True)
    labels = np.asarray(on_mask.dataobj)
    inside = np.asarray(mask_img.dataobj) > 0
    if not (labels[inside] != 0).any():
        raise DataError(f"--atlas {atlas_spec} does not overlap the brain mask {Path(mask).name}"
                        f" at all: it is not in space {space}",
                        fix=f"give an atlas in space {space} (the space of the preprocessed "
                            "BOLD, see --space) or use --atlas data-driven:N")


def prepare_run_step(run: dict, atlas: dict, options: PrepareOptions,
                     out_dir: str | Path) -> dict:
    """Confounds, atlas on the BOLD grid, and cleaned parcel time series of one run.

    Parameters
    ----------
    run : dict
        The run's inputs (``bold``, ``mask``, ``tr``).
    atlas : dict
        :func:`resolve_atlas_step`'s result (``atlas``, ``labels``, ``name``).
    options : PrepareOptions
        Confounds, dummy scans, scrubbing threshold, high-pass, smallest parcel.
    out_dir : path
        Working folder of the step.

    See :func:`_prepare_run` for the outputs; warnings (dropped voxels and parcels) are
    logged.
    """
    with relay_warnings(Path(run["bold"]).name):
        return _prepare_run(run, atlas, options, Path(out_dir))


def _prepare_run(run: dict, atlas: dict, options: PrepareOptions, out_dir: Path) -> dict:
    """Confounds, atlas on the BOLD grid, and cleaned parcel time series of one run.

    Returns
    -------
    dict
        Paths: ``confounds`` (TSV of the selected confounds, all volumes), ``sample_mask``
        (JSON list of kept volumes or null), ``fd`` (TSV), ``atlas_bold`` (labels on the BOLD
        grid), ``labels`` (TSV of kept parcels), ``coverage`` (TSV), ``timeseries`` (TSV),
        ``mean_bold`` (mean volume) and ``carpet`` (NPY of :func:`carpet_rows`) for the report;
        and ``n_dummy``, ``n_kept``, ``confounds_description``, ``dropped_parcels``.
    """
    samples = {}
    if surface_kind(options.space):
        # surface data become samples of a surface NIfTI, read below like voxels
        samples = surface_samples_step(run, options.space, out_dir)
        run = {**run, "bold": samples["bold"], "mask": samples["mask"]}
    bold, tr = run["bold"], float(run["tr"])
    dummy: int | str = int(options.dummy_scans) if str(options.dummy_scans).isdigit() \
        else "auto"
    conf = load_run_confounds(bold, options.confounds, dummy_scans=dummy,
                              fd_threshold=options.fd_threshold,
                              confounds_file=run.get("confounds") or None)
    bold_img = open_img(bold, "BOLD image")  # data read in chunks when extracting
    mask_img = load_img(run["mask"], "brain mask")
    n_vols = bold_img.shape[3]
    if conf.confounds is not None and len(conf.confounds) != n_vols:
        raise DataError(f"confounds of {Path(bold).name} have {len(conf.confounds)} rows but "
                        f"the BOLD has {n_vols} volumes",
                        fix="use the confounds file made with this BOLD run")
    conf_paths = _write_confounds(conf, n_vols, tr, out_dir)
    resampled, atlas_paths, dropped = _atlas_on_bold(atlas, bold_img, mask_img,
                                                     options.min_parcel_voxels, out_dir)
    voxels = masked_voxel_data(bold_img, mask_img)
    series = extract_parcel_timeseries(
        bold_img, resampled.img, resampled.labels, mask_img,
        confounds=conf.confounds, sample_mask=conf.sample_mask, tr=tr,
        high_pass=options.high_pass or None, voxels=voxels)
    report_paths = _write_report_data(voxels, out_dir)
    del voxels
    ts_path = out_dir / "timeseries.tsv"
    series.to_csv(ts_path, sep="\t", index=False)
    return {
        **conf_paths, **atlas_paths, "timeseries": str(ts_path), **report_paths,
        "n_dummy": int(conf.n_dummy),
        "n_kept": int(len(conf.sample_mask) if conf.sample_mask is not None else n_vols),
        "confounds_description": conf.description,
        "dropped_parcels": dropped, **samples,
    }


def _write_confounds(conf: ConfoundsResult, n_vols: int, tr: float, out_dir: Path) -> dict:
    """Write the confounds table, the kept volumes (with the frame times) and the FD."""
    conf_path = out_dir / "confounds.tsv"
    table = conf.confounds if conf.confounds is not None else pd.DataFrame(index=range(n_vols))
    table.to_csv(conf_path, sep="\t", index=False)
    mask_path = out_dir / "sample_mask.json"
    sample_mask = None if conf.sample_mask is None else [int(i) for i in conf.sample_mask]
    # the run's frame times, built once here and carried to every later step
    frame_times = (np.arange(n_vols) * tr).tolist()
    mask_path.write_text(json.dumps({"sample_mask": sample_mask, "n_dummy": int(conf.n_dummy),
                                     "n_volumes": int(n_vols), "frame_times": frame_times,
                                     "description": conf.description}))
    fd = conf.framewise_displacement
    fd_path = out_dir / "fd.tsv"
    pd.DataFrame({"framewise_displacement": fd if fd is not None else np.full(n_vols, np.nan)}
                 ).to_csv(fd_path, sep="\t", index=False, na_rep="n/a")
    return {"confounds": str(conf_path), "sample_mask": str(mask_path), "fd": str(fd_path)}


def _atlas_on_bold(atlas: dict, bold_img: nib.spatialimages.SpatialImage,
                   mask_img: nib.Nifti1Image, min_voxels: int,
                   out_dir: Path) -> tuple[Atlas, dict, list[str]]:
    """Resample the group's atlas to the run's grid; write it, its kept labels and coverage.

    Returns the atlas on the BOLD grid, the paths written and the names of the parcels
    dropped (too few voxels in the mask).
    """
    labels_map, networks = read_labels_tsv(atlas["labels"])
    atlas_obj = Atlas(img=load_img(atlas["atlas"], "atlas"), labels=labels_map,
                      networks=networks, name=atlas["name"], source=str(atlas["atlas"]))
    resampled, coverage = resample_atlas(atlas_obj, bold_img, mask_img, min_voxels=min_voxels)
    atlas_bold = out_dir / "atlas_bold.nii.gz"
    nib.save(resampled.img, str(atlas_bold))
    kept_labels = write_labels_tsv(out_dir / "labels_kept.tsv", resampled.labels,
                                   resampled.networks)
    coverage_path = out_dir / "coverage.tsv"
    coverage.to_csv(coverage_path, sep="\t", index=False)
    dropped = [str(n) for n, k in zip(coverage["name"], coverage["kept"], strict=True) if not k]
    return resampled, {"atlas_bold": str(atlas_bold), "labels": str(kept_labels),
                       "coverage": str(coverage_path)}, dropped


def _write_report_data(voxels, out_dir: Path) -> dict:
    """What the report draws (mean volume, carpet rows), computed while the BOLD is in
    memory (never reread later)."""
    mean_path = out_dir / "mean_bold.nii.gz"
    nib.save(unmask(voxels.Y.mean(axis=0, dtype=np.float64).astype(np.float32),
                    voxels.mask_img), str(mean_path))
    carpet_path = out_dir / "carpet.npy"
    np.save(carpet_path, carpet_rows(voxels.Y))
    return {"mean_bold": str(mean_path), "carpet": str(carpet_path)}


def read_sample_mask(path: str | Path) -> np.ndarray | None:
    """Read the kept-volume indices written by :func:`prepare_run_step`."""
    data = json.loads(Path(path).read_text())
    mask = data.get("sample_mask")
    return None if mask is None else np.asarray(mask, dtype=int)


def read_frame_times(path: str | Path) -> np.ndarray:
    """Acquisition time (s) of every volume of the run, as :func:`prepare_run_step` wrote
    them (``sample_mask`` output)."""
    return np.asarray(json.loads(Path(path).read_text())["frame_times"], dtype=float)


def read_confounds(path: str | Path) -> pd.DataFrame | None:
    """Read the selected confounds written by :func:`prepare_run_step` (None if empty)."""
    table = pd.read_csv(path, sep="\t")
    return table if table.shape[1] else None
