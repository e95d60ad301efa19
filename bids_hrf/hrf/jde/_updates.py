"""Variational EM steps of JDE-VEM (Chaari et al., IEEE TMI 2013) for one parcel.

Each function is an exact coordinate-ascent step of the free energy :func:`free_energy`
over one block of the variational distribution or of the parameters, so the free energy
never decreases. Shapes: J voxels, M conditions, D free HRF samples, R runs, N_r scans.

Label prior: a per-condition Ising field ``p(q_m) ∝ exp(beta_m sum_{j~k} [q_jm = q_km])``.
Its log-partition function is approximated by its Bethe value with uniform beliefs,
``log Z(beta) ≈ J log 2 + E log((1 + e^beta) / 2)`` (E edges; exact when the neighbour graph
is a tree). That makes the ``beta`` update closed form (:func:`m_beta`) and keeps the free
energy a fixed function of the variational parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.special import expit, logit, xlogy

LOG2PI = float(np.log(2 * np.pi))
BETA_MAX = 10.0


@dataclass
class RunData:
    """Static data of one run: scaled BOLD, stimulus matrices on the free HRF samples, drifts."""

    y: np.ndarray  # (N, J)
    X: np.ndarray  # (M, N, D)
    P: np.ndarray  # (N, L), orthonormal columns
    XtX: np.ndarray = field(init=False)  # (M, M, D, D)
    XtX_flat: np.ndarray = field(init=False)  # (M * M, D * D)
    X_flat: np.ndarray = field(init=False)  # (M * N, D)
    Pty: np.ndarray = field(init=False)  # (L, J)
    yy: np.ndarray = field(init=False)  # (J,)

    def __post_init__(self) -> None:
        M, N, D = self.X.shape
        self.XtX = np.einsum("mnd,kne->mkde", self.X, self.X, optimize=True)
        self.XtX_flat = self.XtX.reshape(M * M, D * D)
        self.X_flat = self.X.reshape(M * N, D)
        self.Pty = self.P.T @ self.y  # (L, J)
        self.yy = np.einsum("nj,nj->j", self.y, self.y)

    @property
    def n_scans(self) -> int:
        return self.y.shape[0]


@dataclass
class Problem:
    """Everything fixed during the fit of one parcel."""

    runs: list[RunData]
    Rinv: np.ndarray  # (D, D) prior precision of h (times s_h)
    adjacency: sparse.csr_matrix | None  # (J, J) or None
    colours: np.ndarray  # (J,) label update groups
    hrf_hyperprior: float
    beta_hyperprior: float = 1.0
    hrf_tempering: float = 1.0  # kappa >= 1: the data weigh 1 / kappa in the HRF update
    var_floor: float = 1e-6
    noise_floor: float = 1e-8
    logdet_Rinv: float = field(init=False)
    n_edges: int = field(init=False)
    groups: list = field(init=False)  # (voxel indices, adjacency rows) per colour

    def __post_init__(self) -> None:
        self.logdet_Rinv = float(np.linalg.slogdet(self.Rinv)[1])
        self.n_edges = 0 if self.adjacency is None else int(self.adjacency.nnz // 2)
        self.groups = []
        if self.n_edges:
            for c in np.unique(self.colours):
                idx = np.flatnonzero(self.colours == c)
                self.groups.append((idx, sparse.csr_matrix(self.adjacency[idx])))

    @property
    def n_voxels(self) -> int:
        return self.runs[0].y.shape[1]

    @property
    def n_conditions(self) -> int:
        return self.runs[0].X.shape[0]

    @property
    def n_free(self) -> int:
        return self.Rinv.shape[0]


@dataclass
class State:
    """Variational distribution and parameters."""

    m_H: np.ndarray  # (D,)
    S_H: np.ndarray  # (D, D)
    m_A: np.ndarray  # (J, M)
    S_A: np.ndarray  # (J, M, M)
    q: np.ndarray  # (M, J, 2) class probabilities (0 inactive, 1 active)
    mu: np.ndarray  # (M, 2), mu[:, 0] == 0
    v: np.ndarray  # (M, 2)
    beta: np.ndarray  # (M,)
    s_h: float
    drift: list[np.ndarray]  # per run (L, J)
    noise: np.ndarray  # (R, J)


def ytilde(run: RunData, drift: np.ndarray) -> np.ndarray:
    """BOLD minus the drift, shape (N, J)."""
    return run.y - run.P @ drift


def g_ytilde(run: RunData, G: np.ndarray, drift: np.ndarray) -> np.ndarray:
    """``G ytilde`` without forming ytilde, shape (M, J)."""
    return G @ run.y - (G @ run.P) @ drift


def sq_norm_ytilde(run: RunData, drift: np.ndarray) -> np.ndarray:
    """``||ytilde_j||^2`` per voxel (the drift basis is orthonormal), shape (J,)."""
    return run.yy - 2.0 * np.einsum("lj,lj->j", drift, run.Pty) + np.einsum(
        "lj,lj->j", drift, drift)


def hrf_moments(run: RunData, m_H: np.ndarray, S_H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``G = [X_m m_H]`` (M, N) and ``Ht[m, n] = g_m'g_n + tr(X_m S_H X_n')`` (M, M)."""
    M = run.X.shape[0]
    G = (run.X_flat @ m_H).reshape(M, -1)
    Ht = G @ G.T + (run.XtX_flat @ S_H.ravel()).reshape(M, M)
    return G, 0.5 * (Ht + Ht.T)


def expected_sq_residual(
    run: RunData, drift: np.ndarray, G: np.ndarray, Ht: np.ndarray, st: State
) -> np.ndarray:
    """``E||ytilde_j - sum_m a_jm X_m h||^2`` per voxel, shape (J,)."""
    cross = np.einsum("jm,mj->j", st.m_A, g_ytilde(run, G, drift))
    quad = np.einsum("jm,jm->j", st.m_A @ Ht, st.m_A) + st.S_A.reshape(st.S_A.shape[0], -1) @ (
        Ht.ravel())
    return sq_norm_ytilde(run, drift) - 2.0 * cross + quad


def ve_a(pb: Problem, st: State) -> None:
    """VE-A: Gaussian q(a_j), batched M x M over voxels."""
    J, M = pb.n_voxels, pb.n_conditions
    prec = np.zeros((J, M, M))
    rhs = np.zeros((J, M))
    for r, run in enumerate(pb.runs):
        G, Ht = hrf_moments(run, st.m_H, st.S_H)
        w = 1.0 / st.noise[r]
        prec += w[:, None, None] * Ht[None]
        rhs += w[:, None] * g_ytilde(run, G, st.drift[r]).T
    q = np.moveaxis(st.q, 0, 1)  # (J, M, 2)
    delta = (q / st.v[None]).sum(-1)
    prec[:, np.arange(M), np.arange(M)] += delta
    rhs += (q * (st.mu / st.v)[None]).sum(-1)
    S_A = np.linalg.inv(prec)
    st.S_A = 0.5 * (S_A + np.swapaxes(S_A, 1, 2))
    st.m_A = np.einsum("jmn,jn->jm", st.S_A, rhs)


def label_logits(pb: Problem, st: State) -> np.ndarray:
    """Unnormalised log q(q_jm = i) without the neighbour term, shape (M, J, 2)."""
    mA = st.m_A.T[:, :, None]  # (M, J, 1)
    vA = np.diagonal(st.S_A, axis1=1, axis2=2).T[:, :, None]
    v = st.v[:, None, :]
    return -0.5 * np.log(v) - ((mA - st.mu[:, None, :]) ** 2 + vA) / (2.0 * v)


def ve_q(pb: Problem, st: State, n_sweeps: int = 1) -> None:
    """VE-Q: mean-field label update, one colour class of the graph at a time."""
    base = label_logits(pb, st)
    if pb.adjacency is None or pb.n_edges == 0:
        st.q = _softmax(base)
        return
    M, J = st.q.shape[:2]
    q = np.ascontiguousarray(np.moveaxis(st.q, 1, 0))  # (J, M, 2)
    base = np.moveaxis(base, 1, 0)
    for _ in range(n_sweeps):
        for idx, rows in pb.groups:
            field_ = (rows @ q.reshape(J, 2 * M)).reshape(idx.size, M, 2)
            q[idx] = _softmax(base[idx] + st.beta[None, :, None] * field_)
    st.q = np.ascontiguousarray(np.moveaxis(q, 0, 1))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def ve_h(pb: Problem, st: State) -> None:
    """VE-H: Gaussian q(h) over the free HRF samples (D x D)."""
    prec = pb.Rinv / st.s_h
    rhs = np.zeros(pb.n_free)
    EaaT = st.S_A + np.einsum("jm,jn->jmn", st.m_A, st.m_A)
    for r, run in enumerate(pb.runs):
        w = 1.0 / (st.noise[r] * pb.hrf_tempering)
        W = w @ EaaT.reshape(w.size, -1)  # (M * M,)
        prec = prec + (W @ run.XtX_flat).reshape(prec.shape)
        B = w[:, None] * st.m_A
        Z = run.y @ B - run.P @ (st.drift[r] @ B)  # ytilde @ B, (N, M)
        rhs += Z.T.ravel() @ run.X_flat
    prec = 0.5 * (prec + prec.T)
    chol = np.linalg.cholesky(prec)
    inv_chol = np.linalg.solve(chol, np.eye(prec.shape[0]))
    st.S_H = inv_chol.T @ inv_chol
    st.m_H = st.S_H @ rhs


def m_sigma_h(pb: Problem, st: State) -> None:
    """M-step of the HRF prior scale with the exponential hyperprior (rate ``lambda``)."""
    C = float(np.sum((st.S_H + np.outer(st.m_H, st.m_H)) * pb.Rinv))
    D = pb.n_free
    lam = pb.hrf_hyperprior
    if lam > 0:
        st.s_h = (-D + np.sqrt(D * D + 8.0 * lam * C)) / (4.0 * lam)
    else:
        st.s_h = C / D
    st.s_h = max(st.s_h, 1e-12)


def m_mixture(pb: Problem, st: State) -> None:
    """M-step of the class means and variances (class 0 has mean 0), with a variance floor."""
    mA = st.m_A.T  # (M, J)
    vA = np.diagonal(st.S_A, axis1=1, axis2=2).T
    w0, w1 = st.q[..., 0], st.q[..., 1]
    n0, n1 = w0.sum(1), w1.sum(1)
    tiny = 1e-10
    mu1 = np.where(n1 > tiny, (w1 * mA).sum(1) / np.maximum(n1, tiny), st.mu[:, 1])
    v0 = np.where(n0 > tiny, (w0 * (mA**2 + vA)).sum(1) / np.maximum(n0, tiny), st.v[:, 0])
    v1 = np.where(
        n1 > tiny,
        (w1 * ((mA - mu1[:, None]) ** 2 + vA)).sum(1) / np.maximum(n1, tiny),
        st.v[:, 1],
    )
    st.mu = np.stack([np.zeros_like(mu1), mu1], axis=1)
    st.v = np.maximum(np.stack([v0, v1], axis=1), pb.var_floor)


def agreement(pb: Problem, q: np.ndarray) -> np.ndarray:
    """``sum_{j~k} sum_i q_jm(i) q_km(i)`` per condition (each edge once), shape (M,)."""
    if pb.adjacency is None or pb.n_edges == 0:
        return np.zeros(q.shape[0])
    return 0.5 * np.array(
        [np.sum(q[m] * (pb.adjacency @ q[m])) for m in range(q.shape[0])]
    )


def log_partition(pb: Problem, beta: np.ndarray) -> np.ndarray:
    """Bethe approximation of the Ising log-partition function (see module docstring)."""
    return pb.n_voxels * np.log(2.0) + pb.n_edges * (np.logaddexp(0.0, beta) - np.log(2.0))


def m_beta(pb: Problem, st: State) -> None:
    """M-step of the interaction parameters: ``sigmoid(beta) = (S - lambda) / E``, on [0, 10]."""
    if pb.n_edges == 0:
        return
    ratio = (agreement(pb, st.q) - pb.beta_hyperprior) / pb.n_edges
    ratio = np.clip(ratio, expit(0.0), expit(BETA_MAX))
    st.beta = np.clip(logit(ratio), 0.0, BETA_MAX)


def m_drift(pb: Problem, st: State) -> None:
    """M-step of the drift coefficients (least squares; the drift basis is orthonormal)."""
    for r, run in enumerate(pb.runs):
        G = (run.X_flat @ st.m_H).reshape(pb.n_conditions, -1)
        st.drift[r] = run.Pty - (run.P.T @ G.T) @ st.m_A.T


def m_noise(pb: Problem, st: State) -> None:
    """M-step of the noise variances, per run and voxel."""
    for r, run in enumerate(pb.runs):
        G, Ht = hrf_moments(run, st.m_H, st.S_H)
        e = expected_sq_residual(run, st.drift[r], G, Ht, st)
        st.noise[r] = np.maximum(e / run.n_scans, pb.noise_floor)


def free_energy(pb: Problem, st: State, estimate_hrf: bool = True) -> float:
    """Variational free energy (evidence lower bound up to the Ising approximation)."""
    F = 0.0
    for r, run in enumerate(pb.runs):
        G, Ht = hrf_moments(run, st.m_H, st.S_H)
        e = expected_sq_residual(run, st.drift[r], G, Ht, st)
        s2 = st.noise[r]
        F += float(np.sum(-0.5 * run.n_scans * (LOG2PI + np.log(s2)) - e / (2.0 * s2)))
    # NRL mixture prior and entropy of q(a)
    logits = label_logits(pb, st) - 0.5 * LOG2PI
    F += float(np.sum(st.q * logits))
    M = pb.n_conditions
    logdet_A = np.linalg.slogdet(st.S_A)[1]
    F += float(np.sum(0.5 * M * (1.0 + LOG2PI) + 0.5 * logdet_A))
    # labels: Ising prior (Bethe log-partition), beta hyperprior, entropy of q(q)
    if pb.n_edges > 0:
        F += float(np.sum(st.beta * agreement(pb, st.q) - log_partition(pb, st.beta)))
        F -= float(pb.beta_hyperprior * np.sum(st.beta))
    else:
        F -= float(M * pb.n_voxels * np.log(2.0))
    F -= float(np.sum(xlogy(st.q, st.q)))
    # tempered objective: everything but the HRF's own prior and entropy weighs 1 / kappa,
    # so that every step below (VE-H included) is an exact coordinate ascent of it
    F /= pb.hrf_tempering
    # HRF prior, hyperprior and entropy of q(h)
    if estimate_hrf:
        D = pb.n_free
        C = float(np.sum((st.S_H + np.outer(st.m_H, st.m_H)) * pb.Rinv))
        F += -0.5 * D * (LOG2PI + np.log(st.s_h)) + 0.5 * pb.logdet_Rinv - C / (2.0 * st.s_h)
        if pb.hrf_hyperprior > 0:
            F += np.log(pb.hrf_hyperprior) - pb.hrf_hyperprior * st.s_h
        F += 0.5 * D * (1.0 + LOG2PI) + 0.5 * float(np.linalg.slogdet(st.S_H)[1])
    return F


def crossing_threshold(mu1: np.ndarray, v0: np.ndarray, v1: np.ndarray) -> np.ndarray:
    """Point between 0 and ``mu1`` where the densities N(0, v0) and N(mu1, v1) are equal.

    Falls back to ``mu1 / 2`` where no crossing lies between the two means.
    """
    mu1, v0, v1 = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (mu1, v0, v1))
    a = 1.0 / v1 - 1.0 / v0
    b = -2.0 * mu1 / v1
    c = mu1**2 / v1 + np.log(v1 / v0)
    out = mu1 / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        disc = b * b - 4 * a * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        quad = np.abs(a) > 1e-12 * np.maximum(1.0 / v0, 1.0 / v1)
        roots = np.stack([(-b - sq) / (2 * a), (-b + sq) / (2 * a)])
        lin = -c / b
    lo, hi = np.minimum(0.0, mu1), np.maximum(0.0, mu1)
    for k in range(mu1.size):
        if not quad[k]:
            if np.isfinite(lin[k]) and lo[k] <= lin[k] <= hi[k]:
                out[k] = lin[k]
            continue
        if disc[k] < 0:
            continue
        cand = [x for x in roots[:, k] if np.isfinite(x) and lo[k] <= x <= hi[k]]
        if cand:
            out[k] = min(cand, key=lambda x: abs(x - mu1[k] / 2.0))
    return out
