"""bids_hrf.interfaces."""
