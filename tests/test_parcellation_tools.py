"""Parcellation tools (bids_hrf.atlas.tools, bids-hrf-parcellation) on small label images
with known answers, and on bad input."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_hrf.atlas import tools
from bids_hrf.cli.parcellation import main


def _network_image():
    """Label 1: a 'network' of three separate blobs (8, 4 and 1 voxels); label 5: one blob
    of 6 voxels touching one of the network's blobs only through a corner."""
    lab = np.zeros((10, 10, 4), dtype=np.int16)
    lab[0:2, 0:2, 0:2] = 1  # 8 voxels
    lab[5:7, 5:7, 0] = 1  # 4 voxels
    lab[9, 0, 3] = 1  # 1 voxel
    lab[2:5, 2:4, 2] = 5  # 6 voxels, touches (1, 1, 1) by a corner only
    return lab


def test_extract_and_contiguous():
    lab = _network_image()
    out, mapping = tools.extract(lab, [5])
    assert mapping == {5: 5} and set(np.unique(out)) == {0, 5}
    assert (out == 5).sum() == 6
    out, mapping = tools.extract(lab, [5, 1], contiguous=True)
    assert mapping == {1: 1, 5: 2}
    assert (out == 2).sum() == 6 and (out == 1).sum() == 13


def test_extract_unknown_ids_listed():
    with pytest.raises(ValueError, match=r"\[3, 7\] not in the parcellation .*2 parcels: 1, 5"):
        tools.extract(_network_image(), [1, 3, 7])


def test_relabel_contiguous():
    lab = np.array([[0, 3, 3], [7, 9, 0]])
    out, mapping = tools.relabel_contiguous(lab)
    assert mapping == {3: 1, 7: 2, 9: 3}
    np.testing.assert_array_equal(out, [[0, 1, 1], [2, 3, 0]])


def test_split_network_into_exactly_its_components():
    lab = _network_image()
    out, table = tools.split_connected(lab, min_size=1, connectivity=6)
    # 3 pieces of the network (by decreasing size), then the single blob of label 5
    assert table["source"].tolist() == [1, 1, 1, 5]
    assert table["n_voxels"].tolist() == [8, 4, 1, 6]
    assert table["component"].tolist() == [1, 2, 3, 1]
    np.testing.assert_array_equal(out > 0, lab > 0)
    for index, size in zip(table["index"], table["n_voxels"], strict=True):
        assert (out == index).sum() == size
    assert (out[0:2, 0:2, 0:2] == 1).all() and (out[5:7, 5:7, 0] == 2).all()
    assert out[9, 0, 3] == 3
    # min size drops the single voxel and says so
    out, table = tools.split_connected(lab, min_size=2)
    assert table["n_voxels"].tolist() == [8, 4, 6]
    assert table.attrs["dropped"] == [(1, 1)] and out[9, 0, 3] == 0


def test_connectivity_matters():
    lab = np.zeros((3, 3, 3), dtype=int)
    lab[0, 0, 0] = lab[1, 1, 1] = 1  # corner neighbours
    assert len(tools.split_connected(lab, connectivity=26)[1]) == 1
    assert len(tools.split_connected(lab, connectivity=18)[1]) == 2
    lab[1, 1, 0] = 1  # edge neighbour of (0, 0, 0), face neighbour of (1, 1, 1)
    assert len(tools.split_connected(lab, connectivity=18)[1]) == 1
    assert len(tools.split_connected(lab, connectivity=6)[1]) == 2


def test_split_table_names_network():
    _, parts = tools.split_connected(_network_image())
    table = tools.split_table(parts, {1: "Visual", 5: "Motor"})
    assert table["name"].tolist() == ["Visual_1", "Visual_2", "Visual_3", "Motor_1"]
    assert table["network"].tolist() == ["Visual", "Visual", "Visual", "Motor"]


def test_label_info_sizes_pieces_holes_gaps():
    lab = np.zeros((7, 7, 7), dtype=int)
    lab[1:4, 1:4, 1:4] = 2
    lab[2, 2, 2] = 0  # a hole of one voxel
    lab[5, 5, 5] = 4
    lab[5, 5, 3] = 4  # two pieces
    info = tools.label_info(lab, voxel_volume=27.0, names={2: "cube", 4: "dots", 6: "none"})
    assert info["index"].tolist() == [2, 4]
    assert info["n_voxels"].tolist() == [26, 2]
    assert info["volume_mm3"].tolist() == [702.0, 54.0]
    assert info["n_components"].tolist() == [1, 2]
    assert info["n_hole_voxels"].tolist() == [1, 0]
    assert info.attrs["gaps"] == [1, 3] and info.attrs["absent"] == [6]
    assert info["name"].tolist() == ["cube", "dots"]


@pytest.mark.parametrize("bad, match", [
    (np.array([0.0, 1.5]), "non-integer values .e.g. 1.5"),
    (np.array([0.0, np.nan]), "NaN"),
    (np.array([-1, 2]), "negative"),
])
def test_as_labels_refuses_non_labels(bad, match):
    with pytest.raises(ValueError, match=match):
        tools.as_labels(bad, "x.nii")


def test_as_labels_accepts_integral_floats():
    np.testing.assert_array_equal(tools.as_labels(np.array([0.0, 2.0, 3.0000001])), [0, 2, 3])


def test_willard_grid_checked():
    zooms = (3.0, 3.0, 3.0)
    labels = np.arange(500).reshape(5, 10, 10)
    assert not tools.check_willard("other.nii.gz", (5, 10, 10), zooms, labels)
    with pytest.raises(ValueError, match=r"shape \(5, 10, 10\) instead of \(53, 63, 52\)"):
        tools.check_willard(tools.WILLARD["file"], (5, 10, 10), zooms, labels)
    big = np.zeros((53, 63, 52), dtype=int)
    big.flat[:500] = np.arange(500)
    assert tools.check_willard(tools.WILLARD["file"], big.shape, zooms, big)
    with pytest.raises(ValueError, match="2 mm|499 parcels|voxels"):
        tools.check_willard(tools.WILLARD["file"], big.shape, (2.0, 2.0, 2.0), big)


# ----------------------------------------------------------------------------- command


def _write(tmp_path, lab, name="atlas.nii.gz", affine=None, labels=None):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(lab, np.diag([3.0, 3.0, 3.0, 1.0]) if affine is None else affine),
             path)
    if labels is not None:
        pd.DataFrame({"index": list(labels), "name": list(labels.values())}).to_csv(
            tmp_path / name.replace(".nii.gz", ".tsv"), sep="\t", index=False)
    return path


def test_cli_extract_keeps_labels_table_in_step(tmp_path, capsys):
    src = _write(tmp_path, _network_image(), labels={1: "Visual", 5: "Motor"})
    out = tmp_path / "sub.nii.gz"
    assert main(["extract", str(src), "5", "-o", str(out), "--contiguous"]) == 0
    img = np.asarray(nib.load(out).dataobj)
    assert set(np.unique(img)) == {0, 1} and (img == 1).sum() == 6
    table = pd.read_csv(tmp_path / "sub.tsv", sep="\t")
    assert table.to_dict("list") == {"index": [1], "name": ["Motor"]}
    assert main(["extract", str(src), "2", "-o", str(out)]) == 65
    err = capsys.readouterr().err
    assert "parcel ID(s) [2] not in the parcellation" in err and "Traceback" not in err


def test_cli_split_connected_and_relabel(tmp_path, capsys):
    src = _write(tmp_path, _network_image(), labels={1: "Visual", 5: "Motor"})
    out = tmp_path / "regions.nii.gz"
    assert main(["split-connected", str(src), "-o", str(out), "--min-size", "2"]) == 0
    assert "2 parcels -> 3 connected regions; 1 piece(s) under 2 voxels dropped" in \
        capsys.readouterr().out
    table = pd.read_csv(tmp_path / "regions.tsv", sep="\t")
    assert table["network"].tolist() == ["Visual", "Visual", "Motor"]
    assert table["n_voxels"].tolist() == [8, 4, 6]
    out2 = tmp_path / "relab.nii.gz"
    lab = np.zeros((4, 4, 4), np.int16)
    lab[0, 0, 0], lab[3, 3, 3] = 10, 20
    assert main(["relabel", str(_write(tmp_path, lab, "sparse.nii.gz")), "--contiguous",
                 "-o", str(out2)]) == 0
    assert set(np.unique(np.asarray(nib.load(out2).dataobj))) == {0, 1, 2}


def test_cli_resample_reports_lost_parcels(tmp_path, capsys):
    lab = np.zeros((12, 12, 12), np.int16)
    lab[0:6, :, :] = 1
    lab[6:12, :, :] = 2
    lab[11, 11, 11] = 3  # one fine voxel: lost at 3x coarser resolution
    src = _write(tmp_path, lab, affine=np.diag([1.0, 1.0, 1.0, 1.0]),
                 labels={1: "left", 2: "right", 3: "dot"})
    ref = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32),
                             np.diag([3.0, 3.0, 3.0, 1.0])), ref)
    out = tmp_path / "on_bold.nii.gz"
    assert main(["resample", str(src), str(ref), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 parcels -> 2" in printed and "parcels lost (no voxel on the new grid): [3]" \
        in printed
    img = nib.load(out)
    assert img.shape == (4, 4, 4) and np.allclose(img.affine, np.diag([3.0, 3.0, 3.0, 1.0]))
    assert pd.read_csv(tmp_path / "on_bold.tsv", sep="\t")["name"].tolist() == ["left",
                                                                                "right"]
    far = tmp_path / "far.nii.gz"
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    aff[:3, 3] = 1000.0
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), aff), far)
    code = main(["resample", str(src), str(far), "-o", str(tmp_path / "x.nii.gz")])
    assert code == 65 and "not overlap" in capsys.readouterr().err
    assert not (tmp_path / "x.nii.gz").exists()


def test_pyhrf_willard_atlas_accepted(capsys):
    from tests.test_pyhrf_jde import FETCH, _pyhrf_data

    data = _pyhrf_data()
    if data is None:
        pytest.skip(f"PyHRF sample data not found: fetch them with {FETCH}")
    assert main(["info", str(data / tools.WILLARD["file"])]) == 0
    assert "grid (53, 63, 52), voxels 3x3x3 mm, 499 parcels, labels 1-499" in \
        capsys.readouterr().out


def test_cli_info_and_bad_inputs(tmp_path, capsys):
    lab = np.zeros((7, 7, 7), np.int16)
    lab[1:4, 1:4, 1:4] = 2
    lab[2, 2, 2] = 0
    src = _write(tmp_path, lab)
    assert main(["info", str(src)]) == 0
    printed = capsys.readouterr().out
    assert "1 parcels, labels 2" in printed and "missing labels between 1 and 2: 1" in printed
    assert "1 with holes" in printed
    frac = _write(tmp_path, np.full((3, 3, 3), 0.5, np.float32), "frac.nii.gz")
    assert main(["info", str(frac)]) == 65
    assert "non-integer" in capsys.readouterr().err
    assert main(["extract", str(src), "2", "-o", str(src)]) == 64  # never overwrite input
    assert main(["info", str(tmp_path / "missing.nii.gz")]) == 66
    wrong = _write(tmp_path, lab, "stanford_willard_parcellation_3x3x3mm.nii.gz")
    assert main(["info", str(wrong)]) == 65
    assert "named like the Willard atlas" in capsys.readouterr().err


def test_datafiles_lists_package_data(tmp_path, capsys, monkeypatch):
    from bids_hrf.cli.datafiles import main as datafiles

    monkeypatch.setenv("BIDS_HRF_PYHRF_DATA", str(tmp_path))
    (tmp_path / "paradigm_loc.csv").write_text('0 "a" 1 0\n')
    assert datafiles([]) == 0
    full = capsys.readouterr().out.splitlines()
    assert any(p.endswith("reports/templates/report.html.j2") for p in full)
    assert any("mni_icbm152_t1" in p for p in full)
    assert str(tmp_path / "paradigm_loc.csv") in full
    assert all(Path(p).is_file() for p in full)
    # the one code file listed is the example dataset's generator
    assert [p for p in full if p.endswith(".py")] == [
        p for p in full if p.endswith("datasets/synthetic.py")]
    assert datafiles(["-b"]) == 0
    base = capsys.readouterr().out.splitlines()
    assert "report.html.j2" in base and "paradigm_loc.csv" in base and "/" not in "".join(base)
    assert datafiles(["--nope"]) == 64


def test_shipped_example_atlas_is_listed_and_usable(capsys):
    """The example atlas: listed, 100 labelled parcels in both hemispheres, labels TSV in
    step, and read by the app's file-atlas path."""
    from bids_hrf.atlas import resolve_atlas
    from bids_hrf.cli.datafiles import EXAMPLE_ATLAS, data_files

    files = {p.name: p for p in data_files()}
    atlas = files[EXAMPLE_ATLAS]
    labels = files[EXAMPLE_ATLAS.replace(".nii.gz", ".tsv")]
    img = nib.load(atlas)
    values = np.unique(np.asarray(img.dataobj))
    table = pd.read_csv(labels, sep="\t")
    assert values.tolist() == list(range(101)) and table["index"].tolist() == list(range(1, 101))
    assert img.header.get_zooms()[:3] == (3.0, 3.0, 3.0)
    # left parcels left of the midline, right ones right of it
    assert (table.loc[table["name"].str.startswith("L_"), "x"] <= 0).all()
    assert (table.loc[table["name"].str.startswith("R_"), "x"] > 0).all()
    sizes = np.bincount(np.asarray(img.dataobj).ravel())[1:]
    assert sizes.min() > 50  # no sliver parcels
    resolved = resolve_atlas(str(atlas), labels_tsv=str(labels), space="MNI152NLin2009aSym")
    assert resolved.n_parcels == 100 and resolved.labels[1] == "L_01"
