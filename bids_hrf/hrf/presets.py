"""HRF shapes beyond nilearn's BOLD presets, for ``--hrf-model`` and the Python API.

Spellings (case-insensitive names, numbers in seconds):

- ``claron2021``: inverse gamma, alpha 2.5, beta 12.7 (Claron et al. 2021, rodent fUSI);
- ``verhoef2025``: single gamma with its mode at 5 s and scale 1 s, i.e. shape 6
  (Verhoef et al. 2025, human fUSI; no undershoot);
- ``inverse-gamma:ALPHA,BETA``: ``beta**alpha / Gamma(alpha) t**-(alpha+1) exp(-beta/t)``;
- ``gamma:SHAPE,SCALE``: ``t**(shape-1) exp(-t/scale) / (Gamma(shape) scale**shape)``;
- ``double-gamma:PEAK,UNDERSHOOT,RATIO``: nilearn's/SPM's difference of gammas with unit
  dispersions, ``g(t; PEAK) - RATIO g(t; UNDERSHOOT)`` where ``g(t; d)`` is the gamma density of
  shape ``d`` and scale 1 (``double-gamma:6,16,0.167`` is nilearn's ``spm``);
- ``file:HRF.tsv``: a table with a ``time`` column (s, increasing) and one HRF column,
  linearly interpolated (0 outside the table).

As in seed 002 (a nilearn-style GLM), a shape used for convolution is sampled on nilearn's
oversampled grid (``linspace(0, time_length, n) - onset - dt``, ``dt = t_r / oversampling``)
and normalised to sum to 1 (:meth:`HRFShape.kernel`, which is also the callable nilearn's
``hrf_model`` accepts). HRF tables (:func:`bids_hrf.hrf.basis.canonical_hrf`) use the
estimates' convention instead: unit Euclidean norm on the table's grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import gamma, invgamma

__all__ = ["HRFShape", "parse_hrf_shape", "is_hrf_shape", "NAMED_SHAPES"]

#: named presets -> their parametric spelling
NAMED_SHAPES = {"claron2021": "inverse-gamma:2.5,12.7", "verhoef2025": "gamma:6,1"}
_N_PARAMS = {"inverse-gamma": 2, "gamma": 2, "double-gamma": 3}
_USAGE = ("claron2021, verhoef2025, inverse-gamma:ALPHA,BETA, gamma:SHAPE,SCALE, "
          "double-gamma:PEAK,UNDERSHOOT,RATIO or file:HRF.tsv")


@dataclass(frozen=True)
class HRFShape:
    """A parametric or tabulated HRF shape.

    Attributes
    ----------
    spec : str
        Canonical spelling (``"claron2021"``, ``"gamma:6,1"``, ``"file:/abs/hrf.tsv"``).
    family : {"inverse-gamma", "gamma", "double-gamma", "file"}
    params : tuple of float
    """

    spec: str
    family: str
    params: tuple[float, ...] = ()
    table: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False,
                                                         repr=False)

    @property
    def __name__(self) -> str:  # nilearn appends the callable's name to regressor names
        return "hrf_" + "".join(ch for ch in self.family if ch.isalnum())

    def __call__(self, t_r: float, oversampling: int = 50, time_length: float = 32.0,
                 onset: float = 0.0) -> np.ndarray:
        """nilearn's ``hrf_model`` protocol: :meth:`kernel`."""
        return self.kernel(t_r, oversampling, time_length, onset)

    def values(self, time: np.ndarray) -> np.ndarray:
        """The shape at ``time`` (s after onset; 0 at and before 0), unnormalised."""
        t = np.asarray(time, dtype=float)
        out = np.zeros_like(t)
        pos = t > 0
        if self.family == "inverse-gamma":
            a, b = self.params
            out[pos] = invgamma.pdf(t[pos], a, scale=b)
        elif self.family == "gamma":
            k, s = self.params
            out[pos] = gamma.pdf(t[pos], k, scale=s)
        elif self.family == "double-gamma":
            peak, under, ratio = self.params
            out[pos] = gamma.pdf(t[pos], peak) - ratio * gamma.pdf(t[pos], under)
        else:
            tt, vv = self.table
            return np.interp(t, tt, vv, left=0.0, right=0.0)
        return out

    def kernel(self, t_r: float, oversampling: int = 50, time_length: float = 32.0,
               onset: float = 0.0) -> np.ndarray:
        """Samples on nilearn's oversampled grid, normalised to sum to 1 (seed 002)."""
        dt = float(t_r) / int(oversampling)
        n = int(np.rint(float(time_length) / dt))
        lags = np.linspace(0.0, float(time_length), n) - float(onset) - dt
        k = self.values(lags)
        total = k.sum()
        if not np.isfinite(total) or abs(total) < 1e-12:
            raise ValueError(f"HRF {self.spec} sums to 0 on a {time_length:g} s kernel")
        return k / total


def is_hrf_shape(spec: object) -> bool:
    """Whether ``spec`` is spelled like a shape of this module (not checked further)."""
    if not isinstance(spec, str):
        return False
    text = spec.strip().lower()
    return text in NAMED_SHAPES or text.split(":", 1)[0] in (*_N_PARAMS, "file")


def _read_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    if not path.is_file():
        raise ValueError(f"HRF file {path} does not exist")
    try:
        table = pd.read_csv(path, sep="\t")
    except Exception as exc:
        raise ValueError(f"HRF file {path} cannot be read as TSV ({exc})") from exc
    cols = [c for c in table.columns if c != "time"]
    if "time" not in table.columns or len(cols) != 1:
        raise ValueError(f"HRF file {path} must have a 'time' column and one HRF column, "
                         f"has {list(table.columns)}")
    t = pd.to_numeric(table["time"], errors="coerce").to_numpy(float)
    v = pd.to_numeric(table[cols[0]], errors="coerce").to_numpy(float)
    if t.size < 2 or not (np.isfinite(t).all() and np.isfinite(v).all()):
        raise ValueError(f"HRF file {path}: times and values must be numbers (>= 2 rows)")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"HRF file {path}: the time column must be strictly increasing")
    if not np.any(v):
        raise ValueError(f"HRF file {path}: the HRF is identically zero")
    return t, v


def parse_hrf_shape(spec: str) -> HRFShape:
    """Parse an HRF shape spelling (see the module docstring).

    Raises
    ------
    ValueError
        Unknown name, wrong number of parameters, non-positive or non-numeric parameters,
        a ratio outside [0, 1), an unreadable or malformed file; the message says what to
        write.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"HRF shape must be a non-empty string; use {_USAGE}")
    text = spec.strip()
    name = NAMED_SHAPES.get(text.lower())
    if name is not None:
        shape = parse_hrf_shape(name)
        return HRFShape(text.lower(), shape.family, shape.params)
    family, _, rest = text.partition(":")
    family = family.lower()
    if family == "file":
        path = Path(rest).expanduser()
        if not rest:
            raise ValueError("file: needs a path, e.g. file:my_hrf.tsv")
        t, v = _read_table(path)
        return HRFShape(f"file:{path.absolute()}", "file", (), (t, v))
    if family not in _N_PARAMS:
        raise ValueError(f"unknown HRF shape {spec!r}; use {_USAGE}")
    parts = [p for p in rest.replace(" ", "").split(",") if p]
    if len(parts) != _N_PARAMS[family]:
        raise ValueError(f"{family} takes {_N_PARAMS[family]} parameters, got {spec!r}; use "
                         f"{_USAGE}")
    try:
        params = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"parameters of {spec!r} must be numbers") from None
    if not all(math.isfinite(p) for p in params):
        raise ValueError(f"parameters of {spec!r} must be finite")
    positive = params if family != "double-gamma" else params[:2]
    if any(p <= 0 for p in positive):
        raise ValueError(f"shape/scale parameters of {spec!r} must be > 0")
    if family == "double-gamma" and not 0 <= params[2] < 1:
        raise ValueError(f"the undershoot ratio of {spec!r} must be in [0, 1)")
    canonical = f"{family}:" + ",".join(f"{p:g}" for p in params)
    return HRFShape(canonical, family, params)
