"""Connectivity matrices, edge-wise and network-wise group comparisons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.covariance import EmpiricalCovariance

from bids_hrf.connectivity import (
    compare_edges,
    compare_networks,
    connectivity_matrices,
    fisher_z,
    network_summary,
    read_networks_tsv,
)
from bids_hrf.errors import DataError

P = 8
NAMES = [f"roi{i}" for i in range(P)]
NETWORKS = {name: ("DMN" if i < 4 else "Visual") for i, name in enumerate(NAMES)}


def _subject_series(rng, patient: bool, n_vol=150):
    """Two networks (shared factors); roi0-roi1 share an extra signal in controls only.

    In patients the extra signal is independent in roi0 and roi1, so every parcel keeps
    its variance and only the roi0-roi1 correlation changes.
    """
    a = rng.normal(0.8, 0.05)  # subject-specific network coupling
    dmn, vis = rng.normal(size=(2, n_vol))
    x = rng.normal(size=(n_vol, P))
    x[:, :4] += a * dmn[:, None]
    x[:, 4:] += a * vis[:, None]
    if patient:
        x[:, 0] += 1.2 * rng.normal(size=n_vol)
        x[:, 1] += 1.2 * rng.normal(size=n_vol)
    else:
        extra = 1.2 * rng.normal(size=n_vol)
        x[:, 0] += extra
        x[:, 1] += extra
    return pd.DataFrame(x, columns=NAMES)


@pytest.fixture(scope="module")
def cohort():
    rng = np.random.default_rng(0)
    series, groups = [], []
    for label in ("control", "schizophrenia"):
        for _ in range(14):
            series.append(_subject_series(rng, label == "schizophrenia"))
            groups.append(label)
    subjects = [f"{i:02d}" for i in range(len(series))]
    return series, pd.Series(groups, index=[f"sub-{s}" for s in subjects]), subjects


@pytest.fixture(scope="module")
def matrices(cohort):
    return connectivity_matrices(cohort[0])


def test_matrices_shapes_and_properties(matrices, cohort):
    assert set(matrices) == {"correlation", "partial correlation", "tangent"}
    for kind, m in matrices.items():
        assert m.shape == (28, P, P), kind
        np.testing.assert_allclose(m, m.transpose(0, 2, 1), atol=1e-10, err_msg=kind)
    np.testing.assert_allclose(np.diagonal(matrices["correlation"], axis1=1, axis2=2), 1.0)
    # controls: roi0-roi1 correlation high; patients: only the network coupling
    corr = matrices["correlation"][:, 0, 1]
    assert corr[:14].mean() > 0.55 and corr[14:].mean() < 0.35


@pytest.mark.golden
def test_correlation_matches_numpy(cohort):
    series = cohort[0][:3]
    default = connectivity_matrices(series, kinds=["correlation"])["correlation"]
    out = connectivity_matrices(series, kinds=["correlation", "partial correlation"],
                                cov_estimator=EmpiricalCovariance())
    np.testing.assert_allclose(default, out["correlation"], atol=1e-12)
    for k, ts in enumerate(series):
        np.testing.assert_allclose(out["correlation"][k], np.corrcoef(ts.to_numpy().T),
                                   atol=1e-10)
        prec = np.linalg.inv(np.cov(ts.to_numpy().T))
        d = np.sqrt(np.diag(prec))
        partial = -prec / np.outer(d, d)
        np.fill_diagonal(partial, 1.0)
        np.testing.assert_allclose(out["partial correlation"][k], partial, atol=1e-8)


def test_connectivity_errors():
    one = [np.random.default_rng(0).normal(size=(40, 4))]
    with pytest.raises(ValueError, match="tangent .* at least 2 subjects"):
        connectivity_matrices(one)
    assert connectivity_matrices(one, kinds=("correlation",))["correlation"].shape == (1, 4, 4)
    with pytest.raises(ValueError, match="unknown connectivity kind"):
        connectivity_matrices(one, kinds=("coherence",))
    with pytest.raises(ValueError, match="5 parcels, the first has 4"):
        connectivity_matrices([one[0], np.zeros((40, 5))], kinds=("correlation",))
    with pytest.raises(ValueError, match="same parcels"):
        connectivity_matrices([pd.DataFrame(one[0], columns=list("abcd")),
                               pd.DataFrame(one[0], columns=list("abdc"))], kinds=("correlation",))


def test_planted_edge_difference_is_found(matrices, cohort):
    _, groups, subjects = cohort
    res = compare_edges(matrices["correlation"], groups, names=NAMES, subjects=subjects)
    assert len(res) == P * (P - 1) // 2
    edge = res[(res.i == 0) & (res.j == 1)].iloc[0]
    assert edge.name_i == "roi0" and edge.name_j == "roi1"
    assert edge.significant and edge.p_fdr < 1e-4
    assert edge.difference < -0.2 and edge.t < 0  # lower in schizophrenia
    assert edge.mean_control == pytest.approx(matrices["correlation"][:14, 0, 1].mean())
    null = res[(res.i == 4) & (res.j == 5)].iloc[0]
    assert not null.significant
    assert res["significant"].sum() == 1
    # same result with positional groups; partial correlation also finds the edge
    pos = compare_edges(matrices["correlation"], list(groups), names=NAMES)
    np.testing.assert_allclose(pos["t"], res["t"])
    part = compare_edges(matrices["partial correlation"], list(groups))
    assert part.loc[(part.i == 0) & (part.j == 1), "significant"].item()
    tang = compare_edges(matrices["tangent"], list(groups), fisher_z=False)
    assert tang.loc[(tang.i == 0) & (tang.j == 1), "significant"].item()


@pytest.mark.golden
def test_edge_statistics_match_scipy(matrices, cohort):
    from scipy import stats

    groups = list(cohort[1])
    res = compare_edges(matrices["correlation"], groups)
    z = np.arctanh(matrices["correlation"][:, 2, 6])
    ref = stats.ttest_ind(z[14:], z[:14], equal_var=False)
    row = res[(res.i == 2) & (res.j == 6)].iloc[0]
    assert row.t == pytest.approx(ref.statistic) and row.p == pytest.approx(ref.pvalue)
    p = res["p"].to_numpy()
    order = np.argsort(p)
    bh = np.minimum.accumulate((p[order] * p.size / np.arange(1, p.size + 1))[::-1])[::-1]
    np.testing.assert_allclose(res["p_fdr"].to_numpy()[order], np.minimum(bh, 1))


def test_compare_edges_errors(matrices):
    m = matrices["correlation"]
    with pytest.raises(ValueError, match="exactly two groups, found 1"):
        compare_edges(m, ["a"] * 28)
    with pytest.raises(ValueError, match="3 labels for 28"):
        compare_edges(m, ["a", "b", "a"])
    with pytest.raises(ValueError, match="fisher_z=False"):
        compare_edges(m * 3, ["a", "b"] * 14)
    with pytest.raises(ValueError, match="at least 2 subjects"):
        compare_edges(m, ["a"] + ["b"] * 27)


def test_network_summary_known_values():
    m = np.zeros((1, 4, 4))
    r = np.array([[1, 0.5, 0.1, 0.2], [0.5, 1, 0.3, 0.4], [0.1, 0.3, 1, 0.6],
                  [0.2, 0.4, 0.6, 1]])
    m[0] = r
    nets = {0: "A", 1: "A", 2: "B", 3: "B"}
    raw = network_summary(m, nets, fisher_z=False).set_index(["network_a", "network_b"])
    assert raw.loc[("A", "A"), "value"] == pytest.approx(0.5)
    assert raw.loc[("B", "B"), "value"] == pytest.approx(0.6)
    assert raw.loc[("A", "B"), "value"] == pytest.approx(np.mean([0.1, 0.2, 0.3, 0.4]))
    assert raw.loc[("A", "B"), "kind"] == "between" and raw.loc[("A", "B"), "n_edges"] == 4
    z = network_summary(m, {"a": "A", "b": "A"}, names=["a", "b", "c", "d"])
    assert z["value"].item() == pytest.approx(np.arctanh(0.5))
    with pytest.raises(ValueError, match="not among the parcel names"):
        network_summary(m, {"zz": "A"}, names=["a", "b", "c", "d"])


def test_dmn_intra_network_connectivity_lower_in_patients(matrices, cohort):
    _, groups, subjects = cohort
    summary = network_summary(matrices["correlation"], NETWORKS, names=NAMES,
                              subjects=subjects)
    assert len(summary) == 28 * 3
    res = compare_networks(summary, groups).set_index(["network_a", "network_b"])
    dmn = res.loc[("DMN", "DMN")]
    assert dmn["significant"] and dmn["difference"] < 0 and dmn["kind"] == "within"
    assert dmn["p_fdr"] < 0.01
    assert dmn["n_control"] == 14 and dmn["n_schizophrenia"] == 14
    assert not res.loc[("Visual", "Visual"), "significant"]
    assert not res.loc[("DMN", "Visual"), "significant"]


def test_read_networks_tsv(tmp_path):
    by_name = tmp_path / "nets.tsv"
    by_name.write_text("name\tnetwork\nroi0\tDMN\nroi1\tDMN\nroi2\tn/a\n")
    assert read_networks_tsv(by_name) == {"roi0": "DMN", "roi1": "DMN"}
    by_index = tmp_path / "idx.tsv"
    by_index.write_text("index\tnetwork\n0\tDMN\n3\tVisual\n")
    assert read_networks_tsv(by_index) == {0: "DMN", 3: "Visual"}
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\tyeo\n1\tDMN\n")
    with pytest.raises(DataError, match="network"):
        read_networks_tsv(bad)
    with pytest.raises(DataError):
        read_networks_tsv(tmp_path / "missing.tsv")


def test_fisher_z():
    np.testing.assert_allclose(fisher_z([0.0, 0.5]), [0.0, np.arctanh(0.5)])
    assert np.isfinite(fisher_z(1.0))
