"""Typed options of the non-HRF stages, built once from a :class:`~bids_hrf.config.Config`.

:class:`PrepareOptions` (confounds, parcel series), :class:`GLMOptions` (first-level GLM)
and :class:`GroupOptions` (group level) are frozen dataclasses validated in their
constructors (every problem at once, as :class:`~bids_hrf.errors.UsageError` or
:class:`~bids_hrf.errors.ValidationErrors`). The workflows build them with
``from_config``; they cross nipype as one plain dict each (``to_dict``) and are rebuilt
inside the interface (``from_dict``), so nothing downstream re-validates.
:class:`HRFOptions` carries the HRF method and its own options, whose class and defaults
come from the HRF-method registry (:mod:`bids_hrf.hrf.registry`).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bids_hrf.config import Config
from bids_hrf.confounds import parse_confounds_spec
from bids_hrf.connectivity import KINDS
from bids_hrf.errors import BidsHrfError, UsageError, ValidationErrors
from bids_hrf.glm.contrasts import load_contrasts
from bids_hrf.hrf.basis import normalize_hrf_model
from bids_hrf.hrf.registry import (
    MethodOptions,
    MethodSpec,
    get_method,
    method_names,
    option_keys,
    unknown_option_keys,
)

NOISE_MODELS = ("ar1", "ols")
HEIGHT_CONTROLS = ("fpr", "fdr", "bonferroni")


def _raise(problems: list[BidsHrfError]) -> None:
    if problems:
        raise problems[0] if len(problems) == 1 else ValidationErrors(problems)


class _Options:
    """``to_dict``/``from_dict`` for the frozen option dataclasses (tuples <-> lists)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain values (a nipype trait)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Rebuild (and validate) from :meth:`to_dict`'s output."""
        kinds = {f.name: f.type for f in fields(cls)}
        return cls(**{k: tuple(v) if "tuple" in str(kinds[k]) and isinstance(v, list) else v
                      for k, v in data.items()})


@dataclass(frozen=True)
class PrepareOptions(_Options):
    """Options of a run's preparation (confounds, high-pass filter, parcel series).

    Parameters
    ----------
    space : str
        Output space of the run's files.
    confounds : str
        ``--confounds``: a preset or comma-separated column names.
    dummy_scans : str
        ``"auto"`` (fMRIPrep's non-steady-state outliers) or a number of volumes.
    fd_threshold : float
        Framewise-displacement threshold (mm) of the ``scrubbing`` preset.
    high_pass : float or None
        High-pass cutoff (Hz) of the DCT basis regressed out; None: no filter.
    min_parcel_voxels : int
        Parcels with fewer voxels on the BOLD grid are dropped.
    """

    space: str
    confounds: str = "simple"
    dummy_scans: str = "auto"
    fd_threshold: float = 0.5
    high_pass: float | None = 0.01
    min_parcel_voxels: int = 5

    def __post_init__(self) -> None:
        problems: list[BidsHrfError] = []
        if self.dummy_scans != "auto" and not str(self.dummy_scans).isdigit():
            problems.append(UsageError(f"--dummy-scans {self.dummy_scans!r} must be 'auto' "
                                       "or a number >= 0", fix="e.g. --dummy-scans 4"))
        try:
            parse_confounds_spec(self.confounds)
        except ValueError as exc:
            problems.append(UsageError(f"--confounds {self.confounds!r}: {exc}"))
        if self.fd_threshold <= 0:
            problems.append(UsageError(f"--fd-threshold {self.fd_threshold} must be > 0 mm"))
        if self.high_pass is not None and self.high_pass < 0:
            problems.append(UsageError(f"--high-pass {self.high_pass} must be >= 0 Hz"))
        if self.min_parcel_voxels < 1:
            problems.append(UsageError("--min-parcel-voxels must be >= 1"))
        _raise(problems)

    @classmethod
    def from_config(cls, config: Config) -> PrepareOptions:
        """The options of ``config``."""
        return cls(space=config.space, confounds=config.confounds,
                   dummy_scans=str(config.dummy_scans), fd_threshold=config.fd_threshold,
                   high_pass=config.high_pass, min_parcel_voxels=config.min_parcel_voxels)


@dataclass(frozen=True)
class HRFOptions(_Options):
    """Options of the HRF step: the method, the settings every method shares, its own.

    Parameters
    ----------
    space : str
        Output space of the HRF maps.
    method : str
        A registered HRF method (``--hrf-method``).
    hrf_model : str
        The canonical HRF (``--hrf-model``).
    hrf_duration : float
        Length of the HRFs (s).
    hrf_dt : float or None
        HRF sampling step (s); None: a divisor of TR near 0.5 s.
    high_pass : float or None
        High-pass cut-off (Hz).
    method_options : dict
        ``Config.method_options`` (flag keys, e.g. ``jde_beta``); only the method's own
        keys are used (:meth:`settings`), unknown keys are an error.
    nrl_contrasts : dict
        Label -> weights over the sorted condition names (JDE-VEM contrasts of NRLs).
    """

    space: str
    method: str = "canonical"
    hrf_model: str = "spm"
    hrf_duration: float = 25.0
    hrf_dt: float | None = None
    high_pass: float | None = 0.01
    method_options: dict = field(default_factory=dict)
    nrl_contrasts: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems: list[BidsHrfError] = []
        for key in unknown_option_keys(self.method_options):
            close = difflib.get_close_matches(key, list(option_keys()), n=1, cutoff=0.5)
            problems.append(UsageError(f"method option {key!r} is not an option of any HRF "
                                       "method", fix=f"did you mean {close[0]!r}?" if close
                                       else "see docs/usage.md (HRF methods)"))
        try:
            get_method(self.method)
        except BidsHrfError as exc:
            problems.append(exc)
        for name in method_names():  # every method's options given are checked, used or not
            try:
                get_method(name).make_options(self.method_options)
            except ValidationErrors as exc:
                problems += list(exc.errors)
            except BidsHrfError as exc:
                problems.append(exc)
        if not self.hrf_duration > 0:
            problems.append(UsageError(f"--hrf-duration {self.hrf_duration} must be > 0 s"))
        if self.hrf_dt is not None and not self.hrf_dt > 0:
            problems.append(UsageError(f"--hrf-dt {self.hrf_dt} must be > 0 s"))
        _raise(problems)

    @property
    def spec(self) -> MethodSpec:
        """The method's registry entry."""
        return get_method(self.method)

    def settings(self) -> MethodOptions:
        """The method's own options (its options class, validated)."""
        return self.spec.make_options(self.method_options)

    @classmethod
    def from_config(cls, config: Config, nrl_contrasts: dict | None = None) -> HRFOptions:
        """The options of ``config``."""
        given = dict(config.method_options)
        for key, owners in option_keys().items():  # files: absolute (steps run elsewhere)
            if owners[0].path and isinstance(given.get(key), str):
                given[key] = str(Path(given[key]).expanduser().absolute())
        return cls(space=config.space, method=config.hrf_method, hrf_model=config.hrf_model,
                   hrf_duration=config.hrf_duration, hrf_dt=config.hrf_dt,
                   high_pass=config.high_pass, method_options=given,
                   nrl_contrasts=dict(nrl_contrasts or {}))


@dataclass(frozen=True)
class GLMOptions(_Options):
    """Options of the first-level GLM of a run.

    Parameters
    ----------
    space : str
        Output space of the maps.
    hrf_method : str
        The HRF method whose HRFs the GLM uses (``canonical``: ``hrf_model`` everywhere).
    hrf_model : str
        nilearn HRF model of the canonical design (and of parcels without an estimate).
    contrasts : dict or list
        ``--contrasts`` as parsed from its JSON file (empty: one contrast per condition).
    noise_model : {"ar1", "ols"}
        nilearn's noise model.
    high_pass : float or None
        High-pass cutoff (Hz) of the design's cosine drifts.
    smoothing_fwhm : float or None
        Spatial smoothing (mm) of the BOLD series before the fit.
    contrasts_file : str or None
        The ``--contrasts`` file (named in error messages).
    """

    space: str
    hrf_method: str = "canonical"
    hrf_model: str = "spm"
    contrasts: dict | list = field(default_factory=dict)
    noise_model: str = "ar1"
    high_pass: float | None = 0.01
    smoothing_fwhm: float | None = None
    contrasts_file: str | None = None

    def __post_init__(self) -> None:
        problems: list[BidsHrfError] = []
        try:
            normalize_hrf_model(self.hrf_model)
        except ValueError as exc:
            problems.append(UsageError(f"--hrf-model {self.hrf_model!r}: {exc}"))
        if self.contrasts:
            try:
                load_contrasts(self.contrasts)
            except ValueError as exc:
                where = f"--contrasts {self.contrasts_file}" if self.contrasts_file \
                    else "--contrasts"
                problems.append(UsageError(f"{where}: {exc}",
                                           fix="write {\"label\": \"cond_a - cond_b\"}"))
        if self.noise_model not in NOISE_MODELS:
            problems.append(UsageError(f"--noise-model {self.noise_model!r} is not one of "
                                       f"{', '.join(NOISE_MODELS)}"))
        if self.smoothing_fwhm is not None and self.smoothing_fwhm < 0:
            problems.append(UsageError(f"--smoothing-fwhm {self.smoothing_fwhm} must be >= 0"))
        _raise(problems)

    @classmethod
    def from_config(cls, config: Config) -> GLMOptions:
        """The options of ``config``."""
        return cls(space=config.space, hrf_method=config.hrf_method,
                   hrf_model=config.hrf_model, contrasts=config.contrasts,
                   noise_model=config.noise_model, high_pass=config.high_pass,
                   smoothing_fwhm=config.smoothing_fwhm,
                   contrasts_file=str(config.contrasts_file) if config.contrasts_file else None)

    @property
    def estimated_hrfs(self) -> bool:
        """Whether the design uses the HRF step's estimates (not ``hrf_model`` directly)."""
        return get_method(self.hrf_method).estimates_hrf

    def sidecar(self) -> dict[str, Any]:
        """The settings recorded in the sidecar of every GLM output."""
        return {"HRFMethod": self.hrf_method, "HRFModel": self.hrf_model,
                "NoiseModel": self.noise_model}


@dataclass(frozen=True)
class GroupOptions(_Options):
    """Options of the group level (second-level GLM, group HRFs, connectivity).

    Parameters
    ----------
    space : str
        Space of the subject maps analysed.
    participants : str or None
        The raw dataset's participants.tsv (None: absent).
    group_model : str or None
        ``--group-model`` (None: one-sample).
    alpha, height_control, cluster_threshold, n_perm : float, str, int, int
        Thresholding of the second-level maps (``--group-alpha``, ``--height-control``,
        ``--cluster-threshold``, ``--group-permutations``).
    fdr : float
        FDR level across parcels and edges (``--group-fdr``).
    connectivity : tuple of str
        Connectivity measures (``--connectivity``; empty: none).
    networks : str or None
        TSV of parcel networks (``--networks``).
    activity : bool
        Also compute connectivity on deconvolved activity (``--connectivity-activity``).
    task_regression : bool
        Regress task conditions out of task runs before connectivity.
    bids_dir : str or None
        The raw dataset (events of the runs, for the task regression).
    """

    space: str
    participants: str | None = None
    group_model: str | None = None
    alpha: float = 0.001
    height_control: str = "fpr"
    cluster_threshold: int = 0
    n_perm: int = 0
    fdr: float = 0.05
    connectivity: tuple[str, ...] = ("correlation", "partial correlation", "tangent")
    networks: str | None = None
    activity: bool = False
    task_regression: bool = True
    bids_dir: str | None = None

    def __post_init__(self) -> None:
        problems: list[BidsHrfError] = []
        if self.n_perm < 0:
            problems.append(UsageError("--group-permutations must be >= 0",
                                       fix="e.g. --group-permutations 1000 (0: off)"))
        for name, value in (("--group-alpha", self.alpha), ("--group-fdr", self.fdr)):
            if not 0 < value < 1:
                problems.append(UsageError(f"{name} {value} must be in (0, 1)",
                                           fix=f"e.g. {name} 0.05"))
        if self.height_control not in HEIGHT_CONTROLS:
            problems.append(UsageError(f"--height-control {self.height_control!r} is not one "
                                       f"of {', '.join(HEIGHT_CONTROLS)}"))
        if self.cluster_threshold < 0:
            problems.append(UsageError("--cluster-threshold must be >= 0 voxels"))
        unknown = [k for k in self.connectivity if k not in KINDS]
        if unknown:
            problems.append(UsageError(f"--connectivity: unknown measure(s) {unknown}",
                                       fix="use a comma-separated list of "
                                           + ", ".join(k.replace(" ", "-") for k in KINDS)))
        _raise(problems)

    @classmethod
    def from_config(cls, config: Config) -> GroupOptions:
        """The options of ``config`` (participants.tsv looked up in BIDS_DIR)."""
        participants = config.bids_dir / "participants.tsv"
        return cls(space=config.space,
                   participants=str(participants) if participants.is_file() else None,
                   group_model=config.group_model, alpha=config.group_alpha,
                   height_control=config.group_height_control,
                   cluster_threshold=config.cluster_threshold,
                   n_perm=config.group_permutations, fdr=config.group_fdr,
                   connectivity=tuple(config.connectivity),
                   networks=str(config.networks) if config.networks else None,
                   activity=config.connectivity_activity,
                   task_regression=config.connectivity_task_regression,
                   bids_dir=str(config.bids_dir))
