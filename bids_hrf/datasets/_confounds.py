"""fMRIPrep-like confounds computed from the simulated data, as fMRIPrep 23 computes them.

Columns follow fMRIPrep >= 20.2 (``desc-confounds_timeseries.tsv``): mean signals with their
derivative / power expansions, DVARS, framewise displacement (Power), RMSD, CompCor
components (tCompCor, CSF / WM / combined aCompCor) with the JSON metadata nilearn reads,
cosine drift basis, one-hot non-steady-state and motion outlier regressors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FD_RADIUS_MM = 50.0  # Power et al. 2012
FD_THRESHOLD_MM = 0.5  # fMRIPrep --fd-spike-threshold default
HIGH_PASS_PERIOD_S = 128.0
COMPCOR_VARIANCE = 0.5  # fMRIPrep retains components explaining 50% of the variance


def _expand(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Add ``_derivative1``, ``_power2`` and ``_derivative1_power2`` columns."""
    out = {}
    for name in names:
        x = df[name].to_numpy(dtype=float)
        d = np.r_[np.nan, np.diff(x)]
        out[name] = x
        out[f"{name}_derivative1"] = d
        out[f"{name}_power2"] = x**2
        out[f"{name}_derivative1_power2"] = d**2
    return pd.DataFrame(out, index=df.index)


def framewise_displacement(motion: np.ndarray) -> np.ndarray:
    """Power's framewise displacement (mm); NaN for the first volume.

    Parameters
    ----------
    motion : ndarray, shape (n_scans, 6)
        Translations (mm) then rotations (rad).
    """
    d = np.abs(np.diff(motion, axis=0))
    fd = d[:, :3].sum(axis=1) + FD_RADIUS_MM * d[:, 3:].sum(axis=1)
    return np.r_[np.nan, fd]


def rmsd(motion: np.ndarray, radius: float = 80.0) -> np.ndarray:
    """Root mean square deviation between consecutive volumes (Jenkinson 1999, sphere)."""
    d = np.diff(motion, axis=0)
    value = np.sqrt((d[:, :3] ** 2).sum(axis=1) + 0.2 * radius**2 * (d[:, 3:] ** 2).sum(axis=1))
    return np.r_[np.nan, value]


def cosine_basis(n_scans: int, tr: float) -> np.ndarray:
    """Discrete cosine drift basis with a 128-s cut-off, as nipype's ``cosine_filter``.

    fMRIPrep's ``cosineXX`` columns: ``max(floor(2 n tr / 128), 1) - 1`` DCT-II regressors
    (the constant term of nipype's basis is not written).
    """
    order = max(int(np.floor(2 * n_scans * tr / HIGH_PASS_PERIOD_S)), 1)
    k = np.arange(1, order)
    n = np.arange(n_scans)[:, None]
    return np.sqrt(2.0 / n_scans) * np.cos(np.pi / n_scans * (n + 0.5) * k)


def dvars(bold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DVARS and standardised DVARS (Nichols 2013), as nipype's ``compute_dvars``.

    Intensities are scaled to a median of 1000, the expected standard deviation of the
    temporal difference of each voxel is ``sqrt(2 (1 - ar1)) * IQR / 1.349``.

    Parameters
    ----------
    bold : ndarray, shape (n_scans, n_voxels)

    Returns
    -------
    dvars, std_dvars : ndarray, shape (n_scans,)
        NaN for the first volume.
    """
    scaled = np.ascontiguousarray(bold.T, dtype=np.float32)  # (n_voxels, n_scans)
    scaled *= np.float32(1000.0 / np.median(scaled))
    diff = np.diff(scaled, axis=1)
    raw = np.sqrt((diff.astype(float) ** 2).mean(axis=0))
    q75, q25 = np.percentile(scaled, [75, 25], axis=1, method="lower")  # as FSL / nipype
    sd = (q75 - q25) / 1.349
    centred = scaled - scaled.mean(axis=1, keepdims=True)
    denom = (centred.astype(float) ** 2).sum(axis=1)
    lag1 = (centred[:, 1:] * centred[:, :-1]).sum(axis=1, dtype=float)
    ar1 = np.where(denom > 0, lag1 / np.maximum(denom, 1e-12), 0.0)
    expected = np.sqrt(2 * (1 - ar1)) * sd
    std = raw / expected.mean()
    return np.r_[np.nan, raw], np.r_[np.nan, std]


def _residualise(y: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """``y`` minus its least-squares fit on the columns of ``filters``."""
    q, _ = np.linalg.qr(filters)
    return y - q @ (q.T @ y)


def _components(
    data: np.ndarray, filters: np.ndarray, n_fixed: int | None, minimum: int
) -> tuple[np.ndarray, dict]:
    """CompCor on ``data`` (n_scans, n_voxels) after projecting out ``filters``.

    Voxel series are centred, filtered and variance-normalised, then decomposed by SVD.
    Returns the time courses of the retained components and their metadata, retaining
    ``n_fixed`` components or, if None, enough to explain 50% of the variance (at least
    ``minimum``).
    """
    x = _residualise(data - data.mean(axis=0), filters)
    sd = x.std(axis=0)
    x = x[:, sd > 0] / sd[sd > 0]
    # SVD through the (n_scans x n_scans) Gram matrix: cheap when voxels >> volumes
    eigval, eigvec = np.linalg.eigh(x @ x.T)
    order = np.argsort(eigval)[::-1]
    eigval, u = np.clip(eigval[order], 0, None), eigvec[:, order]
    keep = eigval > eigval[0] * 1e-12
    s, u = np.sqrt(eigval[keep]), u[:, keep]
    u = u * np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(u.shape[1])])  # fixed signs
    var = s**2 / (s**2).sum()
    cum = np.cumsum(var)
    if n_fixed is None:
        n_keep = int(np.searchsorted(cum, COMPCOR_VARIANCE) + 1)
        n_keep = max(n_keep, minimum)
    else:
        n_keep = n_fixed
    n_keep = min(n_keep, len(s))
    meta = [
        {
            "CumulativeVarianceExplained": float(cum[i]),
            "SingularValue": float(s[i]),
            "VarianceExplained": float(var[i]),
            "Retained": bool(i < n_keep),
        }
        for i in range(min(len(s), n_keep + 5))
    ]
    return u[:, :n_keep], meta


def compute_confounds(
    bold: np.ndarray,
    motion: np.ndarray,
    tissues: dict[str, np.ndarray],
    tr: float,
    n_dummy_scans: int,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, dict]:
    """Confounds table and its JSON sidecar for one run.

    Parameters
    ----------
    bold : ndarray, shape (n_scans, n_brain_voxels)
        Preprocessed brain-voxel time series.
    motion : ndarray, shape (n_scans, 6)
        True head motion; the table gets it with a small estimation error.
    tissues : dict
        Boolean masks over brain voxels: ``"csf"``, ``"wm"``.
    tr : float
        Repetition time (s).
    n_dummy_scans : int
        Leading non-steady-state volumes (excluded from CompCor, flagged as outliers).

    Returns
    -------
    confounds : pandas.DataFrame
        One row per volume, NaN where fMRIPrep writes ``n/a``.
    metadata : dict
        Sidecar content keyed by column name (CompCor components and mean signals).
    """
    n_scans = bold.shape[0]
    csf, wm = tissues["csf"], tissues["wm"]
    means = pd.DataFrame(
        {
            "global_signal": bold.mean(axis=1),
            "csf": bold[:, csf].mean(axis=1),
            "white_matter": bold[:, wm].mean(axis=1),
        }
    )
    table = [_expand(means, list(means.columns))]
    table.append(pd.DataFrame({"csf_wm": bold[:, csf | wm].mean(axis=1)}))

    # tCompCor mask: 2% of brain voxels with the highest (detrended) temporal variance
    steady = slice(n_dummy_scans, n_scans)
    filters = np.column_stack(
        [np.ones(n_scans - n_dummy_scans), cosine_basis(n_scans - n_dummy_scans, tr)]
    )
    y = bold[steady].astype(float)
    resid_var = (_residualise(y, filters) ** 2).sum(axis=0)
    n_top = max(10, int(0.02 * bold.shape[1]))
    top = np.argsort(-resid_var)[:n_top]
    table.append(pd.DataFrame({"tcompcor": bold[:, top].mean(axis=1)}))

    dv, std_dv = dvars(bold.astype(float))
    fd = framewise_displacement(motion)
    table.append(
        pd.DataFrame(
            {"std_dvars": std_dv, "dvars": dv, "framewise_displacement": fd, "rmsd": rmsd(motion)}
        )
    )

    metadata: dict[str, dict] = {
        name: {"Method": "Mean"}
        for name in ("global_signal", "csf", "white_matter", "csf_wm", "tcompcor")
    }
    specs = [
        ("t", y[:, top], "tCompCor", None, 3, 3),
        ("c", y[:, csf], "aCompCor", "CSF", None, 3),
        ("w", y[:, wm], "aCompCor", "WM", None, 3),
        ("a", y[:, csf | wm], "aCompCor", "combined", None, 5),
    ]
    comp_cols, comp_meta = _compcor(specs, filters, steady, n_scans)
    table.append(comp_cols)
    metadata.update(comp_meta)
    table.extend(_drift_and_dummy_columns(filters, steady, n_scans, n_dummy_scans))
    table.extend(_motion_columns(motion, fd, rng))
    return pd.concat(table, axis=1), metadata


def _compcor(specs: list[tuple], filters: np.ndarray, steady: slice,
             n_scans: int) -> tuple[pd.DataFrame, dict[str, dict]]:
    """CompCor columns (0 in the dummy scans) and their sidecar entries.

    ``specs``: (column prefix, steady-state data, method, mask, fixed number of components
    or None, minimum) of each CompCor variant; the entries of components not retained are
    ``dropped_<k>``.
    """
    dropped = 0
    comp_cols: dict[str, np.ndarray] = {}
    metadata: dict[str, dict] = {}
    for prefix, data, method, mask, n_fixed, minimum in specs:
        comps, meta = _components(data, filters, n_fixed, minimum)
        for i, m in enumerate(meta):
            entry = {"Method": method, **({"Mask": mask} if mask else {}), **m}
            if m["Retained"]:
                name = f"{prefix}_comp_cor_{i:02d}"
                col = np.zeros(n_scans)
                col[steady] = comps[:, i]
                comp_cols[name] = col
                metadata[name] = entry
            else:
                metadata[f"dropped_{dropped}"] = entry
                dropped += 1
    return pd.DataFrame(comp_cols), metadata


def _drift_and_dummy_columns(filters: np.ndarray, steady: slice, n_scans: int,
                             n_dummy_scans: int) -> list[pd.DataFrame]:
    """fMRIPrep's cosine regressors and one non-steady-state outlier column per dummy scan."""
    cos = np.zeros((n_scans, filters.shape[1] - 1))
    cos[steady] = filters[:, 1:]
    nss = np.zeros((n_scans, n_dummy_scans))
    nss[np.arange(n_dummy_scans), np.arange(n_dummy_scans)] = 1.0
    return [
        pd.DataFrame(cos, columns=[f"cosine{i:02d}" for i in range(cos.shape[1])]),
        pd.DataFrame(
            nss, columns=[f"non_steady_state_outlier{i:02d}" for i in range(n_dummy_scans)]
        ),
    ]


def _motion_columns(motion: np.ndarray, fd: np.ndarray,
                    rng: np.random.Generator) -> list[pd.DataFrame]:
    """Estimated motion (truth + a small error) with its expansions, and motion outliers."""
    estimated = motion + rng.normal(size=motion.shape) * ([0.002] * 3 + [0.00003] * 3)
    estimated -= estimated[0]
    names = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    outliers = np.flatnonzero(np.nan_to_num(fd) > FD_THRESHOLD_MM)
    spikes = np.zeros((motion.shape[0], len(outliers)))
    spikes[outliers, np.arange(len(outliers))] = 1.0
    return [
        _expand(pd.DataFrame(estimated, columns=names), names),
        pd.DataFrame(spikes, columns=[f"motion_outlier{i:02d}" for i in range(len(outliers))]),
    ]
