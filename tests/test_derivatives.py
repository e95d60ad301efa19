"""The one place that names and writes outputs: names, atomic writes, dataset files."""

from __future__ import annotations

import json
import multiprocessing as mp

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_hrf.errors import OutputError
from bids_hrf.io import derivatives as d


def test_build_name_orders_entities_like_bids():
    name = d.build_name({"desc": "x", "space": "MNI", "run": "1", "sub": "01", "task": "a",
                         "contrast": "c", "stat": "z", "ses": None}, "statmap", ".nii.gz")
    assert name == "sub-01_task-a_run-1_space-MNI_contrast-c_stat-z_desc-x_statmap.nii.gz"


def test_build_name_rejects_non_alphanumeric_values():
    with pytest.raises(ValueError, match="alphanumeric"):
        d.build_name({"sub": "0_1"}, "bold", ".nii.gz")


@pytest.mark.parametrize("text, label", [
    ("audio - visual", "audioVisual"), ("Schaefer2018:400Parcels7Networks",
                                        "Schaefer2018400Parcels7Networks"),
    ("jde-vem", "jdeVem"), ("plain", "plain")])
def test_bids_label(text, label):
    assert d.bids_label(text) == label


def test_bids_label_empty():
    with pytest.raises(ValueError):
        d.bids_label("--")


def test_parse_fragment():
    assert d.parse_fragment("contrast-a_stat-z_statmap") == ({"contrast": "a", "stat": "z"},
                                                              "statmap")
    with pytest.raises(ValueError):
        d.parse_fragment("contrasta_statmap")


def test_output_path_layout(tmp_path):
    p = d.output_path(tmp_path, {"sub": "01", "ses": "2", "task": "t"}, "bold", ".nii.gz")
    assert p == tmp_path / "sub-01" / "ses-2" / "func" / "sub-01_ses-2_task-t_bold.nii.gz"
    g = d.output_path(tmp_path, {"task": "t", "contrast": "a"}, "statmap", ".nii.gz")
    assert g.parent == tmp_path / "group"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.tsv"
    with pytest.raises(RuntimeError):
        with d.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_sink_round_trip(tmp_path):
    """A step's record becomes an OUTPUT_DIR file named from its entities, with a sidecar."""
    from bids_hrf.steps.sink import record, sink_step

    img = nib.Nifti1Image(np.arange(8, dtype=np.float32).reshape(2, 2, 2), np.eye(4))
    src = tmp_path / "work" / "z.nii.gz"
    src.parent.mkdir()
    nib.save(img, src)
    table = tmp_path / "work" / "hrf.tsv"
    d.write_tsv(table, pd.DataFrame({"time": [0.0, 0.5], "p1": [0, np.nan]}))
    ents = {"sub": "01", "task": "t", "space": "MNI"}
    out = tmp_path / "out"
    written = sink_step(str(out), [
        record(str(src), "contrast-a_stat-z_statmap", ents,
               {"Sources": ["bids:raw:sub-01/func/x.nii.gz"], "Statistic": "z"}),
        [record(str(table), "seg-A_desc-canonical_hrf", ents)]])
    p = out / "sub-01" / "func" / "sub-01_task-t_space-MNI_contrast-a_stat-z_statmap.nii.gz"
    assert str(p) in written
    np.testing.assert_array_equal(np.asarray(nib.load(p).dataobj), np.asarray(img.dataobj))
    side = json.loads(p.with_name(p.name.replace(".nii.gz", ".json")).read_text())
    assert side == {"Sources": ["bids:raw:sub-01/func/x.nii.gz"], "Statistic": "z"}
    t = out / "sub-01" / "func" / "sub-01_task-t_space-MNI_seg-A_desc-canonical_hrf.tsv"
    assert t.read_text().splitlines()[2] == "0.5\tn/a"
    assert not list(out.rglob("*.part*"))


def test_unwritable_output_is_an_output_error(tmp_path):
    # A file where a folder should be fails even for root (CI runs as root, which
    # permission bits would not stop).
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    with pytest.raises(OutputError) as info:
        d.write_text(blocker / "sub" / "x.txt", "x")
    assert info.value.exit_code == 73
    assert "blocker" in str(info.value)


def _init(args):
    path, i = args
    d.init_output_dir(path, "abc123", ["/data"])
    return i


def test_init_output_dir_concurrent(tmp_path):
    out = tmp_path / "out"
    with mp.get_context("spawn").Pool(4) as pool:
        pool.map(_init, [(str(out), i) for i in range(8)])
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert d.existing_config_hash(out) == "abc123"
    assert "group" in (out / ".bidsignore").read_text().split()
    assert not list(out.glob(".*.part*"))


def test_sink_gives_nifti_units_tr_and_skullstripped(tmp_path):
    """NIfTI outputs carry mm/s units and, for a time series, the TR as 4th voxel size;
    BOLD-like series say SkullStripped; schema suffixes never enter .bidsignore."""
    from bids_hrf.steps.sink import record, sink_step

    data = np.random.default_rng(0).standard_normal((3, 4, 5, 6)).astype(np.float32)
    src4, src3 = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), src4)  # no units, 4th zoom 1.0
    nib.save(nib.Nifti1Image(data[..., 0], np.eye(4)), src3)
    out = tmp_path / "out"
    ents = {"sub": "01", "task": "x", "space": "MNI"}
    written = sink_step(str(out), [
        record(str(src4), "desc-activity_bold", ents, {"RepetitionTime": 2.5}),
        record(str(src3), "stat-z_statmap", ents, {}),
        record(str(src3), "seg-a_dseg", ents, {}),
    ])
    imgs = {p: nib.load(p) for p in written if p.endswith(".nii.gz")}
    assert len(imgs) == 3
    for path, img in imgs.items():
        assert img.header.get_xyzt_units() == ("mm", "sec"), path
        np.testing.assert_array_equal(np.asarray(img.dataobj),
                                      data if img.ndim == 4 else data[..., 0])
    bold = next(p for p in imgs if p.endswith("_bold.nii.gz"))
    assert imgs[bold].header.get_zooms()[3] == pytest.approx(2.5)
    meta = json.loads(open(bold.replace(".nii.gz", ".json")).read())
    assert meta["SkullStripped"] is True and meta["RepetitionTime"] == 2.5
    ignore = (out / ".bidsignore").read_text().split()
    assert "*_statmap.*" in ignore
    assert not [p for p in ignore if "bold" in p or "dseg" in p]


def test_init_output_dir_drops_schema_patterns_of_older_versions(tmp_path):
    (tmp_path / ".bidsignore").write_text("*_bold.nii.gz\n*_dseg.tsv\n*_custom.tsv\n")
    d.init_output_dir(tmp_path, "abc", [])
    ignore = (tmp_path / ".bidsignore").read_text().split()
    assert "*_custom.tsv" in ignore and "*_statmap.nii.gz" in ignore
    assert "*_bold.nii.gz" not in ignore and "*_dseg.tsv" not in ignore
