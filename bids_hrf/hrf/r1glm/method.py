"""Registry entry of the rank-one GLM (one voxel HRF shared across conditions)."""

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
from bids_hrf.hrf.r1glm.estimator import RankOneGLM
from bids_hrf.hrf.registry import MethodOptions, estimator_default, option, register

BASES = ("3hrf", "fir")


@dataclass(frozen=True)
class R1GLMOptions(MethodOptions):
    """Options of the rank-one GLM (defaults: :class:`RankOneGLM`'s)."""

    basis: str = option(estimator_default(RankOneGLM, "basis"),
                        "HRF basis: 3hrf (canonical + time and dispersion derivatives) or "
                        "fir (one amplitude per knot)", choices=BASES)
    max_iter: int = option(estimator_default(RankOneGLM, "max_iter"),
                           "maximum alternating least-squares iterations")
    glm_hrf: str = glm_hrf_option()

    def problems(self) -> list[BidsHrfError]:
        """Out-of-range values."""
        found = glm_hrf_problems(self.glm_hrf)
        if self.basis not in BASES:
            found.append(UsageError(f"--r1glm-basis {self.basis!r} is not one of "
                                    f"{', '.join(BASES)}"))
        if int(self.max_iter) < 1:
            found.append(UsageError(f"--r1glm-max-iter {self.max_iter} must be >= 1"))
        return found


def _make(options: R1GLMOptions) -> RankOneGLM:
    return RankOneGLM(basis=options.basis, max_iter=int(options.max_iter))


def _describe(options: R1GLMOptions, context: Mapping[str, str]) -> str:
    basis = ("the canonical HRF and its time and dispersion derivatives"
             if options.basis == "3hrf" else "a finite impulse response basis")
    return ("The HRF of every voxel was estimated with the rank-one GLM (R1-GLM; Pedregosa "
            f"et al., 2015): one HRF per voxel, in {basis}, shared by all conditions and "
            "scaled by one amplitude per condition, fitted by alternating least squares "
            f"(at most {int(options.max_iter)} iterations). "
            + describe_voxel_glm(options, context))


SPEC = register(voxel_spec(
    "r1glm", "voxel-wise rank-one GLM HRFs (one HRF shared by the conditions; Pedregosa 2015)",
    R1GLMOptions, _make, _describe))
