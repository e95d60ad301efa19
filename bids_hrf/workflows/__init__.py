"""bids_hrf.workflows."""
