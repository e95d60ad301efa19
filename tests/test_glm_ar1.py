"""bids_hrf.glm.ar1.run_glm gives exactly nilearn's run_glm (issue 12 performance)."""

from __future__ import annotations

import numpy as np
import pytest
from nilearn.glm.first_level import run_glm as nilearn_run_glm

from bids_hrf.glm.ar1 import run_glm


def _data(seed: int, rank_deficient: bool = False):
    rng = np.random.default_rng(seed)
    n, p, v = 120, 7, 300
    X = np.column_stack([rng.normal(size=(n, p - 1)), np.ones(n)])
    if rank_deficient:
        X[:, 2] = X[:, 0] + X[:, 1]
    noise = rng.normal(size=(n, v))
    for t in range(1, n):  # AR(1) noise, coefficients spread over many bins
        noise[t] += np.linspace(-0.5, 0.8, v) * noise[t - 1]
    return X @ rng.normal(size=(p, v)) + noise, X


@pytest.mark.parametrize("rank_deficient", [False, True])
@pytest.mark.parametrize("noise_model", ["ar1", "ols", "ar2"])
def test_same_results_as_nilearn(noise_model, rank_deficient):
    Y, X = _data(0, rank_deficient)
    labels, results = run_glm(Y, X, noise_model=noise_model, random_state=0)
    ref_labels, ref_results = nilearn_run_glm(Y, X, noise_model=noise_model, random_state=0)
    np.testing.assert_array_equal(labels, ref_labels)
    assert list(results) == list(ref_results)
    if noise_model == "ar1":
        assert len(results) > 20  # many bins, each with the rank given, not computed
    for key, res in results.items():
        ref = ref_results[key]
        for attr in (
            "theta",
            "cov",
            "df_model",
            "df_residuals",
            "df_total",
            "dispersion",
            "residuals",
            "whitened_Y",
            "r_square",
        ):
            np.testing.assert_array_equal(getattr(res, attr), getattr(ref, attr), err_msg=attr)
        np.testing.assert_array_equal(res.model.whitened_design, ref.model.whitened_design)
        np.testing.assert_array_equal(res.model.calc_beta, ref.model.calc_beta)
