"""Registry entry of the HRF library (per voxel, chosen by cross-validated fit)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bids_hrf.errors import BidsHrfError, NoInputError, UsageError
from bids_hrf.hrf._voxel_method import (
    describe_voxel_glm,
    glm_hrf_option,
    glm_hrf_problems,
    voxel_spec,
)
from bids_hrf.hrf.library.estimator import HRFLibrary
from bids_hrf.hrf.library.tsv import read_library_tsv
from bids_hrf.hrf.registry import MethodOptions, estimator_default, option, register

CV_CHOICES = {"auto": "auto", "on": True, "off": False}


@dataclass(frozen=True)
class LibraryOptions(MethodOptions):
    """Options of the HRF library (defaults: :class:`HRFLibrary`'s)."""

    cv: str = option(estimator_default(HRFLibrary, "cv"),
                     "choose each voxel's HRF by its fit on held-out runs (on), in sample "
                     "(off), or on held-out runs when there are 2 or more (auto)",
                     choices=tuple(CV_CHOICES))
    shrinkage: bool = option(estimator_default(HRFLibrary, "shrinkage"),
                             "pool each voxel's choice toward its parcel's (weight chosen by "
                             "cross-validation)")
    tsv: str | None = option(estimator_default(HRFLibrary, "library"),
                             "a TSV library (a 'time' column in s, one column per HRF) "
                             "instead of the built-in double-gamma family", path=True,
                             metavar="FILE")
    glm_hrf: str = glm_hrf_option()

    def problems(self) -> list[BidsHrfError]:
        """Out-of-range values and a missing library file."""
        found = glm_hrf_problems(self.glm_hrf)
        if self.cv not in CV_CHOICES:
            found.append(UsageError(f"--library-cv {self.cv!r} is not one of "
                                    f"{', '.join(CV_CHOICES)}"))
        if self.tsv is not None and not Path(self.tsv).is_file():
            found.append(NoInputError(f"--library-tsv {self.tsv} does not exist",
                                      fix="give a TSV with a 'time' column and one column "
                                          "per HRF"))
        return found


def _make(options: LibraryOptions) -> HRFLibrary:
    library = None
    if options.tsv is not None:
        time, values, _ = read_library_tsv(options.tsv)
        library = (time, values)
    return HRFLibrary(library=library, cv=CV_CHOICES[options.cv],
                      shrinkage=bool(options.shrinkage))


def _describe(options: LibraryOptions, context: Mapping[str, str]) -> str:
    family = (f"the HRFs of {Path(options.tsv).name}" if options.tsv else
              "a family of double-gamma HRFs spanning times to peak of 3-9 s and widths")
    how = {"on": "by its fit on held-out runs (leave one run out)",
           "off": "by its in-sample fit",
           "auto": "by its fit on held-out runs (leave one run out; in sample with one run)"}
    shrink = (" The choice was pooled toward the parcel's, with a weight chosen by "
              "cross-validation in each parcel." if options.shrinkage else "")
    return (f"The HRF of every voxel was chosen from {family} {how[options.cv]}, in the "
            "spirit of GLMsingle (Prince et al., 2022) but cross-validated." + shrink + " "
            + describe_voxel_glm(options, context))


SPEC = register(voxel_spec(
    "library", "voxel-wise HRF chosen from a library by cross-validated fit (GLMsingle-like)",
    LibraryOptions, _make, _describe))
