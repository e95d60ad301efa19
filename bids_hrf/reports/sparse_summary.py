"""What the report shows of a sparse-deconvolution run, computed by the sparse step.

The sparse step has the cleaned voxel data, the deconvolved activity and the fit in memory;
:func:`summarise_sparse_run` keeps the little the report draws (two example voxels, the
paradigm-locking table, the event rate of every voxel) so that the report step never reloads
the BOLD nor re-runs event detection. :func:`write_sparse_summary` and
:func:`read_sparse_summary` store it next to the step's other outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class SparseRunSummary:
    """Report material of one sparse-deconvolution run.

    Attributes
    ----------
    kind : str
        ``"innovation"`` or ``"activity-inducing"``.
    frame_times : ndarray, shape (n_scans,)
    voxels : list of dict
        Example voxels: ``what`` ("most active voxel", "typical voxel") and ``parcel``.
    bold, denoised, activity : ndarray, shape (n_scans, n_examples)
        Cleaned BOLD (percent change), sparse fit and activity of the example voxels.
    rate : ndarray, shape (n_voxels,)
        Non-zero activity coefficients per minute in each voxel.
    table : pandas.DataFrame or None
        Paradigm locking per parcel and condition (None without events), strongest first.
    """

    kind: str
    frame_times: np.ndarray
    voxels: list
    bold: np.ndarray
    denoised: np.ndarray
    activity: np.ndarray
    rate: np.ndarray
    table: pd.DataFrame | None


def summarise_sparse_run(Y: np.ndarray, activity: np.ndarray, denoised: np.ndarray,
                         frame_times: np.ndarray, events: pd.DataFrame | None,
                         parcels: np.ndarray, names: dict[int, str], tr: float,
                         kind: str = "activity-inducing") -> SparseRunSummary:
    """Pick the example voxels, detect paradigm locking and count events per voxel.

    Parameters
    ----------
    Y, activity, denoised : ndarray, shape (n_scans, n_voxels)
        The data the method saw, its activity (or innovation) signal and its fit.
    frame_times : ndarray, shape (n_scans,)
    events : pandas.DataFrame or None
        The run's events (``onset``, optionally ``trial_type``).
    parcels : ndarray of int, shape (n_voxels,)
        Parcel of each voxel (0: background).
    names : dict of int to str
        Parcel names.
    tr : float
        Repetition time (s).
    kind : str
        Name of the activity signal.

    Returns
    -------
    SparseRunSummary
        Example voxels: the most active voxel of the most paradigm-locked parcel (task) or
        of the whole brain (rest), and the median voxel of that parcel by event count.
    """
    from bids_hrf.hrf.sparse.app import detect_events

    Y, A, D = (np.asarray(x) for x in (Y, activity, denoised))
    if not (Y.shape == A.shape == D.shape):
        raise ValueError(f"Y {Y.shape}, activity {A.shape} and denoised {D.shape} differ")
    parcels = np.asarray(parcels).astype(int)
    table = None
    if events is not None and len(events):
        conds = (events.groupby("trial_type") if "trial_type" in events.columns
                 else [("all", events)])
        parts = [detect_events(A, frame_times, ev["onset"].to_numpy(), parcels, names,
                               window=1).assign(condition=str(cond)) for cond, ev in conds]
        table = pd.concat(parts, ignore_index=True)
        table = table[["parcel", "condition", "n_onsets", "response", "lag", "detected",
                       "chance"]]
        order = np.argsort(-table["response"].fillna(-np.inf).to_numpy(), kind="stable")
        table = table.iloc[order].reset_index(drop=True)
    if table is not None and len(table):
        inverse = {v: k for k, v in names.items()}
        pool = np.flatnonzero(parcels == inverse.get(table["parcel"].iloc[0], -1))
    else:
        pool = np.flatnonzero(parcels > 0)
    if pool.size == 0:
        pool = np.arange(A.shape[1])
    n_active = np.count_nonzero(A[:, pool], axis=0)
    best = int(pool[np.argmax(np.abs(A[:, pool]).sum(0))])
    typical = int(pool[np.argsort(n_active, kind="stable")[n_active.size // 2]])
    picks = [best, typical]
    voxels = [{"what": what, "parcel": names.get(int(parcels[v]), "background")}
              for v, what in zip(picks, ("most active voxel", "typical voxel"), strict=True)]
    rate = np.count_nonzero(A, axis=0) / (A.shape[0] * float(tr) / 60.0)
    return SparseRunSummary(kind=kind, frame_times=np.asarray(frame_times, dtype=float),
                            voxels=voxels, bold=Y[:, picks].astype(np.float32),
                            denoised=D[:, picks].astype(np.float32),
                            activity=A[:, picks].astype(np.float32), rate=rate, table=table)


def write_sparse_summary(summary: SparseRunSummary, mask_img, out_dir: str | Path,
                         stem: str) -> dict:
    """Save ``summary`` as ``<stem>.npz``, ``<stem>.json``, a rate map and a table TSV.

    Returns
    -------
    dict
        Paths: ``arrays``, ``meta``, ``rate`` (NIfTI) and ``table`` ("" when none).
    """
    import nibabel as nib
    from nilearn.masking import unmask

    out_dir = Path(out_dir)
    arrays = out_dir / f"{stem}.npz"
    np.savez(arrays, frame_times=summary.frame_times, bold=summary.bold,
             denoised=summary.denoised, activity=summary.activity)
    rate = out_dir / f"{stem}_rate.nii.gz"
    nib.save(unmask(summary.rate.astype(np.float32), mask_img), str(rate))
    table = ""
    if summary.table is not None:
        table = str(out_dir / f"{stem}_events.tsv")
        summary.table.to_csv(table, sep="\t", index=False, na_rep="n/a")
    meta = out_dir / f"{stem}.json"
    meta.write_text(json.dumps({"kind": summary.kind, "voxels": summary.voxels}))
    return {"arrays": str(arrays), "meta": str(meta), "rate": str(rate), "table": table}


def read_sparse_summary(paths: dict) -> tuple[dict, dict, pd.DataFrame | None]:
    """Arrays, metadata and table written by :func:`write_sparse_summary`."""
    with np.load(paths["arrays"]) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(Path(paths["meta"]).read_text())
    table = pd.read_csv(paths["table"], sep="\t") if paths.get("table") else None
    return arrays, meta, table
