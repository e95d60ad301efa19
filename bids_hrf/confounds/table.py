"""Finding, reading and checking fMRIPrep confounds tables; staging them for nilearn."""

from __future__ import annotations

import difflib
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bids_hrf.errors import DataError, NoInputError

_BOLD_EXTENSIONS = (".dtseries.nii", ".func.gii", ".nii.gz", ".nii")
# Entities of the BOLD file that fMRIPrep drops from the confounds file name.
_NON_CONFOUND_ENTITIES = {"space", "res", "den", "cohort", "desc", "hemi"}
_MIN_ROWS = 2


def _split_bids_name(path: Path) -> tuple[list[tuple[str, str]], str]:
    name = path.name
    for ext in _BOLD_EXTENSIONS:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    parts = name.split("_")
    suffix = parts[-1] if "-" not in parts[-1] else ""
    entities = [tuple(p.split("-", 1)) for p in parts if "-" in p]
    return entities, suffix  # type: ignore[return-value]


def expected_confounds_path(bold_path: str | Path) -> Path:
    """Return where fMRIPrep writes the confounds TSV of a BOLD file.

    Parameters
    ----------
    bold_path : str or path-like
        A preprocessed BOLD file, e.g.
        ``sub-01_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz``.

    Returns
    -------
    pathlib.Path
        ``sub-01_task-rest_desc-confounds_timeseries.tsv`` in the same folder.
    """
    bold_path = Path(bold_path)
    entities, _ = _split_bids_name(bold_path)
    kept = [f"{k}-{v}" for k, v in entities if k not in _NON_CONFOUND_ENTITIES]
    return bold_path.parent / ("_".join(kept + ["desc-confounds", "timeseries.tsv"]))


def find_confounds_file(bold_path: str | Path) -> Path:
    """Find the fMRIPrep confounds TSV of a BOLD file.

    Accepts the current ``_desc-confounds_timeseries.tsv`` and the older
    ``_desc-confounds_regressors.tsv`` names, with any subset of the BOLD file's entities
    (as nilearn does).

    Raises
    ------
    bids_hrf.errors.NoInputError
        If no confounds file is found (the message names the expected path).
    bids_hrf.errors.DataError
        If several files match equally well.
    """
    bold_path = Path(bold_path)
    expected = expected_confounds_path(bold_path)
    for candidate in (expected, expected.with_name(expected.name[: -len("timeseries.tsv")]
                                                   + "regressors.tsv")):
        if candidate.is_file():
            return candidate
    bold_entities = {k: v for k, v in _split_bids_name(bold_path)[0]}
    matches: list[tuple[int, int, Path]] = []
    if bold_path.parent.is_dir():
        for cand in bold_path.parent.glob("*desc-confounds_*.tsv"):
            ents, suffix = _split_bids_name(cand.with_suffix(".nii"))
            if suffix not in ("timeseries", "regressors"):
                continue
            ents_d = dict(ents)
            if ents_d.pop("desc", None) != "confounds":
                continue
            if all(bold_entities.get(k) == v for k, v in ents_d.items()):
                matches.append((len(ents_d), int(suffix == "timeseries"), cand))
    if not matches:
        raise NoInputError(
            f"no fMRIPrep confounds file for {bold_path.name}: expected {expected}",
            fix="run fMRIPrep with its default outputs, or use --confounds none",
            path=str(expected),
        )
    matches.sort(key=lambda m: (m[0], m[1]), reverse=True)
    if len(matches) > 1 and matches[0][:2] == matches[1][:2]:
        names = ", ".join(m[2].name for m in matches if m[:2] == matches[0][:2])
        raise DataError(
            f"several confounds files match {bold_path.name}: {names}",
            fix="keep one confounds file per run in the fMRIPrep folder",
            path=str(bold_path.parent),
        )
    return matches[0][2]


def read_table(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a", "N/A", "NaN", "nan"])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read confounds file {path}: {exc}",
            fix="check that it is the tab-separated confounds table fMRIPrep wrote",
            path=str(path),
        ) from exc
    if table.shape[0] < _MIN_ROWS or table.shape[1] == 0:
        raise DataError(
            f"confounds file {path} has {table.shape[0]} rows and {table.shape[1]} columns",
            fix="check that it is the tab-separated confounds table fMRIPrep wrote",
            path=str(path),
        )
    return table


def n_volumes_of(bold_path: Path) -> int | None:
    if not bold_path.is_file():
        return None
    try:
        import nibabel as nib

        shape = nib.load(str(bold_path)).shape
    except Exception:  # unreadable BOLD files are reported where the data are loaded
        return None
    return int(shape[3]) if len(shape) == 4 else None


def is_camel_case(name: str) -> bool:
    return name != name.lower() and name != name.upper() and "_" not in name


def nss_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns
            if "nonsteadystate" in str(c).lower().replace("_", "")]


def check_columns(table: pd.DataFrame, columns: list[str], path: Path,
                  aliases: dict[str, str] | None = None) -> None:
    """NaN/inf beyond the first row and constant columns are errors.

    ``aliases`` maps a column name to the name it has in the file (for renamed columns).
    """
    aliases = aliases or {}
    for col in columns:
        shown = f"{col!r}" + (f" ({aliases[col]!r} in the file)" if col in aliases else "")
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(values[1:])) + 1
        if bad.size:
            raw = table[col].iloc[bad[0]]
            raise DataError(
                f"confounds file {path}: column {shown} has a non-finite or non-numeric "
                f"value ({raw!r}) at row {bad[0] + 1} (volume {bad[0]}; {bad.size} such rows)",
                fix="only the first row may be n/a; fix the table or leave that column out "
                "(--confounds with explicit columns)",
                path=str(path),
            )
        finite = values[np.isfinite(values)]
        if finite.size and np.ptp(finite) == 0:
            raise DataError(
                f"confounds file {path}: column {shown} is constant ({finite[0]:g}) and "
                "cannot be used as a regressor",
                fix="leave it out (--confounds with explicit columns) or check the "
                "fMRIPrep run",
                path=str(path),
            )


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f"{name!r} (did you mean {', '.join(map(repr, close))}?)" if close else repr(name)


_OLD_NAMES = {  # fMRIPrep 1.0/1.1 column names -> the names used since 1.2
    "X": "trans_x", "Y": "trans_y", "Z": "trans_z",
    "RotX": "rot_x", "RotY": "rot_y", "RotZ": "rot_z",
    "FramewiseDisplacement": "framewise_displacement", "stdDVARS": "std_dvars",
    "non-stdDVARS": "dvars", "vx-wisestdDVARS": "dvars_vx_wise",
    "CSF": "csf", "WhiteMatter": "white_matter", "GlobalSignal": "global_signal",
}
_OLD_NUMBERED = [(re.compile(r"^aCompCor(\d+)$"), "a_comp_cor_{:02d}"),
                 (re.compile(r"^tCompCor(\d+)$"), "t_comp_cor_{:02d}"),
                 (re.compile(r"^Cosine(\d+)$"), "cosine{:02d}"),
                 (re.compile(r"^NonSteadyStateOutlier(\d+)$"), "non_steady_state_outlier{:02d}"),
                 (re.compile(r"^AROMAAggrComp(\d+)$"), "aroma_motion_{:02d}")]


def modernize_columns(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rename fMRIPrep < 1.2 (CamelCase) columns to the current names.

    Returns the renamed table and the map new name -> name in the file (renamed ones only).
    Tables of fMRIPrep >= 1.2 are returned unchanged.
    """
    mapping: dict[str, str] = {}
    for col in map(str, table.columns):
        new = _OLD_NAMES.get(col)
        for pattern, template in _OLD_NUMBERED:
            match = pattern.match(col)
            if match:
                new = template.format(int(match.group(1)))
        if new is not None and new not in table.columns:
            mapping[col] = new
    if not mapping:
        return table, {}
    return table.rename(columns=mapping), {new: old for old, new in mapping.items()}


def _stage_for_nilearn(tsv: Path, table: pd.DataFrame | None, tmp: Path) -> Path:
    """Write the table under canonical fMRIPrep names so nilearn's lookup finds exactly it."""
    staged_tsv = tmp / "sub-x_desc-confounds_timeseries.tsv"
    if table is None:
        shutil.copyfile(tsv, staged_tsv)
    else:
        table.to_csv(staged_tsv, sep="\t", index=False, na_rep="n/a")
    json_path = tsv.with_suffix(".json")
    if json_path.is_file():
        shutil.copyfile(json_path, tmp / "sub-x_desc-confounds_timeseries.json")
    return tmp / "sub-x_desc-preproc_bold.nii.gz"  # nilearn never opens the image


def nilearn_load(tsv: Path, table: pd.DataFrame | None, kwargs: dict):
    from nilearn.interfaces.fmriprep import load_confounds

    for _ in range(10):  # nilearn derives the JSON name by replacing "tsv" in the full path
        tmp = tempfile.mkdtemp(prefix="bidshrf-confounds-")
        if "tsv" not in tmp:
            break
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        staged = _stage_for_nilearn(tsv, table, Path(tmp))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="strategy is empty")
            # an empty selection is reported by load_run_confounds as a DataError
            warnings.filterwarnings("ignore", message="All volumes were marked")
            return load_confounds(str(staged), demean=False, **kwargs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
