"""HRF parameters on analytic shapes with known peak, width and height."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, stats

from bids_hrf.hrf.params import hrf_parameters


def test_gaussian_bumps_vectorised():
    t = np.arange(0, 30.01, 0.5)
    mus = np.array([4.0, 5.3, 7.1])
    sigmas = np.array([1.5, 2.0, 2.7])
    amps = np.array([1.0, 0.3, 2.5])
    H = amps * np.exp(-((t[:, None] - mus) ** 2) / (2 * sigmas**2))
    p = hrf_parameters(H, t)
    np.testing.assert_allclose(p.time_to_peak, mus, atol=0.02)
    np.testing.assert_allclose(p.fwhm, 2 * np.sqrt(2 * np.log(2)) * sigmas, rtol=0.01)
    np.testing.assert_allclose(p.height, amps, rtol=0.005)
    assert p.time_to_peak_sd is None


@pytest.mark.parametrize("shape,scale", [(6.0, 1.0), (8.0, 0.7), (5.0, 1.6)])
def test_gamma_mode_and_width(shape, scale):
    """Gamma pdf: mode (k-1)theta; FWHM from root-finding on the analytic pdf."""
    t = np.arange(0, 32.01, 0.5)
    h = stats.gamma.pdf(t, shape, scale=scale)
    mode = (shape - 1) * scale
    peak = stats.gamma.pdf(mode, shape, scale=scale)
    f = lambda x: stats.gamma.pdf(x, shape, scale=scale) - peak / 2  # noqa: E731
    fwhm = optimize.brentq(f, mode, 40) - optimize.brentq(f, 1e-6, mode)
    p = hrf_parameters(h, t)
    assert p.time_to_peak[0] == pytest.approx(mode, abs=0.03)
    assert p.fwhm[0] == pytest.approx(fwhm, rel=0.01)
    assert p.height[0] == pytest.approx(peak, rel=0.005)


def test_undefined_parameters_are_nan():
    t = np.linspace(0, 10, 21)
    H = np.column_stack([-np.exp(-((t - 5) ** 2)), t, np.exp(-((t - 5) ** 2))])
    p = hrf_parameters(H, t)
    assert np.isnan(p.time_to_peak[0]) and np.isnan(p.height[0]) and np.isnan(p.fwhm[0])
    assert np.isnan(p.fwhm[1])  # never falls below half its maximum after the peak
    assert np.isfinite(p.fwhm[2])


def test_uncertainty_from_variance():
    """Independent sample noise sd s at the peak gives a height sd close to s; a constant
    offset (fully correlated covariance) leaves the time to peak unchanged."""
    t = np.arange(0, 25.01, 0.5)
    h = np.exp(-((t - 6.0) ** 2) / (2 * 2.0**2))
    s = 0.01
    p = hrf_parameters(h, t, variance=np.full(t.size, s**2), n_draws=400, random_state=1)
    assert p.height_sd[0] == pytest.approx(s, rel=0.2)
    assert 0 < p.time_to_peak_sd[0] < 0.2
    cov = np.full((t.size, t.size), s**2)
    q = hrf_parameters(h, t, covariance=cov, n_draws=400, random_state=1)
    assert q.time_to_peak_sd[0] < 1e-6
    assert q.height_sd[0] == pytest.approx(s, rel=0.2)
    frame = q.to_frame(["p1"])
    assert list(frame.columns) == ["parcel", "time_to_peak", "fwhm", "height",
                                   "time_to_peak_sd", "fwhm_sd", "height_sd"]


def test_errors():
    t = np.arange(5.0)
    with pytest.raises(ValueError, match="one entry per HRF sample"):
        hrf_parameters(np.ones(4), t)
    with pytest.raises(ValueError, match="increasing"):
        hrf_parameters(np.ones(5), t[::-1])
    with pytest.raises(ValueError, match="NaN"):
        hrf_parameters(np.array([0, 1, np.nan, 1, 0.0]), t)
    with pytest.raises(ValueError, match="variance"):
        hrf_parameters(np.array([0, 1, 2, 1, 0.0]), t, variance=-np.ones(5))
