"""Registry entry of SPLORA: sparse plus low-rank paradigm free mapping (nuclear norm).

Uruñuela et al. (2021): ``min 1/2 ||Y - H S - L||_F^2 + sum_v lambda_v ||s_v||_1 +
rho ||L||_*`` over all voxels of a run (:class:`~bids_hrf.hrf.sparse.splora.SPLORA`), so that
signals shared by the whole brain (global, physiological) go into the low-rank ``L`` rather
than into the activity ``S``. The HRF is the canonical one (``--hrf-model``): the HRF table
is the canonical HRF of every parcel, and a first-level GLM of task runs uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from bids_hrf.errors import BidsHrfError, UsageError
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.basis import canonical_estimate
from bids_hrf.hrf.registry import (
    HRFContext,
    MethodOptions,
    MethodSpec,
    VoxelRuns,
    estimator_default,
    option,
    register,
)
from bids_hrf.hrf.sparse.splora import SPLORA

_MAPS = {
    "activity": "activity-inducing signal S (sparse), one volume per scan",
    "lowrank": "low-rank component L (signals shared across voxels), one volume per scan",
    "denoised": "fitted BOLD H S + L, one volume per scan",
}


def _default(name: str):
    return estimator_default(SPLORA, name)


@dataclass(frozen=True)
class SPLORAOptions(MethodOptions):
    """Options of SPLORA (defaults: :class:`SPLORA`'s)."""

    lambda_factor: float = option(_default("lambda_factor"),
                                  "sparsity: lambda of each voxel = this x its MAD noise level")
    rho_factor: float = option(_default("rho_factor"),
                               "low rank: nuclear-norm weight = this x the largest singular "
                               "value expected from noise alone")
    max_iter: int = option(_default("max_iter"), "maximum FISTA iterations")

    def problems(self) -> list[BidsHrfError]:
        """Out-of-range values."""
        found: list[BidsHrfError] = []
        if self.lambda_factor < 0 or self.rho_factor < 0:
            found.append(UsageError("--splora-lambda-factor and --splora-rho-factor must be "
                                    ">= 0"))
        if int(self.max_iter) < 1:
            found.append(UsageError(f"--splora-max-iter {self.max_iter} must be >= 1"))
        return found


def _estimate(data: VoxelRuns, context: HRFContext, options: SPLORAOptions) -> HRFEstimate:
    shape = context.hrf_model.split("+")[0].strip()
    maps: dict[str, np.ndarray] = {}
    ranks, rhos, iterations = [], [], []
    for index, Y in enumerate(data.Y):
        fit = SPLORA(context.tr, hrf_model=shape, lambda_factor=options.lambda_factor,
                     rho_factor=options.rho_factor, max_iter=int(options.max_iter)).fit(Y)
        maps[f"run{index}:desc-activity_bold"] = fit.coef_
        maps[f"run{index}:desc-lowrank_bold"] = fit.low_rank_
        maps[f"run{index}:desc-denoised_bold"] = fit.fitted_
        ranks.append(int(fit.rank_))
        rhos.append(float(fit.rho_))
        iterations.append(int(fit.n_iter_))
        if context.progress is not None:
            context.progress(index + 1, len(data.Y))
    canonical = canonical_estimate(context.names, hrf_model=context.hrf_model, dt=context.dt,
                                   duration=context.hrf_duration)
    parameters = {**canonical.parameters, "lambda_factor": options.lambda_factor,
                  "rho_factor": options.rho_factor, "max_iter": int(options.max_iter),
                  "low_rank_rank": ranks, "rho": rhos, "n_iter": iterations,
                  "time_convention": "coefficient i = event at scan i"}
    return HRFEstimate(time=canonical.time, hrfs=canonical.hrfs, labels=canonical.labels,
                       method="splora", parameters=parameters, voxel_maps=maps)


def _map_metadata(fragment: str, parameters: dict) -> dict:
    key = next((k for k in _MAPS if f"desc-{k}_" in fragment), None)
    meta = {"Description": "SPLORA (sparse + low-rank paradigm free mapping): "
                           + _MAPS.get(key, fragment),
            "Units": "percent signal change",
            "TimeConvention": parameters.get("time_convention")}
    if key == "lowrank":
        meta["Rank"] = parameters.get("low_rank_rank")
    return meta


def _describe(options: SPLORAOptions, context: Mapping[str, str]) -> str:
    return ("The activity-inducing signal of every voxel was estimated without reference to "
            "the paradigm by sparse and low-rank paradigm free mapping (SPLORA; Uruñuela et "
            "al., 2021): each run's voxel time series (percent signal change, nuisance "
            f"regressors and a {context['high_pass']} Hz high-pass removed) were decomposed "
            f"into the convolution of a sparse activity with {context['hrf_model']}, plus a "
            "low-rank component shared across voxels, by minimising the squared residual "
            "plus an L1 penalty on the activity (weight "
            f"{options.lambda_factor:g} times each voxel's noise level) and a nuclear-norm "
            f"penalty on the low-rank component (weight {options.rho_factor:g} times the "
            "largest singular value expected from noise), with accelerated proximal "
            f"gradient descent (FISTA, at most {int(options.max_iter)} iterations) and "
            "least-squares debiasing of the selected events.")


SPEC = register(MethodSpec(
    name="splora", summary="sparse + low-rank paradigm free mapping (nuclear norm; Uruñuela "
                           "2021): activity and a low-rank global component per run",
    options=SPLORAOptions, estimate=_estimate, describe=_describe, data="voxels-contiguous",
    prefix="splora", uses_paradigm=False, needs_events=False, estimates_hrf=False,
    outputs=("hrf (canonical)", "activity series", "low-rank series", "denoised series"),
    report_panels=("hrf", "sparse-fits"), map_metadata=_map_metadata))
