"""Each VEM step of JDE-VEM against a direct computation on a tiny problem.

Gaussian steps (VE-A, VE-H) are compared with dense Gaussian conditioning in covariance
form over the stacked data of all voxels and runs; the other steps with numerical
maximisation of the free energy over the same block (scipy.optimize).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, sparse
from scipy.integrate import trapezoid as _trapezoid
from scipy.special import expit

from bids_hrf.hrf.jde import _design as design
from bids_hrf.hrf.jde import _updates as steps


def tiny(seed=0, J=4, M=2, D=5, n_runs=2, N=(20, 17), edges=True, sh_cov=True):
    rng = np.random.default_rng(seed)
    runs = []
    for r in range(n_runs):
        n = N[r % len(N)]
        X = (rng.random((M, n, D)) < 0.3) * rng.uniform(0.5, 1.5, (M, n, D))
        P = np.linalg.qr(np.column_stack([np.ones(n), np.linspace(-1, 1, n)]))[0]
        runs.append(steps.RunData(rng.normal(size=(n, J)), X, P))
    Rinv = design.hrf_precision(D + 2, 1.0, True)
    adj = None
    if edges:
        adj = sparse.diags([np.ones(J - 1), np.ones(J - 1)], [1, -1], format="csr")
    colours = design.graph_colours(adj) if adj is not None else np.zeros(J, dtype=int)
    pb = steps.Problem(runs, Rinv, adj, colours, hrf_hyperprior=3.0)
    A = rng.normal(size=(D, D))
    st = steps.State(
        m_H=rng.normal(size=D),
        S_H=(A @ A.T / D * 0.05) if sh_cov else np.zeros((D, D)),
        m_A=rng.normal(size=(J, M)),
        S_A=np.stack([np.eye(M) * 0.1 + 0.02 for _ in range(J)]),
        q=np.stack([np.column_stack([1 - p, p]) for p in rng.uniform(0.1, 0.9, (M, J))]),
        mu=np.column_stack([np.zeros(M), rng.uniform(1, 2, M)]),
        v=rng.uniform(0.2, 0.8, (M, 2)),
        beta=rng.uniform(0.2, 1.5, M),
        s_h=0.3,
        drift=[rng.normal(size=(2, J)) * 0.1 for _ in range(n_runs)],
        noise=rng.uniform(0.5, 1.5, (n_runs, J)),
    )
    return pb, st


def F(pb, st):
    return steps.free_energy(pb, st, True)


def test_ve_a_matches_dense_gaussian_conditioning():
    pb, st = tiny(sh_cov=False)
    st.S_H[:] = 0.0
    steps.ve_a(pb, st)
    J, M = pb.n_voxels, pb.n_conditions
    prec = np.einsum("mji,mi->jm", st.q, 1 / st.v)
    mean0 = np.einsum("mji,mi->jm", st.q, st.mu / st.v) / prec
    C0 = np.diag(1 / prec.ravel())  # a stacked voxel-major: index j*M + m
    rows, ys, noise = [], [], []
    for r, run in enumerate(pb.runs):
        G = run.X @ st.m_H  # (M, N)
        yt = run.y - run.P @ st.drift[r]
        for j in range(J):
            B = np.zeros((run.n_scans, J * M))
            B[:, j * M : (j + 1) * M] = G.T
            rows.append(B)
            ys.append(yt[:, j])
            noise.append(np.full(run.n_scans, st.noise[r, j]))
    B, y, s2 = np.vstack(rows), np.concatenate(ys), np.concatenate(noise)
    K = B @ C0 @ B.T + np.diag(s2)
    gain = C0 @ B.T @ np.linalg.inv(K)
    post_mean = mean0.ravel() + gain @ (y - B @ mean0.ravel())
    post_cov = C0 - gain @ B @ C0
    np.testing.assert_allclose(st.m_A.ravel(), post_mean, rtol=1e-8, atol=1e-10)
    for j in range(J):
        blk = post_cov[j * M : (j + 1) * M, j * M : (j + 1) * M]
        np.testing.assert_allclose(st.S_A[j], blk, rtol=1e-8, atol=1e-12)


def test_ve_a_is_optimal_with_uncertain_hrf():
    pb, st = tiny(seed=3)
    steps.ve_a(pb, st)
    f0 = F(pb, st)
    rng = np.random.default_rng(1)
    for _ in range(20):
        other = steps.State(**{k: (v.copy() if hasattr(v, "copy") else v)
                               for k, v in st.__dict__.items()})
        other.m_A = st.m_A + 0.05 * rng.normal(size=st.m_A.shape)
        L = np.linalg.cholesky(st.S_A) * (1 + 0.1 * rng.normal(size=(1, 1, 1)))
        other.S_A = L @ np.swapaxes(L, 1, 2)
        assert F(pb, other) < f0


def test_ve_h_matches_dense_gaussian_conditioning():
    pb, st = tiny(seed=1)
    st.S_A[:] = 0.0
    steps.ve_h(pb, st)
    C0 = st.s_h * np.linalg.inv(pb.Rinv)
    rows, ys, s2 = [], [], []
    for r, run in enumerate(pb.runs):
        yt = run.y - run.P @ st.drift[r]
        for j in range(pb.n_voxels):
            rows.append(np.einsum("m,mnd->nd", st.m_A[j], run.X))
            ys.append(yt[:, j])
            s2.append(np.full(run.n_scans, st.noise[r, j]))
    B, y, s2 = np.vstack(rows), np.concatenate(ys), np.concatenate(s2)
    K = B @ C0 @ B.T + np.diag(s2)
    gain = C0 @ B.T @ np.linalg.inv(K)
    np.testing.assert_allclose(st.m_H, gain @ y, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(st.S_H, C0 - gain @ B @ C0, rtol=1e-7, atol=1e-12)


def test_ve_h_uses_nrl_uncertainty():
    """With S_A > 0 the HRF update must beat perturbations of its result."""
    pb, st = tiny(seed=5)
    steps.ve_h(pb, st)
    f0 = F(pb, st)
    rng = np.random.default_rng(0)
    for _ in range(10):
        st2 = steps.State(**st.__dict__)
        st2.m_H = st.m_H + 0.02 * rng.normal(size=st.m_H.shape)
        assert F(pb, st2) < f0


def test_ve_q_matches_voxelwise_maximisation():
    pb, st = tiny(seed=2, J=5)
    before = st.q.copy()
    steps.ve_q(pb, st)
    first = np.flatnonzero(pb.colours == pb.colours.min())
    for m in range(pb.n_conditions):
        for j in first:
            def negF(p, m=m, j=j):
                st2 = steps.State(**st.__dict__)
                st2.q = before.copy()
                st2.q[m, j] = [1 - p, p]
                return -F(pb, st2)

            res = optimize.minimize_scalar(negF, bounds=(1e-9, 1 - 1e-9), method="bounded",
                                           options={"xatol": 1e-10})
            assert st.q[m, j, 1] == pytest.approx(res.x, abs=1e-5)


def test_ve_q_without_graph_is_posterior_class_probability():
    pb, st = tiny(seed=4, edges=False)
    steps.ve_q(pb, st)
    from scipy.stats import norm

    va = np.diagonal(st.S_A, axis1=1, axis2=2).T
    lik = [norm.pdf(st.m_A.T, st.mu[:, [i]], np.sqrt(st.v[:, [i]]))
           * np.exp(-va / (2 * st.v[:, [i]])) for i in (0, 1)]
    np.testing.assert_allclose(st.q[..., 1], lik[1] / (lik[0] + lik[1]), rtol=1e-10)


def _numeric_max(pb, st, setter, x0, bounds=None):
    def neg(x):
        st2 = steps.State(**{k: (v.copy() if hasattr(v, "copy") else v)
                             for k, v in st.__dict__.items()})
        setter(st2, x)
        return -F(pb, st2)

    res = optimize.minimize(neg, x0, method="L-BFGS-B", bounds=bounds,
                            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000})
    return res.x


def test_m_sigma_h_matches_numerical_optimum():
    pb, st = tiny(seed=6)
    x = _numeric_max(pb, st, lambda s, x: setattr(s, "s_h", float(x[0])), [1.0],
                     bounds=[(1e-6, 100)])
    steps.m_sigma_h(pb, st)
    assert st.s_h == pytest.approx(x[0], rel=1e-4)


def test_m_mixture_matches_numerical_optimum():
    pb, st = tiny(seed=7, J=6)
    M = pb.n_conditions

    def setter(s, x):
        s.mu = np.column_stack([np.zeros(M), x[:M]])
        s.v = np.column_stack([x[M : 2 * M], x[2 * M :]])

    x0 = np.concatenate([np.ones(M), np.ones(2 * M)])
    x = _numeric_max(pb, st, setter, x0, bounds=[(-10, 10)] * M + [(1e-4, 50)] * (2 * M))
    steps.m_mixture(pb, st)
    np.testing.assert_allclose(st.mu[:, 1], x[:M], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(st.v[:, 0], x[M : 2 * M], rtol=1e-3)
    np.testing.assert_allclose(st.v[:, 1], x[2 * M :], rtol=1e-3)


def test_m_beta_matches_numerical_optimum_and_bounds():
    pb, st = tiny(seed=8, J=6)
    # make neighbouring labels agree so that the optimum lies inside (0, 10)
    pb.beta_hyperprior = 0.2
    st.q[:, :, 1] = expit(np.linspace(-6, 6, pb.n_voxels))[None]
    st.q[:, :, 0] = 1 - st.q[:, :, 1]
    x = _numeric_max(pb, st, lambda s, x: setattr(s, "beta", np.asarray(x)),
                     np.ones(pb.n_conditions), bounds=[(0, 10)] * pb.n_conditions)
    steps.m_beta(pb, st)
    np.testing.assert_allclose(st.beta, x, atol=1e-4)
    assert np.all(st.beta > 0)
    st.q[:] = 0.5  # random labels: no interaction is best
    steps.m_beta(pb, st)
    np.testing.assert_allclose(st.beta, 0.0)


def test_m_noise_and_drift_match_numerical_optimum():
    pb, st = tiny(seed=9, J=3)
    R = len(pb.runs)
    x = _numeric_max(pb, st, lambda s, x: setattr(s, "noise", x.reshape(R, -1)),
                     np.ones(st.noise.size), bounds=[(1e-6, 100)] * st.noise.size)
    steps.m_noise(pb, st)
    np.testing.assert_allclose(st.noise.ravel(), x, rtol=1e-4)
    shapes = [d.shape for d in st.drift]

    def set_drift(s, x):
        out, k = [], 0
        for sh in shapes:
            out.append(x[k : k + np.prod(sh)].reshape(sh))
            k += int(np.prod(sh))
        s.drift = out

    x = _numeric_max(pb, st, set_drift, np.zeros(sum(int(np.prod(s)) for s in shapes)))
    steps.m_drift(pb, st)
    np.testing.assert_allclose(np.concatenate([d.ravel() for d in st.drift]), x, atol=1e-4)


def test_each_step_increases_free_energy():
    pb, st = tiny(seed=10, J=6)
    f = F(pb, st)
    for step in (steps.ve_a, steps.ve_q, steps.ve_h, steps.m_sigma_h, steps.m_mixture,
                 steps.m_beta, steps.m_drift, steps.m_noise) * 3:
        step(pb, st)
        f_new = F(pb, st)
        assert f_new >= f - 1e-9 * abs(f), step.__name__
        f = f_new


def test_crossing_threshold_equal_densities():
    from scipy.stats import norm

    mu1 = np.array([2.0, 1.0, 3.0, -2.0])
    v0 = np.array([0.3, 0.1, 0.5, 0.2])
    v1 = np.array([0.3, 0.5, 0.2, 0.4])
    d = steps.crossing_threshold(mu1, v0, v1)
    assert d[0] == pytest.approx(1.0)
    np.testing.assert_allclose(norm.pdf(d, 0, np.sqrt(v0)), norm.pdf(d, mu1, np.sqrt(v1)),
                               rtol=1e-8)
    assert np.all((d > np.minimum(0, mu1)) & (d < np.maximum(0, mu1)))


def test_design_matrices_exact_for_any_tr_dt_ratio():
    """X @ h equals the response computed by numerical integration of the piecewise-linear
    HRF (np.interp) against the stimulus, for TR/dt integer or not, with frame offsets,
    impulses, short events, blocks and modulations."""
    import pandas as pd

    ev = design.validate_events(pd.DataFrame({
        "onset": [3.3, 10.0, 17.05, 24.6], "duration": [0.0, 2.0, 0.2, 5.5],
        "trial_type": ["a", "a", "a", "b"], "modulation": [1.0, 2.0, -0.5, 1.5]}))
    rng = np.random.default_rng(0)
    for tr, dt, offset in ((2.0, 0.5, 0.0), (0.72, 0.36, 0.36), (1.0, 0.3, 0.1)):
        n_lags = 40
        h = rng.normal(size=n_lags)
        grid = dt * np.arange(n_lags + 1)
        h_lin = lambda x, h=h, grid=grid: np.interp(  # noqa: E731
            x, grid, np.append(h, 0.0), left=0.0, right=0.0)
        ft = np.arange(45) * tr + offset
        X = design.condition_matrices(ev, ft, ["a", "b"], dt, n_lags)
        for m, c in enumerate(["a", "b"]):
            expect = np.zeros(ft.size)
            for o, w, a in ev.loc[ev.trial_type == c, ["onset", "duration", "modulation"]
                                  ].to_numpy(float):
                if w == 0:
                    expect += a * np.where(ft >= o, h_lin(ft - o), 0.0)
                    continue
                s = np.linspace(o, o + w, 20001)
                lag = ft[:, None] - s[None, :]
                vals = np.where(lag >= 0, h_lin(lag), 0.0)
                expect += a * max(w, dt) / w * _trapezoid(vals, s, axis=1) / dt
            np.testing.assert_allclose(X[m] @ h, expect, atol=1e-4 * np.abs(expect).max())
    # an impulse on the grid hits one sample; half-way between two it splits 1/2-1/2
    one = design.validate_events(pd.DataFrame({"onset": [1.0], "trial_type": ["a"]}))
    Xi = design.condition_matrices(one, np.array([3.0, 3.25]), ["a"], 0.5, 8)[0]
    np.testing.assert_allclose(Xi[0], np.eye(8)[4])
    np.testing.assert_allclose(Xi[1], 0.5 * (np.eye(8)[4] + np.eye(8)[5]))


def test_grid_adjacency_and_colours():
    ijk = np.argwhere(np.ones((3, 3, 2), dtype=bool))
    adj = design.grid_adjacency(ijk)
    dist = np.abs(ijk[:, None] - ijk[None]).sum(-1)
    np.testing.assert_array_equal(adj.toarray(), (dist == 1).astype(float))
    col = design.graph_colours(adj)
    rows, cols = adj.nonzero()
    assert np.all(col[rows] != col[cols])


def test_choose_dt():
    assert design.choose_dt(2.0) == 0.5
    assert design.choose_dt(1.0) == 0.5
    assert design.choose_dt(0.72) == pytest.approx(0.36)
    assert design.choose_dt(2.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="tr must be"):
        design.choose_dt(0.0)
