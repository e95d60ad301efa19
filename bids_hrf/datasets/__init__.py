"""bids_hrf.datasets."""
