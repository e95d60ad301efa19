"""Helpers of the hostile-input suite: a small generated dataset to break, and the CLI run in
a subprocess (real stderr, real exit code).

Each test makes a fresh dataset with :func:`make_dataset`, breaks one thing with the
helpers below, runs :func:`run_cli` and checks the result with :func:`assert_fails` or
:func:`assert_succeeds`.
"""

from __future__ import annotations

import atexit
import ctypes
import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SPACE = "MNI152NLin2009cAsym"
TASK = "localizer"

# Generated datasets are cached per parameters in this process and copied per test: making
# one costs ~2 s, copying it a few ms.
_CACHE: dict[tuple, Path] = {}


@dataclass
class Dataset:
    """A generated dataset that a test may break."""

    bids: Path
    out: Path
    work: Path
    atlas: Path
    subjects: list[str]

    def func(self, sub: str = "01", run: int = 1) -> Path:
        return self.bids / "derivatives" / "fmriprep" / f"sub-{sub}" / "func"

    def bold(self, sub: str = "01", run: int = 1) -> Path:
        return self.func(sub) / (f"sub-{sub}_task-{TASK}_run-{run}_space-{SPACE}_"
                                 "desc-preproc_bold.nii.gz")

    def bold_json(self, sub: str = "01", run: int = 1) -> Path:
        return self.bold(sub, run).with_name(self.bold(sub, run).name[:-7] + ".json")

    def mask(self, sub: str = "01", run: int = 1) -> Path:
        return self.func(sub) / (f"sub-{sub}_task-{TASK}_run-{run}_space-{SPACE}_"
                                 "desc-brain_mask.nii.gz")

    def confounds(self, sub: str = "01", run: int = 1) -> Path:
        return self.func(sub) / f"sub-{sub}_task-{TASK}_run-{run}_desc-confounds_timeseries.tsv"

    def events(self, sub: str = "01", run: int = 1) -> Path:
        return self.bids / f"sub-{sub}" / "func" / f"sub-{sub}_task-{TASK}_run-{run}_events.tsv"

    def raw_bold(self, sub: str = "01", run: int = 1) -> Path:
        return self.bids / f"sub-{sub}" / "func" / f"sub-{sub}_task-{TASK}_run-{run}_bold.nii.gz"

    @property
    def top_json(self) -> Path:
        return self.bids / f"task-{TASK}_bold.json"

    def args(self, *extra: str, atlas: str | Path | None = None, report: bool = False,
             work: bool = True) -> list[str]:
        """Arguments of a participant run on this dataset."""
        args = [str(self.bids), str(self.out), "participant",
                "--atlas", str(atlas or self.atlas), "--nprocs", "1"]
        if work:
            args += ["-w", str(self.work)]
        if not report:
            args.append("--no-report")
        return args + [str(a) for a in extra]


def make_dataset(tmp_path: Path, n_subjects: int = 1, n_runs: int = 1, name: str = "bids",
                 **kwargs) -> Dataset:
    """Copy of a small generated dataset (1 subject, 1 run by default) under ``tmp_path``."""
    import shutil

    from bids_hrf.datasets import make_synthetic_dataset

    key = (n_subjects, n_runs, tuple(sorted(kwargs.items())))
    if key not in _CACHE or not _CACHE[key].exists():
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="bids_hrf_hostile_"))
        atexit.register(shutil.rmtree, root, True)
        cache = root / "bids"
        make_synthetic_dataset(cache, size="small", n_subjects=n_subjects, n_runs=n_runs,
                               seed=3, **kwargs)
        _CACHE[key] = cache
    bids = tmp_path / name
    shutil.copytree(_CACHE[key], bids, symlinks=True)
    atlas = bids / "derivatives" / "atlas" / f"tpl-{SPACE}_atlas-Synthetic_dseg.nii.gz"
    subjects = sorted(p.name[4:] for p in bids.glob("sub-*") if p.is_dir())
    return Dataset(bids, tmp_path / "out", tmp_path / "work", atlas, subjects)


# ---------------------------------------------------------------------------------------
# breaking things


def edit_json(path: Path, **changes) -> None:
    """Set (or, with value None, remove) keys of a JSON file."""
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def edit_tsv(path: Path, func) -> None:
    """Rewrite a TSV through ``func(DataFrame) -> DataFrame`` (n/a kept as n/a)."""
    table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
    func(table).to_csv(path, sep="\t", index=False, na_rep="n/a")


def edit_nifti(path: Path, func, header_tr: float | None = None) -> None:
    """Rewrite a NIfTI image through ``func(data) -> data`` (float32)."""
    img = nib.load(str(path))
    data = func(np.asarray(img.dataobj, dtype=np.float32))
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    new = nib.Nifti1Image(data, img.affine, header)
    if data.ndim == 4:
        zooms = list(img.header.get_zooms()[:3]) + [header_tr or img.header.get_zooms()[3]]
        new.header.set_zooms(zooms)
    nib.save(new, str(path))


def truncate_gzip(path: Path, keep: float = 0.5) -> None:
    """Cut a .nii.gz file: the header still reads, the data do not."""
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    path.write_bytes(raw[: int(len(raw) * keep)])
    try:
        gzip.decompress(path.read_bytes())
    except (EOFError, OSError):
        return
    raise AssertionError("the truncated file still decompresses")


# ---------------------------------------------------------------------------------------
# running and checking


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("bids-hrf: error:")]

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "WARNING" in line]


def _drop_dac_capabilities() -> None:  # pragma: no cover - runs in the child
    """As root, drop the capabilities that bypass file permissions (for permission tests)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def can_enforce_permissions() -> bool:
    """Whether a child process can be made to obey file modes (not root, or root allowed to
    drop CAP_DAC_OVERRIDE): a mode-000 file must be unreadable to it."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        probe.write_text("x")
        probe.chmod(0)
        try:
            proc = subprocess.run(
                [sys.executable, "-c", f"open({str(probe)!r}).read()"], capture_output=True,
                check=False, preexec_fn=_drop_dac_capabilities if os.geteuid() == 0 else None)
        except (OSError, subprocess.SubprocessError):
            return False
        return proc.returncode != 0 and b"PermissionError" in proc.stderr


def run_cli(*args: str, obey_permissions: bool = False, timeout: float = 300,
            env: dict | None = None, python_prelude: str | None = None) -> Result:
    """Run ``python -m bids_hrf ARGS`` and return exit code, stdout and stderr.

    ``obey_permissions``: as root, drop the capabilities that ignore file modes first.
    ``python_prelude``: Python code run in the child before the CLI (to simulate failures of
    the operating system, e.g. a full disk).
    """
    environment = {**os.environ, "NIPYPE_NO_ET": "1", "MPLBACKEND": "Agg",
                   "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                   "TEMPLATEFLOW_AUTOUPDATE": "0", "PYTHONIOENCODING": "utf-8",
                   **(env or {})}
    if python_prelude:
        code = (python_prelude + "\nimport sys\nfrom bids_hrf.cli.run import main\n"
                "sys.exit(main(sys.argv[1:]))\n")
        cmd = [sys.executable, "-c", code, *map(str, args)]
    else:
        cmd = [sys.executable, "-m", "bids_hrf", *map(str, args)]
    kwargs = {}
    if obey_permissions and os.geteuid() == 0:
        kwargs["preexec_fn"] = _drop_dac_capabilities
    proc = subprocess.run(cmd, capture_output=True, text=True, env=environment,
                          timeout=timeout, cwd=str(ROOT), check=False, **kwargs)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def files_below(path: Path) -> dict[str, tuple[float, int]]:
    """Every file below ``path`` with its modification time and size."""
    if not path.exists():
        return {}
    return {str(p): (p.stat().st_mtime, p.stat().st_size) for p in path.rglob("*")
            if p.is_file() or p.is_symlink()}


def partial_files(path: Path) -> list[str]:
    """Temporary files of an atomic write left behind (``.<name>.<random>.part<ext>``)."""
    if not path.exists():
        return []
    return [str(p) for p in path.rglob("*") if ".part" in p.name]


def assert_fails(result: Result, code: int, *mentions: str) -> None:
    """The run failed with ``code``, one clear error line naming ``mentions``, no traceback."""
    detail = f"exit {result.code}\nstderr:\n{result.stderr[-3000:]}"
    assert result.code == code, detail
    assert "Traceback" not in result.stderr, detail
    assert "Traceback" not in result.stdout, detail
    assert len(result.errors) >= 1, detail
    assert len(result.errors) <= 3, detail  # one line per problem, not a dump
    first = result.errors[0]
    assert "unexpected" not in first, detail
    for word in mentions:
        assert any(word in line for line in result.errors), f"{word!r} not named\n{detail}"
    assert " -- " in first or "use " in first or ":" in first, detail


def assert_succeeds(result: Result, *warning_mentions: str) -> None:
    """The run finished with exit 0 and warned about each of ``warning_mentions``."""
    detail = f"exit {result.code}\nstderr:\n{result.stderr[-4000:]}"
    assert result.code == 0, detail
    assert "Traceback" not in result.stderr, detail
    for word in warning_mentions:
        assert any(word in line for line in result.warnings), f"{word!r} not warned\n{detail}"
