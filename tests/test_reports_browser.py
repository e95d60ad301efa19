"""Every report rendered in headless Chromium: what a reader opening it would hit.

Participant and group reports of real runs (canonical HRF; JDE-VEM with a two-sample group
level, participant figures drawn in 2 processes) and the demo report with every figure.
Asserted: no console error, every image decodes, no element wider than the page (all
sections opened), every figure has a caption and was made.

Skipped only where no Chromium exists, never in CI (``CI=true``): .ci/ci_extras.sh installs
Debian's chromium.
"""

from __future__ import annotations

import os

import pytest

from tests.browser import check_report, find_chromium
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("no Chromium in CI: .ci/ci_extras.sh must apt-get install chromium")
        pytest.skip("no Chromium/Chrome on this machine (Debian: apt-get install -y chromium)")
    return found


def _assert_clean(report, chromium: str, failed: int = 0) -> dict:
    found = check_report(report, chromium)
    name = getattr(report, "name", report)
    assert found["errors"] == [], f"{name}: console errors {found['errors']}"
    assert found["n_images"] > 0, f"{name}: no image"
    assert found["broken"] == [], f"{name}: images that do not decode {found['broken']}"
    assert found["scroll_width"] <= found["page_width"], f"{name}: page scrolls sideways"
    assert found["n_overflow"] == 0, f"{name}: elements wider than the page {found['overflow']}"
    assert found["broken_words"] == [], f"{name}: words cut in table cells {found['broken_words']}"
    assert found["n_figures"] == found["n_images"], f"{name}: image outside a figure"
    assert found["uncaptioned"] == [], f"{name}: figures without caption {found['uncaptioned']}"
    assert found["failed_notes"] == failed, f"{name}: figures that could not be made"
    return found


@pytest.fixture(scope="module")
def jde_group_run(tmp_path_factory):
    """4 participants (2 controls, 2 patients) x 1 run, JDE-VEM, two-sample group level."""
    from bids_hrf.datasets import make_synthetic_dataset

    root = tmp_path_factory.mktemp("browser")
    data = make_synthetic_dataset(root / "bids", size="small", n_subjects=4, n_runs=1, seed=3)
    out, work = root / "out", root / "work"
    assert run_cli(data.bids_dir, out, "participant", "--atlas", data.atlas_img, "-w", work,
                   "--hrf-method", "jde-vem", "--nprocs", "2") == 0
    assert run_cli(data.bids_dir, out, "group", "--group-model", "two-sample:group",
                   "-w", work) == 0
    return out


def test_canonical_reports_render_cleanly(canonical_run, chromium):
    assert canonical_run.code == 0 and canonical_run.group_code == 0
    reports = sorted(canonical_run.output_dir.glob("*.html"))
    assert {p.name for p in reports} >= {"sub-01.html", "group.html"}
    for report in reports:
        _assert_clean(report, chromium)


def test_jde_and_two_sample_group_reports_render_cleanly(jde_group_run, chromium):
    reports = sorted(jde_group_run.glob("*.html"))
    assert len(reports) == 5
    for report in reports:
        found = _assert_clean(report, chromium)
        assert found["n_figures"] >= 10


def test_every_figure_of_the_demo_report_renders_cleanly(tmp_path, chromium):
    from tests.reports_demo import build_demo_report

    report = build_demo_report()  # holds one figure that fails on purpose
    path = report.write(tmp_path / "demo.html")
    _assert_clean(path, chromium, failed=len(report.failed_figures))


def test_the_checker_sees_broken_images_overflow_and_missing_captions(tmp_path, chromium):
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><head></head><body><main>"
        '<figure><img src="data:image/png;base64,iVBORw0KGgo="></figure>'
        '<div style="width:5000px">wide</div>'
        '<div style="overflow-x:auto;width:200px"><div class="scrolled" style="width:5000px">'
        "reached by scrolling its box</div></div>"
        '<table><tr><td style="width:30px;overflow-wrap:anywhere">response_probability</td>'
        '<td style="width:30px">time_to_peak</td></tr></table>'
        "<script>console.error('boom')</script></main></body></html>")
    found = check_report(bad, chromium)
    assert found["broken"] and found["n_overflow"] > 0 and found["uncaptioned"] == [0]
    assert not any("scrolled" in o for o in found["overflow"]), found["overflow"]
    assert any("boom" in e for e in found["errors"])
    # The words cut by overflow-wrap are found; those overflowing their narrow cell are not
    # cut, and a break after "_" is between words.
    assert found["broken_words"], found
    assert all(w.endswith(" in response_probability") for w in found["broken_words"]), found


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory):
    """1 participant x 1 task run, sparse deconvolution (report drawn in one process)."""
    from bids_hrf.datasets import make_synthetic_dataset

    root = tmp_path_factory.mktemp("browser_sparse")
    data = make_synthetic_dataset(root / "bids", size="small", n_subjects=1, n_runs=1, seed=5)
    out, work = root / "out", root / "work"
    assert run_cli(data.bids_dir, out, "participant", "--atlas", data.atlas_img, "-w", work,
                   "--hrf-method", "sparse", "--nprocs", "1") == 0
    return out, work


def test_sparse_report_renders_cleanly_with_example_fits(sparse_run, chromium):
    out, _ = sparse_run
    report = out / "sub-01.html"
    found = _assert_clean(report, chromium)
    text = report.read_text()
    assert "most active voxel" in text and "detected events against the paradigm" in text
    assert found["n_figures"] >= 8


def test_report_step_never_reads_the_bold(sparse_run, tmp_path):
    """The report of a finished run is remade with every BOLD path broken: all figures."""
    from nipype.utils.filemanip import loadpkl

    from bids_hrf.steps.report import participant_report_step

    _, work = sparse_run
    inputs = loadpkl(next(work.rglob("report/_inputs.pklz")))
    groups = inputs["groups"]
    for group in groups:
        for run in group["runs"]:
            run["bold"] = str(tmp_path / "missing_bold.nii.gz")
    path = participant_report_step(inputs["subject"], str(tmp_path), inputs["config"], groups,
                                   nprocs=2)
    text = path.read_text()
    assert "could not be made" not in text
    assert "most active voxel" in text and "Carpet plot" in text
