"""bids_hrf.glm."""
