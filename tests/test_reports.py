"""Tests of the HTML report: figure functions, the builder, self-containment, escaping, I/O.

Run ``python tests/test_reports.py`` to write the demo report to /tmp/report_demo.html.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import gamma

from bids_hrf.errors import OutputError
from bids_hrf.reports import EmbeddedFigure, Report, escape_text, software_versions
from bids_hrf.reports import figures as F
from bids_hrf.reports.figures_glm import _kept_volumes

EVIL = '<script>alert("x")</script>&<b>'
TR = 2.0
N_VOL = 60


# ---------------------------------------------------------------------------------------------
# synthetic inputs
# ---------------------------------------------------------------------------------------------
def _affine() -> np.ndarray:
    aff = np.diag([4.0, 4.0, 4.0, 1.0])
    aff[:3, 3] = [-18.0, -26.0, -10.0]
    return aff


def _gamma_hrf(t: np.ndarray, peak: float = 5.0, width: float = 1.0) -> np.ndarray:
    """Double-gamma HRF with its positive lobe peaking near ``peak`` seconds."""
    a = peak / width + 1
    h = gamma.pdf(t, a, scale=width) - gamma.pdf(t, a + 10, scale=width) / 6
    return h / np.abs(h).max()


def make_inputs(seed: int = 0) -> dict:
    """Small synthetic run: 4D BOLD, mask, atlas, confounds, design, HRFs, maps, group data."""
    rng = np.random.default_rng(seed)
    shape = (10, 12, 10)
    aff = _affine()
    i, j, k = np.indices(shape)
    brain = ((i - 4.5) / 4.2) ** 2 + ((j - 5.5) / 5.2) ** 2 + ((k - 4.5) / 4.2) ** 2 <= 1
    labels = (1 + (i >= 5) + 2 * (j >= 6) + 4 * (k >= 5)) * brain
    names = [f"parcel {n}" for n in range(1, 9)]
    signal = rng.normal(0, 1, (*shape, N_VOL)).cumsum(axis=-1) * 0.3
    bold = (1000 + 40 * brain[..., None] + signal).astype(np.float32)
    stat = rng.normal(0, 1, shape)
    stat[2:6, 3:8, 3:7] += 5.0
    stat[6:9, 2:5, 5:8] -= 4.5
    stat *= brain
    ppm = 1 / (1 + np.exp(-(stat - 2.0) * 1.5)) * brain
    fd = np.abs(rng.normal(0.12, 0.06, N_VOL))
    fd[0] = np.nan
    fd[[22, 23, 41]] = [0.8, 0.65, 1.1]
    confounds = pd.DataFrame(
        rng.normal(0, 1, (N_VOL, 8)).cumsum(axis=0),
        columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "csf", "wm"],
    )
    confounds["motion_outlier00"] = 0.0
    confounds.loc[22, "motion_outlier00"] = 1.0
    sample_mask = np.array([v for v in range(3, N_VOL) if v not in (22, 23, 41)])
    events = pd.DataFrame(
        {
            "onset": np.arange(6, N_VOL * TR - 10, 15.0),
            "duration": 3.0,
            "trial_type": (["faces", EVIL] * 10)[: len(np.arange(6, N_VOL * TR - 10, 15.0))],
        }
    )
    frame_times = np.arange(N_VOL) * TR
    design = pd.DataFrame(
        {
            "faces": np.convolve(
                np.isin(frame_times, events.onset[::2]), _gamma_hrf(np.arange(0, 30, TR))
            )[:N_VOL],
            EVIL: np.convolve(
                np.isin(frame_times, events.onset[1::2]), _gamma_hrf(np.arange(0, 30, TR))
            )[:N_VOL],
        }
    )
    for d in range(3):
        design[f"drift_{d + 1}"] = np.cos(np.pi * (d + 1) * (np.arange(N_VOL) + 0.5) / N_VOL)
    design["constant"] = 1.0
    t = np.arange(0, 25.5, 0.5)
    peaks = np.linspace(4.0, 6.5, len(names))
    hrfs = np.column_stack([_gamma_hrf(t, p) for p in peaks])
    variance = (0.05 + 0.02 * rng.random(hrfs.shape)) ** 2
    conv = []
    for p, name in enumerate(names):
        n_it = 12 + 3 * p
        f = -1000 + 800 * (1 - np.exp(-np.arange(n_it) / (2 + p)))
        if p == 5:
            f[6] = f[5] - 30.0  # one non-monotone parcel
        conv.append(pd.DataFrame({"parcel": name, "iteration": np.arange(n_it), "free_energy": f}))
    activity = np.zeros(N_VOL)
    activity[[5, 14, 30, 47]] = [1.5, 0.8, 2.0, -0.7]
    fitted = np.convolve(activity, _gamma_hrf(np.arange(0, 30, TR)))[:N_VOL]
    y = fitted + rng.normal(0, 0.3, N_VOL)
    n_sub = 12
    groups = np.array(["patients"] * 6 + ["controls"] * 6)
    summary = pd.concat(
        [
            pd.DataFrame(
                {"parcel": name, "time": t, "mean": hrfs[:, p] * s, "sd": 0.15, "group": g}
            )
            for p, name in enumerate(names)
            for g, s in (("patients", 0.8), ("controls", 1.0))
        ]
    )
    params = pd.DataFrame(
        {
            "participant_id": np.repeat([f"sub-{s:02d}" for s in range(n_sub)], len(names)),
            "group": np.repeat(groups, len(names)),
            "parcel": names * n_sub,
            "time_to_peak": np.tile(peaks, n_sub) + rng.normal(0, 0.4, n_sub * len(names)),
        }
    )
    ts = rng.normal(size=(100, len(names)))
    ts[:, 1] += ts[:, 0]
    conn = np.corrcoef(ts.T)
    edges = pd.DataFrame(
        [(a, b) for a in range(len(names)) for b in range(a)], columns=["i", "j"]
    ).assign(t=lambda d: rng.normal(0, 2, len(d)))
    edges["p_fdr"] = np.where(np.abs(edges["t"]) > 3, 0.01, 0.5)
    coverage = pd.DataFrame(
        {"label": names, "coverage": np.round(rng.uniform(0.35, 1.0, len(names)), 3)}
    )
    return {
        "bold": nib.Nifti1Image(bold, aff),
        "mask": nib.Nifti1Image(brain.astype(np.uint8), aff),
        "atlas": nib.Nifti1Image(labels.astype(np.int16), aff),
        "mean": nib.Nifti1Image(bold.mean(axis=-1), aff),
        "stat": nib.Nifti1Image(stat.astype(np.float32), aff),
        "ppm": nib.Nifti1Image(ppm.astype(np.float32), aff),
        "ttp": nib.Nifti1Image((brain * (5 + (i - 5) * 0.2)).astype(np.float32), aff),
        "fwhm": nib.Nifti1Image((brain * (4.5 + (j - 6) * 0.1)).astype(np.float32), aff),
        "height": nib.Nifti1Image((brain * rng.uniform(0.5, 2, shape)).astype(np.float32), aff),
        "names": names,
        "fd": fd,
        "confounds": confounds,
        "sample_mask": sample_mask,
        "events": events,
        "design": design,
        "time": t,
        "hrfs": hrfs,
        "variance": variance,
        "reference": (t, _gamma_hrf(t, 5.0)),
        "convergence": pd.concat(conv, ignore_index=True),
        "frame_times": frame_times,
        "y": y,
        "fitted": fitted,
        "activity": activity,
        "summary": summary,
        "params": params,
        "conn": conn,
        "networks": ["vis", "dmn", "vis", "smn", "dmn", "smn", "vis", "dmn"],
        "edges": edges,
        "coverage": coverage,
    }


def _figure_calls(d: dict) -> dict:
    """Each figure function with arguments built from :func:`make_inputs`."""
    return {
        "confounds": (F.plot_confounds, (d["fd"], d["confounds"], d["sample_mask"], TR, 0.5), {}),
        "carpet": (F.plot_carpet, (d["bold"], d["mask"], TR), {}),
        "design": (F.plot_design_matrix, (d["design"],), {}),
        "atlas": (F.plot_atlas, (d["atlas"],), {"bg_img": d["mean"]}),
        "coverage": (F.plot_coverage, (d["coverage"],), {"threshold": 0.5}),
        "stat_map": (F.plot_stat_map, (d["stat"],), {"bg_img": d["mean"], "title": "faces"}),
        "hrf_panel": (
            F.plot_hrf_panel,
            (d["time"], d["hrfs"], d["names"]),
            {"variance": d["variance"], "reference": d["reference"]},
        ),
        "hrf_overlay": (F.plot_hrf_overlay, (d["time"], d["hrfs"], d["names"]), {}),
        "ppm": (F.plot_ppm, (d["ppm"],), {"bg_img": d["mean"], "title": "faces"}),
        "free_energy": (F.plot_free_energy, (d["convergence"],), {}),
        "parameter_maps": (
            F.plot_hrf_parameter_maps,
            (d["ttp"], d["fwhm"], d["height"]),
            {"bg_img": d["mean"]},
        ),
        "sparse_fit": (
            F.plot_sparse_fit,
            (d["frame_times"], d["y"], d["fitted"], d["activity"], d["events"]),
            {"title": "voxel (4, 5, 6)"},
        ),
        "connectivity": (
            F.plot_connectivity_matrix,
            (d["conn"], d["names"]),
            {"networks": d["networks"], "title": "mean connectivity"},
        ),
        "edge_differences": (F.plot_edge_differences, (d["edges"], d["names"]), {}),
        "group_hrfs": (F.plot_group_hrfs, (d["summary"],), {"parcels": d["names"][:6]}),
        "parameter_comparison": (
            F.plot_hrf_parameter_comparison,
            (d["params"], "time_to_peak"),
            {"groups": ["controls", "patients"]},
        ),
    }


def build_demo_report(
    d: dict | None = None, logger: logging.Logger | None = None, made: dict | None = None
) -> Report:
    """A participant-like report with every figure, a failing figure and hostile names.

    ``made`` maps figure names to figures already made (the tests make each figure once).
    """
    d = make_inputs() if d is None else d
    calls = _figure_calls(d)
    if made is not None:
        calls = {key: ((lambda key=key: made[key]), (), {}) for key in calls}
    rep = Report("sub-01", subtitle="ds-demo \u00b7 task-faces \u00b7 bids_hrf demo", logger=logger)
    rep.add_metadata(
        "BOLD runs", ["sub-01_task-faces_run-1", "sub-01_task-faces_run-2"], group="Inputs"
    )
    rep.add_metadata("fMRIPrep derivatives", Path("/data/derivatives/fmriprep"), group="Inputs")
    rep.add_metadata("space", "MNI152NLin2009cAsym", group="Inputs")
    rep.add_metadata("HRF methods", ["jde-vem", "sparse", "canonical"], group="Parameters")
    rep.add_metadata(
        "confounds", {"strategy": "motion+wm_csf", "fd_threshold": 0.5}, group="Parameters"
    )
    rep.add_metadata("condition", EVIL, group="Parameters")
    rep.add_warning("run-2: 14% of volumes scrubbed (FD > 0.5 mm)")
    rep.add_warning(f"condition {EVIL} has only 3 events")

    data = rep.section("Data and parcellation")
    rep.add_text(
        data,
        "Parcellation resampled to the BOLD grid.\n\nParcels with less than "
        "50% coverage are dropped.",
    )
    for key, cap in (
        ("atlas", "Parcellation on the mean BOLD image."),
        ("coverage", "Coverage of each parcel; orange: below the 50% threshold."),
    ):
        f, a, k = calls[key]
        rep.add_figure(data, f, *a, caption=cap, **k)
    rep.add_table(data, d["coverage"], caption="Parcel coverage")

    runs = rep.section("Runs")
    for r in (1, 2):
        run = rep.section(f"run-{r}", parent=runs, open=r == 1)
        for key, cap in (
            ("confounds", "Framewise displacement and confounds; shaded: censored volumes."),
            ("carpet", "Carpet plot of the cleaned BOLD signal."),
            ("design", "First-level design matrix."),
            ("stat_map", f"z map of contrast {EVIL}, |z| > 3.1."),
        ):
            f, a, k = calls[key]
            rep.add_figure(run, f, *a, caption=cap, **k)
        rep.add_table(run, d["events"], caption="Events")

    jde = rep.section("JDE-VEM")
    rep.add_text(jde, "Joint detection-estimation, variational EM, one HRF per parcel.")
    for key, cap in (
        ("hrf_panel", "HRF per parcel with \u00b12 sd credible band; dashed: canonical HRF."),
        ("hrf_overlay", "All parcel HRFs, coloured by time to peak."),
        ("ppm", "Posterior probability map, faces."),
        ("free_energy", "Free energy per VEM iteration."),
        ("parameter_maps", "HRF parameter maps."),
    ):
        f, a, k = calls[key]
        rep.add_figure(jde, f, *a, caption=cap, **k)

    def broken() -> None:
        raise RuntimeError("synthetic failure <b>boom</b>")

    rep.add_figure(jde, broken, caption="A figure that fails on purpose.")
    spfm = rep.section("Sparse deconvolution")
    f, a, k = calls["sparse_fit"]
    rep.add_figure(spfm, f, *a, caption="Example voxel: BOLD, fit and activity.", **k)

    group = rep.section("Group (preview)")
    for key, cap in (
        ("connectivity", "Mean connectivity, ordered by network."),
        ("edge_differences", "Edge-wise t, patients vs controls; circles: p_FDR < 0.05."),
        ("group_hrfs", "Group HRFs."),
        ("parameter_comparison", "Time to peak per parcel and group."),
    ):
        f, a, k = calls[key]
        rep.add_figure(group, f, *a, caption=cap, **k)
    return rep


@pytest.fixture(scope="module")
def inputs() -> dict:
    return make_inputs()


class _Figures(dict):
    """Figures of :func:`_figure_calls`, each made once on first use."""

    def __init__(self, calls: dict):
        super().__init__()
        self.calls = calls

    def __missing__(self, key: str) -> EmbeddedFigure:
        f, args, kwargs = self.calls[key]
        self[key] = f(*args, **kwargs)
        return self[key]


@pytest.fixture(scope="module")
def made(inputs) -> _Figures:
    return _Figures(_figure_calls(inputs))


@pytest.fixture(scope="module")
def demo_html(inputs, made) -> str:
    return build_demo_report(inputs, made=made).render()


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
FIGURES = [
    "confounds",
    "carpet",
    "design",
    "atlas",
    "coverage",
    "stat_map",
    "hrf_panel",
    "hrf_overlay",
    "ppm",
    "free_energy",
    "parameter_maps",
    "sparse_fit",
    "connectivity",
    "edge_differences",
    "group_hrfs",
    "parameter_comparison",
]


SVG_FIGURES = {
    "confounds",
    "coverage",
    "hrf_panel",
    "hrf_overlay",
    "free_energy",
    "sparse_fit",
    "group_hrfs",
    "parameter_comparison",
}


@pytest.mark.parametrize("name", FIGURES)
def test_figure_functions_produce_images(made, name):
    import matplotlib.pyplot as plt

    fig = made[name]
    assert isinstance(fig, EmbeddedFigure)
    # line plots are SVG, raster-heavy figures (slices, carpets, matrices) PNG
    assert fig.mime == ("image/svg+xml" if name in SVG_FIGURES else "image/png")
    if fig.mime == "image/png":
        assert fig.data.startswith(b"\x89PNG\r\n\x1a\n")
        width, height = np.frombuffer(fig.data[16:24], dtype=">u4")
        assert width > 200 and height > 100
    else:
        text = fig.data.decode("utf-8")
        assert "<svg" in text and text.rstrip().endswith("</svg>")
        assert "<path" in text  # something was drawn
    assert fig.nbytes < 1_000_000
    assert plt.get_fignums() == []  # nothing left open in pyplot


def test_hrf_panel_content(inputs, made):
    d = inputs
    svg = F.plot_hrf_panel(d["time"], d["hrfs"], d["names"], max_parcels=5).data.decode()
    assert "first 5 of 8 parcels" in svg
    titles = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert {"1", "5"} <= set(titles) and "6" not in titles  # shared prefix dropped
    assert "names without the prefix 'parcel '" in svg
    long = F.plot_hrf_panel(
        d["time"], d["hrfs"][:, :2], ["Left_Superior_Frontal_Gyrus_ant", "x"]
    ).data.decode()
    assert "Left_Sup\u2026Gyrus_ant" in long  # long names cut in the middle
    # time-to-peak labels: the generator puts parcel 1's peak at 4.0 s and parcel 5's at 5.4 s
    ttp = F.time_to_peak(d["time"], d["hrfs"])
    assert f"{ttp[0]:.1f} s" in svg and f"{ttp[4]:.1f} s" in svg
    assert "2 sd" not in svg
    assert "2 sd" in made["hrf_panel"].data.decode()  # made with a variance


def test_time_to_peak_known_answer():
    t = np.arange(0, 20.0, 1.0)
    true = np.array([4.3, 5.0, 6.7, 9.25])
    hrfs = np.exp(-0.5 * ((t[:, None] - true) / 1.6) ** 2)
    np.testing.assert_allclose(F.time_to_peak(t, hrfs), true, atol=0.05)
    np.testing.assert_allclose(F.time_to_peak(t, -hrfs), true, atol=0.05)  # negative HRFs
    assert np.isnan(F.time_to_peak(t, np.zeros((t.size, 1))))[0]


def test_free_energy_flags_non_monotone_parcels(inputs, made):
    svg = made["free_energy"].data.decode()
    assert "1 with a decreasing free energy" in svg and "parcel 6" in svg
    good = inputs["convergence"][inputs["convergence"]["parcel"] != "parcel 6"]
    assert "0 with a decreasing free energy" in F.plot_free_energy(good).data.decode()


def test_confounds_counts_dummy_and_scrubbed(inputs, made):
    d = inputs
    svg = made["confounds"].data.decode()
    assert "dummy (3)" in svg and "scrubbed (3)" in svg and "54/60 volumes kept" in svg
    assert "motion_outlier00" not in svg  # spike regressors are not drawn as traces
    bool_mask = np.zeros(N_VOL, dtype=bool)
    bool_mask[d["sample_mask"]] = True
    np.testing.assert_array_equal(_kept_volumes(d["sample_mask"], N_VOL), bool_mask)
    np.testing.assert_array_equal(_kept_volumes(bool_mask, N_VOL), bool_mask)


def test_edge_matrix_layout():
    names = ["a", "b", "c", "d"]
    results = pd.DataFrame(
        {
            "source": ["a", "d", "b"],
            "target": ["b", "b", "c"],
            "t": [2.0, -4.0, 0.5],
            "p_fdr": [0.2, 0.001, 0.04],
        }
    )
    mat, sig, stat, how = F.edge_matrix(results, names)
    expected = np.full((4, 4), np.nan)
    expected[1, 0], expected[3, 1], expected[2, 1] = 2.0, -4.0, 0.5
    np.testing.assert_array_equal(mat, expected)
    assert sorted(zip(*np.nonzero(sig), strict=True)) == [(2, 1), (3, 1)]
    assert stat == "t" and how == "p_fdr < 0.05"
    by_index = results.assign(i=[0, 3, 1], j=[1, 1, 2]).drop(columns=["source", "target"])
    mat2, sig2, _, _ = F.edge_matrix(by_index, names, alpha=0.01)
    np.testing.assert_array_equal(mat2, expected)
    assert sig2.sum() == 1 and sig2[3, 1]
    with pytest.raises(ValueError, match="unknown parcels"):
        F.edge_matrix(results, names[:2])
    with pytest.raises(ValueError, match="statistic"):
        F.edge_matrix(results.drop(columns="t"), names)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda d: F.plot_hrf_panel(d["time"], d["hrfs"], d["names"][:3]), "names"),
        (lambda d: F.plot_hrf_panel(d["time"][:-1], d["hrfs"]), "shape"),
        (lambda d: F.plot_hrf_panel(d["time"], d["hrfs"], variance=d["variance"][:-1]), "variance"),
        (lambda d: F.plot_ppm(d["stat"]), r"\[0, 1\]"),
        (lambda d: F.plot_free_energy(pd.DataFrame({"parcel": [1]})), "columns"),
        (lambda d: F.plot_confounds(d["fd"], d["confounds"].iloc[:10]), "rows"),
        (lambda d: F.plot_connectivity_matrix(np.ones((3, 4))), "square"),
        (lambda d: F.plot_hrf_parameter_comparison(d["params"], "fwhm"), "fwhm"),
        (lambda d: F.plot_hrf_parameter_comparison(d["params"], "time_to_peak", ["x"]), "x"),
        (lambda d: F.plot_group_hrfs(d["summary"], parcels=["nope"]), "nope"),
        (lambda d: F.plot_hrf_parameter_maps(), "at least one"),
        (
            lambda d: F.plot_sparse_fit(d["frame_times"], d["y"][:5], d["fitted"], d["activity"]),
            "y has 5",
        ),
    ],
)
def test_figure_input_errors(inputs, call, match):
    with pytest.raises(ValueError, match=match):
        call(inputs)


# ---------------------------------------------------------------------------------------------
# builder
# ---------------------------------------------------------------------------------------------
def test_failing_figure_becomes_a_note(caplog):
    import matplotlib.pyplot as plt

    def broken():
        plt.figure()  # leaves a pyplot figure open before failing
        raise ValueError("no suprathreshold voxels")

    rep = Report("sub-02")
    sec = rep.section("Run 1")
    with caplog.at_level(logging.DEBUG, logger="bids_hrf.reports"):
        assert rep.add_figure(sec, broken, caption="stat map") is False
        assert rep.add_figure(sec, lambda: None, caption="empty") is False
        ok = rep.add_figure(sec, F.plot_coverage, pd.DataFrame({"coverage": [0.5, 0.9]}))
    assert ok is True
    assert plt.get_fignums() == []
    assert rep.failed_figures == ["Run 1: stat map", "Run 1: empty"]
    html = rep.render()
    assert "figure could not be made: ValueError: no suprathreshold voxels" in html
    assert "figure could not be made: TypeError: the figure callable returned nothing" in html
    assert "2 figure(s) could not be made" in html
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "stat map" in warnings[0].getMessage()
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("Traceback" in r.getMessage() for r in debug)


def test_add_figure_accepts_matplotlib_figures_and_svg_strings():
    from matplotlib.figure import Figure

    rep = Report("x")
    sec = rep.section("s")

    def mpl_fig():
        fig = Figure()
        fig.add_subplot().plot([0, 1], [1, 0])
        return fig

    assert rep.add_figure(sec, mpl_fig, caption="plain figure")
    assert rep.add_figure(sec, lambda: '<svg xmlns="http://www.w3.org/2000/svg"/>')
    assert not rep.add_figure(sec, lambda: "<p>not an svg</p>")
    assert rep.add_figure(sec, EmbeddedFigure("image/png", b"\x89PNG\r\n\x1a\n"))
    html = rep.render()
    assert html.count('src="data:image/svg+xml;base64,') == 2
    assert html.count('src="data:image/png;base64,') == 1


def test_report_is_self_contained(demo_html):
    html = demo_html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"<link[^>]+stylesheet", html, re.I)
    assert not re.search(r"""url\(\s*["']?(https?:)?//""", html, re.I)
    assert "@import" not in html
    srcs = re.findall(r"""<img[^>]*\ssrc="([^"]*)\"""", html)
    assert len(srcs) == 20
    assert all(s.startswith(("data:image/png;base64,", "data:image/svg+xml;base64,")) for s in srcs)
    assert "<script src" not in html
    assert len(html.encode()) < 10 * 1024 * 1024


def test_report_structure(demo_html):
    html = demo_html
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert '<nav id="toc"' in html and 'href="#summary"' in html
    assert '<details class="sub lvl1" id="run-1" open>' in html
    assert '<details class="sub lvl1" id="run-2">' in html  # collapsed
    assert 'href="#run-2"' in html  # runs listed in the sidebar
    for v in ("numpy", "nilearn", "nibabel", "pybids"):
        assert f"<b>{v}</b>" in html
    assert "MNI152NLin2009cAsym" in html and "fd_threshold" in html
    assert "run-2: 14% of volumes scrubbed" in html
    assert "figure could not be made: RuntimeError" in html
    assert html.count("<figure") == 20


def test_html_escapes_user_text(demo_html):
    html = demo_html
    assert EVIL not in html
    assert "<script>alert" not in html
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
        or "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    )
    assert "&lt;b&gt;boom&lt;/b&gt;" in html  # exception text is escaped too
    rep = Report(EVIL, subtitle=EVIL)
    sec = rep.section(EVIL, anchor=EVIL)
    assert re.fullmatch(r"[a-z][a-z0-9_-]*", sec)
    rep.add_text(sec, EVIL)
    rep.add_table(sec, pd.DataFrame({EVIL: [EVIL]}), caption=EVIL)
    rep.add_html(sec, f"<p class='trusted'>{escape_text(EVIL)}</p>")
    html = rep.render()
    assert EVIL not in html and "<script>alert" not in html
    assert "<p class='trusted'>" in html


def test_tables_are_truncated_and_formatted():
    rep = Report("t")
    sec = rep.section("Tables")
    df = pd.DataFrame({"parcel": [f"p{i}" for i in range(20)], "value": np.linspace(0, 1, 20)})
    rep.add_table(sec, df, caption="values", max_rows=5)
    html = rep.render()
    assert "showing the first 5 of 20 rows" in html
    assert "<td>p4</td>" in html and "<td>p5</td>" not in html
    assert "<td>0.2105</td>" in html  # 4 significant digits


def test_sections_ids_unique_and_validated():
    rep = Report("t")
    a = rep.section("Run 1")
    b = rep.section("Run 1")
    c = rep.section("1st level", parent=a)
    assert a == "run-1" and b == "run-1-2" and c == "s-1st-level"
    assert rep.section("Summary") != "summary"
    with pytest.raises(ValueError, match="unknown parent"):
        rep.section("x", parent="nope")
    with pytest.raises(ValueError, match="unknown section"):
        rep.add_text("nope", "text")


def test_write_is_atomic(tmp_path):
    rep = Report("sub-01")
    sec = rep.section("A")
    rep.add_text(sec, "first version")
    out = tmp_path / "deep" / "sub-01.html"
    assert rep.write(out) == out
    rep.add_text(sec, "second version")
    rep.write(out)
    assert "second version" in out.read_text(encoding="utf-8")
    assert sorted(p.name for p in out.parent.iterdir()) == ["sub-01.html"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError):
        rep.write(blocker / "x.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "file"]


def test_write_failure_removes_temporary_file(tmp_path, monkeypatch):
    rep = Report("sub-01")

    def fail(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OutputError, match="No space left"):
        rep.write(tmp_path / "sub-01.html")
    assert list(tmp_path.iterdir()) == []


def test_software_versions():
    versions = software_versions()
    for key in (
        "bids_hrf",
        "python",
        "numpy",
        "scipy",
        "nilearn",
        "nibabel",
        "nipype",
        "pybids",
        "pandas",
        "scikit-learn",
        "matplotlib",
    ):
        assert key in versions
    import nilearn

    assert versions["nilearn"] == nilearn.__version__
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))


def test_import_does_not_load_matplotlib():
    code = (
        "import sys, bids_hrf.reports, bids_hrf.reports.figures;"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported';"
        "assert 'nilearn.plotting' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/report_demo.html")
    path = build_demo_report().write(target)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
