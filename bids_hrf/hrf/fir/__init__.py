"""Finite-impulse-response (FIR, tent basis) HRF estimation."""
