"""What the three voxel-wise methods (rfir, r1glm, library) share in the registry.

Their estimators run on the voxel series of every run (censored volumes removed, drift in
the model), through :func:`bids_hrf.hrf._voxel_app.estimate_voxelwise`, which writes the
voxel HRFs, parameter and fit maps, a GLM with each voxel's own HRF and the parcel HRF
table (the R^2-weighted mean of the parcel's voxel HRFs, used by the first-level GLM).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bids_hrf.errors import BidsHrfError, UsageError
from bids_hrf.hrf._voxel_app import estimate_voxelwise, voxel_map_metadata
from bids_hrf.hrf.base import HRFEstimate
from bids_hrf.hrf.registry import (
    HRFContext,
    MethodOptions,
    MethodSpec,
    VoxelRuns,
    estimator_default,
    option,
)

GLM_HRFS = ("voxel", "parcel")

#: The option every voxel-wise method has (one flag, shared).
GLM_HRF_HELP = ("HRF of the voxel-wise GLM maps of the method: each voxel's own, or its "
                "parcel's R^2-weighted mean of the voxel HRFs (detects better at low SNR)")


def glm_hrf_option():
    """The shared ``--voxel-glm-hrf`` option (default: :func:`estimate_voxelwise`'s)."""
    return option(estimator_default(estimate_voxelwise, "glm_hrf"), GLM_HRF_HELP,
                  flag="voxel-glm-hrf", choices=GLM_HRFS)


def glm_hrf_problems(value: str) -> list[BidsHrfError]:
    """``--voxel-glm-hrf`` out of its choices."""
    return [] if value in GLM_HRFS else [
        UsageError(f"--voxel-glm-hrf {value!r} is not one of {', '.join(GLM_HRFS)}")]


def voxel_spec(name: str, summary: str, options: type[MethodOptions],
               make_estimator: Callable[[MethodOptions], object],
               describe: Callable[[MethodOptions, Mapping[str, str]], str]) -> MethodSpec:
    """The registry entry of a voxel-wise method whose estimator ``make_estimator`` builds."""

    def estimate(data: VoxelRuns, context: HRFContext, opts: MethodOptions) -> HRFEstimate:
        try:
            return estimate_voxelwise(
                name, make_estimator(opts), data.Y, data.events, data.frame_times,
                context.tr, data.parcels, dict(context.labels), dt=context.hrf_dt,
                fir_duration=context.hrf_duration, high_pass=context.high_pass or 0.0,
                contrasts=dict(context.contrasts), glm_hrf=opts.glm_hrf)
        except ValueError as exc:  # the estimators' checks of their data and settings
            raise UsageError(f"--hrf-method {name}: {exc}",
                             fix="see docs/usage.md (HRF methods)") from exc

    return MethodSpec(
        name=name, summary=summary, options=options, estimate=estimate, describe=describe,
        data="voxels-scrubbed", prefix=name, uses_paradigm=True, needs_events=True,
        outputs=("hrf", "voxel HRFs (4-D)", "time to peak, FWHM, height, undershoot maps",
                 "fit maps", "voxel-HRF GLM effect, variance and z maps", "ttphist"),
        report_panels=("hrf", "voxel-hrfs"), map_metadata=voxel_map_metadata)


def describe_voxel_glm(options: MethodOptions, context: Mapping[str, str]) -> str:
    """The sentences every voxel-wise method's paragraph ends with."""
    own = ("each voxel's own HRF" if options.glm_hrf == "voxel" else
           "the fit-weighted mean HRF of the voxel's parcel")
    return (f"HRFs were sampled {context['step']} over {context['duration']} s after "
            "onset, with a cosine drift model "
            f"({context['high_pass']} Hz cut-off) and AR(1) noise. The time to peak, full "
            "width at half maximum, height and undershoot of every voxel's HRF were mapped "
            "(Lindquist et al., 2009); activation maps came from a GLM whose regressors "
            f"used {own}, and each parcel's HRF (for the first-level GLM) was the mean of "
            "its voxels' unit-peak HRFs weighted by their R^2.")
