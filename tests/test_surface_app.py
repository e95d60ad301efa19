"""Surface data end to end (issue 12): fsaverage5 GIFTI pairs and fsLR-like CIFTI.

Datasets come from :mod:`bids_hrf.datasets.surface_sim` (known truth per vertex, an atlas
drawn independently of the truth); meshes from nilearn's offline fsaverage5.
"""

from __future__ import annotations

import json
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from bids_hrf.cli.run import main
from bids_hrf.datasets.surface_sim import make_surface_dataset
from bids_hrf.io.surface import load_cifti_dtseries
from bids_hrf.io.surface_writers import surface_files
from bids_hrf.surface.meshes import sample_graph, smooth_on_mesh, surface_mesh
from bids_hrf.surface.samples import SampleGeometry, sample_image, sample_values
from tests.conftest import validator_executable


@pytest.fixture(scope="module")
def fs5(tmp_path_factory):
    root = tmp_path_factory.mktemp("fs5")
    return make_surface_dataset(root / "bids", space="fsaverage5", n_subjects=1, n_runs=2,
                                n_scans=90, seed=3)


@pytest.fixture(scope="module")
def fslr(tmp_path_factory):
    root = tmp_path_factory.mktemp("fslr")
    return make_surface_dataset(root / "bids", space="fsLR", n_subjects=1, n_runs=2,
                                n_scans=90, seed=4)


def _run(ds, out, *extra) -> int:
    args = [str(ds.bids_dir), str(out), "participant", "--space", ds.space,
            "--atlas", str(ds.atlas), "-w", str(out.parent / f"work_{out.name}"),
            "--nprocs", "1", *extra]
    return main(args)


def _validator_errors(out) -> list[str]:
    """bids-validator errors on OUTPUT_DIR (surface files outside the schema are listed in
    .bidsignore: the schema has no rule for surface derivatives)."""
    proc = subprocess.run([validator_executable(), str(out), "--format", "json"],
                          capture_output=True, text=True, timeout=600)
    issues = json.loads(proc.stdout)["issues"]["issues"]
    return [f"{i['code']} {i.get('location')}" for i in issues if i["severity"] == "error"]


def _gifti_pair(folder, pattern: str) -> np.ndarray:
    left = sorted(folder.glob(pattern.replace("HEMI", "L")))
    assert len(left) == 1, (pattern, left)
    right = left[0].with_name(left[0].name.replace("hemi-L", "hemi-R"))
    return np.concatenate([np.asarray(nib.load(str(p)).darrays[0].data)
                           for p in (left[0], right)])


def _auc(truth: pd.DataFrame, values: np.ndarray, condition: str) -> float:
    return roc_auc_score(truth["condition"].to_numpy() == condition, values)


def test_fsaverage5_end_to_end_gifti_outputs_recover_truth(fs5, tmp_path):
    out = tmp_path / "out"
    assert _run(fs5, out) == 0
    func = out / "sub-01" / "func"
    for cond in ("A", "B"):
        z = _gifti_pair(func, f"*task-loc_hemi-HEMI_space-fsaverage5_contrast-{cond.lower()}"
                              "_stat-z_statmap.shape.gii")
        assert z.shape == (2 * 10242,)
        assert _auc(fs5.truth, z, cond) > 0.95
    # the parcellation is a .label.gii pair with the atlas's names, medial wall unlabelled
    dseg = nib.load(str(next(func.glob("*hemi-L_space-fsaverage5_seg-*_dseg.label.gii"))))
    names = dseg.labeltable.get_labels_as_dict()
    assert names[0] == "???" and any(v.startswith("L_parcel") for v in names.values())
    medial = fs5.truth.query("structure == 'CIFTI_STRUCTURE_CORTEX_LEFT' and region < 0")
    assert (np.asarray(dseg.darrays[0].data)[medial["vertex"]] == 0).all()
    sidecar = json.loads(next(func.glob("*task-loc_space-fsaverage5_contrast-a_stat-z_statmap"
                                        ".json")).read_text())  # one for the pair
    assert sidecar["Statistic"] == "z"
    assert "*_statmap.shape.gii" in (out / ".bidsignore").read_text().split()
    html = (out / "sub-01.html").read_text()
    assert "could not be made" not in html and "on the cortical surface" in html
    assert html.count("data:image/png") >= 6


def test_fsaverage5_jde_uses_the_mesh_graph(fs5, tmp_path):
    out = tmp_path / "out"
    assert _run(fs5, out, "--hrf-method", "jde-vem", "--participant-label", "01",
                "--no-report") == 0
    func = out / "sub-01" / "func"
    ppm = _gifti_pair(func, "*hemi-HEMI_space-fsaverage5_contrast-a_stat-ppm_desc-jdevem"
                            "_statmap.shape.gii")
    assert _auc(fs5.truth, ppm, "A") > 0.95
    # HRF time to peak of parcels lying (>= 80 %) in one truly active region
    labels = _gifti_pair(func, "*hemi-HEMI_space-fsaverage5_seg-*_dseg.label.gii")
    names = {}
    for hemi in "LR":
        path = next(func.glob(f"*hemi-{hemi}_space-fsaverage5_seg-*_dseg.label.gii"))
        names.update(nib.load(str(path)).labeltable.get_labels_as_dict())
    params = pd.read_csv(next(func.glob("*desc-jdevem_hrfparams.tsv")), sep="\t")
    truth = fs5.truth.assign(ttp=pd.to_numeric(fs5.truth["ttp"], errors="coerce"))
    pairs = []
    for key, name in names.items():
        regions = truth.loc[labels == key, "region"].value_counts()
        if key == 0 or regions.empty or regions.iloc[0] < 0.8 * regions.sum():
            continue
        region = truth[truth["region"] == regions.index[0]].iloc[0]
        if region["condition"] and name in set(params["parcel"]):
            pairs.append((region["ttp"], float(params.loc[params["parcel"] == name,
                                                          "time_to_peak"].iloc[0])))
    true_ttp, est_ttp = np.array(pairs).T
    assert len(pairs) >= 8
    assert np.median(np.abs(est_ttp - true_ttp)) < 0.5
    assert np.corrcoef(true_ttp, est_ttp)[0, 1] > 0.8
    hrf_sidecar = json.loads(next(func.glob("*space-fsaverage5_desc-jdevemHrf_bold.json"))
                             .read_text())  # one sidecar for the pair (BIDS inheritance)
    assert hrf_sidecar["SpatialReference"]["CIFTI_STRUCTURE_CORTEX_LEFT"].endswith(
        "tpl-fsaverage_hemi-L_den-10k_sphere.surf.gii")
    assert _validator_errors(out) == []


def test_fslr_cifti_end_to_end(fslr, tmp_path):
    out = tmp_path / "out"
    assert _run(fslr, out) == 0
    func = out / "sub-01" / "func"
    zpath = next(func.glob("*task-loc_space-fsLR_den-91k_contrast-a_stat-z_statmap"
                           ".dscalar.nii"))
    img = nib.load(str(zpath))
    models = img.header.get_axis(1)
    source = nib.load(str(next(fslr.fmriprep_dir.rglob("*run-1*dtseries.nii"))))
    assert models == source.header.get_axis(1)  # same grayordinates, structures, voxels
    assert isinstance(img.header.get_axis(0), nib.cifti2.ScalarAxis)
    assert _auc(fslr.truth, np.asarray(img.get_fdata())[0], "A") > 0.95
    dlabel = nib.load(str(next(func.glob("*space-fsLR_seg-*_den-91k_dseg.dlabel.nii"))))
    assert isinstance(dlabel.header.get_axis(0), nib.cifti2.LabelAxis)
    assert "thalamus" in " ".join(v[0] for v in dlabel.header.get_axis(0).label[0].values())
    assert json.loads(next(func.glob("*run-1_space-fsLR_den-91k_contrast-a_stat-z_statmap"
                                     ".json")).read_text())["Density"].startswith("91,282")
    tsv = next(func.glob("*run-1_space-fsLR_seg-*_den-91k_stat-mean_timeseries.tsv"))
    series = pd.read_csv(tsv, sep="\t")
    ptseries = nib.load(str(tsv.with_name(tsv.name.replace(".tsv", ".ptseries.nii"))))
    assert list(ptseries.header.get_axis(1).name) == list(series.columns)
    np.testing.assert_allclose(ptseries.get_fdata(), series.to_numpy(), rtol=1e-5)
    assert _validator_errors(out) == []


def test_missing_hemisphere_is_one_clear_error(fs5, tmp_path, capsys):
    right = next(fs5.fmriprep_dir.rglob("*run-2_hemi-R_space-fsaverage5_bold.func.gii"))
    moved = tmp_path / right.name
    right.rename(moved)
    try:
        code = _run(fs5, tmp_path / "out")
    finally:
        moved.rename(right)
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "right hemisphere" in err and right.name in err


def test_smoothing_without_an_offline_mesh_is_refused(fslr, tmp_path, capsys):
    code = _run(fslr, tmp_path / "out", "--smoothing-fwhm", "6")
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and "mesh" in err


def test_mesh_smoothing_reaches_the_requested_fwhm():
    """A point smoothed on the fsaverage5 midthickness spreads with the stated FWHM."""
    coords, faces = surface_mesh("fsaverage5", "L")
    n = coords.shape[0]
    geometry = SampleGeometry(kind="gifti", space="fsaverage5",
                              structure=np.array(["CIFTI_STRUCTURE_CORTEX_LEFT"] * n),
                              vertex=np.arange(n), ijk=np.full((n, 3), -1),
                              mesh_size={"CIFTI_STRUCTURE_CORTEX_LEFT": n})
    for fwhm in (6.0, 12.0):
        spreads = []
        for source in (100, 2000, 5000):
            delta = np.zeros((1, n))
            delta[0, source] = 1.0
            out, meta = smooth_on_mesh(delta, geometry, fwhm)
            w = out[0] / out[0].sum()
            r2 = np.sum((coords - coords[source]) ** 2, axis=1)
            spreads.append(np.sqrt(np.sum(w * r2) / 2.0) * np.sqrt(8 * np.log(2)))
        assert 0.75 * fwhm < np.median(spreads) < 1.3 * fwhm, (fwhm, spreads)
        assert meta["SmoothingIterations"]["L"] >= 1


def test_sample_graph_of_fsaverage5_is_the_mesh():
    coords, faces = surface_mesh("fsaverage5", "L")
    n = coords.shape[0]
    geometry = SampleGeometry(
        kind="gifti", space="fsaverage5",
        structure=np.array(["CIFTI_STRUCTURE_CORTEX_LEFT"] * n + ["CIFTI_STRUCTURE_CORTEX_RIGHT"]
                           * n), vertex=np.r_[np.arange(n), np.arange(n)],
        ijk=np.full((2 * n, 3), -1),
        mesh_size={"CIFTI_STRUCTURE_CORTEX_LEFT": n, "CIFTI_STRUCTURE_CORTEX_RIGHT": n})
    graph = sample_graph(geometry)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    assert graph.shape == (2 * n, 2 * n) and set(np.unique(degree)) == {5, 6}
    assert graph[:n, n:].nnz == 0  # no edge across hemispheres


def test_cifti_writer_round_trip(fslr, tmp_path):
    source = next(fslr.fmriprep_dir.rglob("*run-1*dtseries.nii"))
    bold = load_cifti_dtseries(source)
    from bids_hrf.io.surface import load_surface_bold

    _, geometry = load_surface_bold(source, "fsLR")
    assert geometry.den == "91k"
    values = np.arange(geometry.n_samples, dtype=float)
    src = tmp_path / "map.nii.gz"
    nib.save(sample_image(values), str(src))
    [(extra, ext, write)] = surface_files(src, geometry, "statmap")
    assert extra == {} and ext == ".dscalar.nii"
    write(tmp_path / "map.dscalar.nii")
    back = nib.load(str(tmp_path / "map.dscalar.nii"))
    np.testing.assert_allclose(np.asarray(back.get_fdata())[0], values)
    series = sample_image(bold.data[:5])
    nib.save(series, str(tmp_path / "s.nii.gz"))
    assert sample_values(nib.load(str(tmp_path / "s.nii.gz"))).shape == (geometry.n_samples, 5)
    [(_, ext, write)] = surface_files(tmp_path / "s.nii.gz", geometry, "bold", tr=2.0)
    write(tmp_path / "s.dtseries.nii")
    back = nib.load(str(tmp_path / "s.dtseries.nii"))
    assert ext == ".dtseries.nii" and back.header.get_axis(0).step == 2.0
    np.testing.assert_allclose(back.get_fdata(), bold.data[:5], rtol=1e-5)


def test_group_level_on_vertices_clusters_on_the_mesh(tmp_path):
    ds = make_surface_dataset(tmp_path / "bids", space="fsaverage5", n_subjects=3, n_runs=1,
                              n_scans=70, seed=5)
    out = tmp_path / "out"
    assert _run(ds, out, "--no-report") == 0
    assert main([str(ds.bids_dir), str(out), "group", "--space", "fsaverage5",
                 "--group-model", "one-sample", "--group-alpha", "0.05",
                 "--cluster-threshold", "5", "--group-permutations", "20",
                 "-w", str(tmp_path / "work_group")]) == 0
    group = out / "group"
    z = _gifti_pair(group, "task-loc_hemi-HEMI_space-fsaverage5_model-mean_contrast-a"
                           "_stat-z_statmap.shape.gii")
    assert _auc(ds.truth, z, "A") > 0.9
    clusters = pd.read_csv(next(group.glob("*model-mean_contrast-a_clusters.tsv")), sep="\t")
    largest = clusters.iloc[0]
    assert largest["Size (samples)"] > 100  # measured on the mesh, not along the array
    assert (clusters["Size (samples)"] >= 5).all()  # --cluster-threshold in samples
    hemi = "L" if largest["Structure"].endswith("LEFT") else "R"
    peak_truth = ds.truth[(ds.truth["structure"] == largest["Structure"])
                          & (ds.truth["vertex"] == largest["Vertex"])]
    assert peak_truth["condition"].iloc[0] == "A", hemi
    assert "could not be made" not in (out / "group.html").read_text()
    # cluster-size FWE p values from permutations with clusters on the mesh
    logp = _gifti_pair(group, "task-loc_hemi-HEMI_space-fsaverage5_model-mean_contrast-a"
                              "_stat-logpFweClusterSize_statmap.shape.gii")
    assert logp[int(largest["Peak sample"])] > 0 and logp.max() <= np.log10(21) + 1e-6


def test_graph_clusters_follow_the_graph():
    from scipy import sparse

    from bids_hrf.surface.clusters import graph_clusters

    # a path 0-1-2-3-4-5 and an isolated 6: values beyond 2 at 0,1 and 3,4,5 and 6
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
    adj = sparse.coo_matrix((np.ones(5), (edges[:, 0], edges[:, 1])), shape=(7, 7))
    adj = (adj + adj.T).tocsr()
    values = np.array([3.0, 2.5, 0.0, 4.0, 3.0, 2.2, -5.0])
    thr, table = graph_clusters(values, adj, 2.0, min_size=2)
    assert table["Size (samples)"].tolist() == [3, 2]  # the lone -5 is below min_size
    assert table["Peak sample"].tolist() == [3, 0]
    np.testing.assert_array_equal(thr, [3.0, 2.5, 0.0, 4.0, 3.0, 2.2, 0.0])
    _, table = graph_clusters(values, adj, 2.0)
    assert table["Sign"].tolist().count("-") == 1


def test_den_selects_cifti_density_and_is_refused_elsewhere(fs5, fslr, tmp_path, capsys):
    code = _run(fs5, tmp_path / "out", "--den", "91k")
    err = capsys.readouterr().err
    assert code != 0 and "--den 91k applies to CIFTI data" in err and "Traceback" not in err
    code = _run(fslr, tmp_path / "out170", "--den", "170k")
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "no CIFTI (.dtseries.nii) preprocessed BOLD in space-fsLR den-170k (found: " \
           "space-fsLR den-91k)" in err


def test_cortical_atlas_on_grayordinates_gives_subcortex_its_parcels(fs5, fslr, tmp_path):
    """A cortical label pair on CIFTI data: each subcortical structure is its own parcel."""
    from bids_hrf.steps.surface import surface_atlas_step

    bold = next(fslr.fmriprep_dir.rglob("*run-1*dtseries.nii"))
    atlas = surface_atlas_step(str(fs5.atlas), None, "fsLR", str(bold), tmp_path)
    table = pd.read_csv(atlas["labels"], sep="\t")
    assert {"thalamus_left", "thalamus_right"} <= set(table["name"])
    values = sample_values(nib.load(atlas["atlas"]))
    geometry = SampleGeometry.load(tmp_path / "geometry.npz")
    voxels = geometry.vertex < 0
    assert (values[voxels] > 0).all() and len(np.unique(values[voxels])) == 2


def test_templateflow_surface_atlas_offline(fs5, tmp_path, monkeypatch, capsys):
    """A TemplateFlow surface atlas is read from the local folder, never downloaded; a
    missing one is one error naming the template, density and how to fetch it."""
    import shutil

    home = tmp_path / "templateflow"
    folder = home / "tpl-fsaverage"
    folder.mkdir(parents=True)
    for hemi in "LR":
        src = fs5.atlas.with_name(fs5.atlas.name.replace("hemi-L", f"hemi-{hemi}"))
        shutil.copy(src, folder / f"tpl-fsaverage_hemi-{hemi}_den-10k_atlas-Sim_desc-40Parcels"
                                  "_dseg.label.gii")
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    args = [str(fs5.bids_dir), str(tmp_path / "out"), "participant", "--space", "fsaverage5",
            "-w", str(tmp_path / "work"), "--participant-label", "01", "--no-report"]
    assert main([*args, "--atlas", "Sim:40Parcels"]) == 0
    table = pd.read_csv(next((tmp_path / "out").rglob("*_dseg.tsv")), sep="\t")
    assert len(table) == 40
    code = main([*args, "--atlas", "Schaefer2018:400Parcels7Networks"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "tpl-fsaverage, den-10k" in err and "density='10k'" in err


def test_fslr_mesh_from_templateflow_folder_enables_mesh_smoothing(fslr, tmp_path, monkeypatch):
    """fMRIPrep users have tpl-fsLR surfaces in TEMPLATEFLOW_HOME: the mesh is read there
    (here fsaverage5's midthickness standing for fsLR's), so smoothing runs on it."""
    home = tmp_path / "templateflow"
    (home / "tpl-fsLR").mkdir(parents=True)
    for hemi in "LR":
        coords, faces = surface_mesh("fsaverage5", hemi)
        img = nib.gifti.GiftiImage()
        img.add_gifti_data_array(nib.gifti.GiftiDataArray(
            coords.astype(np.float32), intent="NIFTI_INTENT_POINTSET"))
        img.add_gifti_data_array(nib.gifti.GiftiDataArray(
            faces.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE"))
        nib.save(img, str(home / "tpl-fsLR" / f"tpl-fsLR_hemi-{hemi}_den-32k_midthickness"
                                              ".surf.gii"))
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    assert surface_mesh("fsLR", "L")[0].shape == (10242, 3)
    out = tmp_path / "out"
    assert _run(fslr, out, "--smoothing-fwhm", "8", "--no-report") == 0
    func = out / "sub-01" / "func"
    zpath = next(func.glob("*task-loc_space-fsLR_den-91k_contrast-a_stat-z_statmap"
                           ".dscalar.nii"))
    smoothed = np.asarray(nib.load(str(zpath)).get_fdata())[0]
    assert _auc(fslr.truth, smoothed, "A") > 0.95
    run_sidecar = next(func.glob("*run-1_space-fsLR_den-91k_contrast-a_stat-z_statmap.json"))
    assert json.loads(run_sidecar.read_text())["SmoothingFWHM"] == 8.0
    # report maps of the grayordinates go on that mesh (not the flat fallback)
    from bids_hrf.io.surface import load_surface_map
    from bids_hrf.reports.figures_surface import _hemispheres, set_surface_geometry

    img, geometry = load_surface_map(zpath)
    set_surface_geometry(geometry)
    try:
        space, parts = _hemispheres(sample_values(img))
    finally:
        set_surface_geometry(None)
    assert space == "fsLR" and parts["L"].shape == (10242,)
    assert np.count_nonzero(parts["L"]) == np.count_nonzero(
        sample_values(img)[geometry.hemisphere("L")])


def test_tr_disagreeing_with_the_cifti_series_step_is_warned(fslr, tmp_path, caplog):
    from bids_hrf.config import make_config
    from bids_hrf.io.inputs import collect_runs

    sidecar = next(fslr.fmriprep_dir.rglob("*run-1_space-fsLR_den-91k_bold.json"))
    original = sidecar.read_text()
    sidecar.write_text(json.dumps({"RepetitionTime": 2.5}))
    try:
        config = make_config(fslr.bids_dir, tmp_path / "out", "participant", space="fsLR")
        with caplog.at_level("WARNING", logger="bids_hrf"):
            runs, _ = collect_runs(config)
    finally:
        sidecar.write_text(original)
    assert {r.tr for r in runs} == {2.0, 2.5}  # the sidecar wins, as for NIfTI
    assert any("disagrees with the file header (2 s)" in r.message for r in caplog.records)
