"""Registry entry of the FIR (tent basis) HRF of each parcel's mean time series."""

from __future__ import annotations

from collections.abc import Mapping

from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.fir.estimator import estimate_fir
from bids_hrf.hrf.registry import HRFContext, MethodSpec, NoOptions, ParcelRuns, register


def _estimate(data: ParcelRuns, context: HRFContext, options: NoOptions) -> HRFEstimate:
    # the parcel series are already cleaned and filtered in preparation: no drift here
    return estimate_fir(data.series, data.events, data.frame_times, context.tr,
                        context.names, fir_duration=context.hrf_duration, high_pass=0.0,
                        dt=context.hrf_dt)


def _describe(options: NoOptions, context: Mapping[str, str]) -> str:
    return ("The HRF of each parcel was estimated from its mean time series with a finite "
            f"impulse response model (Glover, 1999): tent basis functions {context['step']} "
            f"over {context['duration']} s after stimulus onset, with one shared response "
            "shape across conditions scaled by one amplitude per condition (rank-1 model; "
            "Pedregosa et al., 2015), estimated over all runs jointly (AR(1) noise model). "
            "The shape was normalised to unit Euclidean norm with a positive peak. For every "
            "HRF, the time to peak, full width at half maximum and peak height were computed "
            "(Lindquist et al., 2009).")


SPEC = register(MethodSpec(
    name="fir", summary="finite impulse response (tent basis) of each parcel's mean series",
    options=NoOptions, estimate=_estimate, describe=_describe, data="parcels",
    uses_paradigm=True, outputs=("hrf", "hrfparams")))
