"""Read back what the participant level wrote (the group level never recomputes it).

File names are parsed into BIDS entities; the result is a plain table the group steps
filter with pandas.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bids_hrf.errors import NoInputError

_NAME_RE = re.compile(r"^(?P<stem>(?:[a-zA-Z]+-[a-zA-Z0-9]+_)*)(?P<suffix>[a-zA-Z0-9]+)"
                      r"(?P<ext>\.nii\.gz|\.dscalar\.nii|\.nii|\.tsv|\.shape\.gii)$")
ENTITY_COLUMNS = ("sub", "ses", "task", "acq", "run", "echo", "space", "seg", "contrast",
                  "stat", "desc")


def parse_name(name: str) -> dict[str, str] | None:
    """Return the entities, ``suffix`` and ``extension`` of a BIDS file name (or None)."""
    match = _NAME_RE.match(name)
    if not match:
        return None
    out: dict[str, str] = {}
    for part in match.group("stem").rstrip("_").split("_"):
        if part:
            key, _, value = part.partition("-")
            out[key] = value
    out["suffix"] = match.group("suffix")
    out["extension"] = match.group("ext")
    return out


def inventory(output_dir: str | Path) -> pd.DataFrame:
    """Table of every participant-level data file in OUTPUT_DIR with its entities.

    Raises
    ------
    NoInputError
        When OUTPUT_DIR holds no participant outputs.
    """
    root = Path(output_dir)
    rows = []
    for path in sorted(root.glob("sub-*/**/*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        ents = parse_name(path.name)
        if ents is None:
            continue
        ents["path"] = str(path)
        rows.append(ents)
    if not rows:
        raise NoInputError(f"no participant-level outputs in {root}",
                           fix="run 'bids-hrf BIDS_DIR OUTPUT_DIR participant' first")
    table = pd.DataFrame(rows)
    for col in ENTITY_COLUMNS:
        if col not in table.columns:
            table[col] = None
    return table.astype(object).where(table.notna(), None)
