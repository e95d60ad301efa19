"""Tests of the HTML report: figure functions, the builder, self-containment, escaping, I/O.

The synthetic inputs and the demo report live in ``tests/reports_demo.py``; run
``python -m tests.reports_demo`` to write the demo report to /tmp/report_demo.html.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_hrf.errors import OutputError
from bids_hrf.reports import EmbeddedFigure, Report, escape_text, software_versions
from bids_hrf.reports import figures as F
from bids_hrf.reports.figures_glm import _kept_volumes

from .reports_demo import EVIL, N_VOL, _affine, _figure_calls, build_demo_report, make_inputs


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


_T = np.arange(0, 20, 1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: F.plot_confounds(np.full(10, np.nan), sample_mask=np.zeros(10, bool)),
        lambda: F.plot_hrf_panel(_T, np.sin(_T / 3)),  # one parcel, 1D input
        lambda: F.plot_free_energy(
            pd.DataFrame({"parcel": ["a"], "iteration": [0], "free_energy": [1.0]})
        ),
        lambda: F.plot_hrf_parameter_maps(
            nib.Nifti1Image(np.full((5, 6, 5), 5, np.float32), _affine())  # constant map
        ),
        lambda: F.plot_group_hrfs(pd.DataFrame({"parcel": "a", "time": _T, "mean": _T})),
        lambda: F.plot_hrf_parameter_comparison(
            pd.DataFrame({"parcel": ["a", "b"] * 5, "ttp": np.arange(10.0)}), "ttp"
        ),
        lambda: F.plot_sparse_fit(_T, np.sin(_T), np.sin(_T), np.zeros_like(_T)),
    ],
    ids=[
        "all-censored",
        "one-hrf",
        "one-iteration",
        "constant-map",
        "no-group",
        "no-group-2",
        "no-activity",
    ],
)
def test_figures_survive_degenerate_inputs(make):
    assert make().nbytes > 1000


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


def test_table_cells_wrap_between_words_only():
    """snake_case names get a break opportunity after each "_" (and nowhere else); the
    stylesheet does not let the browser cut words (the browser test measures the result)."""
    rep = Report("t")
    sec = rep.section("Tables")
    df = pd.DataFrame({"time_to_peak": [5.0], "parcel": ["7Networks_LH_Vis_1"]})
    rep.add_table(sec, df, caption="HRF parameters")
    html = rep.render()
    assert "<th>time_<wbr>to_<wbr>peak</th>" in html
    assert "<td>7Networks_<wbr>LH_<wbr>Vis_<wbr>1</td>" in html
    assert 'class="dataframe data"' in html  # attributes untouched
    assert "anywhere" not in html and "break-all" not in html


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
