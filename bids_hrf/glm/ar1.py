"""nilearn's ``run_glm`` for AR(1) noise, with the design's rank computed once (issue 12).

nilearn fits an AR(1) GLM in two passes: OLS, then the voxels binned by their AR(1)
coefficient (``bins`` bins) and one ``ARModel`` per bin. Each ``ARModel`` computes the
pseudo-inverse of its whitened design (needed: the whitening differs per bin) and the
rank of the *unwhitened* design (one SVD each time, the same number for every bin). When
the GLM runs once per parcel (HRFs estimated per parcel: one design per parcel, up to
``bins`` bins each), that repeated rank was ~40 % of the first-level time of a FIR run on
fsaverage5 (200 parcels of ~100 vertices). :func:`run_glm` here is nilearn's function with
the rank of the design computed once and given to every bin's model; every other number is
computed by nilearn's own code in the same order, so the results are identical
(``tests/test_glm_ar1.py`` compares them with nilearn's ``run_glm``). Other noise models go
to nilearn's ``run_glm`` unchanged.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as spl
from joblib import Parallel, delayed
from nilearn.glm.first_level import run_glm as nilearn_run_glm
from nilearn.glm.regression import ARModel, OLSModel

try:  # nilearn's Yule-Walker estimate, as its run_glm uses it
    from nilearn.glm.first_level.first_level import _yule_walker
except ImportError:  # pragma: no cover - another nilearn layout: its own run_glm is used
    _yule_walker = None


class _ARModelKnownRank(ARModel):
    """nilearn's ``ARModel`` given the rank of its (unwhitened) design instead of
    computing it: ``initialize`` is nilearn's, less the ``matrix_rank`` call."""

    def __init__(self, design: np.ndarray, rho: float, df_model: int):
        self._df_model = df_model
        super().__init__(design, rho)

    def initialize(self, design: np.ndarray) -> None:
        self.design = design
        self.whitened_design = self.whiten(self.design)
        self.calc_beta = spl.pinv(self.whitened_design)
        self.normalized_cov_beta = np.dot(self.calc_beta, np.transpose(self.calc_beta))
        self.df_total = self.whitened_design.shape[0]
        self.df_model = self._df_model
        self.df_residuals = self.df_total - self.df_model


def _ar_model_fit(X: np.ndarray, rho: float, df_model: int, Y: np.ndarray):
    return _ARModelKnownRank(X, rho, df_model).fit(Y)


def run_glm(
    Y: np.ndarray,
    X: np.ndarray,
    noise_model: str = "ar1",
    bins: int = 100,
    n_jobs: int = 1,
    random_state=None,
) -> tuple[np.ndarray, dict]:
    """GLM fit of ``Y`` (scans x voxels) on the design ``X``: nilearn's ``run_glm``.

    Parameters and returns are those of :func:`nilearn.glm.first_level.run_glm`. With
    ``noise_model="ar1"`` the design's rank is computed once for all AR bins (same
    results); other noise models are nilearn's ``run_glm`` itself.
    """
    if noise_model != "ar1" or _yule_walker is None or Y.shape[0] != X.shape[0]:
        return nilearn_run_glm(
            Y, X, noise_model=noise_model, bins=bins, n_jobs=n_jobs, random_state=random_state
        )
    ols = OLSModel(X)  # its df_model is the rank every ARModel of X would compute again
    ols_result = ols.fit(Y)
    ar_coef_ = _yule_walker(ols_result.residuals.T, 1)
    del ols_result
    ar_coef_ = ar_coef_[:, 0]
    for idx in range(len(ar_coef_)):
        ar_coef_[idx] = (ar_coef_[idx] * bins).astype(int) * 1.0 / bins
    labels = np.array([str(val) for val in ar_coef_])
    unique_labels = np.unique(labels)
    fits = Parallel(n_jobs=n_jobs)(
        delayed(_ar_model_fit)(X, ar_coef_[labels == val][0], ols.df_model, Y[:, labels == val])
        for val in unique_labels
    )
    return labels, dict(zip(unique_labels, fits, strict=True))
