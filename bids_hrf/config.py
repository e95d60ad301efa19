"""One frozen configuration object, built from the command line or the Python API.

The configuration is passed down explicitly (no module reads global state). Its hash, taken
over the settings that change results, is recorded in ``dataset_description.json`` so that
two outputs made with different settings can be told apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_SPACE = "MNI152NLin2009cAsym"
DEFAULT_ATLAS = "data-driven:100"

# Settings that do not change any number in the outputs: left out of the configuration hash,
# so that jobs over different participants (a SLURM array) share one dataset_description.json.
_NOT_HASHED = {
    "bids_dir",
    "output_dir",
    "analysis_level",
    "participant_label",
    "work_dir",
    "nprocs",
    "omp_nthreads",
    "mem_gb",
    "plugin",
    "plugin_args",
    "verbose",
    "stop_on_first_crash",
    "database_path",
    "write_report",
}


@dataclass(frozen=True)
class Config:
    """Every setting of one run of bids_hrf.

    Parameters mirror the command-line options (see ``bids-hrf --help``); paths are
    absolute. Build one with :func:`make_config`, which fills defaults and validates.
    """

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    derivatives: tuple[Path, ...] = ()
    participant_label: tuple[str, ...] = ()
    task: tuple[str, ...] = ()
    space: str = DEFAULT_SPACE
    den: str | None = None
    bids_filters: dict = field(default_factory=dict)
    atlas: str = DEFAULT_ATLAS
    atlas_labels: Path | None = None
    min_parcel_voxels: int = 5
    confounds: str = "simple"
    dummy_scans: str = "auto"
    fd_threshold: float = 0.5
    high_pass: float = 0.01
    smoothing_fwhm: float | None = None
    hrf_method: str = "canonical"
    hrf_model: str = "spm"
    hrf_duration: float = 25.0
    hrf_dt: float | None = None
    noise_model: str = "ar1"
    contrasts: dict | list = field(default_factory=dict)
    contrasts_file: Path | None = None
    events_csv: Path | None = None
    method_options: dict = field(default_factory=dict)
    group_model: str | None = None
    networks: Path | None = None
    work_dir: Path | None = None
    database_path: Path | None = None
    nprocs: int = 1
    omp_nthreads: int | None = None
    mem_gb: float | None = None
    plugin: str | None = None
    plugin_args: dict = field(default_factory=dict)
    verbose: int = 0
    stop_on_first_crash: bool = False
    write_report: bool = True
    group_permutations: int = 0
    group_alpha: float = 0.001
    group_height_control: str = "fpr"
    cluster_threshold: int = 0
    group_fdr: float = 0.05
    connectivity: tuple[str, ...] = ("correlation", "partial correlation", "tangent")
    connectivity_activity: bool = False
    connectivity_task_regression: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as JSON-ready plain types."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [str(v) for v in value]
            out[key] = value
        return out

    def results_dict(self) -> dict[str, Any]:
        """Return the settings that change results (those recorded and hashed)."""
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_HASHED}

    def config_hash(self) -> str:
        """Return a short hash of the settings that change results."""
        payload = json.dumps(self.results_dict(), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def fmriprep_dirs(self) -> tuple[Path, ...]:
        """The derivatives folders searched for preprocessed data."""
        return self.derivatives or (self.bids_dir / "derivatives" / "fmriprep",)

    @property
    def effective_work_dir(self) -> Path:
        """The nipype working directory (stable per output folder, so reruns resume)."""
        if self.work_dir is not None:
            return self.work_dir
        digest = hashlib.sha1(str(self.output_dir).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"bids_hrf_work_{digest}"


def connectivity_kind(name: str) -> str:
    """Connectivity measure named on the command line -> nilearn's kind.

    ``partial-correlation`` (shown in ``--help``), ``partial_correlation`` and nilearn's
    ``partial correlation`` all give ``"partial correlation"``; case is ignored.
    """
    return " ".join(str(name).strip().lower().replace("-", " ").replace("_", " ").split())


def config_field_names() -> list[str]:
    """Return the names of all configuration fields."""
    return [f.name for f in fields(Config)]


def make_config(bids_dir: str | os.PathLike, output_dir: str | os.PathLike,
                analysis_level: str, **options: Any) -> Config:
    """Build a :class:`Config` from plain values, as the Python API entry point.

    Parameters
    ----------
    bids_dir, output_dir : path-like
        Raw BIDS dataset and output folder.
    analysis_level : {"participant", "group"}
        What to run.
    **options
        Any :class:`Config` field, with plain Python types (lists for tuples,
        strings for paths).

    Returns
    -------
    Config
        The validated configuration (see :func:`bids_hrf.io.checks.validate_config`
        for the checks against the file system).
    """
    unknown = set(options) - set(config_field_names())
    if unknown:
        raise TypeError(f"unknown configuration option(s): {', '.join(sorted(unknown))}")
    conv: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            if key in ("participant_label", "task", "derivatives"):
                value = ()
            elif key in ("bids_filters", "contrasts", "method_options", "plugin_args"):
                value = {}
        if key in ("derivatives",) and value:
            value = tuple(Path(v).absolute() for v in value)
        elif key in ("participant_label", "task") and value:
            value = tuple(str(v) for v in value)
        elif key in ("atlas_labels", "contrasts_file", "networks", "work_dir",
                     "database_path", "events_csv") and value is not None:
            value = Path(value).absolute()
        conv[key] = value
    model = conv.get("hrf_model")
    if isinstance(model, str) and model.startswith("file:"):
        # an HRF table: absolute, since nipype steps run in their own folders
        conv["hrf_model"] = "file:" + str(Path(model[5:]).expanduser().absolute())
    atlas = conv.get("atlas")
    if isinstance(atlas, (str, os.PathLike)) and (
            str(atlas).endswith((".nii", ".nii.gz")) or os.sep in str(atlas)
            or Path(atlas).exists()) and not str(atlas).startswith("data-driven"):
        # a file: absolute, since nipype steps run in their own folders
        conv["atlas"] = str(Path(atlas).absolute())
    if "participant_label" in conv:
        conv["participant_label"] = tuple(
            lab[4:] if lab.startswith("sub-") else lab for lab in conv["participant_label"]
        )
    if conv.get("connectivity"):
        conv["connectivity"] = tuple(connectivity_kind(k) for k in conv["connectivity"])
    if "dummy_scans" in conv:
        conv["dummy_scans"] = str(conv["dummy_scans"])
    return Config(bids_dir=Path(bids_dir).absolute(), output_dir=Path(output_dir).absolute(),
                  analysis_level=analysis_level, **conv)
