"""bids_hrf.reports."""
