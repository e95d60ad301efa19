"""Group steps on small hand-made participant outputs (fast): group HRFs, connectivity,
second-level GLM bookkeeping (missing subjects, sessions), CLI options."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_hrf.io.outputs import inventory
from bids_hrf.options import GroupOptions

SPACE = "MNI152NLin2009cAsym"


def _opts(participants=None, model=None, **kw) -> GroupOptions:
    """Group options of the tests (participants.tsv and model given as paths or None)."""
    return GroupOptions(space=SPACE, participants=str(participants) if participants else None,
                        group_model=str(model) if model else None, **kw)
NAMES = ["A_1", "A_2", "B_1", "B_2", "C_1"]


def _participants(tmp_path, n):
    path = tmp_path / "participants.tsv"
    pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(1, n + 1)],
                  "group": ["control" if i % 2 else "patient" for i in range(1, n + 1)],
                  "age": np.arange(n) + 20}).to_csv(path, sep="\t", index=False)
    return path


def _func(out, sub, ses=None):
    folder = out / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "func"
    folder.mkdir(parents=True, exist_ok=True)
    return folder, f"sub-{sub}" + (f"_ses-{ses}" if ses else "")


def _hrf(t, ttp):
    from scipy.stats import gamma

    return gamma.pdf(t, ttp + 1) - 0.1 * gamma.pdf(t, 16)


def _write_hrfs(out, n, delayed="B_1", shift=2.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(0, 25, 0.5)
    for i in range(1, n + 1):
        sub = f"{i:02d}"
        folder, prefix = _func(out, sub)
        table = {"time": t}
        for name in NAMES:
            ttp = 5.0 + rng.normal(0, 0.2) + (shift if name == delayed and i % 2 == 0 else 0)
            table[name] = _hrf(t, ttp) + rng.normal(0, 0.002, t.size)
        pd.DataFrame(table).to_csv(
            folder / f"{prefix}_task-x_space-{SPACE}_seg-S_desc-fir_hrf.tsv", sep="\t",
            index=False)
        pd.DataFrame({"index": range(1, 6), "name": NAMES,
                      "network": [n[0] for n in NAMES]}).to_csv(
            folder / f"{prefix}_task-x_space-{SPACE}_seg-S_dseg.tsv", sep="\t", index=False)


def _write_series(out, n, runs=2, seed=0):
    """Parcel series: A_1/A_2 share a latent in controls only; B_1/B_2 in everyone."""
    rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        folder, prefix = _func(out, f"{i:02d}")
        for run in range(1, runs + 1):
            x = rng.normal(size=(120, len(NAMES)))
            shared_a, shared_b = rng.normal(size=120), rng.normal(size=120)
            if i % 2:  # control
                x[:, 0] += shared_a
                x[:, 1] += shared_a
            x[:, 2] += shared_b
            x[:, 3] += shared_b
            pd.DataFrame(x + 100, columns=NAMES).to_csv(
                folder / f"{prefix}_task-x_run-{run}_space-{SPACE}_seg-S_stat-mean_timeseries"
                         ".tsv", sep="\t", index=False)


def test_group_hrf_step_finds_delay(tmp_path):
    from bids_hrf.steps.group_hrf import group_hrf_step

    out = tmp_path / "out"
    _write_hrfs(out, 12)
    part = _participants(tmp_path, 12)
    work = tmp_path / "work"
    work.mkdir()
    result, records = group_hrf_step(inventory(out).to_dict("records"),
                                     _opts(part, "two-sample:group"), work)
    (analysis,) = result["analyses"]
    comp = pd.read_csv(analysis["comparison"], sep="\t")
    ttp = comp[comp["parameter"] == "time_to_peak"].set_index("parcel")
    assert bool(ttp.loc["B_1", "significant"])
    assert ttp.loc["B_1", "difference"] == pytest.approx(2.0, abs=0.3)
    assert not ttp.drop(index="B_1")["significant"].any()
    params = pd.read_csv(analysis["params"], sep="\t")
    assert len(params) == 12 * len(NAMES)
    assert set(params["group"]) == {"control", "patient"}
    summary = pd.read_csv(analysis["summary"], sep="\t")
    assert {"group", "parcel", "time", "mean", "sd", "n"} <= set(summary.columns)
    suffixes = sorted(r["suffix"] for r in records)
    assert suffixes == ["hrf", "hrfcomparison", "hrfparams", "hrfsummary"]
    assert all("sub" not in r["entities"] for r in records)


def test_group_hrf_one_sample_has_no_comparison(tmp_path):
    from bids_hrf.steps.group_hrf import group_hrf_step

    out = tmp_path / "out"
    _write_hrfs(out, 4)
    result, records = group_hrf_step(inventory(out).to_dict("records"), _opts(), tmp_path)
    assert "comparison" not in result["analyses"][0]
    assert len(records) == 3


def test_connectivity_step_finds_edge_and_not_null(tmp_path):
    from bids_hrf.steps.group_connectivity import connectivity_step

    out = tmp_path / "out"
    _write_series(out, 12)
    _write_hrfs(out, 12)  # also writes the dseg.tsv with networks
    part = _participants(tmp_path, 12)
    work = tmp_path / "work"
    work.mkdir()
    result, records = connectivity_step(
        inventory(out).to_dict("records"),
        _opts(part, "two-sample:group", connectivity=("correlation", "tangent"), fdr=0.05),
        work)
    by_kind = {a["measure"]: a for a in result["analyses"]}
    edges = pd.read_csv(by_kind["correlation"]["edges"], sep="\t")
    edge = edges.set_index(["name_i", "name_j"])
    assert bool(edge.loc[("A_1", "A_2"), "significant"])
    assert edge.loc[("A_1", "A_2"), "difference"] < -0.3  # patient - control
    assert not bool(edge.loc[("B_1", "B_2"), "significant"])
    assert edges["significant"].sum() == 1
    # per-run matrices go to the subject folders with the BIDS-like name
    runs = [r for r in records if r["entities"].get("sub")]
    assert len(runs) == 12 * 2 * 2
    rec = next(r for r in runs if r["entities"]["sub"] == "01" and
               r["entities"]["run"] == "1" and r["entities"]["meas"] == "correlation")
    from bids_hrf.io.derivatives import output_path

    path = output_path(out, rec["entities"], rec["suffix"], ".tsv", rec["datatype"])
    assert path.name == (f"sub-01_task-x_run-1_space-{SPACE}_seg-S_meas-correlation_"
                         "relmat.tsv")
    assert path.parent == out / "sub-01" / "func"
    mat = pd.read_csv(rec["src"], sep="\t")
    assert list(mat.columns) == NAMES
    series = pd.read_csv(out / "sub-01" / "func" / f"sub-01_task-x_run-1_space-{SPACE}_seg-S_"
                         "stat-mean_timeseries.tsv", sep="\t")
    np.testing.assert_allclose(mat.to_numpy(), np.corrcoef(series.to_numpy().T), atol=1e-6)
    # networks from the dseg.tsv network column: A within-network lower in patients
    comp = pd.read_csv(by_kind["correlation"]["network_comparison"], sep="\t")
    within_a = comp[(comp["network_a"] == "A") & (comp["network_b"] == "A")].iloc[0]
    assert within_a["significant"] and within_a["difference"] < 0
    within_b = comp[(comp["network_a"] == "B") & (comp["network_b"] == "B")].iloc[0]
    assert not within_b["significant"]


def _write_maps(out, subjects, sessions=None, contrasts=("a",), seed=0):
    rng = np.random.default_rng(seed)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    for sub in subjects:
        for ses in sessions.get(sub, [None]) if sessions else [None]:
            folder, prefix = _func(out, sub, ses)
            for con in contrasts:
                eff = rng.normal(1.0, 1.0, (6, 6, 6))
                var = rng.uniform(0.5, 1.5, (6, 6, 6))
                for stat, data in (("effect", eff), ("variance", var)):
                    nib.save(nib.Nifti1Image(data.astype(np.float32), affine),
                             folder / f"{prefix}_task-x_space-{SPACE}_contrast-{con}_"
                                      f"stat-{stat}_statmap.nii.gz")


def test_group_glm_missing_contrast_and_sessions(tmp_path, caplog):
    from bids_hrf.steps.group import group_glm_step

    out = tmp_path / "out"
    subjects = [f"{i:02d}" for i in range(1, 9)]
    _write_maps(out, subjects[:-1], sessions={"01": ["1", "2"]}, contrasts=("a", "b"))
    _write_maps(out, subjects[-1:], contrasts=("a",))  # sub-08 misses contrast b
    part = _participants(tmp_path, 8)
    work = tmp_path / "work"
    work.mkdir()
    with caplog.at_level("WARNING", logger="bids_hrf"):
        result, records = group_glm_step(inventory(out).to_dict("records"),
                                         _opts(part, "two-sample:group"), work)
    assert "sub-08" in caplog.text
    by_con = {a["contrast"]: a for a in result["analyses"]}
    assert by_con["b"]["missing"] == ["08"]
    assert "08" not in by_con["b"]["used"] and "08" in by_con["a"]["used"]
    meta = next(r["metadata"] for r in records if r["suffix"] == "groupdesign"
                and r["entities"]["contrast"] == "b")
    assert meta["MissingSubjects"] == ["sub-08"]
    assert meta["SessionsCombined"]["sub-01"] == 2
    # sub-01's two sessions are combined by precision-weighted fixed effects
    diag = pd.read_csv(by_con["a"]["diagnostics"], sep="\t").set_index("participant")
    assert diag.loc["sub-01", "sessions_combined"] == 2
    e = [nib.load(out / "sub-01" / f"ses-{s}" / "func" /
                  f"sub-01_ses-{s}_task-x_space-{SPACE}_contrast-a_stat-{k}_statmap.nii.gz"
                  ).get_fdata() for s in ("1", "2") for k in ("effect", "variance")]
    combined = (e[0] / e[1] + e[2] / e[3]) / (1 / e[1] + 1 / e[3])
    assert diag.loc["sub-01", "mean_effect"] == pytest.approx(combined.mean(), rel=1e-5)
    assert set(by_con["a"]["maps"]) == {"patientMinusControl", "mean"}
    json.dumps(result)  # results travel between nipype nodes as JSON-able dicts


def test_group_glm_permutations(tmp_path):
    from bids_hrf.steps.group import group_glm_step

    out = tmp_path / "out"
    _write_maps(out, [f"{i:02d}" for i in range(1, 7)])
    result, records = group_glm_step(inventory(out).to_dict("records"), _opts(n_perm=50),
                                     tmp_path)
    maps = result["analyses"][0]["maps"]["mean"]
    logp = nib.load(maps["logpFweVoxel"]).get_fdata()
    assert logp.max() > 1  # mean 1, sd 1 over 6 subjects: strong effect
    assert any("logpFweVoxel" in r["entities"]["stat"] for r in records
               if r["suffix"] == "statmap")


@pytest.mark.parametrize("args,message", [
    (["--group-alpha", "2"], "--group-alpha"),
    (["--connectivity", "correlation,bogus"], "bogus"),
    (["--group-model", "two-sample:nosuch"], "nosuch"),
    (["--group-permutations", "-1"], "--group-permutations"),
])
def test_cli_group_options_rejected(tmp_path, args, message):
    from bids_hrf.cli.parser import build_parser, config_from_args
    from bids_hrf.errors import BidsHrfError

    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    _participants(bids, 2)
    args = build_parser().parse_args([str(bids), str(tmp_path / "out"), "group", *args])
    with pytest.raises(BidsHrfError, match=message):
        config_from_args(args)


def test_cli_group_options_accepted(tmp_path):
    from bids_hrf.cli.parser import build_parser, config_from_args

    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    _participants(bids, 2)
    args = build_parser().parse_args([
        str(bids), str(tmp_path / "out"), "group", "--group-model", "two-sample:group:age",
        "--connectivity", "correlation,partial correlation", "--group-permutations", "100",
        "--cluster-threshold", "5", "--height-control", "fdr"])
    config = config_from_args(args)
    assert config.connectivity == ("correlation", "partial correlation")
    assert config.group_permutations == 100 and config.cluster_threshold == 5
    assert config.group_height_control == "fdr"


def test_connectivity_hyphenated_names(tmp_path):
    """--connectivity takes shell-friendly names (partial-correlation), shown in --help;
    nilearn's spelling with a space still works; unknown names get the list of valid ones."""
    from bids_hrf.cli.parser import build_parser, config_from_args

    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    _participants(bids, 2)
    parser = build_parser()
    help_text = re.sub(r"-\s+", "-", " ".join(parser.format_help().split()))
    assert "(default: correlation, partial-correlation, tangent)" in help_text
    assert "partial correlation" not in help_text
    base = [str(bids), str(tmp_path / "out"), "group"]
    default = config_from_args(parser.parse_args(base))
    assert default.connectivity == ("correlation", "partial correlation", "tangent")
    for spelling in ("partial-correlation", "Partial_Correlation", "partial correlation"):
        config = config_from_args(parser.parse_args(base + ["--connectivity", spelling]))
        assert config.connectivity == ("partial correlation",)
    with pytest.raises(Exception) as info:
        config_from_args(parser.parse_args(base + ["--connectivity", "partial-corr"]))
    assert "partial-correlation, tangent" in str(info.value)


def test_group_glm_paired_sessions(tmp_path):
    from bids_hrf.steps.group import group_glm_step

    out = tmp_path / "out"
    subjects = [f"{i:02d}" for i in range(1, 7)]
    _write_maps(out, subjects, sessions={s: ["pre", "post"] for s in subjects[:-1]})
    result, records = group_glm_step(inventory(out).to_dict("records"),
                                     _opts(None, "paired:session:pre,post"), tmp_path)
    (analysis,) = result["analyses"]
    assert len(analysis["used"]) == 10  # 5 subjects x 2 sessions; sub-06 has no pair
    assert all(k.startswith("06") for k in analysis["dropped"])
    (name,) = analysis["maps"]
    assert name == "postMinusPre"
    design = pd.read_csv(analysis["design"], sep="\t")
    assert design.shape == (10, 1 + 1 + 5)


def test_connectivity_on_deconvolved_activity(tmp_path):
    from bids_hrf.steps.group_connectivity import connectivity_step

    out = tmp_path / "out"
    rng = np.random.default_rng(0)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    labels = np.zeros((4, 4, 4), dtype=np.int16)
    labels[:2, :2] = 1
    labels[2:, :2] = 2
    labels[:, 2:] = 3
    for sub in ("01", "02", "03"):
        folder, prefix = _func(out, sub)
        nib.save(nib.Nifti1Image(labels, affine),
                 folder / f"{prefix}_task-x_space-{SPACE}_seg-S_dseg.nii.gz")
        pd.DataFrame({"index": [1, 2, 3], "name": ["p", "q", "r"]}).to_csv(
            folder / f"{prefix}_task-x_space-{SPACE}_seg-S_dseg.tsv", sep="\t", index=False)
        act = rng.normal(size=(4, 4, 4, 50))
        shared = rng.normal(size=50)
        act[labels == 1] += 3 * shared  # p and q share activity
        act[labels == 2] += 3 * shared
        nib.save(nib.Nifti1Image(act.astype(np.float32), affine),
                 folder / f"{prefix}_task-x_run-1_space-{SPACE}_desc-activity_bold.nii.gz")
    result, records = connectivity_step(
        inventory(out).to_dict("records"),
        _opts(connectivity=("correlation",), activity=True), tmp_path)
    (analysis,) = [a for a in result["analyses"] if a["source"] == "activity"]
    assert analysis["names"] == ["p", "q", "r"]
    mean = pd.read_csv(analysis["means"]["all"], sep="\t").to_numpy()
    assert mean[0, 1] > 0.8 and abs(mean[0, 2]) < 0.3
    rec = next(r for r in records if r["entities"].get("sub") == "01")
    assert rec["entities"]["desc"] == "deconvolved" and rec["entities"]["seg"] == "S"


def test_regress_task_removes_evoked_coactivation():
    from bids_hrf.steps.group_connectivity import regress_task

    rng = np.random.default_rng(0)
    n = 120
    task = np.zeros(n)
    task[::15] = 1
    task = np.convolve(task, np.exp(-np.arange(8) / 2.0))[:n]
    conf = rng.normal(size=n) + 0.5 * task  # a confound that carries some task signal
    design = pd.DataFrame({"a": task, "conf": conf, "constant": 1.0})
    shared = rng.normal(size=n)
    y = np.column_stack([8 * task + rng.normal(size=n), 8 * task + rng.normal(size=n),
                         shared + rng.normal(size=n), shared + rng.normal(size=n)])
    # cleaned of the confound alone (as the participant level does)
    c = np.column_stack([conf, np.ones(n)])
    y = y - c @ np.linalg.lstsq(c, y, rcond=None)[0]
    series = pd.DataFrame(y, columns=list("pqrs"))
    assert np.corrcoef(y[:, 0], y[:, 1])[0, 1] > 0.7
    res = regress_task(series, design, ["a"])
    r = np.corrcoef(res.to_numpy().T)
    assert abs(r[0, 1]) < 0.3  # evoked co-activation gone
    assert r[2, 3] > 0.3  # intrinsic coupling kept


def test_group_glm_stats_model_json_with_f_contrast(tmp_path):
    from bids_hrf.steps.group import group_glm_step

    out = tmp_path / "out"
    _write_maps(out, [f"{i:02d}" for i in range(1, 9)])
    part = _participants(tmp_path, 8)
    model = tmp_path / "model.json"
    model.write_text(json.dumps({"Nodes": [{"Level": "Dataset", "Model": {"X": [1, "age"]},
                                            "Contrasts": [
        {"Name": "age effect", "ConditionList": ["age"], "Weights": [1], "Test": "t"},
        {"Name": "any", "ConditionList": [1, "age"], "Weights": [[1, 0], [0, 1]],
         "Test": "F"}]}]}))
    result, records = group_glm_step(inventory(out).to_dict("records"), _opts(part, model),
                                     tmp_path)
    maps = result["analyses"][0]["maps"]
    assert maps["age effect"]["type"] == "t" and maps["any"]["type"] == "F"
    assert "F" in maps["any"] and "z" in maps["any"]
    stats = {r["entities"].get("stat") for r in records if r["entities"].get("model") == "any"}
    assert {"F", "z", "p", "effect", "variance"} <= stats
