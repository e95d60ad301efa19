"""HRF shapes beyond BOLD (bids_hrf.hrf.presets): each against its published formula, the
seed's normalisation, and their use by the GLM, the sparse HRF matrix and the HRF tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import make_first_level_design_matrix
from nilearn.glm.first_level.hemodynamic_models import spm_hrf

from bids_hrf.glm.design import make_design
from bids_hrf.hrf._hrf_matrix import hrf_samples
from bids_hrf.hrf.basis import canonical_hrf, nilearn_hrf_model, normalize_hrf_model
from bids_hrf.hrf.presets import parse_hrf_shape

T = np.array([0.5, 1.0, 2.5, 4.0, 5.0, 7.5, 12.0, 20.0])


def _inverse_gamma(t, a, b):  # Claron et al. 2021 / seed 002, written out
    return np.array([b ** a / math.gamma(a) * x ** (-(a + 1)) * math.exp(-b / x) for x in t])


def _gamma(t, k, s):
    return np.array([x ** (k - 1) * math.exp(-x / s) / (math.gamma(k) * s ** k) for x in t])


def test_claron2021_is_inverse_gamma_2_5_12_7():
    shape = parse_hrf_shape("claron2021")
    np.testing.assert_allclose(shape.values(T), _inverse_gamma(T, 2.5, 12.7), rtol=1e-10)
    # mode of the inverse gamma: beta / (alpha + 1)
    t = np.linspace(0.01, 30, 300001)
    assert t[np.argmax(shape.values(t))] == pytest.approx(12.7 / 3.5, abs=1e-3)
    assert parse_hrf_shape("inverse-gamma:2.5,12.7").params == shape.params


def test_verhoef2025_is_single_gamma_peaking_at_5s():
    shape = parse_hrf_shape("verhoef2025")
    np.testing.assert_allclose(shape.values(T), _gamma(T, 6.0, 1.0), rtol=1e-10)
    t = np.linspace(0.01, 30, 300001)
    assert t[np.argmax(shape.values(t))] == pytest.approx(5.0, abs=1e-3)
    assert shape.values(np.linspace(0.01, 32, 1000)).min() >= 0  # no undershoot


@pytest.mark.parametrize("k, s", [(3.0, 2.0), (8.5, 0.6)])
def test_gamma_shape_scale(k, s):
    np.testing.assert_allclose(parse_hrf_shape(f"gamma:{k},{s}").values(T), _gamma(T, k, s),
                               rtol=1e-10)


def test_double_gamma_is_nilearns_spm():
    shape = parse_hrf_shape("double-gamma:6,16,0.167")
    expected = _gamma(T, 6, 1) - 0.167 * _gamma(T, 16, 1)
    np.testing.assert_allclose(shape.values(T), expected, rtol=1e-10)
    for tr in (0.7, 2.0, 2.4):
        np.testing.assert_allclose(shape.kernel(tr), spm_hrf(tr), atol=1e-14)


def test_file_table_interpolated(tmp_path):
    t = np.arange(0, 32.01, 0.1)
    f = tmp_path / "hrf.tsv"
    pd.DataFrame({"time": t, "myhrf": parse_hrf_shape("double-gamma:6,16,0.167").values(t)}
                 ).to_csv(f, sep="\t", index=False)
    shape = parse_hrf_shape(f"file:{f}")
    assert shape.spec == f"file:{f}"
    np.testing.assert_allclose(shape.kernel(2.0), spm_hrf(2.0), atol=2e-5)


@pytest.mark.parametrize("spec", ["claron2021", "verhoef2025", "gamma:3,2",
                                  "inverse-gamma:4,10", "double-gamma:5,15,0.2"])
def test_kernel_normalised_to_unit_sum_on_nilearns_grid(spec):
    shape = parse_hrf_shape(spec)
    for tr, over in ((2.0, 50), (1.0, 16)):
        k = shape.kernel(tr, over)
        assert k.sum() == pytest.approx(1.0)
        assert k.size == int(round(32.0 / (tr / over)))
        assert k[0] == 0.0  # nilearn's grid starts one oversampled step before onset
    time, values = canonical_hrf(spec, dt=0.5, duration=30.0)
    assert np.linalg.norm(values) == pytest.approx(1.0)  # HRF tables: unit norm


def test_normalize_and_errors(tmp_path):
    assert normalize_hrf_model("Claron2021") == "claron2021"
    assert normalize_hrf_model("gamma: 6, 1.0") == "gamma:6,1"
    assert normalize_hrf_model("spm+derivative") == "spm + derivative"
    for bad, match in [("gamma:6", "takes 2 parameters"), ("gamma:-1,2", "> 0"),
                       ("double-gamma:6,16,1.5", r"in \[0, 1\)"), ("gamma:a,b", "numbers"),
                       ("weibull:1,2", "Unknown HRF model|unknown HRF shape"),
                       (f"file:{tmp_path / 'none.tsv'}", "does not exist")]:
        with pytest.raises(ValueError, match=match):
            normalize_hrf_model(bad)
    two = tmp_path / "two.tsv"
    pd.DataFrame({"time": [0, 1], "a": [0, 1], "b": [0, 1]}).to_csv(two, sep="\t", index=False)
    with pytest.raises(ValueError, match="one HRF column"):
        normalize_hrf_model(f"file:{two}")


def test_glm_design_uses_the_shape_and_python_callable():
    frame_times = np.arange(100) * 2.0
    events = pd.DataFrame({"onset": [10.0, 60, 110], "duration": [1.0, 1, 1],
                           "trial_type": ["a", "a", "a"]})
    ours = make_design(frame_times, events, "claron2021", drift_model=None)
    shape = parse_hrf_shape("claron2021")  # the Python API: a callable nilearn accepts
    ref = make_first_level_design_matrix(frame_times, events, hrf_model=shape,
                                         drift_model=None)
    ref_col = [c for c in ref.columns if c.startswith("a")][0]
    np.testing.assert_allclose(ours["a"], ref[ref_col], atol=1e-12)
    spm = make_design(frame_times, events, "spm", drift_model=None)["a"]
    assert np.argmax(ours["a"]) < np.argmax(spm)  # claron2021 peaks at 3.6 s, spm at ~5 s
    assert callable(nilearn_hrf_model("verhoef2025"))
    assert nilearn_hrf_model("glover") == "glover"


def test_sparse_hrf_matrix_uses_the_shape():
    h = hrf_samples(1.0, 30, "verhoef2025")
    assert np.argmax(h) == 5 and h.max() == pytest.approx(1.0)
    np.testing.assert_allclose(h[1:8], _gamma(np.arange(1, 8.0), 6, 1) / _gamma([5.0], 6, 1))


@pytest.mark.parametrize("spec,peak", [("spm", 5.0), ("claron2021", 3.6),
                                       ("gamma:9,0.5", 4.0), ("file", 7.0)])
def test_hrf_model_reaches_the_app_outputs(spec, peak, small_dataset, tmp_path):
    """--hrf-model through the whole participant level: the HRF table, the design of the
    first-level GLM and its sidecars use the preset (canonical method)."""
    from tests.conftest import run_cli

    if spec == "file":  # a user HRF table peaking at 7 s
        time = np.arange(0.0, 30.0, 0.5)
        table = tmp_path / "hrf.tsv"
        pd.DataFrame({"time": time, "hrf": _gamma(time, 8, 1.0)}).to_csv(
            table, sep="\t", index=False)
        spec = f"file:{table}"
    out = tmp_path / "out"
    assert run_cli(small_dataset.bids_dir, out, "participant", "--participant-label", "01",
                   "--atlas", "data-driven:4", "--hrf-model", spec, "--nprocs", "1",
                   "--no-report", "-w", tmp_path / "work") == 0
    func = out / "sub-01" / "func"
    hrf = pd.read_csv(next(func.glob("*desc-canonical_hrf.tsv")), sep="\t")
    assert hrf["time"].to_numpy()[np.argmax(hrf.iloc[:, 1].to_numpy())] == pytest.approx(
        peak, abs=0.6)
    design = pd.read_csv(next(func.glob("*run-1_design.tsv")), sep="\t")
    events = pd.read_csv(next(small_dataset.bids_dir.rglob("sub-01*run-1_events.tsv")),
                         sep="\t")
    cond = sorted(events["trial_type"].unique())[0]
    n_dummy = small_dataset.n_dummy_scans  # the design holds the volumes after them
    frame_times = np.arange(len(design) + n_dummy) * small_dataset.tr
    ref = make_design(frame_times, events, spec, drift_model=None)[cond].to_numpy()[n_dummy:]
    # the app mean-centres the regressors over the kept volumes: equal up to a constant
    np.testing.assert_allclose(design[cond].to_numpy() - design[cond].mean(),
                               ref - ref.mean(), atol=1e-6)
