"""Parcel names from label lookup files: BIDS ``dseg.tsv``, FSL/FreeSurfer/nilearn lists."""

from __future__ import annotations

import re
import warnings
from io import StringIO
from pathlib import Path

import pandas as pd

from bids_hrf.errors import DataError, NoInputError

_NAME_COLUMNS = ("name", "label", "labels", "region", "roi", "structure")
_NETWORK_COLUMNS = ("network", "networks", "net")
_INDEX_COLUMNS = ("index", "idx", "label_index", "value", "id")
_SCHAEFER = re.compile(r"^\d+Networks_(?:LH|RH)_([A-Za-z]+)")
_FREESURFER_TAIL = re.compile(r"^(.*?\S)(?:\s+-?\d+){3,4}\s*$")
_BACKGROUND = {"background", "bg", "unknown", "0", "none", "outside"}


def read_label_table(
    path: str | Path, image_labels: list[int] | None = None
) -> tuple[dict[int, str], dict[int, str] | None]:
    """Read parcel names (and networks) from a lookup file.

    Accepted formats:

    * a table with a header naming an index column (``index``) and a name column
      (``name``, or ``label``/``region``), tab- or comma-separated, optionally a
      ``network`` column (BIDS ``dseg.tsv``, TemplateFlow, nilearn);
    * a headerless list of ``<index> <name>`` lines, separated by a tab or spaces, with
      optional trailing RGB(A) integers (FSL and FreeSurfer lookup tables); ``#`` starts a
      comment;
    * one name per line, matched in order to the sorted non-zero labels of the image
      (``image_labels``); a first line naming the background is skipped when the list has
      one name more than the image has labels.

    Parameters
    ----------
    path : str or path-like
        The lookup file.
    image_labels : list of int, optional
        Sorted non-zero labels of the image (needed for a plain list of names).

    Returns
    -------
    labels : dict of int to str
        Index -> name (index 0 is left out).
    networks : dict of int to str or None
        Index -> network, from a ``network`` column or Schaefer-style names
        (``7Networks_LH_Vis_1`` -> ``Vis``); ``None`` when neither is there.

    Raises
    ------
    bids_hrf.errors.NoInputError
        If the file does not exist.
    bids_hrf.errors.DataError
        If it cannot be read as one of the formats above.
    """
    path = Path(path)
    if not path.is_file():
        raise NoInputError(f"atlas labels file {path} does not exist",
                           fix="check the path given for the atlas labels", path=str(path))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read atlas labels file {path} ({exc})",
                        fix="give a UTF-8 text table with index and name columns",
                        path=str(path)) from exc
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DataError(f"atlas labels file {path} is empty",
                        fix="give a table with index and name columns", path=str(path))
    first = lines[0]
    sep = "\t" if "\t" in first else ("," if "," in first else None)
    header = [h.strip().lower() for h in (first.split(sep) if sep else first.split())]
    networks: dict[int, str] | None = None
    if any(h in _INDEX_COLUMNS for h in header) and any(h in _NAME_COLUMNS for h in header):
        labels, networks = _from_header_table(path, "\n".join(lines), sep)
    elif _leading_int(first) is not None:
        labels = _from_lookup_lines(path, lines)
    else:
        labels = _from_name_list(path, [ln.strip() for ln in lines], image_labels)
    labels.pop(0, None)
    if not labels:
        raise DataError(f"atlas labels file {path} names no parcel (only index 0)",
                        fix="list the parcels with positive indices", path=str(path))
    if networks is None:
        networks = schaefer_networks(labels)
    return dict(sorted(labels.items())), networks


def _leading_int(line: str) -> int | None:
    token = re.split(r"[\t ,]+", line.strip(), maxsplit=1)[0]
    try:
        return int(token)
    except ValueError:
        return None


def _from_header_table(path: Path, text: str, sep: str | None):
    try:
        table = pd.read_csv(StringIO(text), sep=sep if sep else r"\s+", dtype=str,
                            keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"cannot parse atlas labels file {path} ({exc})",
                        fix="give a tab-separated table with index and name columns",
                        path=str(path)) from exc
    table.columns = [str(c).strip().lower() for c in table.columns]
    idx_col = next(c for c in _INDEX_COLUMNS if c in table.columns)
    name_col = next(c for c in _NAME_COLUMNS if c in table.columns)
    net_col = next((c for c in _NETWORK_COLUMNS if c in table.columns), None)
    labels: dict[int, str] = {}
    networks: dict[int, str] = {}
    for row_number, (raw_idx, raw_name) in enumerate(zip(table[idx_col], table[name_col],
                                                         strict=True), start=2):
        try:
            index = int(float(raw_idx))
        except ValueError as exc:
            raise DataError(f"atlas labels file {path}: row {row_number} has index "
                            f"{raw_idx!r}, not an integer",
                            fix="use integer indices matching the label image",
                            path=str(path)) from exc
        if index in labels:
            raise DataError(f"atlas labels file {path}: index {index} appears twice",
                            fix="give each parcel index one row", path=str(path))
        labels[index] = raw_name.strip() or str(index)
        if net_col is not None:
            networks[index] = str(table[net_col].iloc[row_number - 2]).strip()
    return labels, (networks or None)


def _from_lookup_lines(path: Path, lines: list[str]) -> dict[int, str]:
    labels: dict[int, str] = {}
    for number, line in enumerate(lines, start=1):
        if "\t" in line:
            parts = [p.strip() for p in line.strip().split("\t")]
            raw_idx, name = parts[0], (parts[1] if len(parts) > 1 else "")
        else:
            parts = line.strip().split(None, 1)
            raw_idx, name = parts[0], (parts[1] if len(parts) > 1 else "")
            match = _FREESURFER_TAIL.match(name)
            if match:
                name = match.group(1)
        try:
            index = int(raw_idx)
        except ValueError as exc:
            raise DataError(f"atlas labels file {path}: line {number} ({line.strip()!r}) "
                            "does not start with an integer index",
                            fix="write one '<index> <name>' per line", path=str(path)) from exc
        if index in labels:
            raise DataError(f"atlas labels file {path}: index {index} appears twice",
                            fix="give each parcel index one line", path=str(path))
        labels[index] = name.strip() or str(index)
    return labels


def _from_name_list(path: Path, names: list[str], image_labels: list[int] | None):
    if image_labels is None:
        raise DataError(f"atlas labels file {path} is a plain list of names without indices",
                        fix="add an index column (index<TAB>name)", path=str(path))
    if len(names) == len(image_labels) + 1 and names[0].lower() in _BACKGROUND:
        names = names[1:]
    if len(names) != len(image_labels):
        raise DataError(f"atlas labels file {path} lists {len(names)} names but the image "
                        f"has {len(image_labels)} labels",
                        fix="give one name per label, or an index<TAB>name table",
                        path=str(path))
    return dict(zip(image_labels, names, strict=True))


def schaefer_networks(labels: dict[int, str]) -> dict[int, str] | None:
    """Derive networks from Schaefer-style names (``7Networks_LH_Vis_1`` -> ``Vis``).

    Returns ``None`` unless every name follows that pattern.
    """
    networks = {}
    for index, name in labels.items():
        match = _SCHAEFER.match(name)
        if not match:
            return None
        networks[index] = match.group(1)
    return networks or None


def reconcile_labels(
    labels: dict[int, str] | None,
    networks: dict[int, str] | None,
    image_labels: list[int],
    where: str,
) -> tuple[dict[int, str], dict[int, str] | None]:
    """Match names to the labels present in the image.

    Labels of the image without a name are named ``str(index)``; names without a label
    in the image are dropped (both with a warning); duplicated names get ``_<index>``
    appended so that every parcel has a unique name.
    """
    if labels is None:
        out = {i: str(i) for i in image_labels}
    else:
        unnamed = [i for i in image_labels if i not in labels]
        absent = [i for i in labels if i not in set(image_labels)]
        if unnamed:
            warnings.warn(f"atlas {where}: {len(unnamed)} labels of the image have no name "
                          f"in the labels file (e.g. {unnamed[:5]}); they are named by index",
                          UserWarning, stacklevel=3)
        if absent:
            warnings.warn(f"atlas {where}: {len(absent)} names of the labels file have no "
                          f"voxel in the image (e.g. {absent[:5]}); they are ignored",
                          UserWarning, stacklevel=3)
        out = {i: labels.get(i, str(i)) for i in image_labels}
    counts: dict[str, int] = {}
    for name in out.values():
        counts[name] = counts.get(name, 0) + 1
    out = {i: (n if counts[n] == 1 else f"{n}_{i}") for i, n in out.items()}
    nets = None
    if networks is not None:
        nets = {i: networks.get(i, "n/a") for i in image_labels}
    return out, nets
