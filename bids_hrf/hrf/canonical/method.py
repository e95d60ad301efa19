"""Registry entry of the canonical HRF (the GLM uses ``--hrf-model`` directly)."""

from __future__ import annotations

from collections.abc import Mapping

from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.basis import canonical_estimate
from bids_hrf.hrf.registry import HRFContext, MethodSpec, NoOptions, register


def _estimate(data: None, context: HRFContext, options: NoOptions) -> HRFEstimate:
    return canonical_estimate(context.names, hrf_model=context.hrf_model, dt=context.dt,
                              duration=context.hrf_duration)


def _describe(options: NoOptions, context: Mapping[str, str]) -> str:
    return f"The hemodynamic response was modelled with {context['hrf_model']}."


SPEC = register(MethodSpec(
    name="canonical", summary="the canonical HRF of --hrf-model in every parcel",
    options=NoOptions, estimate=_estimate, describe=_describe, data="none",
    uses_paradigm=False, needs_events=True, estimates_hrf=False, outputs=("hrf",)))
