"""The one place that names and writes BIDS-Derivatives files.

Every output file name is built by :func:`build_name` from BIDS entities in the order of
the BIDS specification; every data file gets a JSON sidecar; every write is atomic
(a temporary file in the same folder, then :func:`os.replace`), so an interrupted run never
leaves a half-written output and concurrent jobs never see one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_hrf import __version__
from bids_hrf.errors import OutputError

PIPELINE_NAME = "bids_hrf"
CODE_URL = "https://github.com/bids-hrf/bids_hrf"

# Entity order of the BIDS specification (derivatives included), then the BEP012-style
# entities of statistical outputs, ``desc`` last as in fMRIPrep's outputs.
ENTITY_ORDER = (
    "sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc", "stain",
    "rec", "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi",
    "space", "seg", "res", "den", "label", "atlas", "roi", "model", "subset", "contrast",
    "stat", "desc",
)

#: What each output is called: kind -> (BIDS suffix, entities the kind adds). Every output
#: is named from this table and the BIDS entities of its run, task or group, through
#: :func:`output_entities` and :func:`build_name` (edit here to rename an output, then
#: BIDSIGNORE_PATTERNS, docs/outputs.md and the output manifest). The voxel maps and
#: tables of the HRF methods are named by the methods (hrf/registry.py).
OUTPUT_NAMES: dict[str, tuple[str, dict[str, str]]] = {
    "parcel_timeseries": ("timeseries", {"stat": "mean"}),
    "parcel_coverage": ("coverage", {}),
    "parcellation": ("dseg", {}),
    "design": ("design", {}),
    "statmap": ("statmap", {}),
    "group_design": ("groupdesign", {}),
    "clusters": ("clusters", {}),
    "connectivity": ("relmat", {}),
    "network_connectivity": ("networks", {}),
    "edges": ("edges", {}),
    "group_hrfs": ("hrf", {}),
    "group_hrf_parameters": ("hrfparams", {}),
    "group_hrf_summary": ("hrfsummary", {}),
    "group_hrf_comparison": ("hrfcomparison", {}),
}

#: Suffixes the BIDS schema of bids-validator expresses for our outputs (derivative BOLD
#: series, parcellations on the BOLD grid, masks): never hidden by .bidsignore, so the
#: validator checks them (tests/test_e2e_cli.py::test_bidsignore_holds_only_what_the_schema_lacks).
SCHEMA_SUFFIXES = frozenset({"bold", "boldref", "dseg", "probseg", "mask"})

# Patterns of our files outside the BIDS schema, listed in .bidsignore (each one in
# docs/outputs.md with the specification it waits for).
BIDSIGNORE_PATTERNS = (
    "*_statmap.nii.gz",
    "*_statmap.json",
    "*_hrf.tsv",
    "*_hrf.json",
    "*_hrfparams.tsv",
    "*_hrfparams.json",
    "*_convergence.tsv",
    "*_convergence.json",
    "*_design.tsv",
    "*_design.json",
    "*_timeseries.tsv",
    "*_timeseries.json",
    "*_coverage.tsv",
    "*_coverage.json",
    "*_relmat.tsv",
    "*_relmat.json",
    "*_clusters.tsv",
    "*_clusters.json",
    "*_edges.tsv",
    "*_edges.json",
    "*_networks.tsv",
    "*_networks.json",
    "*_hrfcomparison.tsv",
    "*_hrfcomparison.json",
    "*_hrfsummary.tsv",
    "*_hrfsummary.json",
    "*_groupdesign.tsv",
    "*_groupdesign.json",
    "*_stat-auc_desc-sparse_bold.nii.gz",
    "*_stat-auc_desc-sparse_bold.json",
    "*.html",
    "*config.toml",
    "group",
)

OUTPUT_README = """# bids_hrf derivatives

Outputs of bids_hrf (https://github.com/bids-hrf/bids_hrf): hemodynamic response
functions per parcel, first-level GLM statistical maps per run and fixed effects across runs,
cleaned parcel time series, and group-level results under `group/`. Every data file has a
JSON sidecar saying how it was made; `sub-<label>.html` and `group.html` are the reports.
See the bids_hrf documentation (docs/outputs.md) for every file pattern.
"""

_LABEL_RE = re.compile(r"[^A-Za-z0-9]")


def bids_label(text: str) -> str:
    """Return ``text`` made into a valid BIDS label (alphanumeric characters only).

    Separators are dropped with the next letter capitalised (``"audio - visual"`` ->
    ``"audioVisual"``, ``"Schaefer2018:400Parcels7Networks"`` ->
    ``"Schaefer2018400Parcels7Networks"``). An empty result raises ``ValueError``.
    """
    parts = [p for p in _LABEL_RE.split(str(text)) if p]
    if not parts:
        raise ValueError(f"cannot make a BIDS label out of {text!r}")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def parse_fragment(fragment: str) -> tuple[dict[str, str], str]:
    """Split ``"contrast-a_stat-z_statmap"`` into entities and suffix.

    Parameters
    ----------
    fragment : str
        Key-value pairs joined by ``_`` and ending with a suffix.

    Returns
    -------
    entities : dict
        The key-value pairs.
    suffix : str
        The last part.
    """
    parts = fragment.split("_")
    suffix = parts[-1]
    entities = {}
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if not sep or not value:
            raise ValueError(f"malformed BIDS fragment {fragment!r}: {part!r} is not key-value")
        entities[key] = value
    return entities, suffix


def output_entities(kind: str, entities: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Entities and suffix of an output of ``kind`` (see :data:`OUTPUT_NAMES`).

    Parameters
    ----------
    kind : str
        A key of :data:`OUTPUT_NAMES`.
    entities : mapping
        The output's own entities (``sub``, ``task``, ``run``, ``space``, ``seg``,
        ``contrast``, ``stat``...).

    Returns
    -------
    entities : dict
        ``entities`` plus those the kind adds.
    suffix : str
        The BIDS suffix.
    """
    try:
        suffix, extra = OUTPUT_NAMES[kind]
    except KeyError:
        raise ValueError(f"unknown output kind {kind!r}; add it to OUTPUT_NAMES") from None
    return {**entities, **extra}, suffix


def build_name(entities: Mapping[str, Any], suffix: str, extension: str) -> str:
    """Return a BIDS file name with entities in specification order.

    Parameters
    ----------
    entities : mapping
        BIDS entities (``sub``, ``ses``, ``task``, ``run``, ``space``, ...). Values of None
        are left out; unknown keys go after the known ones, before ``desc``.
    suffix : str
        The BIDS suffix (``statmap``, ``timeseries``, ``bold``, ...).
    extension : str
        With its leading dot (``.nii.gz``, ``.tsv``, ``.json``).
    """
    present = {k: str(v) for k, v in entities.items() if v is not None and str(v) != ""}
    for key, value in present.items():
        if _LABEL_RE.search(value):
            raise ValueError(f"BIDS entity {key}-{value} is not alphanumeric")
    known = [k for k in ENTITY_ORDER if k in present and k != "desc"]
    other = sorted(k for k in present if k not in ENTITY_ORDER)
    order = known + other + (["desc"] if "desc" in present else [])
    stem = "_".join(f"{k}-{present[k]}" for k in order)
    return f"{stem}_{suffix}{extension}" if stem else f"{suffix}{extension}"


def output_path(output_dir: str | os.PathLike, entities: Mapping[str, Any], suffix: str,
                extension: str, datatype: str | None = "func") -> Path:
    """Return the full output path of a file: ``sub-X/[ses-Y/]<datatype>/<name>``.

    Files without a ``sub`` entity go under ``group/``.
    """
    root = Path(output_dir)
    sub = entities.get("sub")
    if sub:
        folder = root / f"sub-{sub}"
        if entities.get("ses"):
            folder = folder / f"ses-{entities['ses']}"
        if datatype:
            folder = folder / datatype
    else:
        folder = root / "group"
    return folder / build_name(entities, suffix, extension)


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_PART_RE = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[^.]+\.part(\.[a-z]+)*$")
STALE_PART_SECONDS = 24 * 3600


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_parts(output_dir: str | os.PathLike) -> list[Path]:
    """Remove temporary files left by interrupted writes (``kill -9``, node failure).

    A ``.part`` file is stale when the process that made it (its name records host and
    process id) is gone from this host, or when it is older than a day (other hosts).
    Files of live writers, here or on other cluster nodes, are never touched.
    """
    import time

    removed: list[Path] = []
    root = Path(output_dir)
    if not root.is_dir():
        return removed
    now = time.time()
    for path in root.rglob(".*.part*"):
        match = _PART_RE.match(path.name)
        if not match or not path.is_file():
            continue
        try:
            old = now - path.stat().st_mtime > STALE_PART_SECONDS
        except OSError:
            continue
        here = match["host"] == _HOST
        if old or (here and not _pid_alive(int(match["pid"]))):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        owner = f"{_HOST}-{os.getpid()}"
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner}.",
                                       suffix=".part" + "".join(path.suffixes))
        os.close(handle)
    except OSError as exc:
        raise OutputError(f"cannot write into {path.parent}: {exc.strerror}",
                          fix="choose an OUTPUT_DIR you can write to, with free space",
                          path=str(path.parent)) from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise OutputError(f"cannot write {path}: {exc.strerror}",
                          fix="check free space and permissions of OUTPUT_DIR",
                          path=str(path)) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n"
    return write_text(path, text)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_tsv(path: str | os.PathLike, table: pd.DataFrame, index: bool = False) -> Path:
    """Write a table as BIDS TSV (``n/a`` for missing values), atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=index, na_rep="n/a", float_format="%.8g")
    return Path(path)


def write_nifti(path: str | os.PathLike, img) -> Path:
    """Save a nibabel image atomically (compressed when the name ends in .gz)."""
    import nibabel as nib

    with atomic_path(path) as tmp:
        # nibabel chooses compression from the file name: give it one that ends like path.
        nib.save(img, str(tmp))
    return Path(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def dataset_description(config_hash: str, source_datasets: list[str],
                        name: str = "bids_hrf outputs") -> dict[str, Any]:
    """Return the ``dataset_description.json`` content of our derivatives."""
    return {
        "Name": name,
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": PIPELINE_NAME,
                "Version": __version__,
                "CodeURL": CODE_URL,
                "Description": f"configuration hash {config_hash}",
            }
        ],
        "SourceDatasets": [{"URL": s} for s in source_datasets],
        "Authors": ["bids_hrf developers"],
        "HowToAcknowledge": "Please cite bids_hrf and the methods listed in the report.",
    }


def init_output_dir(output_dir: str | os.PathLike, config_hash: str,
                    source_datasets: list[str]) -> None:
    """Create OUTPUT_DIR with ``dataset_description.json`` and ``.bidsignore``.

    Safe for concurrent jobs: both files are written atomically, and jobs with the same
    results configuration write identical content. An existing description made with a
    different configuration hash is kept and a warning is logged by the caller.
    """
    root = Path(output_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {root}: {exc.strerror}",
                          fix="choose a writable OUTPUT_DIR", path=str(root)) from exc
    remove_stale_parts(root)
    desc_path = root / "dataset_description.json"
    if not desc_path.exists():
        write_json(desc_path, dataset_description(config_hash, source_datasets))
    readme = root / "README.md"
    if not readme.exists():
        write_text(readme, OUTPUT_README)
    ignore = root / ".bidsignore"
    wanted = list(BIDSIGNORE_PATTERNS)
    if ignore.exists():
        # patterns an older version wrote for files the schema covers are dropped
        existing = [p for p in ignore.read_text(encoding="utf-8").split()
                    if not _schema_pattern(p)]
        wanted = existing + [p for p in wanted if p not in existing]
        if wanted == existing:
            return
    write_text(ignore, "\n".join(wanted) + "\n")


def _schema_pattern(pattern: str) -> bool:
    """Whether a ``*_<suffix>.<ext>`` pattern hides files of a :data:`SCHEMA_SUFFIXES` kind."""
    return pattern.startswith("*_") and pattern[2:].split(".")[0] in SCHEMA_SUFFIXES


def ensure_bidsignore(output_dir: str | os.PathLike, suffixes: set[str],
                      patterns: list[str] | tuple[str, ...] = ()) -> None:
    """Add ``*_<suffix>.*`` to OUTPUT_DIR/.bidsignore for suffixes outside the BIDS schema.

    Called by the sink for every suffix it writes, so a new kind of output (a method's own
    table) never makes the dataset invalid; ``patterns`` adds explicit ones (surface files
    of suffixes whose NIfTI pattern is listed).
    """
    import fcntl

    ignore = Path(output_dir) / ".bidsignore"
    import hashlib

    digest = hashlib.sha1(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"bids_hrf_bidsignore_{digest}.lock"
    with open(lock_path, "a") as lock:  # concurrent jobs: read-modify-write under a lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            existing = ignore.read_text(encoding="utf-8").split() if ignore.exists() else []
            covered = {p[2:].split(".")[0] for p in existing if p.startswith("*_")}
            new = [f"*_{s}.*" for s in sorted(suffixes)
                   if s not in covered and s not in SCHEMA_SUFFIXES]
            new += [p for p in dict.fromkeys(patterns) if p not in existing and p not in new]
            if new:
                write_text(ignore, "\n".join(existing + new) + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def existing_config_hash(output_dir: str | os.PathLike) -> str | None:
    """Return the configuration hash recorded in OUTPUT_DIR, if any."""
    path = Path(output_dir) / "dataset_description.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        desc = data["GeneratedBy"][0].get("Description", "")
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    match = re.search(r"configuration hash ([0-9a-f]+)", desc)
    return match.group(1) if match else None
