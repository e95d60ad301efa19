"""The HRF-method registry: every HRF method registered once, everything else derived.

A method is a :class:`MethodSpec`: its name, its options (a frozen dataclass whose defaults
are the estimator's own, declared with :func:`option`), the estimator entry point (arrays in,
an :class:`~bids_hrf.hrf.base.HRFEstimate` out), the data it needs, the outputs it writes,
its report panels and its methods paragraph. From the registry come the ``--hrf-method``
choices and the ``--<method>-*`` option groups of the command line
(:mod:`bids_hrf.cli.hrf_options`), the option table of docs/usage.md, the typed
:class:`~bids_hrf.options.HRFOptions` that crosses nipype, the dispatch of the HRF step
(:mod:`bids_hrf.steps.hrf`), the sidecars of the method's maps and the report.

Adding a method (docs/adding-an-hrf-method.md): a folder ``hrf/<name>/`` with the estimator
and a ``method.py`` defining ``SPEC``, plus one line in :data:`BUILTIN_METHODS`.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bids_hrf.errors import BidsHrfError, UsageError, ValidationErrors
from bids_hrf.hrf.base import HRFEstimate

#: Modules defining the built-in methods' ``SPEC`` (one line per method, in CLI order).
BUILTIN_METHODS = (
    "bids_hrf.hrf.canonical.method",
    "bids_hrf.hrf.fir.method",
    "bids_hrf.hrf.jde.method",
    "bids_hrf.hrf.sparse.method",
    "bids_hrf.hrf.rfir.method",
    "bids_hrf.hrf.r1glm.method",
    "bids_hrf.hrf.library.method",
    "bids_hrf.hrf.sparse.splora_method",
)

#: What an estimator receives (:attr:`MethodSpec.data`).
DATA_KINDS = {
    "none": "nothing but the parcel names (the HRF does not depend on the data)",
    "parcels": "the parcels' mean time series of each run (:class:`ParcelRuns`)",
    "voxels-scrubbed": "the voxel time series of every run, censored volumes removed, not "
                       "filtered (the method models the drift) (:class:`VoxelRuns`)",
    "voxels-contiguous": "the voxel time series of every run, every volume after the dummy "
                         "scans kept (censored ones only regressed), high-pass filtered "
                         "(:class:`VoxelRuns`)",
}


def estimator_default(estimator: Callable, parameter: str) -> Any:
    """The default value of ``parameter`` in the signature of ``estimator``.

    Options classes take their defaults from here, so that each default is written once,
    in the estimator.
    """
    value = inspect.signature(estimator).parameters[parameter].default
    if value is inspect.Parameter.empty:
        raise TypeError(f"{estimator.__qualname__}({parameter}) has no default")
    return value


def option(default: Any, help: str, *, flag: str | None = None,
           parse: Callable[[str], Any] | None = None, choices: tuple | None = None,
           metavar: str | None = None, path: bool = False) -> Any:
    """Declare a field of a method's options class.

    Parameters
    ----------
    default : object
        The default (take it from the estimator with :func:`estimator_default`).
    help : str
        One line for ``--help`` and docs/usage.md.
    flag : str, optional
        The command-line flag without ``--`` (default: ``<prefix>-<field name>`` with
        dashes). Its underscored form is the key of ``Config.method_options``. Methods
        may share a flag (e.g. ``estimate-hrf``); each keeps its own default.
    parse : callable, optional
        Converts the command-line text (e.g. a float that must be > 0).
    choices : tuple, optional
        Allowed values (shown in ``--help``).
    metavar : str, optional
        Name of the value in ``--help``.
    path : bool
        The value is a file: made absolute where the configuration is built (the steps
        run in their own folders).
    """
    return field(default=default, metadata={"help": help, "flag": flag, "parse": parse,
                                            "choices": choices, "metavar": metavar,
                                            "path": path})


@dataclass(frozen=True)
class OptionField:
    """One option of one method, as the command line and the docs see it."""

    method: str
    name: str
    flag: str
    key: str
    default: Any
    type: Any
    help: str
    parse: Callable[[str], Any] | None
    choices: tuple | None
    metavar: str | None
    path: bool = False


class MethodOptions:
    """Base of the methods' frozen options dataclasses.

    Subclasses are ``@dataclass(frozen=True)`` with fields declared by :func:`option` and
    may define :meth:`problems` (each a :class:`~bids_hrf.errors.UsageError`); every
    problem is raised at once from the constructor.
    """

    def __post_init__(self) -> None:
        found = self.problems()
        if found:
            raise found[0] if len(found) == 1 else ValidationErrors(found)

    def problems(self) -> list[BidsHrfError]:
        """The options' problems (none by default)."""
        return []


@dataclass(frozen=True)
class NoOptions(MethodOptions):
    """Options of a method without settings of its own."""


@dataclass(frozen=True)
class HRFContext:
    """Settings every method shares, for one subject/session/task group of runs.

    Attributes
    ----------
    tr : float
        Repetition time (s).
    labels : dict of int to str
        Parcel number -> name (the columns of the HRF table, in this order).
    dt : float
        HRF sampling step (s).
    hrf_duration : float
        Length of the HRF (s).
    hrf_model : str
        The canonical HRF (``--hrf-model``): initialisation, fallback or fixed HRF.
    high_pass : float or None
        High-pass cut-off (Hz) of the drift model; None or 0: none.
    hrf_dt : float or None
        ``--hrf-dt`` as given (None: the method's own sampling).
    contrasts : dict
        Label -> weights over the sorted condition names (JDE-VEM NRL contrasts).
    n_jobs : int
        Processes the method may use.
    progress : callable (done, total), optional
        Called as parcels are done.
    """

    tr: float
    labels: Mapping[int, str]
    dt: float
    hrf_duration: float
    hrf_model: str = "spm"
    high_pass: float | None = 0.01
    hrf_dt: float | None = None
    contrasts: Mapping[str, Any] = field(default_factory=dict)
    n_jobs: int = 1
    progress: Callable[[int, int], None] | None = None

    @property
    def names(self) -> list[str]:
        """Parcel names in table order."""
        return [str(self.labels[k]) for k in self.labels]


@dataclass
class ParcelRuns:
    """Parcel mean time series of each run (kept volumes), with events and frame times."""

    series: list[np.ndarray]  # per run (n_kept, n_parcels), columns in HRFContext order
    events: list[pd.DataFrame | None]
    frame_times: list[np.ndarray]


@dataclass
class VoxelRuns:
    """Voxel time series of each run, with the parcel and grid position of each voxel.

    The voxels are those valid (finite, not constant) in every run. Methods that return
    per-run maps (:attr:`HRFEstimate.voxel_maps` keys ``run<i>:<fragment>``) give 2-D maps
    one row per volume of ``Y[i]``.
    """

    Y: list[np.ndarray]  # per run (n_scans, n_voxels), percent signal change, cleaned
    events: list[pd.DataFrame | None]
    frame_times: list[np.ndarray]
    parcels: np.ndarray  # (n_voxels,) parcel number (0: none)
    ijk: np.ndarray  # (n_voxels, 3) grid coordinates (neighbourhood graph)
    #: neighbourhood graph of the samples (surface data: mesh edges), replacing ``ijk``'s
    graph: object = None
    #: multi-echo runs (``--multi-echo``): echo times (ms) of each run; ``Y[i]`` then stacks
    #: the echoes along time (echo 1's scans, then echo 2's...), each cleaned like one run
    echo_times: list[list[float]] | None = None


@dataclass(frozen=True)
class MethodSpec:
    """Everything the application knows about one HRF method.

    Attributes
    ----------
    name : str
        ``--hrf-method`` value.
    summary : str
        One line for ``--help`` and the docs.
    options : type
        The method's options class (a frozen :class:`MethodOptions` dataclass).
    estimate : callable (data, context, options) -> HRFEstimate
        The estimator entry point; ``data`` is of the kind :attr:`data`.
    data : str
        What the estimator receives: a key of :data:`DATA_KINDS`.
    prefix : str
        Prefix of the method's own command-line flags (``--<prefix>-*``).
    uses_paradigm : bool
        The estimate needs the events: runs without events (rest) get the canonical HRF.
    needs_events : bool
        Task runs must have an events file (the GLM needs one for every method that has a
        first-level GLM; paradigm-free methods run without).
    estimates_hrf : bool
        False when the GLM uses the canonical ``--hrf-model`` design directly.
    outputs : tuple of str
        The outputs it writes, for the docs (keys of docs/outputs.md).
    report_panels : tuple of str
        Report panels drawn for it (``hrf``: curves, tables and maps; others are the
        method's own, see :mod:`bids_hrf.steps.report`).
    describe : callable (options, context) -> str
        The methods paragraph of the report; ``context`` holds ``duration``, ``step``,
        ``high_pass`` and ``hrf_model`` as text.
    map_metadata : callable (fragment, parameters) -> dict, optional
        Extra sidecar entries of the method's maps.
    """

    name: str
    summary: str
    options: type
    estimate: Callable[[Any, HRFContext, Any], HRFEstimate]
    describe: Callable[[Any, Mapping[str, str]], str]
    data: str = "parcels"
    prefix: str = ""
    uses_paradigm: bool = True
    needs_events: bool = True
    estimates_hrf: bool = True
    outputs: tuple[str, ...] = ("hrf",)
    report_panels: tuple[str, ...] = ("hrf",)
    map_metadata: Callable[[str, dict], dict] | None = None

    def __post_init__(self) -> None:
        if self.data not in DATA_KINDS:
            raise ValueError(f"method {self.name!r}: data {self.data!r} is not one of "
                             f"{sorted(DATA_KINDS)}")
        if not (dataclasses.is_dataclass(self.options)
                and issubclass(self.options, MethodOptions)):
            raise TypeError(f"method {self.name!r}: options must be a MethodOptions dataclass")

    def option_fields(self) -> list[OptionField]:
        """The method's options with their flags, keys and defaults."""
        out = []
        for f in dataclasses.fields(self.options):
            meta = f.metadata
            flag = meta.get("flag") or f"{self.prefix}-{f.name}".strip("-").replace("_", "-")
            out.append(OptionField(method=self.name, name=f.name, flag=flag,
                                   key=flag.replace("-", "_"), default=f.default,
                                   type=f.type, help=meta.get("help", ""),
                                   parse=meta.get("parse"), choices=meta.get("choices"),
                                   metavar=meta.get("metavar"),
                                   path=bool(meta.get("path"))))
        return out

    def make_options(self, method_options: Mapping[str, Any] | None = None) -> MethodOptions:
        """The options from ``Config.method_options`` (flag keys; other methods' ignored)."""
        given = dict(method_options or {})
        kwargs = {f.name: given[f.key] for f in self.option_fields()
                  if f.key in given and given[f.key] is not None}
        return self.options(**kwargs)


_REGISTRY: dict[str, MethodSpec] = {}
_LOADED = {"builtin": False}
_BUILTIN_ORDER: list[str] = []


def _load_builtin() -> None:
    # The method modules are plugins, imported by name on first use (they import this
    # module; loading them here at import time would be circular).
    if not _LOADED["builtin"]:
        _LOADED["builtin"] = True  # set first: the modules call register()
        for module in BUILTIN_METHODS:
            _BUILTIN_ORDER.append(importlib.import_module(module).SPEC.name)


def register(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to the registry (``replace``: overwrite a method of the same name)."""
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"an HRF method named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a method (tests registering a toy method clean up with this)."""
    _REGISTRY.pop(name, None)


def method_names() -> tuple[str, ...]:
    """The registered methods, built-in ones first."""
    _load_builtin()
    builtin = [name for name in _BUILTIN_ORDER if name in _REGISTRY]
    return tuple(builtin + [name for name in _REGISTRY if name not in builtin])


def get_method(name: str) -> MethodSpec:
    """The spec of method ``name`` (a :class:`~bids_hrf.errors.UsageError` if unknown)."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(f"--hrf-method {name!r} is not one of {', '.join(_REGISTRY)}",
                         fix="see 'bids-hrf --help'") from None


def option_keys() -> dict[str, list[OptionField]]:
    """``Config.method_options`` key -> the options (of one or more methods) it sets."""
    out: dict[str, list[OptionField]] = {}
    for name in method_names():
        for f in _REGISTRY[name].option_fields():
            out.setdefault(f.key, []).append(f)
    return out


def resolved_method_options(method: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every registered option key with its value for a run of ``method``.

    Given values are kept; the others take the default of ``method`` when it has the
    option, else of the first method that has it (so the recorded configuration is
    complete and stable).
    """
    given = dict(given or {})
    out: dict[str, Any] = {}
    for key, owners in option_keys().items():
        if given.get(key) is not None:
            out[key] = given[key]
            continue
        own = [f for f in owners if f.method == method]
        out[key] = (own or owners)[0].default
    return out


def unknown_option_keys(given: Mapping[str, Any] | None) -> list[str]:
    """Keys of ``method_options`` that no registered method has."""
    known = option_keys()
    return [k for k in (given or {}) if k not in known]
