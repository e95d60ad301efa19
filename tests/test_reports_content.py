"""What the reports say and draw: reference sign, thresholds in words, units, atlas names,
fixed HRFs, zero matrices, design and carpet resolution, parallel drawing."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from bids_hrf.reports import Report
from bids_hrf.reports import figures_hrf as FH
from bids_hrf.reports.figures_data import carpet_rows, plot_carpet, plot_design_matrix


def _canonical(t):
    from scipy.stats import gamma

    return gamma.pdf(t, 6) - gamma.pdf(t, 16) / 6


def test_reference_keeps_its_own_sign_whatever_the_hrf_sign():
    t = np.arange(0, 25, 0.5)
    ref = _canonical(t)
    assert FH.reference_scale(-2 * ref, ref) == pytest.approx(2.0)
    assert FH.reference_scale(3 * ref, ref) == pytest.approx(3.0)
    assert FH.reference_scale(np.zeros_like(t), ref) == 1.0


def test_silent_panel_draws_the_reference_upright(monkeypatch):
    """Negative and positive HRFs: the dashed canonical line always peaks upwards."""
    t = np.arange(0, 25, 0.5)
    ref = _canonical(t)
    hrfs = np.column_stack([-ref, 0.5 * ref, -0.2 * ref + 0.01])
    captured = []
    monkeypatch.setattr(FH, "embed", lambda fig, fmt=None, dpi=110: captured.append(fig))
    FH.plot_hrf_panel.__wrapped__(t, hrfs, ["a", "b", "c"], reference=(t, ref))
    (fig,) = captured
    dashed = [line for ax in fig.axes for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 3
    for line in dashed:
        y = np.asarray(line.get_ydata())
        assert y.max() > 0 and abs(y.max()) > abs(y.min()), "reference drawn upside down"


def test_threshold_words_say_what_the_threshold_means():
    from bids_hrf.steps.group_report import _dof_text, threshold_words

    text = threshold_words({"height_control": "fpr", "alpha": 0.001}, 3.2905267)
    assert "|z| > 3.29" in text and "3.2905" not in text
    assert "p < 0.001" in text and "not corrected" in text
    assert "false discovery rate" in threshold_words({"height_control": "fdr", "alpha": 0.05},
                                                     2.5)
    assert "none is shown" in threshold_words({"height_control": "fpr", "alpha": 0.001}, np.inf)
    assert _dof_text(2.0) == "2" and _dof_text(6.5) == "6.5" and _dof_text(None) == "n/a"


def test_surface_report_words_name_vertices(monkeypatch):
    """Captions of surface runs speak of vertices / grayordinates, never of voxels."""
    from bids_hrf.reports import figures_surface
    from bids_hrf.reports.figures_data import plot_carpet
    from bids_hrf.steps.group_report import threshold_words

    settings = {"height_control": "fpr", "alpha": 0.001, "cluster_threshold": 10}
    assert "each voxel" in threshold_words(settings, 3.29)
    for kind, one, many in (("gifti", "vertex", "vertices"),
                            ("cifti", "grayordinate", "grayordinates")):
        monkeypatch.setattr(figures_surface, "_GEOMETRY", [type("G", (), {"kind": kind})()])
        text = threshold_words(settings, 3.29)
        assert f"each {one}," in text and f"10 {many}" in text and "voxel" not in text
        assert f"no {one} reaches" in threshold_words(settings, None)
    from bids_hrf.reports import figures_data

    drawn = []
    monkeypatch.setattr(figures_data, "embed", lambda fig, **_: drawn.append(fig))
    rows = np.random.default_rng(0).standard_normal((30, 40))
    plot_carpet(rows, tr=2.0, samples="vertices")
    plot_carpet(rows, tr=2.0)
    assert [f.axes[0].get_ylabel() for f in drawn] == ["30 vertices", "30 voxels"]
    assert "of vertices" in drawn[0].axes[0].get_title(loc="left")


def test_atlas_is_named_never_by_an_absolute_path():
    from bids_hrf.steps.report import atlas_description

    text = atlas_description("/home/me/data/tpl-MNI152NLin2009cAsym_atlas-Synthetic_dseg.nii.gz")
    assert "/home/me" not in text and text.startswith("Synthetic")
    assert atlas_description("Schaefer2018:100Parcels7Networks") == \
        "Schaefer2018:100Parcels7Networks"
    assert "data" in atlas_description("data-driven:50")


def test_fixed_hrfs_are_recognised():
    from bids_hrf.steps.group_report import _fixed_hrfs

    same = pd.DataFrame({"subject": ["01", "02", "01", "02"], "parcel": ["a", "a", "b", "b"],
                         "time_to_peak": [5.0] * 4, "fwhm": [5.2] * 4, "height": [0.3] * 4})
    assert _fixed_hrfs(same)
    varied = same.assign(time_to_peak=[5.0, 5.5, 5.0, 5.0])
    assert not _fixed_hrfs(varied)


def _connectivity_result(tmp_path, tangent_all):
    names = ["A", "B", "C"]
    files = {}
    for level, mat in {"all": tangent_all, "control": np.eye(3) * 0 + 0.3,
                       "patient": np.eye(3) * 0 - 0.2}.items():
        path = tmp_path / f"{level}.tsv"
        pd.DataFrame(mat, columns=names).to_csv(path, sep="\t", index=False)
        files[level] = str(path)
    return {"analyses": [{"task": "x", "measure": "tangent", "source": "bold",
                          "names": names, "means": files, "networks": None}], "fdr": 0.05}


def test_numerically_zero_matrices_are_explained_not_drawn(tmp_path):
    from bids_hrf.steps.group_report import _connectivity_section

    rep = Report("g", include_versions=False)
    tiny = np.full((3, 3), 1e-9)
    _connectivity_section(rep, _connectivity_result(tmp_path, tiny))
    html = rep.render()
    assert "by construction" in html and "It is not drawn" in html
    assert html.count("<figure") == 2  # control and patient only
    assert "tangent-space units" in html


def test_correlation_sections_use_fisher_z_throughout(tmp_path):
    from bids_hrf.steps.group_report import _edges_in_unit

    r_a, r_b = np.full((3, 3), 0.5), np.full((3, 3), 0.8)
    edges = pd.DataFrame({"i": [0], "j": [1], "name_i": ["A"], "name_j": ["B"],
                          "mean_control": [0.5], "mean_patient": [0.8], "difference": [0.3],
                          "t": [1.0], "p": [0.3], "p_fdr": [0.3], "significant": [False]})
    out = _edges_in_unit(edges, {"control": r_a, "patient": r_b}, fisher=True)
    assert out["mean_control"].iloc[0] == pytest.approx(np.arctanh(0.5))
    assert out["difference"].iloc[0] == pytest.approx(np.arctanh(0.8) - np.arctanh(0.5))


def test_carpet_rows_are_a_standardised_subsample():
    rng = np.random.default_rng(0)
    Y = rng.normal(5, 3, size=(40, 5000)).astype(np.float32)
    Y[:, 7] = 1.0  # constant voxel
    rows = carpet_rows(Y, max_rows=1000)
    assert rows.shape == (1000, 40) and rows.dtype == np.float16
    assert np.allclose(rows.astype(float).mean(axis=1), 0, atol=1e-2)
    full = carpet_rows(Y[:, :10], max_rows=1000)
    assert full.shape == (10, 40) and np.all(full[7] == 0)


def _pixels(fig) -> np.ndarray:
    import io

    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(fig.data))


def test_design_matrix_keeps_one_pixel_per_volume():
    """A 1-volume event every 7 volumes stays a regular stripe: no decimation speckle."""
    n = 600
    task = np.zeros(n)
    task[::7] = 1.0
    design = pd.DataFrame({"task": task, "constant": np.ones(n)})
    img = _pixels(plot_design_matrix(design))
    assert img.shape[0] >= n  # at least one pixel row per volume


def test_group_design_rows_are_named_by_participant():
    design = pd.DataFrame({"control": [1, 0, 1, 0], "patient": [0, 1, 0, 1]},
                          index=["sub-01", "sub-02", "sub-03", "sub-04"])
    captured = []
    import bids_hrf.reports.figures_data as FD

    original = FD.embed
    try:
        FD.embed = lambda fig, fmt=None, dpi=110: captured.append(fig)
        plot_design_matrix(design, row_label="participant", row_names=list(design.index))
    finally:
        FD.embed = original
    ax = captured[0].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(design.index)
    assert ax.get_ylabel() == "participant"


def test_carpet_ticks_are_round_numbers():
    import bids_hrf.reports.figures_data as FD

    rows = carpet_rows(np.random.default_rng(1).normal(size=(150, 300)))
    captured = []
    original = FD.embed
    try:
        FD.embed = lambda fig, fmt=None, dpi=110: captured.append(fig)
        plot_carpet(rows, tr=2.0)
    finally:
        FD.embed = original
    fig = captured[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert labels and all("." not in x for x in labels), labels


def _slow_square(value: float):
    from bids_hrf.reports._common import new_figure

    fig = new_figure(2, 2)
    fig.add_subplot(1, 1, 1).plot([0, value], [0, value * value])
    return fig


def _fails():
    raise RuntimeError("broken on purpose")


def test_parallel_drawing_gives_the_serial_report(tmp_path, caplog):
    pages = []
    for n_procs in (1, 2):
        rep = Report("p", include_versions=False, n_procs=n_procs,
                     logger=logging.getLogger("test-parallel"))
        sec = rep.section("s")
        for k in range(4):
            rep.add_figure(sec, _slow_square, float(k + 1), caption=f"square {k}")
        rep.add_figure(sec, _fails, caption="fails")
        rep.add_text(sec, "after")
        html = rep.render()
        assert rep.failed_figures == ["s: fails"]
        pages.append(html.split("<main", 1)[1].split("<footer", 1)[0])
    strip = [p.replace("\n", "") for p in pages]
    import re

    volatile = re.compile(r"Generated [^<]*|data:image/[^\"]+")  # SVGs carry their date
    assert volatile.sub("", strip[0]) == volatile.sub("", strip[1])
    assert strip[1].count("data:image/svg+xml") == 4
    assert strip[1].index("square 3") < strip[1].index("broken on purpose") < \
        strip[1].index("after")


def test_n_procs_is_checked():
    with pytest.raises(ValueError, match="n_procs"):
        Report("x", n_procs=0)


def _big_map():
    """A 1.5 mm-like map above the display limit: a positive and a negative peak voxel."""
    import nibabel as nib

    from bids_hrf.reports._common import DISPLAY_MAX_VOXELS

    shape = (150, 150, 100)
    assert np.prod(shape) > DISPLAY_MAX_VOXELS
    data = np.zeros(shape, dtype=np.float32)
    data[31, 40, 57] = 9.0
    data[100, 11, 20] = -7.0
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = [-110.0, -120.0, -70.0]
    return nib.Nifti1Image(data, affine)


def test_large_maps_are_reduced_for_display_small_ones_kept():
    import nibabel as nib

    from bids_hrf.reports._common import DISPLAY_MAX_VOXELS, display_image

    img = _big_map()
    shown = display_image(img, "stat")
    assert shown.shape == (75, 75, 50) and np.prod(shown.shape) <= DISPLAY_MAX_VOXELS
    data = np.asarray(shown.dataobj)
    assert data.max() == 9.0 and data.min() == -7.0  # single-voxel peaks survive, signed
    assert np.count_nonzero(data) == 2
    # The reduced voxel holding a peak is centred within one original voxel of it.
    for ijk in ((31, 40, 57), (100, 11, 20)):
        world = img.affine @ [*ijk, 1]
        cell = np.argwhere(data == np.asarray(img.dataobj)[ijk])[0]
        assert np.allclose(shown.affine @ [*cell, 1], world, atol=1.5 * 0.5 + 1e-6)
    grid = (np.arange(150 * 150 * 100) % 7).reshape(150, 150, 100).astype(np.int16)
    labels = nib.Nifti1Image(grid, img.affine)
    nearest = np.asarray(display_image(labels, "nearest").dataobj)
    assert set(np.unique(nearest)) <= set(range(7)) and nearest.dtype == labels.get_data_dtype()
    flat = nib.Nifti1Image(np.full((150, 150, 100), 3.0, np.float32), img.affine)
    assert np.allclose(np.asarray(display_image(flat, "mean").dataobj), 3.0)
    small = nib.Nifti1Image(np.zeros((64, 64, 40), np.float32), img.affine)
    assert display_image(small) is small


def test_stat_map_mosaic_is_drawn_from_the_reduced_map(monkeypatch):
    """The slices of a large map come from the reduced copy; the title's voxel count and
    peak from the full map."""
    from nilearn import plotting

    from bids_hrf.reports.figures_glm import plot_stat_map

    drawn = {}
    monkeypatch.setattr(plotting, "plot_stat_map",
                        lambda img, **kw: drawn.update(img=img, title=kw["title"]))
    plot_stat_map(_big_map(), threshold=3.0, glass_brain=False)
    assert drawn["img"].shape == (75, 75, 50)
    assert "in 2 voxels, peak 9.00" in drawn["title"]


def test_minus_log10_p_maps_are_not_titled_as_absolute_z():
    from bids_hrf.reports.figures_surface import above

    assert above("z", 3.1) == "|z| > 3.10"
    assert above("-log10 p", -np.log10(0.05)) == "-log10 p > 1.30"
