"""Surface data layer (issue 12): neighbourhood graphs and reading GIFTI/CIFTI BOLD."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel import cifti2

from bids_hrf.errors import DataError, NoInputError
from bids_hrf.io.surface import CORTEX, gifti_pair, load_cifti_dtseries, load_gifti_pair
from bids_hrf.surface.graph import block_adjacency, grid_adjacency, mesh_adjacency


def _icosahedron() -> np.ndarray:
    """The 20 faces of a regular icosahedron (12 vertices)."""
    top, bottom = 0, 11
    upper, lower = [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]
    faces = []
    for k in range(5):
        a, b = upper[k], upper[(k + 1) % 5]
        c, d = lower[k], lower[(k + 1) % 5]
        faces += [(top, a, b), (a, c, b), (b, c, d), (bottom, d, c)]
    return np.array(faces)


def test_icosahedron_every_vertex_has_five_neighbours():
    adj = mesh_adjacency(_icosahedron())
    assert adj.shape == (12, 12) and (adj != adj.T).nnz == 0 and adj.diagonal().sum() == 0
    assert np.all(np.asarray(adj.sum(axis=1)).ravel() == 5)
    assert adj.nnz // 2 == 30  # edges of an icosahedron


def test_fsaverage5_mesh_shipped_with_nilearn_is_one_connected_surface():
    from nilearn.datasets import load_fsaverage
    from scipy.sparse.csgraph import connected_components

    mesh = load_fsaverage("fsaverage5")["pial"].parts["left"]
    adj = mesh_adjacency(mesh.faces, mesh.n_vertices)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    assert adj.shape == (10242, 10242) and degree.min() >= 5 and degree.max() <= 6
    assert connected_components(adj, directed=False)[0] == 1


def test_grid_adjacency_is_six_connectivity():
    cube = np.argwhere(np.ones((2, 2, 2)))
    adj = grid_adjacency(cube)
    assert np.all(np.asarray(adj.sum(axis=1)).ravel() == 3)
    line = np.array([[0, 0, 0], [0, 0, 2], [0, 0, 1]])  # order does not matter
    assert grid_adjacency(line)[2].toarray().ravel().tolist() == [True, True, False]
    both = block_adjacency(mesh_adjacency(_icosahedron()), grid_adjacency(cube))
    assert both.shape == (20, 20) and not both[:12, 12:].nnz


def test_bad_faces():
    with pytest.raises(ValueError, match="n_faces, 3"):
        mesh_adjacency(np.zeros((4, 2), dtype=int))
    with pytest.raises(ValueError, match="vertex 11"):
        mesh_adjacency(_icosahedron(), n_vertices=5)


def _write_gifti(path, data):
    arrays = [nib.gifti.GiftiDataArray(np.asarray(row, dtype=np.float32),
                                       intent="NIFTI_INTENT_TIME_SERIES") for row in data]
    nib.save(nib.gifti.GiftiImage(darrays=arrays), str(path))


def test_gifti_pair_round_trip_medial_wall_and_missing_hemisphere(tmp_path):
    rng = np.random.default_rng(0)
    left, right = rng.normal(size=(20, 12)), rng.normal(size=(20, 10))
    left[:, 3] = 0.0  # the medial wall: constant, left out
    stem = "sub-01_task-rest_hemi-{}_space-fsaverage5_bold.func.gii"
    _write_gifti(tmp_path / stem.format("L"), left)
    with pytest.raises(NoInputError, match="right hemisphere.*hemi-R"):
        load_gifti_pair(tmp_path / stem.format("L"))
    _write_gifti(tmp_path / stem.format("R"), right)
    bold = load_gifti_pair(tmp_path / stem.format("L"))
    np.testing.assert_allclose(bold.data, np.hstack([left, right]), atol=1e-6)
    assert bold.mesh_size == {CORTEX["L"]: 12, CORTEX["R"]: 10}
    assert bold.valid.sum() == 21 and not bold.valid[3]
    assert bold.vertex[12] == 0 and (bold.structure == CORTEX["R"]).sum() == 10
    with pytest.raises(DataError, match="not a left-hemisphere"):
        gifti_pair(tmp_path / stem.format("R"))
    _write_gifti(tmp_path / stem.format("R"), right[:15])
    with pytest.raises(DataError, match="20 volumes but .* 15"):
        load_gifti_pair(tmp_path / stem.format("L"))


def _cifti(tmp_path, series=True):
    """A reduced grayordinate set: 5 + 4 cortical vertices, 3 thalamus voxels."""
    left = cifti2.BrainModelAxis.from_mask(np.array([1, 1, 0, 1, 1, 1], bool),
                                           name="CortexLeft")
    right = cifti2.BrainModelAxis.from_mask(np.array([1, 1, 1, 1], bool), name="CortexRight")
    vol = np.zeros((3, 3, 3), bool)
    vol[1, 1, 0] = vol[1, 1, 1] = vol[1, 1, 2] = True
    thal = cifti2.BrainModelAxis.from_mask(vol, name="ThalamusLeft", affine=np.eye(4) * 2)
    bm = left + right + thal
    rng = np.random.default_rng(1)
    data = rng.normal(size=(30, len(bm)))
    data[:, 7] = np.nan
    first = (cifti2.SeriesAxis(start=0, step=2.0, size=30, unit="SECOND") if series
             else cifti2.ScalarAxis([f"map{i}" for i in range(30)]))
    path = tmp_path / ("x.dtseries.nii" if series else "x.dscalar.nii")
    nib.save(cifti2.Cifti2Image(data, header=(first, bm)), str(path))
    return path, data


def test_cifti_dtseries_round_trip_and_graph(tmp_path):
    path, data = _cifti(tmp_path)
    with pytest.warns(RuntimeWarning, match="1 sample"):
        bold = load_cifti_dtseries(path)
    np.testing.assert_allclose(bold.data[:, ~np.isnan(data[0])],
                               data[:, ~np.isnan(data[0])], atol=1e-6)
    assert bold.step == 2.0 and bold.valid.sum() == len(data[0]) - 1
    assert bold.vertex[:5].tolist() == [0, 1, 3, 4, 5] and bold.mesh_size[CORTEX["L"]] == 6
    thal = bold.structure == "CIFTI_STRUCTURE_THALAMUS_LEFT"
    assert thal.sum() == 3 and np.all(bold.vertex[thal] == -1)
    assert np.asarray(grid_adjacency(bold.ijk[thal]).sum(axis=1)).ravel().tolist() == [1, 2, 1]


def test_cifti_without_series_axis_is_a_clear_error(tmp_path):
    path, _ = _cifti(tmp_path, series=False)
    with pytest.raises(DataError, match="not a dense time series.*ScalarAxis"):
        load_cifti_dtseries(path)
