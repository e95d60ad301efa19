"""JDE-VEM: joint detection-estimation of parcel HRFs and activations (as in PyHRF)."""
