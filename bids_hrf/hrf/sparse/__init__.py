"""Sparse deconvolution of activity (as in pySPFM): LARS/FISTA, stability selection, SPLORA."""
