"""Report figures: matplotlib/nilearn drawings returned as embeddable SVG or PNG.

Every function takes arrays, DataFrames or images (paths or nibabel objects) and returns an
:class:`EmbeddedFigure`; none writes files. matplotlib is imported, and switched to the Agg
backend, only when a function is called. The functions live in four modules split by
analysis stage and are all importable from here:

- :mod:`~bids_hrf.reports.figures_glm`: confounds, atlas, coverage, statistical maps;
- :mod:`~bids_hrf.reports.figures_data`: carpet plots and design matrices, drawn at the
  data's own resolution;
- :mod:`~bids_hrf.reports.figures_hrf`: HRF panels and overlays, PPMs, HRF parameter maps,
  VEM free energy, sparse-deconvolution fits;
- :mod:`~bids_hrf.reports.figures_group`: connectivity matrices, edge differences, group
  HRFs, HRF parameter comparisons.
"""

from __future__ import annotations

from bids_hrf.reports._common import EmbeddedFigure, embed, time_to_peak
from bids_hrf.reports.figures_data import carpet_rows, plot_carpet, plot_design_matrix
from bids_hrf.reports.figures_glm import (
    plot_atlas,
    plot_confounds,
    plot_coverage,
    plot_stat_map,
)
from bids_hrf.reports.figures_group import (
    edge_matrix,
    plot_connectivity_matrix,
    plot_edge_differences,
    plot_group_hrfs,
    plot_hrf_parameter_comparison,
)
from bids_hrf.reports.figures_hrf import (
    plot_free_energy,
    plot_hrf_overlay,
    plot_hrf_panel,
    plot_hrf_parameter_maps,
    plot_ppm,
    plot_sparse_fit,
)

__all__ = [
    "EmbeddedFigure",
    "carpet_rows",
    "edge_matrix",
    "embed",
    "plot_atlas",
    "plot_carpet",
    "plot_confounds",
    "plot_connectivity_matrix",
    "plot_coverage",
    "plot_design_matrix",
    "plot_edge_differences",
    "plot_free_energy",
    "plot_group_hrfs",
    "plot_hrf_overlay",
    "plot_hrf_panel",
    "plot_hrf_parameter_comparison",
    "plot_hrf_parameter_maps",
    "plot_ppm",
    "plot_sparse_fit",
    "plot_stat_map",
    "time_to_peak",
]
