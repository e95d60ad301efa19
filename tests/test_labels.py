"""One contrast-label cleaner: condition and contrast names become ``contrast-<label>`` once,
by :func:`bids_hrf.conditions.clean_label` (nilearn's convention)."""

from __future__ import annotations

import pytest

from bids_hrf.conditions import clean_label
from bids_hrf.glm.contrasts import default_contrasts, load_contrasts
from bids_hrf.io.derivatives import build_name
from bids_hrf.steps.sink import contrast_records


def test_names_are_cleaned_once_with_nilearns_convention():
    assert clean_label("audio - visual") == "audioMinusVisual"
    assert clean_label("face_happy") == "faceHappy"
    assert clean_label("a + b > c") == "aPlusBGtC"
    specs = load_contrasts({"audio - visual": "audio - visual"})
    assert [s.label for s in specs.values()] == ["audioMinusVisual"]
    assert [s.label for s in default_contrasts(["face_happy"]).values()] == ["faceHappy"]


def test_jde_condition_maps_use_the_same_cleaner():
    from bids_hrf.hrf.jde.app import condition_label

    for name in ("face_happy", "audio - visual", "Tone2"):
        assert condition_label(name) == clean_label(name)


def test_the_sink_keeps_contrast_labels_and_rejects_unclean_ones(tmp_path):
    ents = {"sub": "01", "task": "t", "space": "MNI"}
    paths = {"type": "t", "z": str(tmp_path / "z.nii.gz")}
    (rec,) = contrast_records({"audioMinusVisual": paths}, ents, {})
    assert rec["entities"]["contrast"] == "audioMinusVisual"  # not re-cleaned
    assert build_name(rec["entities"], rec["suffix"], ".nii.gz") == \
        "sub-01_task-t_space-MNI_contrast-audioMinusVisual_stat-z_statmap.nii.gz"
    (bad,) = contrast_records({"audio - visual": paths}, ents, {})
    with pytest.raises(ValueError, match="not alphanumeric"):
        build_name(bad["entities"], bad["suffix"], ".nii.gz")


def test_outputs_are_named_from_the_table(tmp_path, monkeypatch):
    """Renaming an output is one edit of OUTPUT_NAMES (the entities come from the step)."""
    from bids_hrf.io import derivatives
    from bids_hrf.steps.sink import output, sink_step

    src = tmp_path / "ts.tsv"
    src.write_text("a\n1\n")
    ents = {"sub": "01", "task": "t", "run": "1", "space": "MNI", "seg": "S"}
    rec = output(str(src), "parcel_timeseries", ents, {"Description": "x"})
    out = tmp_path / "out"
    assert sink_step(str(out), [rec])[0].endswith(
        "sub-01/func/sub-01_task-t_run-1_space-MNI_seg-S_stat-mean_timeseries.tsv")
    monkeypatch.setitem(derivatives.OUTPUT_NAMES, "parcel_timeseries",
                        ("timeseries", {"desc": "mean"}))
    renamed = sink_step(str(out), [output(str(src), "parcel_timeseries", ents)])
    assert renamed[0].endswith("sub-01_task-t_run-1_space-MNI_seg-S_desc-mean_timeseries.tsv")
    with pytest.raises(ValueError, match="OUTPUT_NAMES"):
        output(str(src), "no_such_output", ents)
