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
