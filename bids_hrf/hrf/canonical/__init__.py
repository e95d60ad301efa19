"""The canonical HRF (``--hrf-model``) in every parcel: no estimation."""
