"""bids_hrf.hrf."""
