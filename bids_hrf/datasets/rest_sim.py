"""Resting-state parcel data with a known HRF per parcel (for paradigm-free HRF estimation).

Each parcel has its own HRF, drawn with time to peak and width varied *independently*, and
its own train of sparse spontaneous neural events (a Poisson process in continuous time, not
on the scan grid) shared by all of its voxels with voxel-specific amplitudes. Added to the
BOLD response, per voxel: AR(1) noise, a low-frequency fluctuation shared by the voxels of the
parcel (not locked to the events), slow drifts and motion-coupled artefacts (the motion
parameters are returned as confounds; a few sudden head movements give spikes).

Two HRF families are available so that an estimator is not judged on the family it fits:

* ``"gamma"``: a double gamma whose positive lobe is a gamma density with the requested time
  to peak and FWHM, minus a gamma-shaped undershoot with a random ratio (0.05-0.35) and lag
  (6-12 s after the peak);
* ``"logit"``: the inverse-logit model of Lindquist & Wager (2007), a rise, a fall and a
  recovery each a logistic function of time, whose onset, rise and fall times are set from the
  requested time to peak and FWHM;
* ``"mixed"`` (default): each parcel draws one of the two at random.

The true time to peak and FWHM are measured on the generated curves
(:func:`bids_hrf.hrf.params.hrf_parameters`), so the truth does not rely on the parametrisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.signal import butter, sosfiltfilt
from scipy.stats import gamma

from bids_hrf.hrf.params import hrf_parameters

__all__ = ["RestSimulation", "simulate_rest", "clean_runs", "gamma_hrf", "logit_hrf"]

_DT = 0.1  # fine simulation grid (s)


def _gamma_fwhm_ratio(a: float) -> float:
    """FWHM / mode of a gamma density with shape ``a`` (scale 1)."""
    mode = a - 1.0
    t = np.linspace(1e-6, mode + 12 * np.sqrt(a) + 10, 20001)
    p = gamma.pdf(t, a)
    above = t[p >= p.max() / 2]
    return (above[-1] - above[0]) / mode


def gamma_hrf(
    t: np.ndarray, ttp: float, fwhm: float, undershoot_ratio: float = 1 / 6,
    undershoot_lag: float = 10.0,
) -> np.ndarray:
    """Double-gamma HRF whose positive lobe peaks at ``ttp`` with width ``fwhm`` (unit peak).

    Parameters
    ----------
    t : ndarray
        Seconds after the event.
    ttp, fwhm : float
        Time to peak and full width at half maximum of the positive lobe (s).
    undershoot_ratio : float
        Height of the undershoot density relative to the positive one.
    undershoot_lag : float
        Seconds from the peak to the undershoot's minimum.

    Returns
    -------
    ndarray
    """
    a = brentq(lambda x: _gamma_fwhm_ratio(x) - fwhm / ttp, 1.05, 400.0)
    scale = ttp / (a - 1.0)
    u_scale = 1.5
    u_shape = (ttp + undershoot_lag) / u_scale + 1.0
    pos_peak = gamma.pdf(ttp, a, scale=scale)
    neg_peak = gamma.pdf(ttp + undershoot_lag, u_shape, scale=u_scale)

    def shape(x):
        return (gamma.pdf(x, a, scale=scale) / pos_peak
                - undershoot_ratio * gamma.pdf(x, u_shape, scale=u_scale) / neg_peak)

    return shape(np.asarray(t, dtype=float)) / shape(np.arange(0.0, 40.0, 0.01)).max()


def logit_hrf(t: np.ndarray, ttp: float, fwhm: float, undershoot: float = 0.2) -> np.ndarray:
    """Inverse-logit HRF (Lindquist & Wager 2007) with a given time to peak and FWHM.

    ``h = L((t - T1) / D1) - (1 + u) L((t - T2) / D2) + u L((t - T3) / D3)`` with
    ``L(x) = 1 / (1 + exp(-x))``; the rise and fall times are set from ``fwhm`` and the
    onsets so that the peak lies near ``ttp``; the result is rescaled in time (about its
    onset) so that the measured time to peak is exactly ``ttp``.
    """
    t = np.asarray(t, dtype=float)
    d1 = fwhm / 6.0
    d2 = fwhm / 5.0
    t1 = max(ttp - 0.45 * fwhm, 3.0 * d1)
    t2 = t1 + 0.85 * fwhm
    t3 = t2 + 6.0

    def raw(x):
        def lg(z):
            return 1.0 / (1.0 + np.exp(-z))
        base = lambda x0: (lg((x0 - t1) / d1) - (1 + undershoot) * lg((x0 - t2) / d2)  # noqa: E731
                           + undershoot * lg((x0 - t3) / (2 * d2)))
        return base(x) - base(np.zeros_like(x))  # h(0) = 0

    grid = np.arange(0.0, 40.0, 0.01)
    g = raw(grid)
    peak_t = grid[np.argmax(g)]
    h = raw(t * peak_t / ttp)
    return h / g.max()


@dataclass
class RestSimulation:
    """Simulated resting-state runs of one participant, with the truth.

    Attributes
    ----------
    runs : list of ndarray, each (n_scans, n_voxels)
        Raw voxel time series (signal + noise + drifts + artefacts).
    confounds : list of ndarray, each (n_scans, 6)
        Motion parameters of each run.
    labels : ndarray of int, shape (n_voxels,)
        Parcel (1..n_parcels) of each voxel.
    tr : float
    time : ndarray
        Fine time grid of the true HRFs (s).
    hrfs : ndarray, shape (n_time, n_parcels)
        True HRFs (unit peak).
    ttp, fwhm : ndarray, shape (n_parcels,)
        True time to peak and FWHM measured on ``hrfs``.
    family : list of str
        HRF family of each parcel.
    events : list of list of ndarray
        ``events[run][parcel]``: event times (s) of each parcel in each run.
    """

    runs: list
    confounds: list
    labels: np.ndarray
    tr: float
    time: np.ndarray
    hrfs: np.ndarray
    ttp: np.ndarray
    fwhm: np.ndarray
    family: list
    events: list


def _lowpass_noise(n: int, k: int, tr: float, band: tuple[float, float],
                   rng: np.random.Generator) -> np.ndarray:
    nyq = 0.5 / tr
    lo, hi = band[0] / nyq, min(band[1] / nyq, 0.99)
    sos = butter(2, [lo, hi], btype="band", output="sos")
    x = sosfiltfilt(sos, rng.standard_normal((n + 200, k)), axis=0)[100:-100]
    return x / x.std(axis=0)


def simulate_rest(
    n_parcels: int = 16,
    n_voxels: int = 20,
    n_runs: int = 2,
    n_scans: int = 300,
    tr: float = 2.0,
    snr: float = 1.0,
    event_rate: float = 3.0,
    ttp_range: tuple[float, float] = (4.0, 7.5),
    fwhm_range: tuple[float, float] = (3.5, 7.0),
    family: str = "mixed",
    ar: float = 0.4,
    shared: float = 0.5,
    drift: float = 2.0,
    motion: float = 0.5,
    seed: int | None = 0,
) -> RestSimulation:
    """Simulate one participant's resting-state runs with a known HRF per parcel.

    Parameters
    ----------
    n_parcels, n_voxels : int
        Parcels, and voxels per parcel.
    n_runs, n_scans : int
        Runs and scans per run.
    tr : float
        Repetition time (s).
    snr : float
        Standard deviation of the voxel's BOLD response (mean voxel amplitude) over the
        standard deviation of its AR(1) noise.
    event_rate : float
        Spontaneous events per minute in each parcel (Poisson, continuous time).
    ttp_range, fwhm_range : tuple of float
        Uniform ranges of the time to peak and FWHM (s), drawn independently.
    family : {"mixed", "gamma", "logit"}
        HRF family (see the module docstring).
    ar : float
        AR(1) coefficient of the voxel noise.
    shared : float
        SD of the parcel-shared fluctuation (0.01-0.1 Hz), relative to the voxel noise SD.
    drift, motion : float
        SD of the slow drifts and of the motion-coupled artefacts, relative to the noise SD.
    seed : int, optional

    Returns
    -------
    RestSimulation
    """
    if family not in ("mixed", "gamma", "logit"):
        raise ValueError(f"family must be 'mixed', 'gamma' or 'logit', got {family!r}")
    if snr <= 0 or event_rate <= 0 or n_parcels < 1 or n_voxels < 1 or n_runs < 1:
        raise ValueError("snr, event_rate, n_parcels, n_voxels and n_runs must be positive")
    rng = np.random.default_rng(seed)
    time = np.arange(0.0, 32.0 + _DT / 2, _DT)
    hrfs, fams = _draw_hrfs(time, n_parcels, ttp_range, fwhm_range, family, rng)
    par = hrf_parameters(hrfs, time)
    labels = np.repeat(np.arange(1, n_parcels + 1), n_voxels)
    n_vox = labels.size
    amp = rng.uniform(0.5, 1.5, n_vox)
    runs, confounds, events = [], [], []
    for _ in range(n_runs):
        bold, ev_run = _parcel_responses(hrfs, time, n_scans, tr, event_rate, rng)
        events.append(ev_run)
        noise = _ar1_noise(n_scans, n_vox, ar, rng)
        fluct = _lowpass_noise(n_scans, n_parcels, tr, (0.01, 0.1), rng)
        fluct_w = rng.uniform(0.5, 1.5, n_vox)
        frame = np.arange(n_scans) / n_scans
        drifts = sum(rng.standard_normal(n_vox) * np.cos(np.pi * k * frame)[:, None] / k
                     for k in range(1, 4))
        mot = _motion(n_scans, rng)
        load = rng.standard_normal((6, n_vox)) / np.sqrt(6)
        y = (snr * bold[:, labels - 1] * amp + noise
             + shared * fluct[:, labels - 1] * fluct_w
             + drift * drifts + motion * mot @ load)
        runs.append(y + 100.0)
        confounds.append(mot)
    return RestSimulation(runs=runs, confounds=confounds, labels=labels, tr=tr, time=time,
                          hrfs=hrfs, ttp=par.time_to_peak, fwhm=par.fwhm, family=fams,
                          events=events)


def _draw_hrfs(time: np.ndarray, n_parcels: int, ttp_range: tuple[float, float],
               fwhm_range: tuple[float, float], family: str,
               rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """One HRF per parcel on ``time`` (time to peak and FWHM uniform), and its family."""
    ttp_req = rng.uniform(*ttp_range, n_parcels)
    fwhm_req = rng.uniform(*fwhm_range, n_parcels)
    fams = ([family] * n_parcels if family != "mixed"
            else [str(f) for f in rng.choice(["gamma", "logit"], n_parcels)])
    hrfs = np.empty((time.size, n_parcels))
    for p in range(n_parcels):
        if fams[p] == "gamma":
            hrfs[:, p] = gamma_hrf(time, ttp_req[p], fwhm_req[p], rng.uniform(0.05, 0.35),
                                   rng.uniform(6.0, 12.0))
        else:
            hrfs[:, p] = logit_hrf(time, ttp_req[p], fwhm_req[p], rng.uniform(0.05, 0.35))
    return hrfs, fams


def _parcel_responses(hrfs: np.ndarray, time: np.ndarray, n_scans: int, tr: float,
                      event_rate: float, rng: np.random.Generator
                      ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each parcel's standardised response to its spontaneous events, and the onsets."""
    n_parcels = hrfs.shape[1]
    n_fine = int(round(n_scans * tr / _DT))
    scan_idx = np.round(np.arange(n_scans) * tr / _DT).astype(int)
    bold = np.empty((n_scans, n_parcels))
    onsets_by_parcel = []
    for p in range(n_parcels):
        lead = time[-1]  # events before the first scan still shape the first scans
        n_ev = rng.poisson(event_rate * (n_scans * tr + lead) / 60.0)
        onsets = np.sort(rng.uniform(-lead, n_scans * tr, n_ev))
        neural = np.zeros(n_fine + time.size)
        idx = np.round((onsets + lead) / _DT).astype(int)
        np.add.at(neural, np.clip(idx, 0, neural.size - 1), rng.uniform(0.5, 1.5, n_ev))
        off = int(round(lead / _DT))
        full = np.convolve(neural, hrfs[:, p])[off: off + n_fine]
        b = full[scan_idx]
        bold[:, p] = b / b.std() if b.std() > 0 else b
        onsets_by_parcel.append(onsets[onsets >= 0])
    return bold, onsets_by_parcel


def _ar1_noise(n_scans: int, n_vox: int, ar: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance AR(1) noise of each voxel."""
    noise = np.empty((n_scans, n_vox))
    e = rng.standard_normal((n_scans, n_vox)) * np.sqrt(1 - ar**2)
    noise[0] = rng.standard_normal(n_vox)
    for t in range(1, n_scans):
        noise[t] = ar * noise[t - 1] + e[t]
    return noise


def _motion(n_scans: int, rng: np.random.Generator) -> np.ndarray:
    """Six standardised motion parameters: a random walk with two jumps."""
    mot = np.cumsum(rng.standard_normal((n_scans, 6)) * 0.05, axis=0)
    jumps = rng.choice(np.arange(10, n_scans - 10), 2, replace=False)
    for j in jumps:
        mot[j:] += rng.standard_normal(6) * 0.5
    mot -= mot.mean(axis=0)
    mot /= np.maximum(mot.std(axis=0), 1e-12)
    return mot


def clean_runs(sim: RestSimulation, high_pass: float = 0.01,
               use_confounds: bool = True) -> list[np.ndarray]:
    """Confound-clean the runs as the app does: motion regressors, detrending, high-pass.

    Parameters
    ----------
    sim : RestSimulation
    high_pass : float
        Cut-off (Hz) of nilearn's cosine high-pass filter.
    use_confounds : bool
        Regress the motion parameters.

    Returns
    -------
    list of ndarray, each (n_scans, n_voxels)
    """
    from nilearn.signal import clean

    return [clean(y, confounds=c if use_confounds else None, detrend=True, high_pass=high_pass,
                  t_r=sim.tr, standardize=None)
            for y, c in zip(sim.runs, sim.confounds, strict=True)]
