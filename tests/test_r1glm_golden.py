"""Golden comparison of the rank-one GLM with ``hrf_estimation`` 1.1 (Pedregosa's code).

``hrf_estimation`` needs numpy < 1.24 (it uses ``np.float``/``np.int``), so it cannot live
in bids_hrf's environment: it runs in a child process with the interpreter named by
``BIDS_HRF_HRF_ESTIMATION_PYTHON`` (a venv with ``numpy==1.23.5 scipy<1.12
scikit-learn<1.4 joblib`` and ``pip install --no-build-isolation hrf-estimation==1.1``;
``.ci/ci_extras.sh`` builds one). Without it the tests are skipped -- unless
``BIDS_HRF_REQUIRE_GOLDEN=1`` (CI), where they fail.

Both implementations are given the same design: our FIR design (nuisance projected out)
times our 3-HRF basis, in ``hrf_estimation.rank_one``'s layout (columns of condition ``j``
at ``j * n_basis ... (j + 1) * n_basis - 1``). ``rank_one`` minimises the same least-squares
objective with L-BFGS-B (first basis coefficient fixed at 1); we use alternating least
squares. Both results are normalised the same way (unit peak, positive correlation with
the canonical HRF).
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from bids_hrf.hrf._voxel import make_event_design, whitened_bins
from bids_hrf.hrf.r1glm import RankOneGLM
from bids_hrf.hrf.r1glm.estimator import _spm
from tests.voxel_simulation import simulate

pytestmark = pytest.mark.golden

_SCRIPT = """
import sys, warnings
import numpy as np
from scipy import sparse
warnings.simplefilter("ignore")
from hrf_estimation.rank_one_ import rank_one
d = np.load(sys.argv[1])
X, Y, nb, w0 = d["X"], d["Y"], int(d["nb"]), d["w0"]
mode = str(d["mode"])
drifts = np.zeros((Y.shape[0], 1)) if mode == "r1glm" else None
U, V = rank_one(sparse.csr_matrix(X), Y, nb, w_i=w0, drifts=drifts, mode=mode,
                maxiter=2000, rtol=1e-10, basis=None)
np.savez(sys.argv[2], U=U, V=V)
"""


def _reference(tmp_path, X, Y, nb, w0, mode):
    exe = os.environ.get("BIDS_HRF_HRF_ESTIMATION_PYTHON")
    if not exe:
        if os.environ.get("BIDS_HRF_REQUIRE_GOLDEN") == "1":
            pytest.fail("set BIDS_HRF_HRF_ESTIMATION_PYTHON to a python with hrf_estimation 1.1")
        pytest.skip("hrf_estimation is not available (BIDS_HRF_HRF_ESTIMATION_PYTHON unset)")
    inp, out = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(inp, X=X, Y=Y, nb=nb, w0=w0, mode=mode)
    proc = subprocess.run([exe, "-c", _SCRIPT, str(inp), str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = np.load(out)
    return res["U"], res["V"]


def _normalise(B, U, V, ref):
    h = B @ U
    norm = np.max(np.abs(h), axis=0) * np.where(ref @ h < 0, -1.0, 1.0)
    return h / norm, V * norm


@pytest.fixture(scope="module")
def sim():
    s = simulate(n_parcels=2, voxels_per_parcel=10, n_runs=1, n_scans=160, noise_sd=0.5,
                 active_fraction=1.0, seed=3)
    return s


def test_r1glm_matches_hrf_estimation(sim, tmp_path):
    design = make_event_design(sim.events, sim.frame_times, fir_duration=20.0)
    est = RankOneGLM(noise_model="ols", tol=1e-12, max_iter=2000).fit(sim.Y, design)
    b = next(whitened_bins(sim.Y, design, None))
    M, K = len(design.conditions), design.n_knots
    B = est.basis_
    X = np.concatenate([b.X[0][:, m * K:(m + 1) * K] @ B for m in range(M)], axis=1)
    Y = b.Y[0]
    ref = _spm(design.time)
    u0 = np.linalg.lstsq(B, ref, rcond=None)[0]
    u0 = u0 / u0[0]
    w0 = np.vstack([np.repeat(u0[:, None], Y.shape[1], 1), np.ones((M + 1, Y.shape[1]))])
    U, V = _reference(tmp_path, X, Y, B.shape[1], w0, "r1glm")
    h_ref, beta_ref = _normalise(B, U, V, ref)
    corr = [np.corrcoef(h_ref[:, j], est.hrfs_[:, j])[0, 1] for j in range(Y.shape[1])]
    assert np.min(corr) > 0.999, corr
    np.testing.assert_allclose(est.betas_, beta_ref, rtol=1e-2, atol=1e-2)
    # our optimum is at least as good as the reference's
    rss = lambda h, beta: np.sum((Y - sum(  # noqa: E731
        (b.X[0][:, m * K:(m + 1) * K] @ h) * beta[m] for m in range(M))) ** 2, axis=0)
    assert np.all(rss(est.hrfs_, est.betas_) <= rss(h_ref, beta_ref) * (1 + 1e-6))


@pytest.mark.slow
def test_r1glms_single_trials_match_hrf_estimation(tmp_path):
    """Separate designs (R1-GLMS). The reference's objective adds ``-||u||^2 / 2`` (u with
    its first entry fixed at 1), a small term next to the residual sum of squares, so the
    agreement is checked to a correlation rather than to rounding."""
    s = simulate(n_parcels=1, voxels_per_parcel=6, n_runs=1, n_scans=100, noise_sd=0.3,
                 active_fraction=1.0, amplitude=2.0, seed=4)
    design = make_event_design(s.events, s.frame_times, fir_duration=20.0, single_trials=True)
    est = RankOneGLM(noise_model="ols", tol=1e-12, max_iter=2000)
    betas = est.single_trial_betas(s.Y, design)
    K = design.n_knots
    b = next(whitened_bins(s.Y, design, None, extra=design.trials))
    from bids_hrf.hrf.r1glm import hrf_basis

    B = hrf_basis(design.time)
    n_tr = betas.shape[0]
    X = np.concatenate([b.extra[0][:, j * K:(j + 1) * K] @ B for j in range(n_tr)], axis=1)
    ref = _spm(design.time)
    u0 = np.linalg.lstsq(B, ref, rcond=None)[0]
    u0 = u0 / u0[0]
    n_v = b.Y[0].shape[1]
    w0 = np.vstack([np.repeat(u0[:, None], n_v, 1), np.ones((2 * n_tr, n_v))])
    U, V = _reference(tmp_path, X, b.Y[0], B.shape[1], w0, "r1glms")
    _, beta_ref = _normalise(B, U, V, ref)
    for j in range(n_v):
        assert np.corrcoef(betas[:, j], beta_ref[:, j])[0, 1] > 0.99
    np.testing.assert_allclose(np.median(betas / beta_ref), 1.0, atol=0.05)
