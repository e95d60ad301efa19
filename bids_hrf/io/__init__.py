"""bids_hrf.io."""
