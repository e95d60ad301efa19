"""Synthetic voxels whose HRF varies within parcels, for the voxel-wise HRF methods.

Each parcel has a time to peak; each voxel's time to peak is the parcel's plus a uniform
jitter (+-``jitter`` s). The HRF family is :func:`tests.jde_simulation.gamma_hrf` (SPM's
double gamma stretched in time), not the shapes of the estimators' library or basis. The
BOLD signal is computed in continuous time (``sum_e a * h(t_n - onset_e)``) from the
events, independently of the estimators' FIR design code. Noise is AR(1) plus slow
cosine drifts. Voxel time-to-peak values are rounded to 0.05 s so that the forward model
is computed once per distinct HRF (whole-brain sizes stay cheap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tests.jde_simulation import gamma_hrf


@dataclass
class VoxelSim:
    """Simulated runs with the truth."""

    Y: list[np.ndarray]  # per run (n_scans, n_voxels)
    events: list[pd.DataFrame]
    frame_times: list[np.ndarray]
    time_to_peak: np.ndarray  # (n_voxels,) true time to peak (s)
    parcels: np.ndarray  # (n_voxels,) parcel index
    amplitudes: np.ndarray  # (n_conditions, n_voxels); 0 where the voxel is silent
    conditions: list[str]
    tr: float

    def true_hrfs(self, time: np.ndarray) -> np.ndarray:
        """True unit-peak HRFs at ``time``, shape (n_times, n_voxels)."""
        uniq, inv = np.unique(self.time_to_peak, return_inverse=True)
        table = np.stack([gamma_hrf(time, t) for t in uniq], axis=1)
        return table[:, inv]


def simulate(n_parcels: int = 4, voxels_per_parcel: int = 50, n_runs: int = 2,
             n_scans: int = 200, tr: float = 2.0, n_conditions: int = 2,
             jitter: float = 1.0, ttp_range: tuple[float, float] = (4.5, 6.5),
             noise_sd: float = 1.0, rho: float = 0.3, active_fraction: float = 0.7,
             amplitude: float = 1.0, seed: int = 0) -> VoxelSim:
    """Simulate event-related runs with voxel-specific HRFs.

    Parameters
    ----------
    n_parcels, voxels_per_parcel : int
    n_runs, n_scans : int
    tr : float
    n_conditions : int
    jitter : float
        Half-width (s) of the uniform voxel jitter of the time to peak around the parcel's.
    ttp_range : tuple of float
        Range of the parcels' times to peak (uniform).
    noise_sd, rho : float
        AR(1) noise standard deviation and coefficient.
    active_fraction : float
        Share of voxels responding (to every condition); the others are silent.
    amplitude : float
        Mean response peak of active voxels (conditions scaled 1, 0.7, 0.5...).
    seed : int

    Returns
    -------
    VoxelSim
    """
    rng = np.random.default_rng(seed)
    n_vox = n_parcels * voxels_per_parcel
    parcels = np.repeat(np.arange(n_parcels), voxels_per_parcel)
    parcel_ttp = rng.uniform(*ttp_range, n_parcels)
    ttp = parcel_ttp[parcels] + rng.uniform(-jitter, jitter, n_vox)
    ttp = np.round(ttp / 0.05) * 0.05
    conditions = [f"c{m}" for m in range(n_conditions)]
    active = rng.random(n_vox) < active_fraction
    scale = np.array([1.0, 0.7, 0.5, 0.85, 0.6][:n_conditions])
    amps = amplitude * scale[:, None] * rng.uniform(0.7, 1.3, (n_conditions, n_vox)) * active
    uniq, inv = np.unique(ttp, return_inverse=True)
    Y, events, fts = [], [], []
    for _ in range(n_runs):
        ft = np.arange(n_scans) * tr
        on = np.cumsum(rng.uniform(2.0, 6.0, 4 * n_scans))
        on = on[on < ft[-1] - 20.0]
        cond = rng.integers(0, n_conditions, on.size)
        ev = pd.DataFrame({"onset": on, "duration": 0.0,
                           "trial_type": [conditions[c] for c in cond]})
        lag = ft[:, None] - on[None, :]  # (n_scans, n_events)
        sig = np.zeros((n_scans, n_vox))
        for i, t in enumerate(uniq):
            resp = gamma_hrf(np.clip(lag, 0, None), t) * (lag > 0)
            reg = np.stack([resp[:, cond == m].sum(axis=1) for m in range(n_conditions)], 1)
            sel = inv == i
            sig[:, sel] = reg @ amps[:, sel]
        e = np.empty((n_scans, n_vox))
        e[0] = rng.standard_normal(n_vox) * noise_sd
        innov = rng.standard_normal((n_scans, n_vox)) * noise_sd * np.sqrt(1 - rho**2)
        for t in range(1, n_scans):
            e[t] = rho * e[t - 1] + innov[t]
        drift = np.cos(np.pi * ft[:, None] / ft[-1] * rng.uniform(0.2, 1.0, (1, n_vox)))
        Y.append(100.0 + sig + e + 0.5 * drift)
        events.append(ev)
        fts.append(ft)
    return VoxelSim(Y, events, fts, ttp, parcels, amps, conditions, tr)
