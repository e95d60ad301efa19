"""PyHRF paradigm CSV files and contrast definitions.

A paradigm CSV (PyHRF's "File format specification") has no header and one event per line:

    session  "condition"  onset  duration  [amplitude]

Columns are separated by whitespace or commas; the condition is written between double
quotes (quotes may be omitted when the name has no separator in it); onsets and durations are
in seconds; the amplitude is optional (1 when absent). Floats may end with a point (``1.``,
as in PyHRF's own ``paradigm_loc.csv``), which the PyHRF documentation warns about but which
is accepted here. Sessions are integers; the sorted session numbers are matched to the BOLD
files in the order they are given.

Contrasts are PyHRF's JSON: ``{"name": "linear combination of conditions"}``, e.g.
``{"Audio-Video": "clicDaudio-clicDvideo"}``, condition names matched case-sensitively.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bids_hrf.errors import DataError, NoInputError, UsageError
from bids_hrf.glm.contrasts import expression_names, parse_contrast

__all__ = [
    "read_paradigm_csv", "parse_paradigm", "paradigm_sessions", "session_events",
    "read_pyhrf_contrasts", "check_contrast_conditions",
]

_FORMAT = ('one event per line: session "condition" onset duration [amplitude], '
           "separated by spaces, tabs or commas, no header")


def _split(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace += ","
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def parse_paradigm(text: str, source: str = "<paradigm>") -> pd.DataFrame:
    """Parse the text of a PyHRF paradigm CSV.

    Parameters
    ----------
    text : str
        The file's content.
    source : str
        Name used in error messages (the file path).

    Returns
    -------
    pandas.DataFrame
        Columns ``session`` (int), ``trial_type`` (str), ``onset``, ``duration``,
        ``modulation`` (float), one row per event in file order.

    Raises
    ------
    bids_hrf.errors.DataError
        A line that does not have 4 or 5 fields, a session that is not an integer, a number
        that does not parse, a negative duration, or no event at all. The message names the
        file and the line.
    """
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            fields = _split(line)
        except ValueError as exc:  # unbalanced quotes
            raise DataError(f"paradigm file {source}, line {number}: {exc} in {line.strip()!r}",
                            fix=f"close the quotes; the format is {_FORMAT}") from exc
        if not fields:
            continue
        if len(fields) not in (4, 5):
            raise DataError(
                f"paradigm file {source}, line {number}: {len(fields)} field(s) in "
                f"{line.strip()!r}, expected 4 or 5",
                fix=f"write {_FORMAT}; quote condition names that contain spaces or commas")
        try:
            session = int(fields[0])
        except ValueError:
            raise DataError(
                f"paradigm file {source}, line {number}: session {fields[0]!r} is not an "
                "integer" + (" (a header line?)" if number == 1 else ""),
                fix=f"remove any header; the format is {_FORMAT}") from None
        values = []
        for what, field in zip(("onset", "duration", "amplitude"), fields[2:], strict=False):
            try:
                value = float(field)
            except ValueError:
                value = float("nan")
            if not np.isfinite(value):
                raise DataError(
                    f"paradigm file {source}, line {number}: {what} {field!r} is not a number",
                    fix=f"write seconds as numbers, e.g. 12.0; the format is {_FORMAT}")
            values.append(value)
        if values[1] < 0:
            raise DataError(f"paradigm file {source}, line {number}: negative duration "
                            f"{values[1]:g}", fix="durations are >= 0 (0 for events)")
        if not fields[1]:
            raise DataError(f"paradigm file {source}, line {number}: empty condition name",
                            fix='name the condition between double quotes, e.g. "audio"')
        rows.append((session, fields[1], values[0], values[1],
                     values[2] if len(values) == 3 else 1.0))
    if not rows:
        raise DataError(f"paradigm file {source} has no event", fix=f"write {_FORMAT}")
    return pd.DataFrame(rows, columns=["session", "trial_type", "onset", "duration",
                                       "modulation"])


def read_paradigm_csv(path: str | Path) -> pd.DataFrame:
    """Read a PyHRF paradigm CSV file (see :func:`parse_paradigm`).

    Raises
    ------
    bids_hrf.errors.NoInputError
        The file does not exist or cannot be read.
    bids_hrf.errors.DataError
        The content is not a paradigm (see :func:`parse_paradigm`).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise NoInputError(f"paradigm file {path} cannot be read ({exc})",
                           fix="give the path of an existing CSV text file") from exc
    return parse_paradigm(text, str(path))


def paradigm_sessions(paradigm: pd.DataFrame) -> list[int]:
    """Sorted session numbers of a paradigm."""
    return sorted(int(s) for s in pd.unique(paradigm["session"]))


def session_events(paradigm: pd.DataFrame, session: int, source: str = "<paradigm>",
                   duration: float | None = None) -> pd.DataFrame:
    """Events of one session as a BIDS-like events table.

    Parameters
    ----------
    paradigm : DataFrame
        From :func:`read_paradigm_csv`.
    session : int
        Session number as written in the file.
    source : str
        File name for error messages.
    duration : float, optional
        Length of the run (s): events starting at or after it raise an error.

    Returns
    -------
    pandas.DataFrame
        ``onset``, ``duration``, ``trial_type`` and, unless every amplitude is 1,
        ``modulation``; sorted by onset.

    Raises
    ------
    bids_hrf.errors.DataError
        Unknown session (the message lists the sessions in the file), or every event of the
        session after the end of the run.
    """
    known = paradigm_sessions(paradigm)
    if int(session) not in known:
        raise DataError(f"paradigm file {source} has no session {session} (sessions in the "
                        f"file: {', '.join(map(str, known))})",
                        fix="give one BOLD file per session of the paradigm, in session "
                            "order, or add the session's events to the file")
    ev = paradigm.loc[paradigm["session"] == int(session),
                      ["onset", "duration", "trial_type", "modulation"]]
    ev = ev.sort_values("onset", kind="stable").reset_index(drop=True)
    if np.allclose(ev["modulation"], 1.0):
        ev = ev.drop(columns="modulation")
    if duration is not None and (ev["onset"] >= duration).all():
        raise DataError(f"paradigm file {source}, session {session}: every event starts "
                        f"after the end of the run ({duration:g} s)",
                        fix="check the TR and that the sessions are in the BOLD files' order")
    return ev


def read_pyhrf_contrasts(path: str | Path) -> dict[str, str]:
    """Read PyHRF's contrasts JSON (``{"name": "expression"}``).

    Raises
    ------
    bids_hrf.errors.NoInputError, bids_hrf.errors.UsageError
        Missing file, invalid JSON, or values that are not expressions.
    """
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise NoInputError(f"contrasts file {path} cannot be read ({exc})",
                           fix="give the path of an existing JSON file") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"contrasts file {path} is not valid JSON ({exc})",
                         fix='write {"name": "conditionA - conditionB"}') from exc
    if not isinstance(spec, dict) or not all(isinstance(v, str) for v in spec.values()):
        raise UsageError(f"contrasts file {path} must map each contrast name to an expression",
                         fix='write {"Audio-Video": "clicDaudio-clicDvideo"}')
    return {str(k): v for k, v in spec.items()}


def check_contrast_conditions(contrasts: Mapping[str, str], conditions: Sequence[str],
                              source: str = "<contrasts>") -> dict[str, np.ndarray]:
    """Turn contrast expressions into weights over ``conditions`` (case-sensitive names).

    Parameters
    ----------
    contrasts : mapping name -> expression
    conditions : sequence of str
        Condition names of the paradigm, in the order of the returned weights.
    source : str
        File name for error messages.

    Returns
    -------
    dict name -> ndarray (n_conditions,)

    Raises
    ------
    bids_hrf.errors.UsageError
        A name in an expression is not a condition of the paradigm; when it differs only by
        case, the message says which condition was meant.
    """
    conditions = list(conditions)
    lower = {c.lower(): c for c in conditions}
    out = {}
    for name, expression in contrasts.items():
        try:
            used = expression_names(expression)
        except ValueError as exc:
            raise UsageError(f"contrasts file {source}: contrast {name!r}: {exc}",
                             fix="write a linear combination of condition names") from exc
        unknown = [u for u in used if u not in conditions]
        if unknown:
            hints = [f"{u!r} -> {lower[u.lower()]!r}" for u in unknown if u.lower() in lower]
            raise UsageError(
                f"contrasts file {source}: contrast {name!r} uses {', '.join(map(repr, unknown))}"
                f", not a condition of the paradigm (names are case-sensitive; conditions: "
                f"{', '.join(conditions)})",
                fix=("fix the case: " + "; ".join(hints)) if hints else
                "use the condition names exactly as written in the paradigm file")
        try:
            out[name] = np.asarray(parse_contrast(expression, conditions), dtype=float)
        except ValueError as exc:
            raise UsageError(f"contrasts file {source}: contrast {name!r}: {exc}",
                             fix="write a linear combination of condition names") from exc
    return out
