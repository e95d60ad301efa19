"""Group-level models: parse a model specification and build the second-level design.

Specifications: ``None``/``"one-sample[:cov,...]"`` (mean effect); ``"two-sample:<column>
[:cov,...]"`` (one column per level of a participants.tsv column, cell means, no
intercept; default contrast: second level minus first, in sorted order);
``"paired:<column>[:A,B]"`` (two maps per subject; a ``B - A`` column plus one column per
subject); or a BIDS Stats Models node as a dict (``Model.X``, ``Contrasts`` with
``ConditionList``/``Weights``/``Test``; a whole model's ``Dataset`` node is used).
Numeric covariates are centred on the subjects used; categorical ones are dummy-coded
(first sorted level as reference) and centred. Pure pandas/numpy: no files are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "ContrastSpec",
    "GroupModelSpec",
    "build_group_design",
    "group_contrasts",
    "paired_design",
    "parse_group_model",
]

_ENTITY_OF_COLUMN = {"session": "ses", "run": "run", "acquisition": "acq", "task": "task"}


@dataclass
class ContrastSpec:
    """One contrast: ``name``, design columns ``conditions``, ``weights`` (one per
    condition for a t test, one row per F-test row) and ``test`` (``"t"`` or ``"F"``)."""

    name: str
    conditions: list[str]
    weights: list
    test: str = "t"


@dataclass
class GroupModelSpec:
    """A parsed group model.

    ``kind``: ``"one-sample"``, ``"two-sample"``, ``"paired"`` or ``"custom"`` (BIDS Stats
    Models); ``group``: grouping (two-sample) or pairing (paired) column; ``covariates``:
    participants.tsv columns used as covariates or model variables, ``categorical`` the
    categorical ones; ``levels``: group or paired levels in contrast order; ``intercept``;
    ``contrasts``: declared :class:`ContrastSpec` (empty: the defaults).
    """

    kind: str = "one-sample"
    group: str | None = None
    covariates: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)
    intercept: bool = True
    contrasts: list[ContrastSpec] = field(default_factory=list)

    @property
    def columns_used(self) -> list[str]:
        """participants.tsv columns the design needs (empty for paired designs)."""
        if self.kind == "paired":
            return []
        cols = [self.group] if self.group else []
        return cols + [c for c in self.covariates if c not in cols]


def _strip_sub(label: object) -> str:
    text = str(label)
    return text[4:] if text.startswith("sub-") else text


def _identifier(text: str) -> str:
    """Turn ``text`` into a Python identifier usable in nilearn contrast formulas."""
    ident = re.sub(r"\W+", "_", str(text)).strip("_") or "x"
    return f"x{ident}" if ident[0].isdigit() else ident


def _contrast_label(text: str) -> str:
    """Alphanumeric camel-case label for BIDS ``contrast-<label>`` entities."""
    parts = [p for p in re.split(r"[^0-9a-zA-Z]+", str(text)) if p]
    if not parts:
        return "x"
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def _clean_participants(participants: pd.DataFrame | None) -> pd.DataFrame:
    if participants is None:
        return pd.DataFrame(columns=["participant_id"])
    if not isinstance(participants, pd.DataFrame):
        raise ValueError("participants must be a pandas DataFrame read from participants.tsv")
    if "participant_id" not in participants.columns:
        raise ValueError(
            "participants.tsv has no 'participant_id' column; columns are "
            f"{list(participants.columns)}. Add a participant_id column (sub-<label>)."
        )
    table = participants.replace({"n/a": np.nan, "N/A": np.nan, "": np.nan})
    table = table.assign(participant_id=table["participant_id"].map(_strip_sub))
    if table["participant_id"].duplicated().any():
        dups = sorted(set(table["participant_id"][table["participant_id"].duplicated()]))
        raise ValueError(f"participants.tsv lists these participants twice: {dups}")
    return table.set_index("participant_id")


def _is_numeric(series: pd.Series) -> bool:
    values = series.dropna()
    if values.empty:
        return False
    if pd.api.types.is_bool_dtype(values):
        return False
    converted = pd.to_numeric(values, errors="coerce")
    return bool(converted.notna().all())


def _check_columns(columns: list[str], table: pd.DataFrame) -> None:
    valid = list(table.columns)
    missing = [c for c in columns if c not in valid]
    if missing:
        raise ValueError(
            f"group model uses column(s) {missing} not found in participants.tsv; "
            f"valid columns are {valid}"
        )


def _levels(series: pd.Series) -> list[str]:
    return sorted({str(v) for v in series.dropna()})


def parse_group_model(
    spec: str | dict | None, participants: pd.DataFrame | None
) -> GroupModelSpec:
    """Parse a group model specification and check it against participants.tsv.

    Parameters
    ----------
    spec : str, dict or None
        ``None``/``"one-sample"[:cov1,cov2]``, ``"two-sample:<column>[:cov1,cov2]"``,
        ``"paired:<column>[:levelA,levelB]"`` or a BIDS Stats Models node (dict).
    participants : pandas.DataFrame or None
        participants.tsv as read by pandas (``participant_id`` column required when the
        model uses any column).

    Returns
    -------
    GroupModelSpec
        The parsed model. Raises ValueError for an unknown kind or column (listing the
        valid columns), a grouping column without exactly two levels, or bad contrasts.
    """
    table = _clean_participants(participants)
    if spec is None:
        spec = "one-sample"
    if isinstance(spec, dict):
        return _parse_stats_model(spec, table)
    if not isinstance(spec, str):
        raise ValueError(f"group model must be a string or a dict, got {type(spec).__name__}")
    parts = [p.strip() for p in spec.split(":")]
    kind = parts[0].lower()
    if kind not in ("one-sample", "two-sample", "paired"):
        raise ValueError(
            f"unknown group model {spec!r}; use 'one-sample', 'two-sample:<column>', "
            "'paired:<column>' or a BIDS Stats Models JSON"
        )
    if kind == "one-sample":
        covariates = _split_list(parts[1]) if len(parts) > 1 else []
        return GroupModelSpec("one-sample", None, covariates,
                              _categorical(covariates, table), [], True)
    if len(parts) < 2 or not parts[1]:
        raise ValueError(f"group model {spec!r} needs a column, e.g. '{kind}:group'")
    column = parts[1]
    if kind == "paired":
        levels = _split_list(parts[2]) if len(parts) > 2 else []
        if levels and len(levels) != 2:
            raise ValueError(f"paired model {spec!r} needs exactly two levels, got {levels}")
        return GroupModelSpec("paired", column, [], [], levels, False)
    _check_columns([column], table)
    levels = _levels(table[column])
    if len(levels) != 2:
        raise ValueError(
            f"two-sample model needs exactly two groups in column {column!r} of "
            f"participants.tsv, found {len(levels)}: {levels}. Use a BIDS Stats Models "
            "JSON for other designs."
        )
    covariates = _split_list(parts[2]) if len(parts) > 2 else []
    return GroupModelSpec("two-sample", column, covariates, _categorical(covariates, table),
                          levels, False)


def _split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _categorical(columns: list[str], table: pd.DataFrame) -> list[str]:
    _check_columns(columns, table)
    return [c for c in columns if not _is_numeric(table[c])]


def _parse_stats_model(spec: dict, table: pd.DataFrame) -> GroupModelSpec:
    node = spec
    if "Nodes" in spec:
        nodes = [n for n in spec["Nodes"] if str(n.get("Level", "")).lower() == "dataset"]
        if not nodes:
            raise ValueError("BIDS Stats Model has no node with Level 'Dataset'")
        node = nodes[0]
    model = node.get("Model")
    if not isinstance(model, dict) or "X" not in model:
        raise ValueError("BIDS Stats Model node needs a 'Model' with an 'X' list")
    intercept = False
    variables: list[str] = []
    for term in model["X"]:
        if str(term).strip().lower() in ("1", "intercept"):
            intercept = True
        else:
            variables.append(str(term))
    if not intercept and not variables:
        raise ValueError("BIDS Stats Model 'X' is empty")
    categorical = _categorical(variables, table)
    contrasts = []
    for item in node.get("Contrasts", []) or []:
        try:
            name, conds, weights = item["Name"], item["ConditionList"], item["Weights"]
        except KeyError as err:
            raise ValueError(f"contrast {item!r} needs Name, ConditionList and Weights") from err
        test = str(item.get("Test", "t"))
        if test.lower() not in ("t", "f"):
            raise ValueError(f"contrast {name!r}: Test must be 't' or 'F', got {test!r}")
        rows = weights if np.ndim(weights) == 2 else [weights]
        if any(len(r) != len(conds) for r in rows):
            raise ValueError(f"contrast {name!r} has {len(conds)} conditions but weights {weights}")
        contrasts.append(ContrastSpec(str(name), [str(c) for c in conds], weights,
                                      "F" if test.lower() == "f" else "t"))
    dummy = node.get("DummyContrasts")
    if dummy:
        conds = dummy.get("Conditions") if isinstance(dummy, dict) else None
        test = dummy.get("Test", "t") if isinstance(dummy, dict) else "t"
        for cond in conds or []:
            contrasts.append(ContrastSpec(str(cond), [str(cond)], [1.0], test))
    return GroupModelSpec("custom", None, variables, categorical, [], intercept, contrasts)


def _dummies(values: pd.Series, name: str, drop_first: bool) -> pd.DataFrame:
    levels = _levels(values)
    if drop_first:
        levels = levels[1:]
    data = {
        _identifier(f"{name}_{lev}"): (values.astype(str) == lev).astype(float).to_numpy()
        for lev in levels
    }
    return pd.DataFrame(data, index=values.index)


def _covariate_columns(table: pd.DataFrame, spec: GroupModelSpec,
                       covariates: list[str]) -> pd.DataFrame:
    blocks = []
    for cov in covariates:
        if cov in spec.categorical:
            block = _dummies(table[cov], cov, drop_first=True)
        else:
            block = pd.DataFrame(
                {_identifier(cov): pd.to_numeric(table[cov]).astype(float)}, index=table.index
            )
        blocks.append(block - block.mean())
    return pd.concat(blocks, axis=1) if blocks else pd.DataFrame(index=table.index)


def _paired_keys(subjects: list, column: str) -> list[tuple[str, str]]:
    entity = _ENTITY_OF_COLUMN.get(column, column)
    keys = []
    for item in subjects:
        if isinstance(item, tuple):
            keys.append((_strip_sub(item[0]), str(item[1])))
            continue
        text = str(item)
        match = re.search(rf"(?:^|_){re.escape(entity)}-([0-9a-zA-Z]+)", text)
        sub = re.search(r"(?:^|_)sub-([0-9a-zA-Z]+)", text)
        if match and sub:
            keys.append((sub.group(1), match.group(1)))
        elif ":" in text:
            left, right = text.split(":", 1)
            keys.append((_strip_sub(left), right))
        else:
            raise ValueError(
                f"paired model: cannot read the {column} of map {text!r}; give maps as "
                f"'sub-<label>_{entity}-<level>', '<subject>:<level>' or (subject, level)"
            )
    return keys


def paired_design(subjects: list[str], conditions: list[str],
                  levels: list[str] | None = None) -> pd.DataFrame:
    """Design matrix of a paired (within-subject) comparison.

    Parameters
    ----------
    subjects : list of str
        Subject of each input map (each subject exactly twice).
    conditions : list of str
        Condition (e.g. session) of each input map.
    levels : list of str, optional
        The two conditions ``[A, B]``; the difference column codes ``B - A``
        (``+1/2`` for B, ``-1/2`` for A). Default: sorted conditions.

    Returns
    -------
    pandas.DataFrame
        Columns ``<B>_minus_<A>`` then one indicator column per subject
        (``sub_<label>``), one row per map.
    """
    subjects = [_strip_sub(s) for s in subjects]
    conditions = [str(c) for c in conditions]
    if len(subjects) != len(conditions):
        raise ValueError("paired design: subjects and conditions must have the same length")
    levels = list(levels) if levels else sorted(set(conditions))
    if len(levels) != 2 or set(conditions) - set(levels):
        raise ValueError(
            f"paired design needs exactly two conditions, got {sorted(set(conditions))}"
        )
    counts = pd.Series(list(zip(subjects, conditions, strict=True))).value_counts()
    if (counts > 1).any() or any(subjects.count(s) != 2 for s in subjects):
        raise ValueError("paired design needs each subject once in each of the two conditions")
    diff_name = _identifier(f"{levels[1]}_minus_{levels[0]}")
    diff = np.where(np.asarray(conditions) == levels[1], 0.5, -0.5)
    design = {diff_name: diff}
    for sub in dict.fromkeys(subjects):
        design[_identifier(f"sub_{sub}")] = (np.asarray(subjects) == sub).astype(float)
    return pd.DataFrame(design)


def build_group_design(
    spec: GroupModelSpec, subjects: list, participants: pd.DataFrame | None
) -> tuple[pd.DataFrame, list, dict[str, str]]:
    """Build the second-level design matrix for the subjects that have maps.

    Parameters
    ----------
    spec : GroupModelSpec
        From :func:`parse_group_model`.
    subjects : list
        One entry per input map: subject labels (``"01"`` or ``"sub-01"``); for paired
        models ``"sub-01_ses-pre"``, ``"01:pre"`` or ``("01", "pre")``.
    participants : pandas.DataFrame or None
        participants.tsv; needed only when the model uses its columns.

    Returns
    -------
    design : pandas.DataFrame
        One row per used map (index: the entries of ``used_subjects`` as strings); the
        default contrasts are in ``design.attrs["contrasts"]`` (name -> weight vector).
    used_subjects : list
        The entries of ``subjects`` kept, in input order.
    dropped : dict of str to str
        Entry -> reason, for every entry left out. Raises ValueError when fewer than
        ``n_columns + 1`` maps are left, a group is left empty, or the design is rank
        deficient.
    """
    table = _clean_participants(participants)
    if len(set(map(str, subjects))) != len(subjects):
        raise ValueError("build_group_design: the same map label appears twice in subjects")
    dropped: dict[str, str] = {}
    if spec.kind == "paired":
        design, used = _paired(spec, subjects, dropped)
    else:
        design, used = _between(spec, subjects, table, dropped)
    n_rows, n_cols = design.shape
    if n_rows <= n_cols:
        raise ValueError(
            f"too few subjects for the group model: {n_rows} map(s) for {n_cols} design "
            f"column(s); at least {n_cols + 1} needed"
            + (f" ({len(dropped)} dropped: {dropped})" if dropped else "")
        )
    if np.linalg.matrix_rank(design.to_numpy()) < n_cols:
        raise ValueError(
            f"the group design is rank deficient (columns {list(design.columns)}): a "
            "covariate is constant or confounded with the groups; remove it"
        )
    design.index = [str(u) if not isinstance(u, tuple) else ":".join(u) for u in used]
    design.attrs["contrasts"] = group_contrasts(spec, design)
    return design, used, dropped


def _between(spec, subjects, table, dropped):
    used, rows = [], []
    needed = spec.columns_used
    for item in subjects:
        key = _strip_sub(item)
        if needed and key not in table.index:
            dropped[str(item)] = "not listed in participants.tsv"
            continue
        if needed:
            missing = [c for c in needed if pd.isna(table.loc[key, c])]
            if missing:
                dropped[str(item)] = f"missing value(s) in participants.tsv for {missing}"
                continue
            if spec.group and str(table.loc[key, spec.group]) not in spec.levels:
                dropped[str(item)] = f"{spec.group} is not one of {spec.levels}"
                continue
        used.append(item)
        rows.append(key)
    sub = table.reindex(rows)
    blocks = []
    if spec.intercept:
        blocks.append(pd.DataFrame({"intercept": np.ones(len(rows))}, index=sub.index))
    covariates = list(spec.covariates)
    if spec.kind == "two-sample":
        counts = sub[spec.group].astype(str).value_counts()
        empty = [lev for lev in spec.levels if counts.get(lev, 0) == 0]
        if empty:
            raise ValueError(
                f"two-sample model: no subject with maps left in group(s) {empty} of "
                f"column {spec.group!r} (a single group cannot be compared)"
            )
        blocks.append(pd.DataFrame({
            _identifier(lev): (sub[spec.group].astype(str) == lev).astype(float).to_numpy()
            for lev in spec.levels}, index=sub.index))
    elif spec.kind == "custom" and not spec.intercept and spec.categorical:
        first = spec.categorical[0]
        blocks.append(_dummies(sub[first], first, drop_first=False))
        covariates = [c for c in covariates if c != first]
    blocks.append(_covariate_columns(sub, spec, covariates))
    design = pd.concat(blocks, axis=1).reset_index(drop=True)
    return design, used


def _paired(spec, subjects, dropped):
    keys = _paired_keys(subjects, spec.group)
    levels = spec.levels or sorted({lev for _, lev in keys})
    if len(levels) != 2:
        raise ValueError(
            f"paired model needs exactly two levels of {spec.group!r}, found {levels}; "
            f"name them, e.g. 'paired:{spec.group}:{','.join(levels[:2]) or 'pre,post'}'"
        )
    per_subject: dict[str, list[int]] = {}
    for i, (sub, lev) in enumerate(keys):
        if lev not in levels:
            dropped[str(subjects[i])] = f"{spec.group} {lev!r} is not one of {levels}"
            continue
        per_subject.setdefault(sub, []).append(i)
    used_idx = []
    for sub, idx in per_subject.items():
        if sorted(keys[i][1] for i in idx) != sorted(levels):
            for i in idx:
                dropped[str(subjects[i])] = (
                    f"subject {sub} does not have exactly one map per {spec.group} {levels}"
                )
            continue
        used_idx.extend(idx)
    used_idx.sort()
    if not used_idx:
        raise ValueError(f"paired model: no subject has maps for both {levels}")
    design = paired_design([keys[i][0] for i in used_idx], [keys[i][1] for i in used_idx],
                           levels)
    return design, [subjects[i] for i in used_idx]


def _default_contrasts(spec: GroupModelSpec, design: pd.DataFrame) -> list[ContrastSpec]:
    if spec.kind == "two-sample":
        a, b = (_identifier(lev) for lev in spec.levels)
        name = _contrast_label(f"{spec.levels[1]} minus {spec.levels[0]}")
        return [ContrastSpec(name, [a, b], [-1.0, 1.0]),
                ContrastSpec("mean", [a, b], [0.5, 0.5])]
    if spec.kind == "paired":
        col = design.columns[0]
        return [ContrastSpec(_contrast_label(col), [col], [1.0])]
    if spec.intercept:
        return [ContrastSpec("mean", ["intercept"], [1.0])]
    return [ContrastSpec(_contrast_label(c), [c], [1.0]) for c in design.columns]


def _resolve(condition: str, columns: list[str]) -> str:
    if condition in columns:
        return condition
    text = condition.strip()
    if text in ("1", "intercept") and "intercept" in columns:
        return "intercept"
    ident = _identifier(text.replace(".", "_"))
    if ident in columns:
        return ident
    raise ValueError(f"contrast condition {condition!r} is not a design column; columns are "
                     f"{columns}")


def _weights(contrast: ContrastSpec, columns) -> np.ndarray:
    columns = list(columns)
    rows = np.atleast_2d(np.asarray(contrast.weights, dtype=float))
    out = np.zeros((rows.shape[0], len(columns)))
    for j, cond in enumerate(contrast.conditions):
        out[:, columns.index(_resolve(cond, columns))] += rows[:, j]
    if not np.any(out):
        raise ValueError(f"contrast {contrast.name!r} is all zeros")
    return out[0] if contrast.test == "t" else out


def group_contrasts(spec: GroupModelSpec, design: pd.DataFrame) -> dict[str, np.ndarray]:
    """Contrast vectors (t) or matrices (F) of ``spec`` over the columns of ``design``.

    Returns a dict name -> weights of shape ``(n_columns,)`` (t) or ``(n_rows, n_columns)``
    (F), for the declared contrasts or the defaults of the model kind.
    """
    contrasts = spec.contrasts or _default_contrasts(spec, design)
    return {c.name: _weights(c, design.columns) for c in contrasts}
