"""bids_hrf: a BIDS App for hemodynamic analysis of fMRI.

HRF estimation (JDE-VEM, sparse deconvolution, canonical and FIR baselines), first-level
GLMs, and group analyses on fMRIPrep derivatives, written as BIDS-Derivatives with an
HTML report.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
