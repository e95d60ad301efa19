"""Paradigm-free ("blind") HRF estimation from sparse activity."""
