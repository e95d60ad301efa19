"""Per-voxel HRF chosen from a library by cross-validated fit across runs."""

from bids_hrf.hrf.library.estimator import HRFLibrary, default_library, resample_library
from bids_hrf.hrf.library.tsv import read_library_tsv

__all__ = ["HRFLibrary", "default_library", "read_library_tsv", "resample_library"]
