"""Registry entry of the regularised FIR (voxel-wise HRFs with a smoothness prior)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bids_hrf.errors import BidsHrfError, UsageError
from bids_hrf.hrf._voxel_method import (
    describe_voxel_glm,
    glm_hrf_option,
    glm_hrf_problems,
    voxel_spec,
)
from bids_hrf.hrf.registry import MethodOptions, estimator_default, option, register
from bids_hrf.hrf.rfir.estimator import RegularizedFIR


@dataclass(frozen=True)
class RFIROptions(MethodOptions):
    """Options of the regularised FIR (defaults: :class:`RegularizedFIR`'s)."""

    shared_hrf: bool = option(
        estimator_default(RegularizedFIR, "shared_hrf"),
        "one HRF per voxel shared by all conditions (default: one per condition)")
    n_lambdas: int = option(estimator_default(RegularizedFIR, "n_lambdas"),
                            "size of the grid over which each voxel's smoothness is chosen "
                            "by marginal likelihood")
    glm_hrf: str = glm_hrf_option()

    def problems(self) -> list[BidsHrfError]:
        """Out-of-range values."""
        found = glm_hrf_problems(self.glm_hrf)
        if int(self.n_lambdas) < 2:
            found.append(UsageError(f"--rfir-n-lambdas {self.n_lambdas} must be >= 2"))
        return found


def _make(options: RFIROptions) -> RegularizedFIR:
    return RegularizedFIR(shared_hrf=options.shared_hrf, n_lambdas=int(options.n_lambdas))


def _describe(options: RFIROptions, context: Mapping[str, str]) -> str:
    shared = ("one HRF shared by all conditions" if options.shared_hrf
              else "one HRF per condition")
    return ("The HRF of every voxel was estimated with a regularised finite impulse "
            f"response model (Ciuciu et al., 2003; {shared}): a Gaussian smoothness prior "
            "on the second differences of the HRF, whose weight was chosen for each voxel "
            "by maximising the marginal likelihood, gave the posterior mean HRF and its "
            "uncertainty. " + describe_voxel_glm(options, context))


SPEC = register(voxel_spec(
    "rfir", "voxel-wise regularised FIR HRFs (smoothness chosen per voxel by evidence)",
    RFIROptions, _make, _describe))
