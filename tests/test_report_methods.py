"""The methods text of the reports (bids_hrf.reports.methods) and the report speed-ups."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest

from bids_hrf.config import Config
from bids_hrf.reports import Report
from bids_hrf.reports._common import memoize_figure
from bids_hrf.reports.figures_glm import _signed_max_abs, plot_stat_map
from bids_hrf.reports.methods import (
    REFERENCES,
    add_methods_section,
    hrfs_used_text,
    methods_paragraphs,
    methods_references,
)


def _config(**changes) -> dict:
    """A configuration as the app passes it to the reports (``Config.to_dict()``)."""
    base = Config(bids_dir="/data", output_dir="/out", analysis_level="participant").to_dict()
    base.update(changes)
    return base


def _text(**changes) -> str:
    return "\n".join(methods_paragraphs(_config(**changes), "group"))


# Citations as written in the text: "Name et al., 2016, 2017", "A & B, 2009", "Name, 1999".
_CITATION = re.compile(r"([A-Z][\w\u00c0-\u024f-]+(?: et al\.| & [A-Z][\w\u00c0-\u024f-]+)?)"
                       r"((?:, (?:19|20)\d\d)+)")

_CONFIGS = [
    {},
    {"confounds": "scrubbing", "fd_threshold": 0.3, "dummy_scans": "3"},
    {"confounds": "compcor", "noise_model": "ols", "smoothing_fwhm": 6.0},
    {"confounds": "motion24", "hrf_method": "fir", "hrf_dt": 0.5},
    {"hrf_method": "jde-vem", "group_permutations": 500, "group_height_control": "fdr"},
    {"hrf_method": "sparse", "method_options": {"sparse_criterion": "aic", "sparse_block": True,
                                                "stability_surrogates": 30}},
    {"hrf_method": "sparse", "method_options": {"sparse_criterion": "mad",
                                                "sparse_group": 0.5}},
    {"hrf_method": "sparse", "method_options": {"sparse_criterion": "mad"}},
    {"hrf_method": "rfir"}, {"hrf_method": "r1glm"}, {"hrf_method": "library"},
    {"hrf_method": "splora", "hrf_dt": 0.5},
    {"confounds": "gsr", "group_model": "two-sample:group:age", "connectivity": ["tangent"]},
    {"atlas": "/atlases/stanford_willard_parcellation_3x3x3mm.nii.gz"},
    {"space": "fsaverage5", "smoothing_fwhm": 6.0, "group_permutations": 100,
     "group_model": "two-sample:group:age", "cluster_threshold": 20},
    {"space": "fsLR", "den": "91k", "atlas": "/a/Schaefer400.dlabel.nii"},
]


def test_surface_runs_are_described_as_vertices_not_voxels():
    volume = _text(smoothing_fwhm=6.0, cluster_threshold=20)
    assert "brain masks" in volume and "Gaussian kernel" in volume and "20 voxels" in volume
    gifti = _text(space="fsaverage5", smoothing_fwhm=6.0, cluster_threshold=20,
                  group_permutations=100, atlas="/a/lh.Schaefer.annot")
    assert "fsaverage5 cortical surface (one GIFTI file per hemisphere" in gifti
    assert "Vertex-wise first-level" in gifti and "along the cortical mesh" in gifti
    assert "Gaussian kernel" not in gifti and "20 vertices" in gifti
    assert "measured on the mesh" in gifti and "resampled" not in gifti
    assert "voxel" not in gifti.lower(), "a surface analysis has no voxels"
    cifti = _text(space="fsLR", den="91k", atlas="/a/Schaefer400.dlabel.nii")
    assert "fsLR 91k grayordinates (CIFTI-2" in cifti and "Schaefer400," in cifti
    assert "subcortical structure" in cifti and "Grayordinate-wise" in cifti
    driven = _text(space="fsaverage5", atlas="data-driven:50")
    assert "50 parcels connected on the cortical mesh" in driven


def test_willard_atlas_cites_richiardi():
    text = _text(atlas="/atlases/stanford_willard_parcellation_3x3x3mm.nii.gz")
    assert 'Stanford "Willard" functional atlas; Richiardi et al., 2015' in text
    assert "Richiardi" not in _text(atlas="/atlases/my_atlas.nii.gz")


@pytest.mark.parametrize("changes", _CONFIGS)
def test_every_citation_has_its_reference_and_back(changes):
    paragraphs = methods_paragraphs(_config(**changes), "group")
    text = " ".join(paragraphs)
    refs = methods_references(paragraphs)
    cited = set()
    for author, years in _CITATION.findall(text):
        for year in re.findall(r"\d{4}", years):
            key = f"{author}, {year}"
            assert key in REFERENCES, f"citation {key!r} has no reference"
            cited.add(key)
    # Exactly the cited works, in the order of their citations (author, then year).
    assert refs == [REFERENCES[k] for k in sorted(cited, key=str.casefold)]


def test_confound_presets_and_volume_selection():
    simple = _text(confounds="simple")
    assert "14 regressors" in simple and "non-steady state by fMRIPrep" in simple
    scrub = _text(confounds="scrubbing", fd_threshold=0.3, dummy_scans="4")
    assert "above 0.3 mm" in scrub and "Power et al., 2014" in scrub
    assert "The first 4 volumes" in scrub
    assert "Behzadi et al., 2007" in _text(confounds="compcor")
    assert "Behzadi" not in simple and "Power et al." not in simple
    assert "24-parameter" in _text(confounds="motion24")
    assert "global signal" in _text(confounds="gsr")
    custom = _text(confounds="trans_x,rot_z,csf")
    assert "trans_x, rot_z, csf" in custom and "; preset 'custom')" in custom
    assert "No nuisance regressors" in _text(confounds="none")
    assert "No volume was discarded" in _text(dummy_scans="0")


def test_filter_noise_model_smoothing_and_contrasts():
    text = _text(high_pass=0.008, noise_model="ols", smoothing_fwhm=5.0,
                 contrasts={"av": "audio - visual"})
    assert text.count("0.008 Hz") >= 2
    assert "Ordinary least squares estimates" in text and "AR(1)" not in text
    assert "5 mm FWHM" in text and "av = audio - visual" in text
    default = _text()
    assert "AR(1) model" in default and "Worsley et al., 2002" in default
    assert "FWHM" not in default


def test_hrf_methods_and_their_parameters():
    canonical = _text(hrf_model="glover + derivative")
    assert "canonical Glover HRF" in canonical and "temporal derivative" in canonical
    opts = {"jde_hrf_hyperprior": 250.0, "jde_iter_min": 7, "jde_iter_max": 42,
            "jde_beta": 0.7, "zero_constraint": False}
    jde = _text(hrf_method="jde-vem", hrf_dt=0.6, method_options=opts)
    assert "rate 250" in jde and "between 7 and 42 times" in jde and "initial value 0.7" in jde
    assert "every 0.6 s" in jde and "constrained to zero" not in jde
    assert "Chaari et al., 2013" in jde and "by the jde-vem method" in jde
    fixed = _text(hrf_method="jde-vem", method_options={"estimate_hrf": False})
    assert "fixed to the canonical SPM HRF" in fixed and "hyperprior" not in fixed
    sparse = _text(hrf_method="sparse",
                   method_options={"sparse_criterion": "aic", "stability_surrogates": 30,
                                   "sparse_block": True})
    assert "Akaike" in sparse and "Schwarz" not in sparse
    assert "30 surrogate" in sparse and "innovation" in sparse and "L2,1" not in sparse
    grouped = _text(hrf_method="sparse",
                    method_options={"sparse_criterion": "mad", "sparse_group": 0.5})
    assert "FISTA" in grouped and "weight 0.5" in grouped
    fir = _text(hrf_method="fir", hrf_duration=20.0)
    assert "finite impulse response" in fir and "over 20 s" in fir


def test_group_paragraphs_only_at_group_level():
    config = _config(group_permutations=1000, group_height_control="fdr", group_alpha=0.05,
                     cluster_threshold=10, connectivity=["correlation", "tangent"])
    participant = " ".join(methods_paragraphs(config, "participant"))
    group = " ".join(methods_paragraphs(config, "group"))
    assert "Group analyses" not in participant and "Group analyses" in group
    assert "1000 sign flips" in group and "FDR q < 0.05" in group
    assert "minimum cluster size of 10 voxels" in group
    assert "correlation and the tangent-space embedding" in group
    assert "Varoquaux et al., 2010" in group
    assert "permutation" not in " ".join(methods_paragraphs(_config(), "group"))
    assert "two-sample t test" in _text(group_model="two-sample:group:age")


def test_versions_and_level_validation():
    text = " ".join(methods_paragraphs(_config(), versions={"bids_hrf": "9.9", "nilearn": "0.1"}))
    assert "bids_hrf 9.9" in text and "Nilearn 0.1" in text and "Nipype <version>" in text
    with pytest.raises(ValueError, match="level"):
        methods_paragraphs(_config(), "subject")


def test_hrfs_used_text():
    assert hrfs_used_text(_config()) == "canonical SPM HRF"
    text = hrfs_used_text(_config(hrf_method="fir"), ["A", "B"])
    assert text.startswith("the parcel HRFs estimated by fir")
    assert "2 parcel(s)" in text and "A, B" in text


def test_methods_section_in_a_report(tmp_path):
    report = Report("sub-01")
    add_methods_section(report, _config(hrf_method="jde-vem"), "participant")
    html = report.write(tmp_path / "r.html").read_text()
    assert 'id="methods"' in html and "JDE-VEM" in html
    assert "<li>Chaari L" in html and "Group analyses" not in html


def test_memoize_figure_draws_repeated_inputs_once():
    calls = []

    @memoize_figure
    def draw(values, scale=1.0):
        calls.append(1)
        return float(np.sum(values) * scale)

    a = np.arange(5.0)
    assert draw(a) == draw(a.copy()) == 10.0
    assert draw(a, scale=2.0) == 20.0
    assert draw(a + 1) == 15.0
    assert len(calls) == 3


def test_signed_max_abs_projection():
    data = np.zeros((2, 3, 1))
    data[0, :, 0] = [1.0, -5.0, 2.0]
    data[1, :, 0] = [-3.0, 4.0, 0.5]
    np.testing.assert_array_equal(_signed_max_abs(data, 0)[:, 0], [-3.0, -5.0, 2.0])
    np.testing.assert_array_equal(_signed_max_abs(data, 1)[:, 0], [-5.0, 4.0])


def test_stat_map_glass_brain_is_optional():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(12, 14, 10)).astype(np.float32)
    data[3:6, 4:8, 4:6] = 6.0
    img = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]))
    with_glass = plot_stat_map(img, threshold=3.1)
    slices = plot_stat_map(img, threshold=3.1, glass_brain=False, dpi=80)
    assert with_glass.mime == slices.mime == "image/png"

    def width(fig):
        return int.from_bytes(fig.data[16:20], "big")

    assert width(slices) < 0.8 * width(with_glass)


def test_group_comparisons_only_with_a_two_sample_model():
    one = _text(hrf_method="fir", group_model=None)
    two = _text(hrf_method="fir", group_model="two-sample:group")
    assert "between groups" not in one and "Welch" not in one
    assert two.count("Welch's t test") == 2 and "Benjamini & Hochberg, 1995" in two
    assert "summarised per parcel" in one


def test_z_map_captions_name_the_hrfs_of_the_design(tmp_path):
    import json

    from bids_hrf.steps.report import _hrfs_used

    (tmp_path / "glm_summary.json").write_text(
        json.dumps({"hrf_source": {"Vis_1": "estimate", "Aud_2": "canonical"}}))
    glm = {"design": str(tmp_path / "design.tsv")}
    text = _hrfs_used(_config(hrf_method="jde-vem"), [glm])
    assert text.startswith("the parcel HRFs estimated by jde-vem")
    assert "1 parcel(s) without a usable estimate: Aud_2" in text
    assert _hrfs_used(_config(), [glm]) == "canonical SPM HRF"
