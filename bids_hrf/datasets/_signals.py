"""Simulated BOLD signals: HRFs, events, motion, noise, and one run of voxel time series.

All functions are pure: arrays and a :class:`numpy.random.Generator` in, arrays out.
Signal model of brain voxel ``v`` at volume ``t`` (percent units inside the bracket)::

    y[t, v] = B[v] * (1 + 0.01 * (act + glob + phys + latent + drift + noise)) * nss[t]
              + motion[t, v]

``act`` is the sum over conditions of amplitude x (stimulus boxcar convolved with the
parcel HRF of unit peak, in seconds); a 1-s event of amplitude 1 peaks at about 1 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter
from scipy.stats import gamma

HRF_DT = 0.1  # seconds between samples of the true HRFs
HRF_LENGTH = 32.0  # seconds


def hrf_time() -> np.ndarray:
    """Sample times (s) of the true HRF tables."""
    return np.round(np.arange(0.0, HRF_LENGTH + HRF_DT / 2, HRF_DT), 10)


def _double_gamma(t: np.ndarray, scale: float) -> np.ndarray:
    """SPM-like double gamma (peak 6, undershoot 16, ratio 1/6) with dilated time axis."""
    return gamma.pdf(t, 6.0, scale=scale) - gamma.pdf(t, 16.0, scale=scale) / 6.0


def double_gamma_hrf(time_to_peak: float, t: np.ndarray | None = None) -> np.ndarray:
    """Double-gamma HRF with its maximum at ``time_to_peak`` seconds, normalised to unit peak.

    Parameters
    ----------
    time_to_peak : float
        Time of the maximum of the HRF, in seconds (1 to 15).
    t : ndarray, optional
        Sample times; default :func:`hrf_time`.

    Returns
    -------
    ndarray
        The HRF sampled at ``t``; its maximum over a fine grid is 1 at ``time_to_peak``.
    """
    if not 1.0 <= time_to_peak <= 15.0:
        raise ValueError(f"time_to_peak must be between 1 and 15 s, got {time_to_peak}")
    t = hrf_time() if t is None else np.asarray(t, dtype=float)
    # the peak time scales linearly with the dilation of the time axis
    scale = time_to_peak / _unit_scale_peak()
    peak = _double_gamma(np.array([time_to_peak]), scale)[0]
    return _double_gamma(t, scale) / peak


def _unit_scale_peak() -> float:
    """Time of the maximum of the double gamma with unit scale (about 5 s)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda x: -_double_gamma(np.array([x]), 1.0)[0],
        bounds=(3.0, 7.0),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(res.x)


def make_events(
    conditions: tuple[str, ...],
    n_scans: int,
    tr: float,
    n_dummy_scans: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Interleaved events with randomised durations (1-3 s) and inter-stimulus intervals.

    Events start after the non-steady-state volumes and end 12 s before the run ends;
    conditions follow shuffled balanced blocks so that they are interleaved.
    """
    start = n_dummy_scans * tr + rng.uniform(2.0, 4.0)
    stop = n_scans * tr - 12.0
    rows = []
    onset = start
    pending: list[str] = []
    while True:
        duration = float(np.round(rng.uniform(1.0, 3.0), 1))
        if onset + duration > stop:
            break
        if not pending:
            pending = list(rng.permutation(conditions))
        rows.append((round(onset, 2), duration, str(pending.pop()), 1.0))
        onset += duration + rng.uniform(2.0, 6.0)
    events = pd.DataFrame(rows, columns=["onset", "duration", "trial_type", "modulation"])
    if events.empty or events["trial_type"].nunique() < len(conditions):
        raise ValueError(
            f"a run of {n_scans} scans at TR {tr} s is too short for the conditions "
            f"{list(conditions)}; use more scans"
        )
    return events


def condition_regressors(
    events: pd.DataFrame,
    conditions: tuple[str, ...],
    hrfs: np.ndarray,
    n_scans: int,
    tr: float,
) -> np.ndarray:
    """Stimulus boxcars convolved with each HRF, sampled at the volume times.

    Parameters
    ----------
    hrfs : ndarray, shape (n_hrf_samples, n_parcels)
        HRFs at :data:`HRF_DT` (unit peak).

    Returns
    -------
    ndarray, shape (n_conditions, n_scans, n_parcels)
        Responses (integral of boxcar x HRF, in seconds) at ``t = k * tr``.
    """
    n_fine = int(round(n_scans * tr / HRF_DT))
    fine_t = np.arange(n_fine) * HRF_DT
    frames = np.round(np.arange(n_scans) * tr / HRF_DT).astype(int)
    n_fft = int(2 ** np.ceil(np.log2(n_fine + hrfs.shape[0])))
    hrf_f = np.fft.rfft(hrfs, n=n_fft, axis=0)
    out = np.zeros((len(conditions), n_scans, hrfs.shape[1]))
    for c, condition in enumerate(conditions):
        box = np.zeros(n_fine)
        for _, ev in events[events["trial_type"] == condition].iterrows():
            on = (fine_t >= ev["onset"]) & (fine_t < ev["onset"] + ev["duration"])
            box[on] += ev["modulation"]
        conv = np.fft.irfft(np.fft.rfft(box, n=n_fft)[:, None] * hrf_f, n=n_fft, axis=0)
        out[c] = conv[:n_fine][frames] * HRF_DT
    return out


def ar1(n: int, n_series: int, rho: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    """AR(1) series of marginal standard deviation ``sd``, shape (n, n_series), float32."""
    innov = rng.standard_normal((n, n_series)).astype(np.float32) * np.float32(
        sd * np.sqrt(1 - rho**2)
    )
    innov[0] /= np.float32(np.sqrt(1 - rho**2))  # stationary start
    return lfilter([1.0], [1.0, -rho], innov, axis=0).astype(np.float32)


def simulate_motion(
    n_scans: int, n_dummy_scans: int, n_spikes: int, rng: np.random.Generator
) -> np.ndarray:
    """Head motion (trans_x/y/z in mm, rot_x/y/z in rad): slow drift plus abrupt spikes.

    Each spike displaces the head by 0.5-0.9 mm for one volume (framewise displacement
    above 0.5 mm on two consecutive volumes).
    """
    steps = rng.normal(size=(n_scans, 6)) * np.array([0.02] * 3 + [0.0003] * 3)
    motion = np.cumsum(steps, axis=0)
    motion += np.linspace(0, 1, n_scans)[:, None] * rng.normal(size=6) * ([0.3] * 3 + [0.004] * 3)
    candidates = np.arange(n_dummy_scans + 3, n_scans - 3)
    for t in rng.choice(candidates, size=min(n_spikes, len(candidates)), replace=False):
        direction = rng.normal(size=3)
        motion[t, :3] += rng.uniform(0.5, 0.9) * direction / np.linalg.norm(direction)
    return motion - motion[0]


@dataclass
class RunSignals:
    """Simulated voxel time series of one run (brain voxels, C order) and its inputs."""

    bold: np.ndarray  # (n_scans, n_brain_voxels) float32, preprocessed-like
    motion: np.ndarray  # (n_scans, 6)
    events: pd.DataFrame | None


def simulate_run(
    *,
    baseline: np.ndarray,
    gradient: np.ndarray,
    rel_coords: np.ndarray,
    tissue_weights: dict[str, np.ndarray],
    parcel_index: np.ndarray,
    hrfs: np.ndarray,
    voxel_amplitudes: np.ndarray,
    conditions: tuple[str, ...],
    latent_loadings: np.ndarray,
    n_scans: int,
    tr: float,
    n_dummy_scans: int,
    noise_sd: float,
    with_events: bool,
    rng: np.random.Generator,
) -> RunSignals:
    """Simulate one run of brain-voxel time series.

    Parameters
    ----------
    baseline : ndarray, shape (n_vox,)
        Mean intensity of each brain voxel.
    gradient : ndarray, shape (n_vox, 3)
        Spatial gradient of the baseline image (intensity per mm), for motion artefacts.
    rel_coords : ndarray, shape (n_vox, 3)
        Voxel positions (mm) relative to the centre of rotation.
    tissue_weights : dict
        ``"global"`` and ``"phys"`` loadings of each voxel, shapes (n_vox,), (n_vox, k).
    parcel_index : ndarray of int, shape (n_vox,)
        Column of ``hrfs`` for each voxel (-1 outside grey matter).
    hrfs : ndarray, shape (n_hrf_samples, n_parcels)
        HRF of each parcel (unit peak).
    voxel_amplitudes : ndarray, shape (n_conditions, n_vox)
        Response amplitude (percent) of each voxel for each condition (0 = inactive).
    latent_loadings : ndarray, shape (n_latent, n_vox)
        Weights of each latent fluctuation (connectivity) on each voxel; each latent has
        its own independent AR(1) time course, so voxels loading on the same latent are
        correlated.
    """
    n_vox = baseline.size
    n_phys = tissue_weights["phys"].shape[1]
    motion = simulate_motion(n_scans, n_dummy_scans, int(rng.integers(1, 3)), rng)

    psc = ar1(n_scans, n_vox, 0.3, noise_sd, rng)  # thermal + physiological noise
    # slow drifts: common scanner drift plus voxel-specific linear/quadratic trends
    u = np.linspace(-1.0, 1.0, n_scans, dtype=np.float32)[:, None]
    psc += u * np.float32(rng.normal(0, 1.0))
    psc += u * rng.normal(0, 0.5, n_vox).astype(np.float32)
    psc += (u**2 - np.float32(1 / 3)) * rng.normal(0, 0.4, n_vox).astype(np.float32)
    # global signal and physiological fluctuations (strong in CSF, picked up by CompCor)
    glob = ar1(n_scans, 1, 0.8, 0.5, rng)
    psc += glob * tissue_weights["global"][None, :].astype(np.float32)
    phys = ar1(n_scans, n_phys, 0.5, 1.0, rng)
    psc += phys @ tissue_weights["phys"].T.astype(np.float32)
    # latent fluctuations that make parcels correlated (functional connectivity)
    if latent_loadings.shape[0]:
        latent = ar1(n_scans, latent_loadings.shape[0], 0.7, 1.0, rng)
        psc += latent @ latent_loadings.astype(np.float32)

    events = None
    if with_events:
        events = make_events(conditions, n_scans, tr, n_dummy_scans, rng)
        regs = condition_regressors(events, conditions, hrfs, n_scans, tr)
        in_gm = parcel_index >= 0
        for c in range(len(conditions)):
            act = voxel_amplitudes[c] != 0
            if act.any():
                cols = parcel_index[act & in_gm]
                psc[:, act & in_gm] += (regs[c][:, cols] * voxel_amplitudes[c, act & in_gm]).astype(
                    np.float32
                )

    bold = baseline.astype(np.float32)[None, :] * (1.0 + np.float32(0.01) * psc)
    # non-steady-state volumes: brighter at the start of the run
    nss = np.ones(n_scans, dtype=np.float32)
    nss[:n_dummy_scans] += 0.6 * 0.5 ** np.arange(n_dummy_scans)
    bold *= nss[:, None]
    # residual motion artefact: first-order change of the image moved by the motion
    torque = np.cross(rel_coords, gradient)
    artefact = motion[:, :3] @ gradient.T + motion[:, 3:] @ torque.T
    bold -= np.float32(0.3) * artefact.astype(np.float32)
    return RunSignals(bold=bold, motion=motion, events=events)
