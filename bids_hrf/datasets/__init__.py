"""Synthetic BIDS + fMRIPrep-like datasets with known ground truth.

>>> from bids_hrf.datasets import make_synthetic_dataset
>>> ds = make_synthetic_dataset("/tmp/demo", size="small")  # doctest: +SKIP
>>> ds.fmriprep_dir, ds.atlas_img, ds.truth.hrf  # doctest: +SKIP
"""

from ._design import SyntheticTruth
from ._signals import double_gamma_hrf
from .synthetic import SyntheticDataset, make_synthetic_dataset

__all__ = ["SyntheticDataset", "SyntheticTruth", "double_gamma_hrf", "make_synthetic_dataset"]
