"""Confound presets and the ``--confounds`` specification (see :mod:`bids_hrf.confounds`).

:data:`PRESETS` names the presets and :data:`PRESET_STRATEGIES` maps each to the arguments
of nilearn's fMRIPrep loader; :func:`parse_confounds_spec` reads ``--confounds`` (a preset
or column names) and :func:`validate_parameters` checks the other confound parameters.
"""

from __future__ import annotations

import re

import numpy as np

from bids_hrf.errors import UsageError

#: Names of the confound presets (see :mod:`bids_hrf.confounds` for what each selects).
PRESETS: tuple[str, ...] = (
    "none",
    "minimal",
    "simple",
    "scrubbing",
    "compcor",
    "motion24",
    "gsr",
)

#: Arguments of :func:`nilearn.interfaces.fmriprep.load_confounds` for each preset.
PRESET_STRATEGIES: dict[str, dict] = {
    "none": {"strategy": ()},
    "minimal": {"strategy": ("motion",), "motion": "basic"},
    "simple": {"strategy": ("motion", "wm_csf"), "motion": "derivatives", "wm_csf": "basic"},
    "scrubbing": {
        "strategy": ("motion", "wm_csf", "scrub"),
        "motion": "derivatives",
        "wm_csf": "basic",
    },
    "compcor": {
        "strategy": ("motion", "high_pass", "compcor"),
        "motion": "derivatives",
        "compcor": "anat_combined",
    },
    "motion24": {"strategy": ("motion",), "motion": "full"},
    "gsr": {
        "strategy": ("motion", "wm_csf", "global_signal"),
        "motion": "derivatives",
        "wm_csf": "basic",
        "global_signal": "basic",
    },
}

_COLUMN_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class ConfoundsSpecError(UsageError, ValueError):
    """A ``--confounds`` or confounds parameter that cannot be used (exit 64).

    Also a :class:`ValueError`, so that callers validating arguments catch it either way.
    """


def parse_confounds_spec(text: str) -> str | list[str]:
    """Parse the ``--confounds`` argument.

    Parameters
    ----------
    text : str
        A preset name (case-insensitive, one of :data:`PRESETS`) or a comma-separated list
        of column names of the fMRIPrep confounds TSV (e.g. ``"trans_x,trans_y,csf"``).

    Returns
    -------
    str or list of str
        The preset name (lower case), or the list of column names (order kept, duplicates
        removed).

    Raises
    ------
    ConfoundsSpecError
        If the text is empty or a column name contains characters that no confounds
        column has.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfoundsSpecError(
            "--confounds is empty",
            fix=f"give a preset ({', '.join(PRESETS)}) or comma-separated column names",
        )
    stripped = text.strip()
    if stripped.lower() in PRESETS:
        return stripped.lower()
    columns: list[str] = []
    for item in stripped.split(","):
        name = item.strip()
        if not name:
            continue
        if not _COLUMN_RE.match(name):
            raise ConfoundsSpecError(
                f"--confounds: {name!r} is neither a preset nor a valid column name",
                fix=f"use a preset ({', '.join(PRESETS)}) or column names of the "
                "confounds TSV separated by commas (letters, digits, '_', '-', '.')",
            )
        if name not in columns:
            columns.append(name)
    if not columns:
        raise ConfoundsSpecError(
            f"--confounds {text!r} names no column",
            fix=f"give a preset ({', '.join(PRESETS)}) or comma-separated column names",
        )
    return columns


def validate_parameters(dummy_scans, fd_threshold, std_dvars_threshold, n_compcor,
                        scrub_min_segment) -> None:
    """Raise :class:`ConfoundsSpecError` for an out-of-range parameter of
    :func:`bids_hrf.confounds.load_run_confounds`."""
    if not (dummy_scans == "auto" or (isinstance(dummy_scans, (int, np.integer))
                                      and not isinstance(dummy_scans, bool)
                                      and dummy_scans >= 0)):
        raise ConfoundsSpecError(
            f"dummy scans must be 'auto' or an integer >= 0, not {dummy_scans!r}")
    for name, value in (("fd_threshold", fd_threshold),
                        ("std_dvars_threshold", std_dvars_threshold)):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise ConfoundsSpecError(f"{name} must be a positive number, not {value!r}")
    if not (n_compcor == "all" or (isinstance(n_compcor, (int, np.integer))
                                   and not isinstance(n_compcor, bool) and n_compcor >= 1)):
        raise ConfoundsSpecError(f"n_compcor must be 'all' or an integer >= 1, not {n_compcor!r}")
    if not (isinstance(scrub_min_segment, (int, np.integer)) and scrub_min_segment >= 0):
        raise ConfoundsSpecError(
            f"scrub_min_segment must be an integer >= 0, not {scrub_min_segment!r}")


