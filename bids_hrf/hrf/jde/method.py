"""Registry entry of JDE-VEM (parcel-wise joint detection-estimation, as in PyHRF)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bids_hrf.errors import BidsHrfError, UsageError
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.jde.app import estimate_jde_vem, map_metadata
from bids_hrf.hrf.jde.vem import JDEVEM
from bids_hrf.hrf.registry import (
    HRFContext,
    MethodOptions,
    MethodSpec,
    VoxelRuns,
    estimator_default,
    option,
    register,
)


def _rate(text: str) -> float | None:
    """``auto`` (None: data-driven smoothness) or a positive number."""
    return None if text.strip().lower() == "auto" else float(text)


def _default(name: str):
    return estimator_default(JDEVEM, name)


@dataclass(frozen=True)
class JDEOptions(MethodOptions):
    """Options of JDE-VEM (defaults: :class:`~bids_hrf.hrf.jde.vem.JDEVEM`'s)."""

    estimate_hrf: bool = option(
        _default("estimate_hrf"), flag="estimate-hrf",
        help="estimate each parcel's HRF; --no-estimate-hrf keeps the canonical HRF of "
             "--hrf-model fixed (JDE-VEM then only estimates activations)")
    beta: float = option(_default("beta"), flag="jde-beta",
                         help="initial spatial interaction parameter of the Ising prior on "
                              "activation labels (then estimated); 0: no spatial "
                              "regularisation at start")
    sigma_h: float = option(_default("sigma_h"), flag="jde-sigma-h",
                            help="initial variance of the HRF smoothness prior (then estimated)")
    hrf_hyperprior: float | None = option(
        _default("hrf_hyperprior"), flag="jde-hrf-hyperprior", parse=_rate, metavar="RATE",
        help="PyHRF's fixed rate of the exponential hyperprior on the HRF variance (PyHRF: "
             "1000; higher: smoother HRFs); 'auto': the smoothness is chosen from "
             "the data of each parcel (docs/jde-vem.md)")
    n_iter_min: int = option(_default("n_iter_min"), flag="jde-iter-min",
                             help="minimum VEM iterations")
    n_iter_max: int = option(_default("n_iter_max"), flag="jde-iter-max",
                             help="maximum VEM iterations (convergence: change of the free energy "
                                  "per data point below 1e-4 on two successive iterations)")
    zero_constraint: bool = option(
        _default("zero_constraint"), flag="zero-constraint",
        help="pin the HRF's first and last samples to 0 (--no-zero-constraint: free)")

    def problems(self) -> list[BidsHrfError]:
        """Out-of-range values, each with its fix."""
        found: list[BidsHrfError] = []
        if self.beta < 0:
            found.append(UsageError(f"--jde-beta {self.beta} must be >= 0"))
        if not self.sigma_h > 0:
            found.append(UsageError(f"--jde-sigma-h {self.sigma_h} must be > 0"))
        if self.hrf_hyperprior is not None and not self.hrf_hyperprior > 0:
            found.append(UsageError(f"--jde-hrf-hyperprior {self.hrf_hyperprior} must be "
                                    "'auto' or a number > 0", fix="e.g. 1000 (PyHRF's)"))
        if self.n_iter_min < 1 or self.n_iter_max < 1:
            found.append(UsageError("--jde-iter-min and --jde-iter-max must be >= 1"))
        elif self.n_iter_min > self.n_iter_max:
            found.append(UsageError("--jde-iter-min is larger than --jde-iter-max",
                                    fix="lower --jde-iter-min or raise --jde-iter-max"))
        return found


def _estimate(data: VoxelRuns, context: HRFContext, options: JDEOptions) -> HRFEstimate:
    high_pass = context.high_pass
    return estimate_jde_vem(
        data.Y, data.events, data.frame_times, context.tr, data.parcels, dict(context.labels),
        data.ijk, contrasts=dict(context.contrasts) or None, n_jobs=context.n_jobs,
        progress=context.progress, adjacency=data.graph, dt=context.dt,
        hrf_duration=context.hrf_duration,
        beta=options.beta, sigma_h=options.sigma_h, hrf_hyperprior=options.hrf_hyperprior,
        hrf_model=context.hrf_model, n_iter_min=options.n_iter_min,
        n_iter_max=options.n_iter_max, zero_constraint=options.zero_constraint,
        estimate_hrf=options.estimate_hrf,
        drift_model="cosine" if high_pass else None, high_pass=high_pass or 0.01)


def _describe(options: JDEOptions, context: Mapping[str, str]) -> str:
    family = str(context["hrf_model_raw"]).split("+")[0].strip().lower() or "spm"
    canonical = {"spm": "SPM", "glover": "Glover"}.get(family, family)
    step, duration = context["step"], context["duration"]
    if not options.estimate_hrf:
        hrf = (f"The HRF was fixed to the canonical {canonical} HRF and only the neural "
               "response levels (NRLs), labels and mixture parameters were estimated.")
    else:
        zero = (" and its first and last samples were constrained to zero"
                if options.zero_constraint else "")
        if options.hrf_hyperprior is None:
            how = ("was estimated by maximum likelihood from the data of each parcel, with "
                   "the data term of the HRF update down-weighted by the measured excess "
                   "variance of the noise shared by the parcel's voxels")
        else:
            how = f"was estimated with an exponential hyperprior (rate {options.hrf_hyperprior:g})"
        hrf = (f"The HRF, sampled {step} over {duration} s, had a Gaussian smoothness "
               f"prior (second-order differences) whose variance {how}{zero}.")
    return ("HRFs and activations were jointly estimated with the parcel-based joint "
            "detection-estimation (JDE) model (Makni et al., 2008; Vincent et al., 2010), "
            "fitted by variational expectation-maximisation (JDE-VEM; Chaari et al., "
            "2013), as in PyHRF (Vincent et al., 2014), in our own implementation. Within "
            "each parcel, the BOLD signal of every voxel (percent signal change, nuisance "
            "regressors removed) was modelled as the sum over conditions of a voxel- and "
            "condition-specific neural response level (NRL) times the stimulus sequence "
            "convolved with one HRF shared by the parcel, plus a run-specific cosine drift "
            f"({context['high_pass']} Hz cut-off) and white Gaussian noise. {hrf} NRLs "
            "followed a two-class Gaussian mixture per condition with a spatial Ising prior "
            "on the labels (6-connectivity; interaction parameter estimated, initial value "
            f"{options.beta:g}). The algorithm started from the canonical "
            f"{canonical} HRF and iterated between {options.n_iter_min} and "
            f"{options.n_iter_max} times. Activation was summarised by "
            "posterior probability maps of the NRLs; the time to peak, full width at half "
            "maximum and peak height of each HRF were derived (Lindquist et al., 2009).")


SPEC = register(MethodSpec(
    name="jde-vem", summary="joint detection-estimation of parcel HRFs and activations "
                            "(variational EM, as in PyHRF)",
    options=JDEOptions, estimate=_estimate, describe=_describe, data="voxels-scrubbed",
    prefix="jde", uses_paradigm=True, needs_events=True,
    outputs=("hrf", "hrf variance", "hrfparams", "convergence", "PPM and NRL maps",
             "HRF parameter maps"),
    report_panels=("hrf",), map_metadata=map_metadata))
