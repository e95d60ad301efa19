"""bids_hrf.cli."""
