"""Registry entry of sparse deconvolution (paradigm free mapping, as in pySPFM)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from bids_hrf.errors import BidsHrfError, UsageError
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.registry import (
    HRFContext,
    MethodOptions,
    MethodSpec,
    VoxelRuns,
    estimator_default,
    option,
    register,
)
from bids_hrf.hrf.sparse.app import estimate_sparse, hrf_parameter_table, map_metadata

CRITERIA = ("bic", "aic", "mad", "mad_update", "ut", "lut", "factor", "pcg", "eigval")
_LARS_CRITERIA = ("bic", "aic")


def _default(name: str):
    return estimator_default(estimate_sparse, name)


@dataclass(frozen=True)
class SparseOptions(MethodOptions):
    """Options of sparse deconvolution (defaults: :func:`estimate_sparse`'s, but one)."""

    # The app keeps the canonical HRF unless asked (estimate_sparse's own default is True):
    # without a paradigm the time to peak is weakly identifiable (docs/sparse.md, "What is
    # identifiable without a paradigm").
    estimate_hrf: bool = option(
        False, flag="estimate-hrf",
        help="estimate each parcel's HRF blindly, without the paradigm; kept canonical by "
             "default (its paradigm-free estimate is weakly identified, see docs/sparse.md)")
    criterion: str = option(_default("criterion"), flag="sparse-criterion", choices=CRITERIA,
                            help="how the regularisation parameter is chosen: bic or aic on the "
                                 "LARS path of each voxel; the others are noise-based rules "
                                 "with FISTA (docs/methods.md)")
    group: float = option(_default("group"), flag="sparse-group",
                          help="weight in [0, 1] of the L2,1 (group) penalty coupling the "
                               "voxels of a parcel at each time point; 0: voxel-wise L1; "
                               "needs a FISTA criterion")
    block_model: bool = option(_default("block_model"), flag="sparse-block",
                               help="block model: estimate innovation signals (onsets and offsets "
                                    "of sustained activity) instead of spike-like activity")
    n_surrogates: int = option(_default("n_surrogates"), flag="stability-surrogates",
                               metavar="N", help="stability selection with N surrogates "
                                                 "(e.g. 50; writes an AUC map); 0: off")
    multi_echo: bool = option(
        False, flag="multi-echo",
        help="deconvolve the echoes of multi-echo runs jointly (fMRIPrep's "
             "--me-output-echos files beside the combined BOLD, EchoTime from their "
             "sidecars), as pySPFM; canonical HRF (not with --estimate-hrf)")

    def problems(self) -> list[BidsHrfError]:
        """Out-of-range values and the grouping/criterion rule, each with its fix."""
        found: list[BidsHrfError] = []
        if self.criterion not in CRITERIA:
            found.append(UsageError(f"--sparse-criterion {self.criterion!r} is not one of "
                                    f"{', '.join(CRITERIA)}"))
        if not 0 <= self.group <= 1:
            found.append(UsageError(f"--sparse-group {self.group} is out of range",
                                    fix="give a weight between 0 (voxel-wise L1) and 1 "
                                        "(L2,1 only)"))
        elif self.group > 0 and self.criterion in _LARS_CRITERIA:
            found.append(UsageError(
                f"--sparse-group {self.group:g} needs a FISTA criterion, not "
                f"--sparse-criterion {self.criterion} (the LARS path of bic/aic is voxel-wise)",
                fix="add --sparse-criterion mad (or ut, lut, factor, pcg, eigval)"))
        if self.n_surrogates < 0:
            found.append(UsageError("--stability-surrogates must be >= 0"))
        return found


def _estimate(data: VoxelRuns, context: HRFContext, options: SparseOptions) -> HRFEstimate:
    """Deconvolve each run; the HRF table averages the runs' HRFs (unit norm).

    Each run's maps are returned as ``run<i>:<fragment>`` (and its tables likewise).
    """
    estimates = []
    voxel_maps: dict[str, np.ndarray] = {}
    tables: dict = {}
    for index, Y in enumerate(data.Y):
        est = estimate_sparse(
            Y, context.tr, data.parcels, dict(context.labels), criterion=options.criterion,
            group=options.group, block_model=options.block_model,
            n_surrogates=options.n_surrogates, estimate_hrf=options.estimate_hrf,
            hrf_model=context.hrf_model.split("+")[0].strip(), dt=context.dt,
            hrf_duration=context.hrf_duration, high_pass=context.high_pass or 0.0,
            n_jobs=context.n_jobs,
            te=data.echo_times[index] if options.multi_echo and data.echo_times else None)
        estimates.append(est)
        voxel_maps.update({f"run{index}:{k}": v for k, v in est.voxel_maps.items()})
        tables.update({f"run{index}:{k}": v for k, v in est.parcel_tables.items()})
    first = estimates[0]
    hrfs = np.mean([e.hrfs for e in estimates], axis=0)
    norms = np.linalg.norm(hrfs, axis=0)
    hrfs = hrfs / np.where(norms > 0, norms, 1.0)
    variance = (np.var([e.hrfs for e in estimates], axis=0) / len(estimates)
                if len(estimates) > 1 and options.estimate_hrf else None)
    if len(estimates) > 1:
        tables.update(hrf_parameter_table(first.time, hrfs, first.labels))
        if options.estimate_hrf and "hrfparams" in tables:
            _combine_blind_columns(tables["hrfparams"],
                                   [e.parcel_tables.get("hrfparams") for e in estimates])
    return HRFEstimate(time=first.time, hrfs=hrfs, labels=first.labels, method="sparse",
                       variance=variance,
                       parameters={**first.parameters, "n_runs_averaged": len(estimates),
                                   **_echo_times_per_run(data, options)},
                       voxel_maps=voxel_maps, parcel_tables=tables)


def _combine_blind_columns(table, per_run: list) -> None:
    """The runs-averaged table of ``--estimate-hrf`` gets the blind estimates' uncertainty:
    SD of the mean of independent runs (``sqrt(sum sd^2) / n``), events summed, and
    identifiable like one run (enough events, SD within ``max_ttp_sd``)."""
    from bids_hrf.hrf.blind.parcel import ParcelBlindHRF

    runs = [t for t in per_run if t is not None and "time_to_peak_sd" in t.columns]
    if not runs:
        return
    n = len(runs)
    for column in ("time_to_peak_sd", "fwhm_sd"):
        stacked = np.column_stack([t[column].to_numpy(dtype=float) for t in runs])
        table[column] = np.sqrt(np.sum(stacked ** 2, axis=1)) / n
    table["n_events"] = np.sum([t["n_events"].to_numpy(dtype=float) for t in runs], axis=0)
    rule = ParcelBlindHRF(tr=1.0)  # the estimator's defaults, as the app uses them
    table["identifiable"] = ((table["n_events"].to_numpy() >= rule.min_events)
                             & (table["time_to_peak_sd"].to_numpy() <= rule.max_ttp_sd))


def _echo_times_per_run(data: VoxelRuns, options: SparseOptions) -> dict:
    """Runs with different echo times: each run's (the sidecars give the first run's)."""
    times = data.echo_times if options.multi_echo else None
    if times and len({tuple(t) for t in times}) > 1:
        return {"echo_times_ms_per_run": [list(t) for t in times]}
    return {}


def _describe(options: SparseOptions, context: Mapping[str, str]) -> str:
    criterion = str(options.criterion).lower()
    if criterion in _LARS_CRITERIA:
        solver = ("The L1-regularised problem was solved for every voxel with least angle "
                  "regression (Efron et al., 2004) and the regularisation parameter "
                  "minimising the "
                  + ("Bayesian information criterion (Schwarz, 1978)" if criterion == "bic"
                     else "Akaike information criterion (Akaike, 1974)")
                  + " was selected; the estimates were debiased by least squares on the "
                  "selected support.")
    else:
        solver = ("The problem was solved with FISTA (Beck & Teboulle, 2009) with a "
                  f"regularisation parameter set from the noise level (criterion "
                  f"'{criterion}').")
    parts = ["The activity-inducing signal of every voxel was estimated without reference "
             "to the paradigm by sparse paradigm free mapping (Caballero-Gaudes et al., "
             "2013; Uruñuela et al., 2020, 2024), in our own implementation following "
             "pySPFM. Each voxel's time series (percent signal change, nuisance "
             f"regressors and a {context['high_pass']} Hz high-pass removed) was modelled as "
             "the convolution of a sparse "
             + ("innovation signal, integrated by a cumulative sum (block model; "
                "Karahanoğlu et al., 2013)," if options.block_model else
                "activity-inducing signal")
             + " with the HRF.", solver]
    if options.multi_echo:
        parts.append("The echoes of each multi-echo run (fMRIPrep's per-echo outputs, each "
                     "cleaned like a single-echo run) were deconvolved jointly: one "
                     "activity signal per voxel, the HRF of echo k scaled by -TE_k "
                     "(Caballero-Gaudes et al., 2019).")
    if float(options.group or 0.0) > 0:
        parts.append("A mixed L2,1 penalty (weight "
                     f"{float(options.group):g}) grouped the voxels of each "
                     "time point (Uruñuela et al., 2024).")
    if int(options.n_surrogates or 0) > 0:
        parts.append("Stability selection (Meinshausen & Bühlmann, 2010) was performed "
                     f"with {int(options.n_surrogates)} surrogate data sets.")
    if options.estimate_hrf:
        parts.append("The HRF of each parcel was estimated without the paradigm: the "
                     "parcel's voxels were pooled by their leading singular vector (rank one) "
                     "and deconvolved with non-negative sparse events for a grid of "
                     "double-gamma HRFs, whose penalised likelihoods, with a Gaussian prior on "
                     "time to peak and width, weighted the candidates; the weighted-mean HRF "
                     f"was sampled {context['step']} over {context['duration']} s (unit norm), "
                     "and the time to peak and FWHM were reported with calibrated standard "
                     "deviations and an identifiability flag.")
    else:
        parts.append("The HRF was the canonical SPM HRF.")
    return " ".join(parts)


SPEC = register(MethodSpec(
    name="sparse", summary="sparse deconvolution of voxel activity without the paradigm "
                           "(paradigm free mapping, as in pySPFM)",
    options=SparseOptions, estimate=_estimate, describe=_describe, data="voxels-contiguous",
    prefix="sparse", uses_paradigm=False, needs_events=False,
    outputs=("hrf", "hrfparams", "activity or innovation series", "denoised series",
             "lambda map", "stability AUC"),
    report_panels=("hrf", "sparse-fits"), map_metadata=map_metadata))
