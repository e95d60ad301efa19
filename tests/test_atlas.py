"""Tests of bids_hrf.atlas: label files, TemplateFlow offline lookup, data-driven, resampling."""

from __future__ import annotations

import gzip
import socket
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_hrf.atlas import (
    Atlas,
    bids_label,
    parse_templateflow_spec,
    read_label_table,
    resample_atlas,
    resolve_atlas,
)
from bids_hrf.errors import DataError, NoInputError, UsageError


def affine(zoom, origin=(0.0, 0.0, 0.0)):
    a = np.diag([zoom, zoom, zoom, 1.0])
    a[:3, 3] = origin
    return a


def label_img(shape=(12, 12, 12), zoom=2.0):
    """Three box parcels (1, 2, 3) on a 2 mm grid."""
    data = np.zeros(shape, np.int16)
    data[0:6, 0:6, 0:6] = 1
    data[6:12, 0:6, 0:6] = 2
    data[0:12, 6:12, 0:4] = 3
    return nib.Nifti1Image(data, affine(zoom))


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def guard(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", guard)
    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setenv("TEMPLATEFLOW_AUTOUPDATE", "0")


def test_label_file_with_bids_tsv(tmp_path):
    path = tmp_path / "atlas-Boxes_desc-three_dseg.nii.gz"
    nib.save(label_img(), path)
    pd.DataFrame({"index": [1, 2, 3], "name": ["left", "right", "top"],
                  "network": ["A", "A", "B"]}).to_csv(
        tmp_path / "atlas-Boxes_desc-three_dseg.tsv", sep="\t", index=False)
    atlas = resolve_atlas(str(path))
    assert atlas.labels == {1: "left", 2: "right", 3: "top"}
    assert atlas.networks == {1: "A", 2: "A", 3: "B"}
    assert atlas.name == "Boxesthree"
    assert atlas.img.get_data_dtype() == np.int32
    np.testing.assert_array_equal(np.asanyarray(atlas.img.dataobj), label_img().get_fdata())


def test_label_file_without_table_and_lookup_formats(tmp_path):
    path = tmp_path / "my-atlas.nii.gz"
    nib.save(label_img(), path)
    atlas = resolve_atlas(str(path))
    assert atlas.labels == {1: "1", 2: "2", 3: "3"} and atlas.networks is None
    assert atlas.name == "myatlas"
    # FreeSurfer-style LUT with colours, comments and background
    lut = tmp_path / "lut.txt"
    lut.write_text("# FreeSurfer LUT\n0 Unknown 0 0 0 0\n1 Left-Cortex 10 20 30 0\n"
                   "2 Right Cortex 1 2 3 0\n3 Top 1 2 3\n")
    assert resolve_atlas(str(path), labels_tsv=lut).labels == {
        1: "Left-Cortex", 2: "Right Cortex", 3: "Top"}
    # FSL / nilearn 2-column tab file, no header
    two = tmp_path / "two.tsv"
    two.write_text("1\tFrontal Pole\n2\tInsula\n3\tTop\n")
    assert resolve_atlas(str(path), labels_tsv=two).labels[1] == "Frontal Pole"
    # plain list of names with a background first
    names = tmp_path / "names.txt"
    names.write_text("Background\nA\nB\nC\n")
    assert resolve_atlas(str(path), labels_tsv=names).labels == {1: "A", 2: "B", 3: "C"}
    # comma-separated with a header
    csv = tmp_path / "t.csv"
    csv.write_text("index,name\n1,a\n2,b\n3,c\n")
    assert resolve_atlas(str(path), labels_tsv=csv).labels == {1: "a", 2: "b", 3: "c"}


def test_label_table_mismatches_warn_and_duplicates(tmp_path):
    path = tmp_path / "a.nii.gz"
    nib.save(label_img(), path)
    table = tmp_path / "t.tsv"
    table.write_text("index\tname\n1\tsame\n2\tsame\n7\tghost\n")
    with pytest.warns(UserWarning) as record:
        atlas = resolve_atlas(str(path), labels_tsv=table)
    text = " ".join(str(w.message) for w in record)
    assert "no name" in text and "ghost" not in atlas.labels.values()
    assert atlas.labels == {1: "same_1", 2: "same_2", 3: "3"}


def test_schaefer_networks_from_names(tmp_path):
    path = tmp_path / "a.nii.gz"
    nib.save(label_img(), path)
    table = tmp_path / "t.tsv"
    table.write_text("index\tname\tcolor\n1\t7Networks_LH_Vis_1\t#fff\n"
                     "2\t7Networks_RH_SomMot_2\t#fff\n3\t7Networks_LH_Default_pCunPCC_1\t#f\n")
    labels, networks = read_label_table(table)
    assert networks == {1: "Vis", 2: "SomMot", 3: "Default"}


@pytest.mark.parametrize(
    "content",
    [b"", b"not a nifti file at all", gzip.compress(b"junk", mtime=0)],
    ids=["empty", "text", "gzipped-junk"],
)
def test_corrupted_atlas_file(tmp_path, content):
    path = tmp_path / "broken_dseg.nii.gz"
    path.write_bytes(content)
    with pytest.raises(DataError) as exc:
        resolve_atlas(str(path))
    assert str(path) in str(exc.value)


def test_missing_atlas_file(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(NoInputError, match="nope.nii.gz"):
        resolve_atlas(str(path))


def test_bad_label_values(tmp_path):
    data = label_img().get_fdata().astype(np.float32)
    data[0, 0, 0] = 1.5
    bad = tmp_path / "float.nii.gz"
    nib.save(nib.Nifti1Image(data, affine(2)), bad)
    with pytest.raises(DataError, match="non-integer") as exc:
        resolve_atlas(str(bad))
    assert "float.nii.gz" in str(exc.value)
    neg = tmp_path / "neg.nii.gz"
    nib.save(nib.Nifti1Image(-label_img().get_fdata().astype(np.int16), affine(2)), neg)
    with pytest.raises(DataError, match="negative"):
        resolve_atlas(str(neg))
    four = tmp_path / "prob.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((4, 4, 4, 3)).astype(np.float32),
                             affine(2)), four)
    with pytest.raises(DataError, match="3D"):
        resolve_atlas(str(four))
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), affine(2)), empty)
    with pytest.raises(DataError, match="no parcel"):
        resolve_atlas(str(empty))
    # float storage of integer labels is fine
    ok = tmp_path / "ok.nii.gz"
    nib.save(nib.Nifti1Image(label_img().get_fdata().astype(np.float32), affine(2)), ok)
    assert resolve_atlas(str(ok)).n_parcels == 3


def test_single_label_warns(tmp_path):
    data = np.zeros((4, 4, 4), np.int16)
    data[1:3, 1:3, 1:3] = 5
    path = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(data, affine(2)), path)
    with pytest.warns(UserWarning, match="single label"):
        atlas = resolve_atlas(str(path))
    assert atlas.labels == {5: "5"}


def test_atlas_names_from_file_names(tmp_path):
    for fname, expected in [("space-MNI_desc-parcels_dseg.nii.gz", "parcels"),
                            ("tpl-X_atlas-Foo_dseg.nii.gz", "Foo"),
                            ("sub-01_space-MNI_dseg.nii.gz", "custom"),
                            ("My_Atlas.nii", "MyAtlas")]:
        nib.save(label_img(), tmp_path / fname)
        assert resolve_atlas(str(tmp_path / fname)).name == expected


def test_bids_label():
    assert bids_label("Schaefer2018_400Parcels-7Networks") == "Schaefer2018400Parcels7Networks"
    assert bids_label("___") == "custom"


# ---------------------------------------------------------------------------------------
# TemplateFlow (offline)


def make_tf_home(root, placeholder=False, resolutions=(1, 2)):
    tpl = root / "tpl-MNI152NLin2009cAsym"
    tpl.mkdir(parents=True)
    for desc in ("100Parcels7Networks", "400Parcels7Networks"):
        (tpl / f"tpl-MNI152NLin2009cAsym_atlas-Schaefer2018_desc-{desc}_dseg.tsv").write_text(
            "index\tname\tcolor\n1\t7Networks_LH_Vis_1\t#1\n2\t7Networks_LH_Vis_2\t#2\n"
            "3\t7Networks_RH_Default_1\t#3\n")
        for res in resolutions:
            path = tpl / (f"tpl-MNI152NLin2009cAsym_res-{res:02d}_atlas-Schaefer2018_"
                          f"desc-{desc}_dseg.nii.gz")
            if placeholder:
                path.write_bytes(b"")
            else:
                img = label_img(shape=(24 // res,) * 3, zoom=float(res))
                if res == 1:
                    img = nib.Nifti1Image(np.kron(label_img().get_fdata(),
                                                  np.ones((2, 2, 2))).astype(np.int16),
                                          affine(1.0))
                nib.save(img, path)
    return root


def test_templateflow_spec_parsing(tmp_path):
    spec = parse_templateflow_spec("Schaefer2018:400Parcels7Networks", "MNI152NLin6Asym",
                                   tmp_path)
    assert (spec.template, spec.atlas, spec.desc, spec.resolution) == (
        "MNI152NLin6Asym", "Schaefer2018", "400Parcels7Networks", None)
    spec = parse_templateflow_spec("MNI152NLin2009cAsym:Schaefer2018:100Parcels7Networks:2",
                                   "X", tmp_path)
    assert (spec.template, spec.resolution) == ("MNI152NLin2009cAsym", 2)
    assert spec.label == "Schaefer2018100Parcels7Networks"
    assert parse_templateflow_spec("HOSPA:res-1", "MNI", tmp_path).resolution == 1
    with pytest.raises(UsageError):
        parse_templateflow_spec("Schaefer2018:a:b:c", "MNI", tmp_path)


def test_templateflow_local_file(tmp_path, monkeypatch):
    home = make_tf_home(tmp_path / "tf")
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    atlas = resolve_atlas("Schaefer2018:400Parcels7Networks", space="MNI152NLin2009cAsym")
    assert atlas.name == "Schaefer2018400Parcels7Networks"
    assert atlas.labels == {1: "7Networks_LH_Vis_1", 2: "7Networks_LH_Vis_2",
                            3: "7Networks_RH_Default_1"}
    assert atlas.networks == {1: "Vis", 2: "Vis", 3: "Default"}
    assert "res-01" in atlas.source  # finest without a BOLD reference
    bold = nib.Nifti1Image(np.zeros((12, 12, 12, 3), np.float32), affine(2.0))
    atlas = resolve_atlas("Schaefer2018:400Parcels7Networks", bold_img=bold)
    assert "res-02" in atlas.source  # closest to the 2 mm BOLD voxels
    atlas = resolve_atlas("Schaefer2018:400Parcels7Networks:2")
    assert "res-02" in atlas.source
    with pytest.raises(UsageError, match="several versions"):
        resolve_atlas("Schaefer2018")


def test_templateflow_placeholder_is_offline_error(tmp_path, monkeypatch):
    home = make_tf_home(tmp_path / "tf", placeholder=True)
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    with pytest.raises(NoInputError) as exc:
        resolve_atlas("Schaefer2018:400Parcels7Networks:2")
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"TEMPLATEFLOW_HOME={home}" in msg
    assert "tpl-MNI152NLin2009cAsym_res-02_atlas-Schaefer2018_desc-400Parcels7Networks" in msg
    assert "0-byte" in msg and "--atlas FILE" in msg and "api.get(" in msg


def test_templateflow_absent_atlas(tmp_path, monkeypatch):
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "empty"))
    with pytest.raises(NoInputError, match="TEMPLATEFLOW_HOME"):
        resolve_atlas("Schaefer2018:400Parcels7Networks")
    assert not (tmp_path / "empty").exists()  # nothing was created


# ---------------------------------------------------------------------------------------
# resampling and coverage


def test_resample_to_coarser_grid_and_coverage():
    atlas = Atlas(img=nib.Nifti1Image(np.kron(label_img().get_fdata(), np.ones((2, 2, 2)))
                                      .astype(np.int32), affine(1.0)),
                  labels={1: "a", 2: "b", 3: "c"}, networks=None, name="x", source="mem")
    bold = nib.Nifti1Image(np.zeros((12, 12, 12, 4), np.float32), affine(2.0))
    mask = np.zeros((12, 12, 12), np.uint8)
    mask[:, :, :3] = 1  # covers half of parcels 1 and 2 (z 0-5) and 3/4 of parcel 3 (z 0-3)
    res, table = resample_atlas(atlas, bold, nib.Nifti1Image(mask, affine(2.0)))
    data = np.asanyarray(res.img.dataobj)
    assert data.dtype == np.int32 and set(np.unique(data)) == {0, 1, 2, 3}
    # nearest neighbour puts every parcel back where it was, inside the mask
    expected = label_img().get_fdata().astype(int) * mask
    np.testing.assert_array_equal(data, expected)
    assert list(table["index"]) == [1, 2, 3]
    np.testing.assert_allclose(table["n_voxels_atlas"], [216, 216, 288])  # 2 mm voxel units
    np.testing.assert_allclose(table["volume_mm3"], [216 * 8, 216 * 8, 288 * 8])
    np.testing.assert_array_equal(table["n_voxels_bold"], [216, 216, 288])
    np.testing.assert_array_equal(table["n_voxels_in_mask"], [108, 108, 216])
    np.testing.assert_allclose(table["coverage"], [0.5, 0.5, 0.75])
    assert table["kept"].all()
    assert table.attrs["mask_coverage"] == pytest.approx((108 + 108 + 216) / mask.sum())


def test_resample_shifted_grid_and_finer_bold():
    # atlas on a 2 mm grid; BOLD on a 1 mm grid: each atlas voxel becomes 8 voxels
    atlas = Atlas(img=label_img(), labels={1: "a", 2: "b", 3: "c"}, networks={1: "n", 2: "n",
                  3: "m"}, name="x", source="mem")
    shift = affine(1.0, origin=(-0.5, -0.5, -0.5))  # voxel centres of the 2 mm voxels' halves
    bold = nib.Nifti1Image(np.zeros((24, 24, 24), np.float32), shift)
    res, table = resample_atlas(atlas, bold)
    data = np.asanyarray(res.img.dataobj)
    # BOLD voxel (i, j, k) lies at (i - 0.5) mm: atlas voxel round((i - 0.5) / 2)
    idx = np.clip(np.rint((np.arange(24) - 0.5) / 2).astype(int), 0, 11)
    expected = label_img().get_fdata()[np.ix_(idx, idx, idx)]
    pos = (np.arange(24) - 0.5) / 2
    inside = (pos >= 0) & (pos <= 11)  # within the atlas field of view (edges: background)
    np.testing.assert_array_equal(data[np.ix_(inside, inside, inside)],
                                  expected[np.ix_(inside, inside, inside)])
    assert res.networks == {1: "n", 2: "n", 3: "m"}
    np.testing.assert_allclose(table["n_voxels_atlas"], [216 * 8, 216 * 8, 288 * 8])


def test_small_parcels_dropped_with_warning():
    data = label_img().get_fdata().astype(np.int32)
    data[11, 11, 11] = 4  # one voxel
    atlas = Atlas(img=nib.Nifti1Image(data, affine(2.0)),
                  labels={1: "a", 2: "b", 3: "c", 4: "tiny"}, networks=None, name="x",
                  source="mem")
    bold = nib.Nifti1Image(np.zeros((12, 12, 12), np.float32), affine(2.0))
    with pytest.warns(UserWarning, match=r"dropped 1 parcels .*tiny \(1 voxels\)"):
        res, table = resample_atlas(atlas, bold, min_voxels=5)
    assert res.labels == {1: "a", 2: "b", 3: "c"}
    assert list(table["kept"]) == [True, True, True, False]
    assert 4 not in np.unique(np.asanyarray(res.img.dataobj))


def test_atlas_outside_bold_is_error(tmp_path):
    atlas = Atlas(img=label_img(), labels={1: "a", 2: "b", 3: "c"}, networks=None,
                  name="x", source="mem")
    far = affine(2.0, origin=(500.0, 500.0, 500.0))
    bold_path = tmp_path / "sub-01_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((12, 12, 12, 2), np.float32), far), bold_path)
    with pytest.raises(DataError, match=r"covers 0% of the brain mask of .*sub-01_bold"
                       r".*is it in space MNI152NLin6Asym\?"):
        resample_atlas(atlas, str(bold_path), space="MNI152NLin6Asym")


def test_all_parcels_too_small_is_error():
    atlas = Atlas(img=label_img(), labels={1: "a", 2: "b", 3: "c"}, networks=None,
                  name="x", source="mem")
    bold = nib.Nifti1Image(np.zeros((12, 12, 12), np.float32), affine(2.0))
    mask = np.zeros((12, 12, 12), np.uint8)
    mask[0, 0, 0] = 1
    with pytest.raises(DataError, match="every parcel"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resample_atlas(atlas, bold, nib.Nifti1Image(mask, affine(2.0)))


def test_mask_on_other_grid_is_error():
    atlas = Atlas(img=label_img(), labels={1: "a", 2: "b", 3: "c"}, networks=None,
                  name="x", source="mem")
    bold = nib.Nifti1Image(np.zeros((12, 12, 12), np.float32), affine(2.0))
    with pytest.raises(DataError, match="not on the grid"):
        resample_atlas(atlas, bold, nib.Nifti1Image(np.ones((6, 6, 6), np.uint8), affine(4)))


# ---------------------------------------------------------------------------------------
# data-driven


def _clustered_bold(n_scans=40, seed=0):
    """Two halves of a brain with different signals, plus noise."""
    rng = np.random.default_rng(seed)
    shape = (10, 10, 6)
    mask = np.zeros(shape, np.uint8)
    mask[1:9, 1:9, 1:5] = 1
    signals = rng.normal(size=(4, n_scans))
    data = rng.normal(scale=0.3, size=shape + (n_scans,))
    for q, (xs, ys) in enumerate([(slice(0, 5), slice(0, 5)), (slice(5, 10), slice(0, 5)),
                                  (slice(0, 5), slice(5, 10)), (slice(5, 10), slice(5, 10))]):
        data[xs, ys] += signals[q]
    data += 100
    return (nib.Nifti1Image(data.astype(np.float32), affine(3.0)),
            nib.Nifti1Image(mask, affine(3.0)))


@pytest.mark.parametrize("method", ["ward", "kmeans"])
def test_data_driven_parcellation(method):
    bold, mask = _clustered_bold()
    spec = "data-driven:4" + ("" if method == "ward" else ":kmeans")
    atlas = resolve_atlas(spec, bold_img=bold, mask_img=mask)
    data = np.asanyarray(atlas.img.dataobj)
    m = np.asanyarray(mask.dataobj) > 0
    assert set(np.unique(data[m])) == {1, 2, 3, 4}
    assert not data[~m].any()
    assert atlas.n_parcels == 4 and atlas.name == ("datadriven4" if method == "ward"
                                                   else "datadriven4kmeans")
    # parcels recover the four quadrants of the signal
    for xs, ys in [(slice(1, 5), slice(1, 5)), (slice(5, 9), slice(5, 9))]:
        assert np.unique(data[xs, ys, 1:5]).size == 1
    # deterministic
    again = resolve_atlas(spec, bold_img=bold, mask_img=mask)
    np.testing.assert_array_equal(np.asanyarray(again.img.dataobj), data)


def test_data_driven_errors():
    bold, mask = _clustered_bold()
    for bad in ["data-driven", "data-driven:x", "data-driven:1", "data-driven:4:foo"]:
        with pytest.raises(UsageError):
            resolve_atlas(bad, bold_img=bold, mask_img=mask)
    with pytest.raises(DataError, match="voxels"):
        resolve_atlas("data-driven:5000", bold_img=bold, mask_img=mask)
    with pytest.raises(ValueError, match="BOLD"):
        resolve_atlas("data-driven:4")


@pytest.mark.parametrize(("content", "match"), [
    ("index\tname\n1\ta\n1\tb\n", "appears twice"),
    ("index\tname\nx\ta\n", "not an integer"),
    ("A\nB\n", "2 names but the image has 3 labels"),
    ("1 a\nfoo b\n", "line 2"),
    ("# only a comment\n", "empty"),
    ("index\tname\n0\tBackground\n", "only index 0"),
])
def test_bad_label_tables(tmp_path, content, match):
    path = tmp_path / "a.nii.gz"
    nib.save(label_img(), path)
    table = tmp_path / "labels.tsv"
    table.write_text(content)
    with pytest.raises(DataError, match=match) as exc:
        resolve_atlas(str(path), labels_tsv=table)
    assert str(table) in str(exc.value)


def test_missing_label_table(tmp_path):
    path = tmp_path / "a.nii.gz"
    nib.save(label_img(), path)
    with pytest.raises(NoInputError, match="nolabels.tsv"):
        resolve_atlas(str(path), labels_tsv=tmp_path / "nolabels.tsv")
