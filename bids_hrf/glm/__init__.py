"""GLMs at both levels, on arrays and images.

First level: ``design`` (nilearn designs, validated events), ``first_level`` (canonical or
per-parcel HRFs, AR(1)), ``contrasts`` (expressions, t/F contrasts), ``fixed_effects``
(across runs). Second level: ``group_design`` (``--group-model``: one-/two-sample, paired,
BIDS Stats Models) and ``second_level`` (nilearn's second-level model, thresholds,
permutations). The names exported here are the first level's.
"""

from bids_hrf.glm.contrasts import (
    ContrastResult,
    ContrastSpec,
    clean_label,
    contrast_matrix,
    default_contrasts,
    expression_names,
    load_contrasts,
    parse_contrast,
)
from bids_hrf.glm.design import check_events, make_design
from bids_hrf.glm.first_level import (
    DesignSpec,
    FirstLevelFit,
    NoiseSpec,
    ParcelHRFs,
    fit_first_level,
)
from bids_hrf.glm.fixed_effects import conjunction_tmin, fixed_effects

__all__ = [
    "ContrastResult",
    "ContrastSpec",
    "DesignSpec",
    "FirstLevelFit",
    "NoiseSpec",
    "ParcelHRFs",
    "check_events",
    "clean_label",
    "conjunction_tmin",
    "contrast_matrix",
    "default_contrasts",
    "expression_names",
    "fit_first_level",
    "fixed_effects",
    "load_contrasts",
    "make_design",
    "parse_contrast",
]
