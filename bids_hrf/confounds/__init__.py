"""Confound regressors of one fMRIPrep run: presets, explicit columns, dummy scans, scrubbing.

This is a thin I/O layer over nilearn's fMRIPrep loader
(:func:`nilearn.interfaces.fmriprep.load_confounds`); it does not re-implement the
selection of motion, WM/CSF, CompCor or scrubbing regressors. What it adds:

* named presets (:data:`PRESETS`) mapped to nilearn strategies, or an explicit list of
  columns validated against the TSV header;
* a dummy-scan count (``"auto"`` = fMRIPrep's ``non_steady_state_outlier*`` columns, or an
  integer) applied through ``sample_mask``, never by cutting the image;
* checks that turn bad tables into :class:`bids_hrf.errors.DataError` naming the file, the
  column or row and the fix (NaN/inf beyond the first row, constant columns, a row count
  different from the BOLD run's, fMRIPrep < 1.2 CamelCase headers);
* a one-sentence description for the report and the methods section.

The confounds returned cover ALL volumes of the run (the rows nilearn returns); the
volumes to analyse are given by ``sample_mask`` (indices). Pass both to
:func:`nilearn.signal.clean` or to a nilearn GLM.

Presets
-------
``none``
    No regressors (dummy scans are still removed through ``sample_mask``).
``minimal``
    The 6 rigid-body motion parameters (``trans_*``, ``rot_*``).
``simple``
    The 6 motion parameters and their temporal derivatives (12) plus the mean white-matter
    and CSF signals (2). High-pass filtering is left to the GLM's drift model (nilearn's
    ``simple`` strategy also adds fMRIPrep's cosine regressors and the squares of motion).
``scrubbing``
    ``simple`` plus censoring (Power et al. 2014): volumes with framewise displacement
    above ``fd_threshold`` mm or standardised DVARS above ``std_dvars_threshold`` are
    removed from ``sample_mask``, as are the segments left shorter than
    ``scrub_min_segment`` volumes.
``compcor``
    The 12 motion regressors of ``simple`` plus anatomical CompCor components from the
    combined WM+CSF mask (``n_compcor`` components or, with ``"all"``, those fMRIPrep
    retained to explain 50% of the variance) and fMRIPrep's cosine regressors, which
    nilearn requires with CompCor because the components were computed on high-pass
    filtered data.
``motion24``
    The 24-parameter motion model (Friston 1996): motion, derivatives, squares and squared
    derivatives.
``gsr``
    ``simple`` plus the global signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_hrf.confounds.presets import (
    PRESET_STRATEGIES,
    PRESETS,
    ConfoundsSpecError,
    parse_confounds_spec,
    validate_parameters,
)
from bids_hrf.confounds.table import (
    check_columns,
    expected_confounds_path,
    find_confounds_file,
    is_camel_case,
    modernize_columns,
    n_volumes_of,
    nilearn_load,
    nss_columns,
    read_table,
    suggest,
)
from bids_hrf.errors import DataError, NoInputError

__all__ = [
    "PRESETS",
    "PRESET_STRATEGIES",
    "ConfoundsResult",
    "ConfoundsSpecError",
    "expected_confounds_path",
    "find_confounds_file",
    "load_run_confounds",
    "parse_confounds_spec",
]

@dataclass
class ConfoundsResult:
    """Confound regressors and volume selection for one run.

    Attributes
    ----------
    confounds : pandas.DataFrame or None
        One row per volume of the run (all volumes, as nilearn returns them), one column per
        regressor, no NaN; demeaned over the kept volumes. ``None`` when no regressor is
        selected (preset ``none``).
    sample_mask : ndarray of int or None
        Indices of the volumes to analyse (dummy scans and censored volumes removed);
        ``None`` means all volumes.
    n_dummy : int
        Number of leading non-steady-state (dummy) volumes removed.
    framewise_displacement : ndarray or None
        Framewise displacement of every volume (first value NaN as fMRIPrep writes it), for
        the report; ``None`` when the table has no such column.
    columns : list of str
        Names of the regressors (the columns of ``confounds``).
    description : str
        One sentence for the report and the methods section.
    confounds_file : str or None
        The TSV the regressors were read from.
    n_volumes : int
        Number of volumes of the run.
    n_censored : int
        Number of volumes removed by scrubbing (beyond the dummy scans).
    """

    confounds: pd.DataFrame | None
    sample_mask: np.ndarray | None
    n_dummy: int
    framewise_displacement: np.ndarray | None
    columns: list[str]
    description: str
    confounds_file: str | None = None
    n_volumes: int = 0
    n_censored: int = 0
    parameters: dict = field(default_factory=dict)


def load_run_confounds(
    bold_path: str | Path,
    spec: str | list[str],
    dummy_scans: int | str = "auto",
    fd_threshold: float = 0.5,
    std_dvars_threshold: float = 1.5,
    n_compcor: int | str = "all",
    scrub_min_segment: int = 5,
    n_volumes: int | None = None,
    demean: bool = True,
    confounds_file: str | Path | None = None,
) -> ConfoundsResult:
    """Load the confound regressors of one fMRIPrep BOLD run.

    Parameters
    ----------
    bold_path : str or path-like
        The preprocessed BOLD file; the confounds TSV (and its JSON) are looked for next to
        it (see :func:`find_confounds_file`). The image itself is only opened to count its
        volumes (when it exists and ``n_volumes`` is not given).
    spec : str or list of str
        A preset of :data:`PRESETS` or a list of column names (see
        :func:`parse_confounds_spec`).
    dummy_scans : "auto" or int, default="auto"
        Leading non-steady-state volumes to discard (through ``sample_mask``). ``"auto"``:
        the volumes fMRIPrep flagged in its ``non_steady_state_outlier*`` columns.
    fd_threshold : float, default=0.5
        Framewise displacement threshold (mm) of the ``scrubbing`` preset.
    std_dvars_threshold : float, default=1.5
        Standardised DVARS threshold of the ``scrubbing`` preset.
    n_compcor : "all" or int, default="all"
        Number of anatomical CompCor components of the ``compcor`` preset.
    scrub_min_segment : int, default=5
        With ``scrubbing``, segments of fewer kept volumes than this are censored too.
    n_volumes : int, optional
        Number of volumes of the run; read from the BOLD header when not given.
    demean : bool, default=True
        Remove each regressor's mean over the kept volumes.
    confounds_file : str or path-like, optional
        The confounds TSV to use (e.g. the one a ``--bids-filter-file`` query selected);
        looked for next to the BOLD file when not given.

    Returns
    -------
    ConfoundsResult

    Raises
    ------
    bids_hrf.errors.NoInputError
        If the confounds file is missing (not raised with ``spec="none"`` and an integer
        ``dummy_scans``, or ``"auto"`` which then means no dummy scans).
    bids_hrf.errors.DataError
        If the table cannot be used: unknown columns, NaN/inf beyond the first row or
        constant values in a selected column, a row count different from the run's, columns
        a preset needs are missing, or no volume is left.
    ConfoundsSpecError
        If a parameter is out of range.
    """
    bold_path = Path(bold_path)
    spec = _check_spec(spec)
    validate_parameters(dummy_scans, fd_threshold, std_dvars_threshold, n_compcor,
                         scrub_min_segment)
    parameters = {"spec": spec, "dummy_scans": dummy_scans, "fd_threshold": fd_threshold,
                  "std_dvars_threshold": std_dvars_threshold, "n_compcor": n_compcor,
                  "scrub_min_segment": scrub_min_segment}
    n_vols = n_volumes if n_volumes is not None else n_volumes_of(bold_path)

    try:
        tsv = Path(confounds_file) if confounds_file else find_confounds_file(bold_path)
    except NoInputError:
        if spec != "none":
            raise
        return _no_table_result(bold_path, dummy_scans, n_vols, parameters)
    table = read_table(tsv)
    n_rows = table.shape[0]
    if n_vols is not None and n_rows != n_vols:
        raise DataError(
            f"confounds file {tsv} has {n_rows} rows but {bold_path.name} has {n_vols} "
            "volumes",
            fix="use the confounds file written by the same fMRIPrep run as the BOLD file",
            path=str(tsv),
        )
    modern = modernize_columns(table)[0]
    fd = (pd.to_numeric(modern["framewise_displacement"], errors="coerce").to_numpy(float)
          if "framewise_displacement" in modern.columns else None)

    if isinstance(spec, list):
        # explicit columns are taken as they are (nilearn only knows its strategies)
        confounds, sample_mask, aliases = _explicit_confounds(table, spec, tsv), None, {}
        nss = nss_columns(table)
    else:
        table, aliases = _modern_table(table, tsv)
        nss = nss_columns(table)
        confounds, sample_mask = _preset_confounds(table, aliases, nss, tsv, parameters)
    columns: list[str] = []
    if confounds is not None:
        columns = [str(c) for c in confounds.columns]
        check_columns(table, columns, tsv, aliases)
        confounds = confounds.reset_index(drop=True).astype(float)

    keep, n_dummy, n_censored = _kept_volumes(table, nss, sample_mask, dummy_scans)
    if not keep.any():
        raise DataError(
            f"no volume of {bold_path.name} is left after removing {n_dummy} dummy scans and "
            f"{n_censored} censored volumes",
            fix="lower --dummy-scans or raise --fd-threshold / --std-dvars-threshold",
            path=str(tsv),
        )
    if confounds is not None and demean:
        confounds = confounds - confounds.iloc[np.flatnonzero(keep)].mean(axis=0)
    description = _describe(spec, columns, n_dummy, n_censored, n_rows, fd_threshold,
                            std_dvars_threshold, scrub_min_segment)
    return ConfoundsResult(
        confounds=confounds,
        sample_mask=None if keep.all() else np.flatnonzero(keep),
        n_dummy=n_dummy,
        framewise_displacement=fd,
        columns=columns,
        description=description,
        confounds_file=str(tsv),
        n_volumes=n_rows,
        n_censored=n_censored,
        parameters=parameters,
    )


def _check_spec(spec: str | list[str]) -> str | list[str]:
    """A preset name or the list of columns (duplicates removed) of ``spec``."""
    if isinstance(spec, str):
        return parse_confounds_spec(spec)
    if not spec or not all(isinstance(c, str) and c for c in spec):
        raise ConfoundsSpecError(
            f"confound columns must be a non-empty list of names, not {spec!r}")
    return list(dict.fromkeys(spec))


def _explicit_confounds(table: pd.DataFrame, spec: list[str], tsv: Path) -> pd.DataFrame:
    """The columns ``spec`` of the table as floats (first row filled from the second)."""
    missing = [c for c in spec if c not in table.columns]
    if missing:
        valid = [str(c) for c in table.columns]
        raise DataError(
            f"confounds file {tsv} has no column "
            + ", ".join(suggest(m, valid) for m in missing),
            fix=f"choose among its {len(valid)} columns (e.g. {', '.join(valid[:6])}) "
            f"or use a preset ({', '.join(PRESETS)})",
            path=str(tsv),
        )
    confounds = table[list(spec)].apply(pd.to_numeric, errors="coerce").astype(float)
    confounds.iloc[0] = confounds.iloc[0].fillna(confounds.iloc[1])
    return confounds


def _modern_table(table: pd.DataFrame, tsv: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table with fMRIPrep's current column names, and the renamed columns."""
    table, aliases = modernize_columns(table)
    camel = [c for c in table.columns if is_camel_case(str(c))]
    if camel:
        raise DataError(
            f"confounds file {tsv} has CamelCase column names (e.g. "
            f"{', '.join(camel[:4])}) that are not fMRIPrep's",
            fix="list the columns to use explicitly (--confounds NAME1,NAME2,...)",
            path=str(tsv),
        )
    return table, aliases


def _preset_strategy(table: pd.DataFrame, tsv: Path, parameters: dict) -> dict:
    """Arguments of nilearn's ``load_confounds`` for the preset ``parameters["spec"]``."""
    strategy_kwargs = dict(PRESET_STRATEGIES[parameters["spec"]])
    if "scrub" in strategy_kwargs["strategy"]:
        absent = [c for c in ("framewise_displacement", "std_dvars") if c not in table.columns]
        if absent:
            raise DataError(
                f"confounds file {tsv} has no {' or '.join(absent)} column, needed for "
                "scrubbing",
                fix="use another preset (e.g. simple)",
                path=str(tsv),
            )
        check_columns(table, ["framewise_displacement", "std_dvars"], tsv)
        strategy_kwargs.update(scrub=parameters["scrub_min_segment"],
                               fd_threshold=parameters["fd_threshold"],
                               std_dvars_threshold=parameters["std_dvars_threshold"])
    if "compcor" in strategy_kwargs["strategy"]:
        strategy_kwargs["n_compcor"] = parameters["n_compcor"]
    return strategy_kwargs


def _preset_confounds(table: pd.DataFrame, aliases: dict[str, str], nss: list[str],
                      tsv: Path, parameters: dict) -> tuple[pd.DataFrame | None, Any]:
    """The regressors and nilearn's sample mask of a preset (None: no regressor)."""
    spec = parameters["spec"]
    strategy_kwargs = _preset_strategy(table, tsv, parameters)
    # nilearn always drops fMRIPrep's non-steady-state volumes; with an explicit count,
    # hide those columns from it and apply the count ourselves.
    staged_table = table.drop(columns=nss) if (parameters["dummy_scans"] != "auto" and nss) \
        else (table if aliases else None)
    try:
        confounds, sample_mask = nilearn_load(tsv, staged_table, strategy_kwargs)
    except (ValueError, KeyError) as exc:
        raise DataError(
            f"confounds file {tsv} cannot provide preset {spec!r}: {exc}",
            fix=f"use another preset ({', '.join(PRESETS)}) or explicit columns",
            path=str(tsv),
        ) from exc
    if confounds is not None and confounds.shape[1] == 0:
        confounds = None
    return confounds, sample_mask


def _kept_volumes(table: pd.DataFrame, nss: list[str], sample_mask: Any,
                  dummy_scans: int | str) -> tuple[np.ndarray, int, int]:
    """Which volumes are analysed, the number of dummy scans and of censored volumes."""
    n_rows = table.shape[0]
    flagged = np.zeros(n_rows, dtype=bool)  # fMRIPrep's non-steady-state volumes
    for col in nss:
        flagged |= pd.to_numeric(table[col], errors="coerce").fillna(0).to_numpy() != 0
    keep = np.ones(n_rows, dtype=bool)
    if sample_mask is not None:
        keep[:] = False
        keep[np.asarray(sample_mask, dtype=int)] = True
    if dummy_scans == "auto":
        n_dummy = len(nss)
        keep &= ~flagged
        n_censored = int((~keep & ~flagged).sum())
    else:
        n_dummy = int(dummy_scans)
        n_censored = int((~keep[n_dummy:]).sum())
        keep[:n_dummy] = False
    return keep, n_dummy, n_censored


def _no_table_result(bold_path: Path, dummy_scans, n_vols: int | None,
                     parameters: dict) -> ConfoundsResult:
    n_dummy = 0 if dummy_scans == "auto" else int(dummy_scans)
    if n_dummy and n_vols is None:
        raise NoInputError(
            f"cannot count the volumes of {bold_path} to remove {n_dummy} dummy scans",
            fix="check that the BOLD file exists",
            path=str(bold_path),
        )
    if n_vols is not None and n_dummy >= n_vols:
        raise DataError(f"{n_dummy} dummy scans leave no volume of {bold_path.name}",
                        fix="lower --dummy-scans", path=str(bold_path))
    mask = None if n_dummy == 0 else np.arange(n_dummy, n_vols)
    return ConfoundsResult(
        confounds=None, sample_mask=mask, n_dummy=n_dummy, framewise_displacement=None,
        columns=[], description=_describe("none", [], n_dummy, 0, n_vols or 0, 0, 0, 0),
        confounds_file=None, n_volumes=n_vols or 0, n_censored=0, parameters=parameters,
    )


def _describe(spec, columns: list[str], n_dummy: int, n_censored: int, n_rows: int,
              fd_threshold: float, dvars_threshold: float, min_segment: int) -> str:
    if isinstance(spec, list):
        what = f"{len(columns)} regressors from the fMRIPrep confounds table ({', '.join(columns)})"
    elif not columns:
        what = "no confound regressor"
    else:
        groups = {
            "motion": sum(c.startswith(("trans_", "rot_")) for c in columns),
            "white-matter/CSF": sum(c.startswith(("csf", "white_matter")) for c in columns),
            "global-signal": sum(c.startswith("global_signal") for c in columns),
            "aCompCor": sum("comp_cor" in c for c in columns),
            "cosine drift": sum(c.startswith("cosine") for c in columns),
        }
        parts = [f"{n} {name}" for name, n in groups.items() if n]
        what = f"{len(columns)} confound regressors (preset '{spec}': {', '.join(parts)})"
    text = f"Nuisance model: {what}"
    text += f"; {n_dummy} non-steady-state volume{'s' if n_dummy != 1 else ''} discarded"
    if spec == "scrubbing":
        text += (f"; {n_censored} of {n_rows} volumes censored (framewise displacement > "
                 f"{fd_threshold:g} mm or standardised DVARS > {dvars_threshold:g}, with "
                 f"segments shorter than {min_segment} volumes)")
    return text + "."
