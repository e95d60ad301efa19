"""Canonical HRFs and sampled HRF kernels."""

from __future__ import annotations

import numpy as np
import pytest
from nilearn.glm.first_level import glover_hrf, spm_hrf

from bids_hrf.hrf.basis import (
    HRF_MODELS,
    canonical_estimate,
    canonical_hrf,
    normalize_hrf_model,
    sampled_hrf_model,
)


@pytest.mark.parametrize(
    ("alias", "name"),
    [("spm", "spm"), ("SPM", "spm"), ("spm+derivative", "spm + derivative"),
     ("glover_derivative_dispersion", "glover + derivative + dispersion"),
     ("glover-derivative", "glover + derivative"), ("  spm  +  derivative ", "spm + derivative")],
)
def test_normalize_aliases(alias, name):
    assert normalize_hrf_model(alias) == name
    assert name in HRF_MODELS


def test_normalize_rejects_with_list():
    with pytest.raises(ValueError, match="spm \\+ derivative \\+ dispersion"):
        normalize_hrf_model("spm + dispersion")
    with pytest.raises(ValueError):
        normalize_hrf_model(None)


@pytest.mark.parametrize(("name", "peak", "ref"), [("spm", 5.0, spm_hrf),
                                                   ("glover", 5.0, glover_hrf)])
def test_canonical_hrf_shape(name, peak, ref):
    t, h = canonical_hrf(name, dt=0.1, duration=25.0)
    assert t[0] == 0 and t[-1] == pytest.approx(25.0) and t.size == 251
    assert np.linalg.norm(h) == pytest.approx(1.0)
    assert abs(t[np.argmax(h)] - peak) <= 0.3  # both presets peak near 5 s
    assert h.min() < 0  # undershoot
    # same shape as nilearn's kernel for t_r = 0.1, oversampling 1 (up to nilearn's one-step
    # delay and its linspace grid)
    nl = ref(0.1, oversampling=1, time_length=25.0)
    assert np.corrcoef(nl, h[: nl.size])[0, 1] > 0.999


def test_derivative_presets_return_main_hrf():
    np.testing.assert_array_equal(canonical_hrf("spm + derivative")[1], canonical_hrf("spm")[1])


def test_canonical_estimate():
    est = canonical_estimate(["a", "b", "c"], "glover+derivative", dt=0.5, duration=20.0)
    assert est.method == "canonical" and est.labels == ["a", "b", "c"]
    assert est.hrfs.shape == (41, 3)
    np.testing.assert_array_equal(est.hrf_for("b"), canonical_hrf("glover", 0.5, 20.0)[1])
    assert est.parameters["hrf_model"] == "glover + derivative"
    with pytest.raises(ValueError, match="duplicates"):
        canonical_estimate(["a", "a"])
    with pytest.raises(ValueError, match="dt"):
        canonical_estimate(["a"], dt=0.0)


@pytest.mark.parametrize("t_r", [2.0, 0.72, 1.0])
def test_sampled_canonical_reproduces_nilearn_kernel(t_r):
    t, h = canonical_hrf("spm", dt=0.1, duration=32.0)
    k = sampled_hrf_model(t, h)(t_r, 50)
    nl = spm_hrf(t_r, 50)
    assert k.shape == nl.shape
    assert k.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(k, nl, atol=2e-3 * nl.max())


def test_sampled_kernel_support_and_normalisation():
    t = np.arange(0, 10.01, 0.5)
    h = np.exp(-((t - 4.0) ** 2))
    f = sampled_hrf_model(t, h, normalize=None)
    k = f(1.0, oversampling=10, time_length=20.0)
    lags = np.linspace(0, 20.0, 200) - 0.1
    assert k.size == 200
    assert np.all(k[lags > 10.0] == 0) and np.all(k[lags < 0] == 0)
    np.testing.assert_allclose(k, np.interp(lags, t, h, left=0, right=0))
    peak = sampled_hrf_model(t, h, normalize="peak")(1.0, 10)
    assert np.abs(peak).max() == pytest.approx(1.0)
    # a negative-area HRF falls back to a unit peak under "sum"
    neg = sampled_hrf_model(t, -h)(1.0, 10)
    assert np.abs(neg).max() == pytest.approx(1.0) and neg.sum() < 0
    assert f.__name__ == "sampled"


@pytest.mark.parametrize(
    ("time", "values", "match"),
    [([0, 1, 2], [0, 1], "same length"), ([0, 2, 1], [0, 1, 0], "increasing"),
     ([0, 1, 2], [0, np.nan, 0], "finite"), ([0, 1, 2], [0, 0, 0], "zero")],
)
def test_sampled_rejects_bad_input(time, values, match):
    with pytest.raises(ValueError, match=match):
        sampled_hrf_model(np.array(time, float), np.array(values, float))
