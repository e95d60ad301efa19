"""Synthetic parcels with known HRFs, NRLs and labels for the JDE-VEM tests.

The BOLD signal is computed in continuous time (``sum_e a * h(t_n - onset_e)``), not with the
estimator's design code, so the tests check the estimator against an independent forward
model. Noise is AR(1); drifts are slow cosines plus a linear trend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from bids_hrf.hrf.jde._design import grid_adjacency


def gamma_hrf(t: np.ndarray, time_to_peak: float) -> np.ndarray:
    """Double-gamma HRF whose first gamma has its mode at ``time_to_peak`` (s); peak ~1."""
    t = np.asarray(t, dtype=float)
    scale = time_to_peak / 5.0
    h = stats.gamma.pdf(t, 6.0, scale=scale) - stats.gamma.pdf(t, 16.0, scale=scale) / 6.0
    grid = np.linspace(0, 40, 4001)
    peak = np.max(stats.gamma.pdf(grid, 6.0, scale=scale)
                  - stats.gamma.pdf(grid, 16.0, scale=scale) / 6.0)
    return h / peak


@dataclass
class SimParcel:
    Y: list[np.ndarray]
    events: list[pd.DataFrame]
    frame_times: list[np.ndarray]
    ijk: np.ndarray
    adjacency: object
    nrls: np.ndarray  # (M, J)
    labels: np.ndarray  # (M, J) 0/1
    conditions: list[str]
    time_to_peak: float
    tr: float
    hrf_fn: object = None

    def hrf(self, t: np.ndarray) -> np.ndarray:
        if self.hrf_fn is not None:
            return self.hrf_fn(np.asarray(t, dtype=float))
        return gamma_hrf(t, self.time_to_peak)


def make_events(rng, n_scans, tr, conditions, isi=(3.0, 6.0), durations=0.0):
    """Random event-related paradigm, alternating conditions in random order."""
    onsets, t = [], 4.0 + rng.uniform(0, 2)
    while t < n_scans * tr - 20:
        onsets.append(t)
        t += rng.uniform(*isi)
    types = rng.permutation(np.resize(np.asarray(conditions), len(onsets)))
    return pd.DataFrame({"onset": onsets, "duration": durations, "trial_type": types})


def simulate_parcel(
    shape=(6, 6, 3),
    n_runs: int = 2,
    n_scans: int = 150,
    tr: float = 2.0,
    conditions=("audio", "video"),
    time_to_peak: float = 5.0,
    amplitude: float = 1.0,
    noise_sd: float = 0.5,
    ar: float = 0.3,
    drift_sd: float = 1.0,
    seed: int = 0,
    frame_offset: float = 0.0,
    shared_sd: float = 0.0,
    n_shared: int = 3,
    hrf=None,
    events: list[pd.DataFrame] | None = None,
) -> SimParcel:
    """One parcel on a small 3-D grid; each condition activates a different half-block.

    Active NRLs ~ N(amplitude, (0.2 amplitude)^2), inactive ~ N(0, (0.05 amplitude)^2); the
    HRF peaks at 1, so ``amplitude / noise_sd`` is the peak signal-to-noise ratio.

    ``shared_sd > 0`` adds spatially correlated (physiological-like) noise: ``n_shared``
    AR(1) time courses (rho 0.5-0.9, one slow like a global signal) common to the parcel's
    voxels, with random positive-mean loadings, of SD about ``shared_sd`` per voxel. ``hrf``
    (a callable of time in s) replaces the double-gamma HRF; ``events`` (one table per run)
    replaces the random paradigm (to share one paradigm between parcels).
    """
    rng = np.random.default_rng(seed)
    ijk = np.argwhere(np.ones(shape, dtype=bool))
    J, M = ijk.shape[0], len(conditions)
    labels = np.zeros((M, J), dtype=int)
    labels[0] = ijk[:, 0] < shape[0] // 2
    if M > 1:
        labels[1] = ijk[:, 1] >= shape[1] // 2
    for m in range(2, M):
        labels[m] = (ijk[:, 2] + m) % 2
    nrls = np.where(labels == 1, rng.normal(amplitude, 0.2 * amplitude, (M, J)),
                    rng.normal(0.0, 0.05 * amplitude, (M, J)))
    Y, evs, fts = [], [], []
    for r in range(n_runs):
        ft = np.arange(n_scans) * tr + frame_offset
        ev = (make_events(rng, n_scans, tr, list(conditions)) if events is None
              else events[r])
        sig = np.zeros((n_scans, J))
        for m, c in enumerate(conditions):
            on = ev.loc[ev.trial_type == c, "onset"].to_numpy()
            lag = ft[:, None] - on[None, :]
            reg = hrf(lag) if hrf is not None else gamma_hrf(lag, time_to_peak)
            reg[lag < 0] = 0.0
            sig += reg.sum(1)[:, None] * nrls[m][None, :]
        e = rng.normal(0, noise_sd * np.sqrt(1 - ar**2), (n_scans, J))
        noise = np.zeros_like(e)
        noise[0] = rng.normal(0, noise_sd, J)
        for n in range(1, n_scans):
            noise[n] = ar * noise[n - 1] + e[n]
        tt = (ft - ft[0]) / (ft[-1] - ft[0])
        drift = (rng.normal(0, drift_sd, J)[None] * np.cos(np.pi * tt)[:, None]
                 + rng.normal(0, drift_sd, J)[None] * tt[:, None])
        if shared_sd > 0:
            rhos = np.linspace(0.9, 0.5, n_shared)
            common = np.zeros((n_scans, n_shared))
            common[0] = rng.normal(0, 1, n_shared)
            for n in range(1, n_scans):
                common[n] = rhos * common[n - 1] + rng.normal(0, 1, n_shared) * np.sqrt(
                    1 - rhos**2)
            loads = (0.5 + 0.5 * rng.normal(size=(n_shared, J))) * shared_sd / np.sqrt(
                0.5 * n_shared)
            noise = noise + common @ loads
        Y.append(100.0 + sig + noise + drift)
        evs.append(ev)
        fts.append(ft)
    return SimParcel(Y, evs, fts, ijk, grid_adjacency(ijk), nrls, labels, list(conditions),
                     time_to_peak, tr, hrf)
