"""Multi-echo inputs: fMRIPrep's per-echo derivatives of a run and their echo times.

fMRIPrep run with ``--me-output-echos`` writes, next to the optimally combined
``sub-X_task-Y[_run-Z]_[space-S_]desc-preproc_bold.nii.gz``, one file per echo with the same
entities plus ``echo-<k>`` (``sub-X_task-Y_run-Z_echo-1_space-S_desc-preproc_bold.nii.gz``).
The echo times come from each echo's JSON sidecar (``EchoTime``, seconds in BIDS), or from
the raw dataset's ``*_echo-<k>_bold.json`` when the derivative has none. The sparse core takes
milliseconds (:func:`bids_hrf.hrf._hrf_matrix.hrf_matrix`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bids_hrf.errors import DataError, UsageError

_ENTITY = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9+]+)$")


@dataclass(frozen=True)
class Echo:
    """One echo of a run: its preprocessed BOLD and echo time (ms)."""

    bold: Path
    te_ms: float


def _split(name: str) -> tuple[dict[str, str], str]:
    """``sub-01_echo-2_desc-preproc_bold.nii.gz`` -> (entities, ``bold.nii.gz``)."""
    parts = name.split("_")
    ents = {}
    for part in parts[:-1]:
        match = _ENTITY.match(part)
        if match is None:
            return {}, ""
        ents[match.group(1)] = match.group(2)
    return ents, parts[-1]


def is_echo_file(path: str | Path) -> bool:
    """The file name carries an ``echo-`` entity."""
    return "echo" in _split(Path(path).name)[0]


def echo_files(bold: str | Path) -> list[Path]:
    """The per-echo files of the combined BOLD ``bold`` (same folder, same entities plus
    ``echo-<k>``), sorted by echo number; empty when there are none."""
    bold = Path(bold)
    ents, tail = _split(bold.name)
    found = []
    for path in bold.parent.glob("*_echo-*_" + tail):
        other, other_tail = _split(path.name)
        echo = other.pop("echo", None)
        if other_tail == tail and other == ents and echo is not None:
            found.append((int(echo) if echo.isdigit() else echo, path))
    return [p for _, p in sorted(found, key=lambda item: str(item[0]).zfill(4))]


def _raw_sidecar(echo_bold: Path, bids_dir: Path | None) -> Path | None:
    """The raw dataset's sidecar of the same echo (entities up to ``echo``)."""
    if bids_dir is None:
        return None
    ents, _ = _split(echo_bold.name)
    raw = {
        k: v
        for k, v in ents.items()
        if k in ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo")
    }
    name = "_".join(f"{k}-{v}" for k, v in raw.items()) + "_bold.json"
    folder = Path(bids_dir) / f"sub-{raw.get('sub', '')}"
    if "ses" in raw:
        folder = folder / f"ses-{raw['ses']}"
    path = folder / "func" / name
    return path if path.exists() else None


def _sidecar_te(echo_bold: Path, bids_dir: Path | None) -> tuple[object, Path]:
    """``EchoTime`` of the echo's derivative sidecar, else of its raw sidecar."""
    own = echo_bold.with_name(echo_bold.name.split(".")[0] + ".json")
    for path in (own, _raw_sidecar(echo_bold, bids_dir)):
        if path is not None and path.exists():
            try:
                meta = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise DataError(
                    f"{path} cannot be read as JSON ({exc})",
                    fix="restore the sidecar",
                    path=str(path),
                ) from exc
            if "EchoTime" in meta:
                return meta["EchoTime"], path
    return None, own


def echo_times_ms(files: Sequence[Path], bids_dir: Path | None = None) -> list[float]:
    """Echo time (ms) of each per-echo file, from the ``EchoTime`` (s) of its sidecar.

    Raises
    ------
    DataError
        A missing, non-numeric or non-positive ``EchoTime``, one that is not in seconds
        (> 1), or echo times that do not increase with the echo number; the message names
        the file and the fix.
    """
    times = []
    for path in files:
        value, sidecar = _sidecar_te(Path(path), bids_dir)
        if value is None:
            raise DataError(
                f"{Path(path).name} has no EchoTime in {sidecar.name} (nor in the "
                "raw dataset's sidecar)",
                fix=f'add "EchoTime" (seconds) to {sidecar}',
                path=str(sidecar),
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise DataError(
                f"EchoTime {value!r} in {sidecar} is not a positive number",
                fix="give the echo time in seconds, e.g. 0.03",
                path=str(sidecar),
            )
        if value > 1:
            raise DataError(
                f"EchoTime {value} in {sidecar} is over 1 s: BIDS gives it in seconds",
                fix=f"write {value / 1000:g} (seconds)",
                path=str(sidecar),
            )
        times.append(1000.0 * float(value))
    for k in range(1, len(times)):
        (p0, t0), (p1, t1) = (files[k - 1], times[k - 1]), (files[k], times[k])
        if not t1 > t0:
            raise DataError(
                f"echo times are inconsistent: {Path(p1).name} has EchoTime "
                f"{t1 / 1000:g} s, not above {Path(p0).name}'s {t0 / 1000:g} s",
                fix="fix the EchoTime of the echoes' sidecars (seconds, increasing with echo-<k>)",
                path=str(p1),
            )
    return times


def run_echoes(bold: str | Path, bids_dir: Path | None = None) -> list[Echo]:
    """Per-echo files and echo times of the combined BOLD ``bold``.

    Raises
    ------
    DataError
        Fewer than two echo files, or bad echo times (:func:`echo_times_ms`).
    """
    files = echo_files(bold)
    if len(files) < 2:
        elsewhere = _echo_spaces(Path(bold))
        fix = "run fMRIPrep with --me-output-echos (or drop --multi-echo)"
        if elsewhere:
            fix = (
                f"per-echo files are there in space {', '.join(elsewhere)} only: analyse "
                "that space (--space), the echoes must be on the grid of the analysed BOLD"
            )
        raise DataError(
            f"--multi-echo: {Path(bold).name} has {len(files)} per-echo file(s) "
            "beside it (..._echo-<k>_..._desc-preproc_bold), at least 2 are needed",
            fix=fix,
            path=str(bold),
        )
    return [Echo(p, t) for p, t in zip(files, echo_times_ms(files, bids_dir), strict=True)]


def _echo_spaces(bold: Path) -> list[str]:
    """Other spaces (``native``: none) of this run's per-echo files beside ``bold``."""
    ents, tail = _split(bold.name)
    own = ents.pop("space", "native (no space- entity)")
    spaces = set()
    for path in bold.parent.glob("*_echo-*_" + tail):
        other, other_tail = _split(path.name)
        space = other.pop("space", "native (no space- entity)")
        other.pop("echo", None)
        if other_tail == tail and other == ents and space != own:
            spaces.add(space)
    return sorted(spaces)


def multi_echo_wanted(config) -> bool:
    """``--multi-echo`` was given (with a method that has it, else a :class:`UsageError`)."""
    from bids_hrf.hrf.registry import get_method

    if not (config.method_options or {}).get("multi_echo"):
        return False
    keys = {f.key for f in get_method(config.hrf_method).option_fields()}
    if "multi_echo" not in keys:
        raise UsageError(
            f"--multi-echo is an option of --hrf-method sparse, not of "
            f"{config.hrf_method} (which uses the combined BOLD)",
            fix="drop --multi-echo or use --hrf-method sparse",
        )
    if config.method_options.get("estimate_hrf"):
        raise UsageError(
            "--multi-echo deconvolves with the canonical HRF (the blind HRF estimate is "
            "single-echo)",
            fix="drop --estimate-hrf, or --multi-echo (the combined BOLD is then used)",
        )
    return True


def combined_bolds(bold_files: list) -> list:
    """Leave out the per-echo files (``echo-<k>``) of runs whose combined BOLD is there too:
    they are fMRIPrep's ``--me-output-echos`` extras of that run, not runs of their own."""
    paths = {str(f.path) for f in bold_files}
    keep = []
    for f in bold_files:
        path = Path(f.path)
        combined = path.with_name(re.sub(r"_echo-[a-zA-Z0-9]+", "", path.name, count=1))
        if not (is_echo_file(path) and str(combined) in paths):
            keep.append(f)
    return keep


def attach_echoes(run, bids_dir: Path | None, problems: list) -> tuple[object, list]:
    """``run`` (a :class:`bids_hrf.io.inputs.RunInputs`) with its echoes, or None and the
    problem (one line naming the file and the fix) added to ``problems``."""
    import dataclasses

    try:
        echoes = run_echoes(run.bold, bids_dir)
        _check_lengths(echoes, run.n_volumes)
    except DataError as exc:
        return None, [*problems, exc.one_line()]
    return dataclasses.replace(run, echoes=tuple((e.bold, e.te_ms) for e in echoes)), problems


def _check_lengths(echoes: list[Echo], n_volumes: int) -> None:
    import nibabel as nib

    for echo in echoes:
        shape = nib.load(str(echo.bold)).shape
        if len(shape) != 4 or shape[3] != n_volumes:
            raise DataError(
                f"{echo.bold.name} has shape {shape}, not the {n_volumes} volumes "
                "of the combined BOLD",
                fix="give the per-echo files of the same fMRIPrep run",
                path=str(echo.bold),
            )
