"""Surface parcellations (issue 12): label pairs, CIFTI dlabel, contiguous mesh clustering."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel import cifti2
from scipy.sparse.csgraph import connected_components

from bids_hrf.atlas.surface import CORTEX, cifti_labels, label_pair, mesh_clusters, surface_labels
from bids_hrf.errors import DataError, NoInputError
from bids_hrf.io.surface import read_dlabel
from bids_hrf.surface.graph import block_adjacency, mesh_adjacency
from tests.test_surface_data import _icosahedron


def _label_gii(path, values, names):
    table = nib.gifti.GiftiLabelTable()
    for key, name in names.items():
        label = nib.gifti.GiftiLabel(key=key)
        label.label = name
        table.labels.append(label)
    arr = nib.gifti.GiftiDataArray(np.asarray(values, dtype=np.int32),
                                   intent="NIFTI_INTENT_LABEL", datatype="NIFTI_TYPE_INT32")
    nib.save(nib.gifti.GiftiImage(darrays=[arr], labeltable=table), str(path))


def _samples(n_left, n_right):
    structure = np.array([CORTEX["L"]] * n_left + [CORTEX["R"]] * n_right)
    vertex = np.concatenate([np.arange(n_left), np.arange(n_right)])
    return structure, vertex, np.ones(n_left + n_right, bool)


def test_gifti_label_pair_medial_wall_names_and_errors(tmp_path):
    left = tmp_path / "atlas_hemi-L.label.gii"
    _label_gii(left, [0, 5, 5, 7, 7, 0], {0: "???", 5: "V1", 7: "A1"})
    with pytest.raises(NoInputError, match="right hemisphere"):
        label_pair(left)
    _label_gii(tmp_path / "atlas_hemi-R.label.gii", [3, 3, 0, 9], {0: "Unknown", 3: "V1",
                                                                    9: "M1"})
    structure, vertex, valid = _samples(6, 4)
    valid[2] = False  # an invalid sample is never in a parcel
    labels, names = surface_labels(left, structure, vertex, valid)
    assert labels.tolist() == [0, 1, 0, 2, 2, 0, 3, 3, 0, 4]
    assert names == {1: "L_V1", 2: "L_A1", 3: "R_V1", 4: "R_M1"}
    with pytest.raises(DataError, match="right-hemisphere label file"):
        label_pair(tmp_path / "atlas_hemi-R.label.gii")
    structure, vertex, valid = _samples(8, 4)  # data denser than the atlas
    with pytest.raises(DataError, match="another mesh density"):
        surface_labels(left, structure, vertex, valid)


def test_freesurfer_annot_pair(tmp_path):
    ctab = np.array([[0, 0, 0, 0, 0], [255, 0, 0, 0, 255], [0, 255, 0, 0, 65280]])
    for hemi, values in (("lh", [1, 1, 2, -1]), ("rh", [2, 0, 0, 2])):
        nib.freesurfer.write_annot(str(tmp_path / f"{hemi}.aparc.annot"),
                                   np.array(values), ctab, [b"unknown", b"a", b"b"],
                                   fill_ctab=False)
    structure, vertex, valid = _samples(4, 4)
    labels, names = surface_labels(tmp_path / "lh.aparc.annot", structure, vertex, valid)
    assert labels.tolist() == [1, 1, 2, 0, 3, 0, 0, 3]
    assert names == {1: "L_a", 2: "L_b", 3: "R_b"}


def test_cifti_dlabel_matches_grayordinates(tmp_path):
    left = cifti2.BrainModelAxis.from_mask(np.array([1, 1, 0, 1], bool), name="CortexLeft")
    vol = np.zeros((2, 2, 2), bool)
    vol[0, 0, 0] = vol[0, 0, 1] = True
    thal = cifti2.BrainModelAxis.from_mask(vol, name="ThalamusLeft", affine=np.eye(4))
    bm = left + thal
    table = {0: ("???", (0, 0, 0, 0)), 1: ("net1", (1, 0, 0, 1)), 2: ("thal", (0, 1, 0, 1))}
    axis = cifti2.LabelAxis(["parcels"], [table])
    path = tmp_path / "atlas.dlabel.nii"
    nib.save(cifti2.Cifti2Image(np.array([[1, 0, 1, 2, 2]], float), header=(axis, bm)),
             str(path))
    structure = np.asarray(bm.name)
    vertex = np.where(bm.surface_mask, bm.vertex, -1)
    ijk = np.where(bm.volume_mask[:, None], bm.voxel, -1)
    labels, names = cifti_labels(*read_dlabel(path), structure, vertex, ijk, np.ones(5, bool))
    assert labels.tolist() == [1, 0, 1, 2, 2] and names == {1: "net1", 2: "thal"}
    scalar = tmp_path / "x.dscalar.nii"
    nib.save(cifti2.Cifti2Image(np.zeros((1, 5)), header=(cifti2.ScalarAxis(["m"]), bm)),
             str(scalar))
    with pytest.raises(DataError, match="not a label file"):
        read_dlabel(scalar)


def test_mesh_clusters_are_contiguous_and_never_straddle_pieces():
    adj = block_adjacency(mesh_adjacency(_icosahedron()), mesh_adjacency(_icosahedron()))
    rng = np.random.default_rng(0)
    data = rng.normal(size=(40, 24))
    valid = np.ones(24, bool)
    valid[5] = False
    labels = mesh_clusters(data, adj, valid, 5)
    assert labels[5] == 0 and sorted(set(labels) - {0}) == [1, 2, 3, 4, 5]
    for lab in range(1, 6):
        members = np.flatnonzero(labels == lab)
        sub = adj[members][:, members]
        assert connected_components(sub, directed=False)[0] == 1, lab
        assert (members < 12).all() or (members >= 12).all()  # one icosahedron each
    with pytest.raises(DataError, match="disconnected pieces"):
        mesh_clusters(data, adj, valid, 1)
