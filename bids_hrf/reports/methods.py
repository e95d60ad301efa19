"""Methods text of the reports, written from the configuration actually used.

A pure text builder: a configuration dictionary (``Config.to_dict()``) in, paragraphs out.
The wording follows ``docs/methods.md``; the references listed are exactly those cited in
the paragraphs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from bids_hrf.hrf.registry import get_method
from bids_hrf.reports._references import REFERENCES
from bids_hrf.surface.samples import surface_kind

_CONFOUND_PRESETS = {
    "none": "No nuisance regressors were used.",
    "minimal": "the six rigid-body motion parameters.",
    "simple": "the six rigid-body motion parameters, their temporal derivatives, and the mean "
    "signals of white matter and cerebrospinal fluid (14 regressors; Friston et al., 1996; "
    "Satterthwaite et al., 2013).",
    "motion24": "the 24-parameter motion model (motion parameters, their derivatives, and "
    "the squares of both; Friston et al., 1996).",
    "compcor": "the 12 motion regressors and the anatomical CompCor components (Behzadi et "
    "al., 2007) computed by fMRIPrep in the combined white-matter and CSF mask (the "
    "components explaining 50% of the variance), with fMRIPrep's discrete cosine "
    "regressors, as the CompCor components were computed on high-pass filtered data.",
    "gsr": "the six rigid-body motion parameters, their temporal derivatives, the mean "
    "signals of white matter and cerebrospinal fluid (Friston et al., 1996; Satterthwaite "
    "et al., 2013), plus the global signal.",
}


def _samples(config: Mapping[str, Any]) -> tuple[str, str]:
    """What the analysis's samples are called (plural, singular): voxels, vertices..."""
    kind = surface_kind(str(config.get("space", "")))
    if kind == "gifti":
        return "vertices", "vertex"
    if kind == "cifti":
        return "grayordinates", "grayordinate"
    return "voxels", "voxel"


def _space_text(config: Mapping[str, Any]) -> str:
    """Where the inputs lie, for the first paragraph."""
    space = str(config.get("space", "MNI152NLin2009cAsym"))
    kind = surface_kind(space)
    if kind == "gifti":
        return (f"on the {space} cortical surface (one GIFTI file per hemisphere; the medial "
                "wall was left out), with their confound tables")
    if kind == "cifti":
        den = config.get("den") or "91k"
        return (f"as {space} {den} grayordinates (CIFTI-2: the vertices of both cortical "
                "hemispheres and the voxels of the subcortical structures), with their "
                "confound tables")
    return f"in {space} space, with their brain masks and confound tables"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _hrf_model_name(model: str) -> str:
    base = str(model).split("+")[0].strip().lower() or "spm"
    name = {"spm": "SPM", "glover": "Glover"}.get(base, base)
    extra = ""
    if "derivative" in str(model).lower():
        extra = " with its temporal derivative"
        if "dispersion" in str(model).lower():
            extra += " and dispersion derivative"
    return f"the canonical {name} HRF (Friston et al., 1998; Glover, 1999){extra}"


def _confounds_paragraph(config: Mapping[str, Any]) -> str:
    dummy = config.get("dummy_scans", "auto")
    if str(dummy).lower() == "auto":
        first = ("The first volumes of each run flagged as non-steady state by fMRIPrep were "
                 "discarded.")
    elif str(dummy).strip() in ("0", ""):
        first = "No volume was discarded at the start of the runs."
    else:
        first = f"The first {dummy} volumes of each run were discarded."
    spec = config.get("confounds", "simple")
    if isinstance(spec, str) and spec.strip().lower() in (*_CONFOUND_PRESETS, "scrubbing"):
        preset = spec.strip().lower()
    else:
        preset = None
    if preset == "none":
        nuisance = _CONFOUND_PRESETS["none"]
    else:
        intro = ("Nuisance regressors were selected from fMRIPrep's confound table with "
                 "Nilearn's load_confounds (Wang et al., 2024")
        if preset is None:
            cols = spec if isinstance(spec, Sequence) and not isinstance(spec, str) else [
                c.strip() for c in str(spec).split(",") if c.strip()]
            what = "the following columns of the fMRIPrep confound table: " + ", ".join(
                map(str, cols)) + "."
        elif preset == "scrubbing":
            what = (_CONFOUND_PRESETS["simple"][:-1]
                    + f", and volumes with framewise displacement above "
                    f"{_fmt(config.get('fd_threshold', 0.5))} mm or standardised DVARS above "
                    "1.5, as well as segments of fewer than 5 consecutive remaining volumes, "
                    "were censored (Power et al., 2014).")
        else:
            what = _CONFOUND_PRESETS[preset]
        nuisance = f"{intro}; preset '{preset or 'custom'}'): {what}"
    return (f"{first} {nuisance} Discarded and censored volumes were removed from every "
            "model through a sample mask (the images were not cut). Regressors were "
            "mean-centred over the retained volumes.")


def _hrf_paragraph(config: Mapping[str, Any]) -> str:
    """The HRF method's own paragraph (:attr:`bids_hrf.hrf.registry.MethodSpec.describe`)."""
    spec = get_method(config.get("hrf_method", "canonical"))
    dt = config.get("hrf_dt")
    context = {"duration": _fmt(float(config.get("hrf_duration", 25.0))),
               "step": f"every {_fmt(float(dt))} s" if dt else "every repetition time",
               "high_pass": _fmt(float(config.get("high_pass", 0.01))),
               "hrf_model": _hrf_model_name(config.get("hrf_model", "spm")),
               "hrf_model_raw": str(config.get("hrf_model", "spm"))}
    return spec.describe(spec.make_options(config.get("method_options")), context)


def _glm_paragraph(config: Mapping[str, Any]) -> str:
    method = config.get("hrf_method", "canonical")
    fwhm = config.get("smoothing_fwhm")
    plural, singular = _samples(config)
    smooth = (f" and spatial smoothing with a {_fmt(float(fwhm))} mm FWHM Gaussian kernel"
              if fwhm else "")
    if fwhm and plural != "voxels":
        smooth = (f" and spatial smoothing along the cortical mesh (iterated averaging of each "
                  "vertex with its neighbours, the number of iterations chosen to give a "
                  f"{_fmt(float(fwhm))} mm FWHM on the midthickness surface"
                  + ("; subcortical voxels were not smoothed)" if plural == "grayordinates"
                     else ")"))
    if not get_method(method).estimates_hrf:
        conv = _hrf_model_name(config.get("hrf_model", "spm"))
    else:
        conv = (f"the HRF estimated for the {singular}'s parcel by the {method} method (the "
                "canonical HRF for parcels without an estimate), so that every parcel had its "
                "own design")
    if str(config.get("noise_model", "ar1")).lower() == "ols":
        noise = "Ordinary least squares estimates were used (no serial-correlation model)."
    else:
        noise = ("Serial correlations were modelled with an AR(1) model estimated from the "
                 "ordinary least squares residuals and used to pre-whiten data and design "
                 "(Worsley et al., 2002).")
    contrasts = dict(config.get("contrasts") or {})
    extra = ("; and the contrasts " + "; ".join(f"{k} = {v}" for k, v in contrasts.items())
             if contrasts else "")
    return (f"{singular.capitalize()}-wise first-level general linear models were fitted to "
            "each run with Nilearn, on the retained volumes, after scaling each "
            f"{singular}'s time series to "
            f"percent signal change of its mean{smooth}. Each condition's events were convolved "
            f"with {conv}; the design also included the nuisance regressors, discrete cosine "
            f"drift terms with a {_fmt(float(config.get('high_pass', 0.01)))} Hz cut-off and a "
            f"constant. {noise} t contrasts were computed for each condition{extra}, and "
            "converted to z scores. For each participant, the runs were combined with a "
            "precision-weighted fixed-effects model (effect weighted by the inverse of its "
            "variance; degrees of freedom summed over runs).")


def _group_paragraphs(config: Mapping[str, Any]) -> list[str]:
    model = config.get("group_model") or "one-sample"
    if model == "one-sample":
        design = "a one-sample t test of the mean effect"
    elif str(model).startswith("two-sample:"):
        parts = str(model).split(":")
        covs = f", with the mean-centred covariates {parts[2]}" if len(parts) > 2 else ""
        design = (f"a two-sample t test between the groups of the participants.tsv column "
                  f"'{parts[1]}' (one regressor per group){covs}")
    elif str(model).startswith("paired:"):
        design = f"a paired t test over the levels of '{str(model).split(':', 1)[1]}'"
    else:
        design = f"the model of {model}"
    alpha = _fmt(float(config.get("group_alpha", 0.001)))
    control = str(config.get("group_height_control", "fpr")).lower()
    if control == "fdr":
        height = (f"FDR q < {alpha} (Benjamini & Hochberg, 1995; Genovese et al., 2002)")
    elif control == "bonferroni":
        height = f"p < {alpha}, Bonferroni corrected"
    else:
        height = f"p < {alpha} uncorrected"
    k = int(config.get("cluster_threshold", 0) or 0)
    plural, singular = _samples(config)
    cluster = f" with a minimum cluster size of {k} {plural}" if k > 0 else ""
    if plural != "voxels":
        cluster += (" (clusters: sets of supra-threshold vertices connected on the cortical "
                    "mesh" + (", subcortical voxels by their faces)" if plural == "grayordinates"
                              else ")"))
    out = [("Group analyses were performed on the participants' fixed-effects contrast "
            "estimates (summary-statistics approach; Holmes & Friston, 1998), with an "
            f"ordinary least squares second-level model (Nilearn): {design}. Group z maps "
            f"were thresholded at {height}{cluster}, and clusters were reported with their "
            "peak coordinates.")]
    n_perm = int(config.get("group_permutations", 0) or 0)
    if n_perm > 0 and plural == "voxels":
        out.append("Family-wise error corrected p values were obtained by permutation "
                   f"inference ({n_perm} sign flips or permutations of the design; Nichols & "
                   "Holmes, 2002), as implemented in Nilearn, for voxel heights and for the "
                   f"size of clusters formed at p < {alpha}.")
    elif n_perm > 0:
        out.append("Family-wise error corrected p values were obtained by permutation "
                   f"inference ({n_perm} sign flips or permutations of the design; Nichols & "
                   f"Holmes, 2002): for {singular} heights with Nilearn, and for the size of "
                   f"clusters formed at p < {alpha} with the same permutations, the clusters "
                   "measured on the mesh (Freedman & Lane, 1983, when the model has "
                   "covariates).")
    fdr = _fmt(float(config.get("group_fdr", 0.05)))
    groups = str(model).startswith("two-sample:")
    if config.get("hrf_method", "canonical") != "canonical":
        compare = (", and compared between groups with Welch's t test and the "
                   "Benjamini-Hochberg false discovery rate across parcels "
                   f"(q < {fdr}; Benjamini & Hochberg, 1995)" if groups else "")
        out.append("The parcel HRFs of every participant were summarised per parcel (mean, "
                   "standard deviation, standard error)" + (" per group" if groups else "")
                   + ", with their time to peak, full width at half maximum and peak "
                   f"height{compare}.")
    kinds = [str(k) for k in (config.get("connectivity") or []) if str(k) != "none"]
    if kinds:
        names = [("the tangent-space embedding of the covariance matrices (Varoquaux et al., "
                  "2010)") if k == "tangent" else k for k in kinds]
        task = (" In task runs, the task regressors of the first-level design, copies of them "
                "shifted by -1 to +3 volumes, and the other design columns were regressed out "
                "first, so as to estimate background connectivity (Al-Aidroos et al., 2012; "
                "Cole et al., 2019)." if config.get("connectivity_task_regression", True)
                else "")
        out.append("Functional connectivity between the parcels' cleaned mean time series was "
                   f"estimated for every run as {_join(names)} with Nilearn's "
                   f"ConnectivityMeasure, and averaged over each participant's runs.{task}"
                   + (" Edges were compared between groups with Welch's t test on Fisher "
                      "z-transformed values, with the Benjamini-Hochberg FDR over the unique "
                      f"edges (q < {fdr}; Benjamini & Hochberg, 1995)." if groups else ""))
    return out


def methods_paragraphs(config: Mapping[str, Any], level: str = "participant",
                       versions: Mapping[str, str] | None = None) -> list[str]:
    """Paragraphs describing the analysis made with ``config``.

    Parameters
    ----------
    config : mapping
        ``Config.to_dict()`` (missing keys take the command-line defaults).
    level : {"participant", "group"}
        ``"group"`` adds the group-level paragraphs.
    versions : mapping, optional
        Package versions (:func:`bids_hrf.reports.build.software_versions`); "<version>"
        placeholders are written when not given.

    Returns
    -------
    list of str
        Plain-text paragraphs, in the order of the analysis.
    """
    if level not in ("participant", "group"):
        raise ValueError(f"level must be 'participant' or 'group', got {level!r}")
    v = dict(versions or {})

    def ver(key: str) -> str:
        return v.get(key, "<version>")

    plural, _ = _samples(config)
    paragraphs = [
        f"Hemodynamic analyses were performed with bids_hrf {ver('bids_hrf')}, a BIDS App "
        "(Gorgolewski et al., 2016, 2017) written in Python and built on Nipype "
        f"{ver('nipype')} (Gorgolewski et al., 2011), PyBIDS {ver('pybids')} (Yarkoni et al., "
        f"2019), Nilearn {ver('nilearn')} (Abraham et al., 2014), NiBabel {ver('nibabel')}, "
        f"NumPy {ver('numpy')} (Harris et al., 2020), SciPy {ver('scipy')} (Virtanen et al., "
        f"2020) and scikit-learn {ver('scikit-learn')} (Pedregosa et al., 2011). Inputs were "
        "the BOLD runs preprocessed by fMRIPrep (Esteban et al., 2019) "
        f"{_space_text(config)}.",
        _confounds_paragraph(config),
    ]
    atlas = str(config.get("atlas") or "data-driven:100")
    min_vox = config.get("min_parcel_voxels", 5)
    if atlas.startswith("data-driven:") and plural != "voxels":
        atlas_text = (f"Regions were defined per participant by clustering the {plural} of "
                      f"the first BOLD run into {atlas.split(':', 1)[1]} parcels connected on "
                      "the cortical mesh with Ward's agglomerative clustering (scikit-learn; "
                      "Thirion et al., 2014).")
    elif atlas.startswith("data-driven:"):
        atlas_text = ("Regions were defined per participant by clustering the voxels of the "
                      "first BOLD run inside the brain mask into "
                      f"{atlas.split(':', 1)[1]} spatially connected parcels with Ward's "
                      "agglomerative clustering (Nilearn Parcellations; Thirion et al., 2014).")
    elif plural != "voxels":
        name = re.sub(r"\.(dlabel\.nii|label\.gii|annot)$", "",
                      atlas.replace("\\", "/").rsplit("/", 1)[-1])
        atlas_text = (f"Regions were defined by the surface atlas {name}, read in the data's "
                      f"own {plural} (no resampling); unlabelled vertices (the medial wall) "
                      "belonged to no parcel"
                      + (", and each subcortical structure of the CIFTI file not labelled by "
                         "the atlas was a parcel of its own" if plural == "grayordinates"
                         else "")
                      + f". Parcels with fewer than {min_vox} {plural} were excluded.")
    else:
        name = re.sub(r"\.nii(\.gz)?$", "", atlas.replace("\\", "/").rsplit("/", 1)[-1])
        atlas_text = (f"Regions were defined by the atlas {name}"
                      + (" (the 499-region Stanford \"Willard\" functional atlas; Richiardi "
                         "et al., 2015)" if "willard" in name.lower() else "")
                      + ", resampled to each run's BOLD grid by nearest-neighbour "
                      "interpolation. Parcels with fewer than "
                      f"{min_vox} voxels inside the brain mask were excluded.")
    paragraphs.append(
        f"{atlas_text} The mean signal of each parcel was computed over its {plural}, and the "
        "nuisance regressors and discrete cosine regressors of a "
        f"{_fmt(float(config.get('high_pass', 0.01)))} Hz high-pass filter were regressed "
        "out (Nilearn signal.clean), on the retained volumes only.")
    paragraphs.append(_hrf_paragraph(config))
    paragraphs.append(_glm_paragraph(config))
    if level == "group":
        paragraphs.extend(_group_paragraphs(config))
    return paragraphs


def methods_references(paragraphs: Sequence[str]) -> list[str]:
    """Full references of the works cited in ``paragraphs``, in alphabetical order.

    A citation such as "Gorgolewski et al., 2016, 2017" cites both years; "Uruñuela et al.,
    2020, 2024" likewise.
    """
    text = " ".join(paragraphs)
    cited = []
    for key in REFERENCES:
        author, year = key.rsplit(", ", 1)
        pattern = re.escape(author) + r",(?: \d{4},)* " + year
        if re.search(pattern, text):
            cited.append(key)
    return [REFERENCES[k] for k in sorted(cited, key=str.casefold)]


def hrfs_used_text(config: Mapping[str, Any], canonical_parcels: Sequence[str] = ()) -> str:
    """Which HRFs the first-level designs used, for figure captions.

    Parameters
    ----------
    config : mapping
        ``Config.to_dict()``.
    canonical_parcels : sequence of str
        Parcels whose estimate was unusable and fell back to the canonical HRF.

    Returns
    -------
    str
        E.g. ``"canonical SPM HRF"`` or ``"the parcel HRFs estimated by jde-vem"``.
    """
    method = config.get("hrf_method", "canonical")
    model = str(config.get("hrf_model", "spm"))
    base = model.split("+")[0].strip().lower() or "spm"
    canonical = f"canonical {dict(spm='SPM', glover='Glover').get(base, base)} HRF"
    if "derivative" in model.lower():
        canonical += " + derivative(s)"
    if not get_method(method).estimates_hrf:
        return canonical
    text = f"the parcel HRFs estimated by {method}"
    if canonical_parcels:
        names = list(canonical_parcels)
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        text += f" ({canonical} for {len(names)} parcel(s) without a usable estimate: {shown})"
    return text


def add_methods_section(report: Any, config: Mapping[str, Any], level: str) -> str:
    """Append a "Methods" section (paragraphs and references) to a report.

    Parameters
    ----------
    report : bids_hrf.reports.Report
    config : mapping
        ``Config.to_dict()``.
    level : {"participant", "group"}

    Returns
    -------
    str
        The id of the section.
    """
    from bids_hrf.reports.build import escape_text, software_versions

    paragraphs = methods_paragraphs(config, level, software_versions())
    sec = report.section("Methods", anchor="methods")
    report.add_text(sec, "Generated from the configuration used for this report; check it and "
                         "adapt it before use (docs/methods.md has the full wording).")
    for paragraph in paragraphs:
        report.add_text(sec, paragraph)
    refs = methods_references(paragraphs)
    if refs:
        items = "".join(f"<li>{escape_text(r)}</li>" for r in refs)
        report.add_html(sec, f'<p><b>References</b></p><ul class="refs">{items}</ul>')
    return sec


__all__ = [
    "REFERENCES",
    "add_methods_section",
    "hrfs_used_text",
    "methods_paragraphs",
    "methods_references",
]
