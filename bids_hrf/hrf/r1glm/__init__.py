"""Voxel-wise rank-one GLM HRFs (Pedregosa et al., NeuroImage 2015)."""

from bids_hrf.hrf.r1glm.estimator import RankOneGLM, hrf_basis, rank_one_als

__all__ = ["RankOneGLM", "hrf_basis", "rank_one_als"]
