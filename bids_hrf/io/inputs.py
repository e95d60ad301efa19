"""Find the inputs of every run with pybids: preprocessed BOLD, mask, confounds, events, TR.

The result is a list of plain :class:`RunInputs` records; nothing downstream touches pybids.
Every problem found is collected, so the user sees all of them at once.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_hrf.config import Config
from bids_hrf.confounds import load_run_confounds
from bids_hrf.errors import (
    BidsHrfError,
    DataError,
    NoInputError,
    UsageError,
    ValidationErrors,
)
from bids_hrf.hrf.registry import get_method
from bids_hrf.io.events import event_conditions, paradigm_ref, read_events
from bids_hrf.io.multiecho import attach_echoes, combined_bolds, multi_echo_wanted
from bids_hrf.io.paradigm import paradigm_sessions, read_paradigm_csv
from bids_hrf.io.surface import surface_bold_info
from bids_hrf.surface.samples import surface_kind

LOGGER = logging.getLogger("bids_hrf")

_CONFOUND_SUFFIXES = ["timeseries", "regressors"]
_NIFTI = [".nii.gz", ".nii"]

#: The pybids queries bids-hrf makes, each of which a ``--bids-filter-file`` may refine.
FILTER_QUERIES = ("bold", "mask", "confounds", "events")
#: Entities the ``bold`` query decides for the files matched to each BOLD run.
_BOLD_ONLY = ("subject", "session")


def check_bids_filters(filters: object) -> list[str]:
    """Problems with a ``--bids-filter-file`` mapping (empty when it can be used).

    Parameters
    ----------
    filters : object
        The loaded JSON: ``{query: {entity: value(s)}}`` with ``query`` one of
        :data:`FILTER_QUERIES`.

    Returns
    -------
    list of str
        One sentence per problem, naming the fix.
    """
    if not isinstance(filters, dict):
        return ["must hold a JSON object such as {\"bold\": {\"acquisition\": \"mb\"}}"]
    problems = []
    for query, value in filters.items():
        if query not in FILTER_QUERIES:
            problems.append(f"unknown query {query!r}: bids-hrf reads only "
                            f"{', '.join(FILTER_QUERIES)}; remove {query!r} from the file")
        elif not isinstance(value, dict):
            problems.append(f"query {query!r} must map entities to values, e.g. "
                            f"{{\"{query}\": {{\"desc\": \"...\"}}}}")
        elif query != "bold":
            fixed = [key for key in value if key in _BOLD_ONLY]
            if fixed:
                problems.append(f"query {query!r} sets {', '.join(fixed)}: each {query} file "
                                "belongs to the BOLD run it is matched to; select subjects "
                                "and sessions in the 'bold' query")
    return problems


def _query_values(filters: dict) -> dict:
    """pybids values for JSON filter values: null -> no such entity, "*" -> any value."""
    from bids.layout import Query

    out = {}
    for key, value in filters.items():
        if value is None:
            value = Query.NONE
        elif value == "*":
            value = Query.ANY
        out[key] = value
    return out


@dataclass(frozen=True)
class RunInputs:
    """Everything needed to analyse one run (``conditions``: its events' trial types)."""

    subject: str
    session: str | None
    task: str
    run: str | None
    bold: Path
    mask: Path
    confounds: Path
    events: Path | None
    tr: float
    n_volumes: int
    acquisition: str | None = None
    echo: str | None = None
    conditions: tuple[str, ...] = ()
    metadata: dict = field(default_factory=dict, compare=False, hash=False)
    #: ``--multi-echo``: (per-echo BOLD, echo time in ms) of each echo
    echoes: tuple[tuple[Path, float], ...] = ()

    @property
    def entities(self) -> dict[str, str]:
        """BIDS entities identifying the run (for output names)."""
        ents = {"sub": self.subject, "ses": self.session, "task": self.task,
                "acq": self.acquisition, "run": self.run, "echo": self.echo}
        return {k: v for k, v in ents.items() if v is not None}

    @property
    def group_key(self) -> tuple[str, str | None, str]:
        """Runs sharing HRFs and fixed effects: same subject, session and task."""
        return (self.subject, self.session, self.task)

    @property
    def name(self) -> str:
        """A short readable identifier such as ``sub-01_ses-1_task-x_run-2``."""
        return "_".join(f"{k}-{v}" for k, v in self.entities.items())


def _layout(config: Config):
    # lazy (start-up time), as every pybids import here: pybids is slow to import
    from bids import BIDSLayout

    for path in config.fmriprep_dirs:
        if not (path / "dataset_description.json").is_file():
            raise NoInputError(
                f"no fMRIPrep derivatives found at {path} (dataset_description.json missing)",
                fix="run fMRIPrep first or point --derivatives at its output folder",
                path=str(path))
    kwargs = {}
    if config.database_path is not None:
        kwargs["database_path"] = str(config.database_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return BIDSLayout(str(config.bids_dir),
                              derivatives=[str(p) for p in config.fmriprep_dirs],
                              validate=False, **kwargs)
        except BidsHrfError:
            raise
        except Exception as exc:  # pybids raises many kinds for broken datasets
            raise DataError(f"pybids could not index {config.bids_dir}: {exc}",
                            fix="check dataset_description.json files of the dataset "
                                "and its derivatives", path=str(config.bids_dir)) from exc


class Problem(str):
    """A problem message that knows its error class (missing input, bad data, usage)."""

    kind: type[BidsHrfError] = DataError

    def __new__(cls, text: str, kind: type[BidsHrfError] = DataError):
        obj = super().__new__(cls, text)
        obj.kind = kind
        return obj


def _missing(text: str) -> Problem:
    return Problem(text, NoInputError)


def _unreadable(path: Path) -> Problem | None:
    """A problem when ``path`` cannot be opened for reading (permissions, broken link)."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError:
        return _missing(f"{path}: cannot be read (permission denied): make it readable "
                        "(chmod a+r) by the user running bids-hrf")
    except OSError as exc:
        return _missing(f"{path}: cannot be read ({exc.strerror}): restore the file")
    return None


def _tr_from(metadata: dict, bold: Path, img) -> tuple[float | None, list[str]]:
    problems: list[str] = []
    tr = metadata.get("RepetitionTime")
    header_tr = None
    zooms = img.header.get_zooms()
    if len(zooms) > 3:
        header_tr = float(zooms[3])
        unit = img.header.get_xyzt_units()[1] if hasattr(img.header, "get_xyzt_units") else "sec"
        if unit == "msec":
            header_tr /= 1000.0
        elif unit == "usec":
            header_tr /= 1e6
    if tr is None:
        problems.append(f"RepetitionTime missing from the JSON metadata of {bold}: add it to "
                        "the sidecar (or the top-level task-<label>_bold.json)")
        return None, problems
    try:
        tr = float(tr)
    except (TypeError, ValueError):
        problems.append(f"RepetitionTime {tr!r} of {bold} is not a number: fix its JSON sidecar")
        return None, problems
    if not np.isfinite(tr) or tr <= 0:
        problems.append(f"RepetitionTime {tr} of {bold} must be a positive number of seconds: "
                        "fix its JSON sidecar")
        return None, problems
    if tr > 100:
        problems.append(f"RepetitionTime {tr} of {bold} looks like milliseconds: BIDS wants "
                        "seconds; fix its JSON sidecar")
        return None, problems
    if header_tr and header_tr > 0 and abs(header_tr - tr) > 1e-3 * max(tr, 1.0):
        LOGGER.warning("TR in the JSON metadata (%g s) disagrees with the file header (%g s) "
                       "of %s: using the JSON value", tr, header_tr, bold)
    return tr, problems


def _first(files):
    return Path(files[0].path) if files else None


def collect_runs(config: Config) -> tuple[list[RunInputs], dict[str, list[str]]]:
    """Query the dataset and return the runs to analyse.

    Parameters
    ----------
    config : Config
        Settings (dataset paths, participants, tasks, space, BIDS filters).

    Returns
    -------
    runs : list of RunInputs
        One record per analysable run, sorted by subject, session, task, run.
    skipped : dict
        Subject label -> problems that made its runs unusable (reported, not fatal while
        at least one subject can be analysed).

    Raises
    ------
    NoInputError, DataError, UsageError
        When nothing can be analysed; the message lists every problem found.
    """
    layout = _layout(config)
    wanted = _wanted_subjects(layout, config)
    paradigm_sessions_: list[int] = []
    if config.events_csv:
        paradigm_sessions_ = paradigm_sessions(read_paradigm_csv(config.events_csv))
    problems_filter = check_bids_filters(config.bids_filters or {})
    if problems_filter:
        raise UsageError(f"--bids-filter-file: {problems_filter[0]}")
    filters = dict(config.bids_filters.get("bold", {})) if config.bids_filters else {}
    filters, wanted = _apply_filter_entities(filters, wanted, config)
    filters = _query_values(filters)
    problems: dict[str, list[str]] = defaultdict(list)
    runs: list[RunInputs] = []
    for subject in wanted:
        bolds, missing = _subject_bolds(layout, subject, filters, config)
        if missing:
            problems[subject].append(missing)
            continue
        bolds = combined_bolds(bolds)
        refs = (_paradigm_refs(bolds, config.events_csv, paradigm_sessions_)
                if config.events_csv else {})
        for bold_file in bolds:
            run, msgs = _run_inputs(layout, bold_file, config, refs.get(bold_file.path, ""))
            if run is not None and multi_echo_wanted(config):
                run, msgs = attach_echoes(run, config.bids_dir, msgs)
            problems[subject].extend(msgs)
            if run is not None:
                runs.append(run)
    skipped = {s: p for s, p in problems.items() if p}
    # A subject with any broken run is skipped whole: its fixed effects would be partial.
    runs = [r for r in runs if r.subject not in skipped]
    if not runs:
        _raise_problems(skipped, config)
    runs.sort(key=lambda r: (r.subject, r.session or "", r.task, r.acquisition or "",
                             _run_sort_key(r.run)))
    return runs, skipped


def _wanted_subjects(layout, config: Config) -> list[str]:
    """``--participant-label`` (each checked) or every subject of the dataset."""
    subjects_raw = set(layout.get_subjects(scope="raw"))
    subjects_deriv = set(layout.get_subjects(scope="derivatives"))
    wanted = list(config.participant_label) or sorted(subjects_deriv or subjects_raw)
    usage: list[BidsHrfError] = []
    for label in config.participant_label:
        if label not in subjects_raw and label not in subjects_deriv:
            usage.append(UsageError(
                f"participant '{label}' is not in {config.bids_dir}",
                fix=f"choose from: {', '.join(sorted(subjects_raw | subjects_deriv)) or 'none'}"))
    if usage:
        raise ValidationErrors(usage) if len(usage) > 1 else usage[0]
    if not wanted:
        raise NoInputError(f"no subjects found in {config.bids_dir} or its derivatives",
                           fix="check BIDS_DIR and --derivatives")
    return wanted


def _subject_bolds(layout, subject: str, filters: dict,
                   config: Config) -> tuple[list, Problem | None]:
    """The subject's preprocessed BOLD files, or why there are none."""
    query = {"subject": subject, "desc": "preproc", "suffix": "bold",
             "extension": _NIFTI, "scope": "derivatives", **_surface_query(config),
             **filters}
    if config.task:
        query["task"] = list(config.task)
    bolds = _get(layout, "bold", space=config.space, **query)
    if bolds:
        return bolds, None
    if surface_kind(config.space):
        return [], _missing_surface(layout, subject, query, config)
    any_space = _get(layout, "bold", **query)
    if any_space:
        spaces = sorted({f.entities.get("space", "(none)") for f in any_space})
        return [], _missing(
            f"sub-{subject}: no preprocessed BOLD in space {config.space} "
            f"(found spaces: {', '.join(spaces)}): use --space one of these")
    raw = layout.get(subject=subject, suffix="bold", scope="raw",
                     extension=_NIFTI, **({"task": list(config.task)} if config.task else {}))
    return [], _missing(
        f"sub-{subject}: no fMRIPrep desc-preproc_bold found in "
        f"{', '.join(str(p) for p in config.fmriprep_dirs)} "
        f"({len(raw)} raw BOLD file(s) found): run fMRIPrep for this subject"
        + (" or check --task" if config.task else ""))


def _missing_surface(layout, subject: str, query: dict, config: Config) -> Problem:
    """Why no surface BOLD of ``--space``/``--den`` was found, naming what there is."""
    found = _get(layout, "bold", **{k: v for k, v in query.items() if k != "den"})
    have = sorted({f"space-{f.entities.get('space')}"
                   + (f" den-{f.entities['den']}" if f.entities.get("den") else "")
                   for f in found})
    kind = "GIFTI (hemi-L .func.gii)" if surface_kind(config.space) == "gifti" else \
        "CIFTI (.dtseries.nii)"
    wanted = f"space-{config.space}" + (f" den-{config.den}" if config.den else "")
    return _missing(f"sub-{subject}: no {kind} preprocessed BOLD in {wanted} "
                    f"(found: {', '.join(have) or 'none of that kind'}): use --space/--den "
                    "matching the files, or rerun fMRIPrep with --output-spaces fsaverage5 "
                    "or --cifti-output")


def _surface_query(config: Config) -> dict:
    """What selects surface BOLD files (fMRIPrep names them without ``desc``): the
    ``hemi-L`` file of a GIFTI pair (its twin is found by name) or a CIFTI dtseries."""
    from bids.layout import Query

    kind = surface_kind(config.space)
    if kind == "gifti":
        return {"desc": Query.NONE, "extension": ".func.gii", "hemi": "L"}
    if kind == "cifti":
        return {"desc": Query.NONE, "extension": ".dtseries.nii",
                **({"den": config.den} if config.den else {})}
    return {}


def _raise_problems(skipped: dict[str, list[str]], config: Config) -> None:
    """No run can be analysed: raise every problem found (one error or all of them)."""
    errors = [_problem_class(m)(m) for msgs in skipped.values() for m in msgs]
    if not errors:
        raise NoInputError(f"no runs to analyse in {config.bids_dir}",
                           fix="check --participant-label, --task and --space")
    if len(errors) > 1:
        raise ValidationErrors(errors)
    raise errors[0]


def _get(layout, query: str, **filters) -> list:
    """``layout.get`` where an entity pybids does not know is a usage error of the filter."""
    try:
        return layout.get(**filters)
    except ValueError as exc:
        raise UsageError(f"--bids-filter-file query {query!r}: {exc}",
                         fix="use BIDS entity names (subject, session, task, run, "
                             "acquisition, desc, space, ...)") from exc


def _user_filters(config: Config, query: str) -> dict:
    return _query_values(dict((config.bids_filters or {}).get(query, {})))


def _apply_filter_entities(filters: dict, wanted: list[str],
                           config: Config) -> tuple[dict, list[str]]:
    """Take ``space`` and ``subject`` out of the BIDS filters (the query sets both).

    A filter ``space`` must agree with ``--space`` (output names use ``--space``); a filter
    ``subject`` restricts the participants instead of replacing each one's label.
    """
    filters = dict(filters)
    if "space" in filters:
        space = filters.pop("space")
        spaces = [space] if isinstance(space, str) else list(space or [])
        if spaces != [config.space]:
            raise UsageError(f"--bids-filter-file selects space {space!r} but --space is "
                             f"{config.space!r}",
                             fix="remove 'space' from the filter file and choose the space "
                                 "with --space")
    if "subject" in filters:
        subject = filters.pop("subject")
        keep = {subject} if isinstance(subject, str) else {str(s) for s in subject or []}
        keep = {s[4:] if s.startswith("sub-") else s for s in keep}
        wanted = [s for s in wanted if s in keep]
        if not wanted:
            raise NoInputError(f"--bids-filter-file selects subject(s) {sorted(keep)}, none of "
                               "the participants to analyse",
                               fix="check the 'subject' filter and --participant-label")
    return filters, wanted


def _problem_class(message: str) -> type[BidsHrfError]:
    if isinstance(message, Problem):
        return message.kind
    missing = any(word in message for word in ("no fMRIPrep", "no preprocessed"))
    return NoInputError if missing else DataError


def _run_sort_key(run: str | None) -> tuple[int, str]:
    if run is None:
        return (0, "")
    return (int(run), "") if str(run).isdigit() else (10**9, str(run))


def _paradigm_refs(bolds, csv: Path, sessions: list[int]) -> dict[str, Path | None]:
    """``--events-csv``: the paradigm session of each BOLD file (None: no session for it).

    A paradigm with one session gives it to every run; otherwise the k-th session (sorted
    numbers) goes to the k-th run of the participant's task, in session then run order.
    """
    by_task: dict[str, list] = defaultdict(list)
    for f in bolds:
        by_task[str(f.entities.get("task"))].append(f)
    out: dict[str, Path | None] = {}
    for files in by_task.values():
        files.sort(key=lambda f: (str(f.entities.get("session") or ""),
                                  _run_sort_key(f.entities.get("run")),
                                  str(f.entities.get("acquisition") or "")))
        for k, f in enumerate(files):
            session = sessions[0] if len(sessions) == 1 else (
                sessions[k] if k < len(sessions) else None)
            out[f.path] = None if session is None else paradigm_ref(csv, session)
    return out



def _run_inputs(layout, bold_file, config: Config, events_ref: Path | None | str = ""
                ) -> tuple[RunInputs | None, list[str]]:
    """The inputs of one BOLD run, checked; or None and every problem found."""
    ents = bold_file.get_entities()
    bold = Path(bold_file.path)
    files, problems = _run_files(layout, bold_file, config, events_ref)
    mask, confounds, events = files["mask"], files["confounds"], files["events"]
    if problems:
        return None, problems
    try:
        img, shape = _bold_shape(bold, config.space)
    except BidsHrfError as exc:
        return None, [Problem(exc.one_line(), type(exc))]
    except Exception as exc:  # nibabel raises several kinds for corrupted files
        return None, [f"{bold}: cannot be read as NIfTI ({type(exc).__name__}: {exc}): "
                      "restore the file from the fMRIPrep output"]
    if len(shape) != 4:
        return None, [f"{bold}: is {len(shape)}D, a 4D time series is needed: give the "
                      "preprocessed BOLD series written by fMRIPrep"]
    if shape[3] < 10:
        return None, [f"{bold}: only {shape[3]} volume(s); at least 10 are needed: give "
                      "the whole BOLD series"]
    metadata = _metadata(layout, bold, files["entities"])
    tr, problems = _tr_from(metadata, bold, img)
    if problems or tr is None:
        return None, problems
    problems.extend(_check_confounds(bold, config, int(shape[3]), confounds))
    conditions: tuple[str, ...] = ()
    if events is not None:
        conditions, event_problems = _check_events(events, int(shape[3]) * tr,
                                                   _needs_events(config))
        problems.extend(event_problems)
    if problems:
        return None, problems
    return RunInputs(subject=ents["subject"], session=ents.get("session"), task=ents["task"],
                     run=str(ents["run"]) if ents.get("run") is not None else None,
                     bold=bold, mask=mask, confounds=confounds, events=events, tr=tr,
                     n_volumes=int(shape[3]), acquisition=ents.get("acquisition"),
                     echo=str(ents["echo"]) if ents.get("echo") is not None else None,
                     conditions=conditions, metadata=metadata), problems


def _bold_shape(bold: Path, space: str) -> tuple[object, tuple[int, ...]]:
    """The image header and a 4-D-like shape (samples, 1, 1, volumes for surface data)."""
    kind = surface_kind(space)
    if kind is None:
        img = nib.load(str(bold))
        return img, img.shape
    n_samples, n_scans, step = surface_bold_info(bold, space)  # headers only
    return _SurfaceHeader(step), (n_samples, 1, 1, n_scans)


class _SurfaceHeader:
    """What :func:`_tr_from` reads of a surface run: the time step its file states."""

    def __init__(self, step: float | None):
        self.step = step
        self.header = self

    def get_zooms(self) -> tuple[float, ...]:
        return (1.0, 1.0, 1.0, self.step) if self.step else (1.0, 1.0, 1.0)

    def get_xyzt_units(self) -> tuple[str, str]:
        return ("mm", "sec")


def _needs_events(config: Config) -> bool:
    """Whether the HRF method needs the events of task runs."""
    return get_method(config.hrf_method).needs_events


def _run_files(layout, bold_file, config: Config,
               events_ref: Path | None | str) -> tuple[dict, list[str]]:
    """The brain mask, confounds and events of a BOLD run, and what is missing or unreadable.

    Returns ``{"mask", "confounds", "events": path or None, "entities": the query's
    entities}`` and the problems found.
    """
    ents = bold_file.get_entities()
    bold = Path(bold_file.path)
    problems: list[str] = []
    common = {k: ents[k] for k in ("subject", "session", "task", "run", "acquisition", "echo")
              if k in ents}
    # Each query matches the BOLD run's entities; a --bids-filter-file query refines it
    # (its entries replace the defaults, e.g. {"mask": {"desc": "custom"}}).
    user = {q: _user_filters(config, q) for q in FILTER_QUERIES[1:]}
    from bids.layout import Query

    # BIDS inheritance: a file may omit an entity of the BOLD name (run-less events apply to
    # every run), never add one the BOLD lacks (acq-x events are not this BOLD's).
    common.update({k: Query.NONE for k in ("session", "acquisition", "run")
                   if k not in common})
    mask = _first(_get(layout, "mask", **{
        "scope": "derivatives", "desc": "brain", "suffix": "mask", "extension": _NIFTI,
        "space": ents.get("space"), **common, **user["mask"]}))
    conf_common = {k: v for k, v in common.items() if k != "echo"}
    confounds = _first(_get(layout, "confounds", **{
        "scope": "derivatives", "desc": "confounds", "suffix": _CONFOUND_SUFFIXES,
        "extension": ".tsv", **conf_common, **user["confounds"]}))
    if config.events_csv:
        events = events_ref or None
        if events is None:
            problems.append(Problem(
                f"{bold.name}: the paradigm {config.events_csv} has no session for this run "
                "(one session is used for every run; several are matched to the runs of "
                "each participant's task in session, run order)",
                DataError))
    else:
        events = _first(_get(layout, "events", **{
            "scope": "raw", "suffix": "events", "extension": ".tsv", **conf_common,
            **user["events"]}))
    filtered = {q: f" selected by --bids-filter-file {q!r} {config.bids_filters[q]}"
                if (config.bids_filters or {}).get(q) else "" for q in FILTER_QUERIES}
    if surface_kind(config.space):
        mask = bold  # surface samples: valid samples are found when the run is read
    if mask is None:
        problems.append(_missing(
            f"{bold.name}: brain mask (*_space-{ents.get('space')}_desc-brain_mask.nii.gz)"
            f"{filtered['mask']} missing next to it: rerun fMRIPrep or restore the file"
            + (", or fix the filter" if filtered["mask"] else "")))
    if confounds is None:
        problems.append(_missing(
            f"{bold.name}: confounds file (*_desc-confounds_timeseries.tsv)"
            f"{filtered['confounds']} missing in {bold.parent}: rerun fMRIPrep or restore "
            "the file" + (", or fix the filter" if filtered["confounds"] else "")))
    if events is None and _needs_events(config) and not ents.get("task", "").startswith("rest"):
        problems.append(_missing(
            f"{bold.name}: no events.tsv for task '{ents.get('task')}'{filtered['events']} "
            f"in {config.bids_dir}: add the events file, or use --hrf-method sparse for "
            "paradigm-free analysis" + (", or fix the filter" if filtered["events"] else "")))
    for path in (bold, mask, confounds, None if config.events_csv else events):
        unreadable = _unreadable(path) if path is not None else None
        if unreadable:
            problems.append(unreadable)
    return {"mask": mask, "confounds": confounds, "events": events,
            "entities": common}, problems


def _metadata(layout, bold: Path, entities: dict) -> dict:
    """The BOLD's JSON metadata; the raw BOLD's fills in a missing RepetitionTime."""
    try:
        metadata = layout.get_metadata(str(bold))
    except Exception:
        metadata = {}
    if "RepetitionTime" not in metadata:
        raw = layout.get(scope="raw", suffix="bold", extension=_NIFTI, **entities)
        if raw:
            metadata = {**layout.get_metadata(raw[0].path), **metadata}
    return metadata


def _check_confounds(bold: Path, config: Config, n_volumes: int,
                     confounds: Path | None = None) -> list[str]:
    """Load the run's confounds as the workflow will (row count, NaN/inf, constant columns,
    absent columns), so that a bad table is reported before any work starts."""
    dummy: int | str = int(config.dummy_scans) if str(config.dummy_scans).isdigit() else "auto"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_run_confounds(bold, config.confounds, dummy_scans=dummy,
                               fd_threshold=config.fd_threshold, n_volumes=n_volumes,
                               confounds_file=confounds)
    except BidsHrfError as exc:
        return [Problem(exc.one_line(), type(exc) if type(exc) in (
            DataError, NoInputError, UsageError) else DataError)]
    except ValueError as exc:
        return [Problem(f"confounds of {bold.name}: {exc}", DataError)]
    return []


def _check_events(events: Path, duration: float,
                  needs_conditions: bool) -> tuple[tuple[str, ...], list[str]]:
    """Read and check an events file; warn about ignored rows, report unusable files.

    Returns the run's conditions and the problems found.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = read_events(events)
    except BidsHrfError as exc:
        return (), [Problem(exc.one_line(), DataError)]
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            LOGGER.warning("%s: %s", events, warning.message)
    if table is None:
        return (), []
    if needs_conditions and "trial_type" not in table.columns:
        return (), [Problem(f"events file {events} has no trial_type column: add one naming "
                            "the condition of each event (a single value if there is one "
                            "condition)", DataError)]
    onsets = table["onset"].to_numpy(dtype=float)
    late = onsets >= duration
    if late.all():
        return (), [Problem(f"events file {events}: every event starts after the end of the "
                            f"scan ({duration:g} s): use the events file of this run (onsets "
                            "in seconds from the first volume)", DataError)]
    if late.any():
        LOGGER.warning("%s: %d event(s) start after the end of the scan (%g s) and are "
                       "ignored", events, int(late.sum()), duration)
    return event_conditions(table), []


def group_runs(runs: list[RunInputs]) -> dict[tuple[str, str | None, str], list[RunInputs]]:
    """Group runs by (subject, session, task), keeping order."""
    groups: dict[tuple[str, str | None, str], list[RunInputs]] = {}
    for run in runs:
        groups.setdefault(run.group_key, []).append(run)
    return groups
