"""Voxel-wise regularised FIR HRFs (Ciuciu et al., IEEE TMI 2003)."""

from bids_hrf.hrf.rfir.estimator import RegularizedFIR, smoothness_matrix

__all__ = ["RegularizedFIR", "smoothness_matrix"]
