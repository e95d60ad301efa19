"""``bids-hrf-jde``: PyHRF's pyhrf_jde_vem_analysis command on small simulated files, on bad
input, and (slow) the seed's example on PyHRF's real sample data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_hrf.cli.jde import build_parser, main
from bids_hrf.steps.pyhrf_jde import bids_prefix, pyhrf_default_dt

TR = 2.0
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _simulate(tmp_path: Path, n_sessions: int = 1, n_scans: int = 120, seed: int = 0):
    """Two parcels of 4x4x2 voxels: parcel 1 responds to "audio" only, parcel 2 to nothing.

    Events are written as PyHRF writes them (whitespace, quoted names, amplitudes "1.").
    """
    from nilearn.glm.first_level import compute_regressor

    rng = np.random.default_rng(seed)
    shape = (8, 4, 2)
    parcels = np.zeros(shape, dtype=np.int16)
    parcels[:4] = 1
    parcels[4:] = 2
    nib.save(nib.Nifti1Image(parcels, AFFINE), tmp_path / "parcels.nii.gz")
    lines, bolds = [], []
    frame_times = np.arange(n_scans) * TR
    for s in range(n_sessions):
        onsets = {c: np.sort(rng.choice(np.arange(4, n_scans * TR - 30, 3.0), 12,
                                        replace=False)) for c in ("audio", "video")}
        for cond, ons in onsets.items():
            lines += [f'{s} "{cond}" {o:.6f} 0.000000 1.' for o in ons]
        reg, _ = compute_regressor(np.vstack([onsets["audio"], np.zeros(12), np.ones(12)]),
                                   "glover", frame_times)
        signal = np.zeros(shape + (n_scans,))
        signal[:4] = 2.0 * reg[:, 0] / reg.max()  # 2 % peak
        data = 1000.0 * (1 + 0.01 * (signal + rng.normal(0, 0.5, shape + (n_scans,))))
        img = nib.Nifti1Image(data.astype(np.float32), AFFINE)
        img.header.set_zooms((3.0, 3.0, 3.0, 1.0))  # a wrong TR in the header, as PyHRF's
        path = tmp_path / f"sub-01_task-loc_run-{s + 1}_bold.nii.gz"
        nib.save(img, path)
        bolds.append(str(path))
    (tmp_path / "paradigm.csv").write_text("\n".join(lines) + "\n")
    return str(tmp_path / "parcels.nii.gz"), str(tmp_path / "paradigm.csv"), bolds


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_defaults_are_pyhrfs():
    args = build_parser().parse_args(["2.4", "p.nii", "o.csv", "b.nii"])
    assert (args.hrf_duration, args.nb_iter_min, args.nb_iter_max, args.beta,
            args.hrf_hyperprior, args.sigma_h) == (25.0, 5, 100, 1.0, 1000, 0.1)
    assert args.estimate_hrf and args.zero_constraint and args.parallel
    assert args.drifts_type == "poly" and args.log_level == "WARNING" and args.dt is None
    assert args.output_dir == os.getcwd()
    assert pyhrf_default_dt(2.4) == pytest.approx(1.2)
    assert pyhrf_default_dt(2.0) == pytest.approx(1.0)
    assert pyhrf_default_dt(3.5) == pytest.approx(3.5 / 3)
    assert pyhrf_default_dt(0.8) == pytest.approx(0.8)
    args = build_parser().parse_args(["2", "p", "o", "b1", "b2", "--no-estimate-hrf",
                                      "--no-zero-constraint", "--no-parallel",
                                      "--drifts-type", "cos", "-v", "DEBUG"])
    assert args.bold_data_file == ["b1", "b2"]
    assert not (args.estimate_hrf or args.zero_constraint or args.parallel)


def test_bids_prefix():
    assert bids_prefix("/x/sub-01_ses-a_task-loc_run-1_bold.nii.gz") == "sub-01_ses-a_task-loc"
    assert bids_prefix("subj0_bold_session0.nii.gz") == ""


def test_two_sessions_outputs_and_detection(tmp_path, capsys):
    parcels, paradigm, bolds = _simulate(tmp_path, n_sessions=2)
    (tmp_path / "con.json").write_text(json.dumps({"Audio-Video": "audio-video"}))
    out = tmp_path / "out"
    code, err = _run([TR, parcels, paradigm, *bolds, "-o", out, "-c", tmp_path / "con.json",
                      "--no-parallel", "--nb-iter-max", 30, "--no-report"], capsys)
    assert code == 0, err
    assert "header says TR 1 s, the TR argument 2 s is used" in err
    for name in ("jde_vem_roi_mask.nii", "jde_vem_hrf_mapped.nii", "jde_vem_nrls.nii",
                 "jde_vem_labels.nii", "jde_vem_ppm_a_nrl_audio.nii",
                 "jde_vem_ppm_a_nrl_video.nii", "jde_vem_contrasts.nii",
                 "jde_vem_ncontrasts.nii", "jde_vem_ppm_a_Audio-Video.nii",
                 "jde_vem_processing.json",
                 "bids/sub-01_task-loc_desc-jdevem_hrf.tsv",
                 "bids/sub-01_task-loc_contrast-AudioVideo_desc-jdevem_stat-ppm_statmap.nii.gz"):
        assert (out / name).is_file(), name
    roi = np.asarray(nib.load(out / "jde_vem_roi_mask.nii").dataobj)
    np.testing.assert_array_equal(roi, np.asarray(nib.load(parcels).dataobj))
    hrf = nib.load(out / "jde_vem_hrf_mapped.nii")
    assert hrf.shape[:3] == roi.shape
    assert hrf.shape[3] == 26  # dt = TR / trunc(TR) = 1 s: 25 / 1 + 1 samples
    nrls = np.asarray(nib.load(out / "jde_vem_nrls.nii").dataobj)  # audio, video
    assert nrls[roi == 1][:, 0].mean() > 1.0 > abs(nrls[roi == 1][:, 1].mean())
    con = np.asarray(nib.load(out / "jde_vem_contrasts.nii").dataobj)[..., 0]
    assert con[roi == 1].mean() > 1.0
    ppm = np.asarray(nib.load(out / "jde_vem_ppm_a_nrl_audio.nii").dataobj)
    assert ppm[roi == 1].mean() > 0.9 > ppm[roi == 2].mean()
    settings = json.loads((out / "jde_vem_processing.json").read_text())
    assert settings["sessions"] == [0, 1] and settings["dt"] == 1.0
    assert settings["conditions"] == ["audio", "video"]
    table = np.genfromtxt(out / "bids/sub-01_task-loc_desc-jdevem_hrfparams.tsv",
                          names=True, dtype=None, delimiter="\t", encoding="utf-8")
    assert 3.0 <= float(table["time_to_peak"][0]) <= 7.5


def test_options_reach_the_estimator(tmp_path, capsys):
    parcels, paradigm, bolds = _simulate(tmp_path, n_scans=80)
    out = tmp_path / "out"
    code, err = _run([TR, parcels, paradigm, bolds[0], "-o", out, "--no-parallel",
                      "--no-estimate-hrf", "-d", 0.5, "-l", 20, "--drifts-type", "cos",
                      "--nb-iter-max", 7, "--no-report"], capsys)
    assert code == 0, err
    params = json.loads((out / "jde_vem_processing.json").read_text())["jde_parameters"]
    assert params["estimate_hrf"] is False and params["dt"] == 0.5
    assert params["hrf_duration"] == 20 and params["n_iter_max"] == 7
    assert params["drift_model"] == "cosine" and params["high_pass"] == pytest.approx(1 / 64)
    assert nib.load(out / "jde_vem_hrf_mapped.nii").shape[3] == 41


def test_bad_inputs_one_line_each(tmp_path, capsys):
    parcels, paradigm, bolds = _simulate(tmp_path, n_scans=40)
    out = tmp_path / "out"
    # grid mismatch
    other = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 2), np.int16), AFFINE), other)
    code, err = _run([TR, other, paradigm, bolds[0], "-o", out], capsys)
    assert code == 65 and "not on the same voxel grid" in err
    assert "bids-hrf-parcellation resample" in err and "Traceback" not in err
    # non-integer labels
    frac = tmp_path / "frac.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 4, 2), 0.5, np.float32), AFFINE), frac)
    code, err = _run([TR, frac, paradigm, bolds[0], "-o", out], capsys)
    assert code == 65 and "non-integer" in err
    # contrast with a wrong case
    (tmp_path / "c.json").write_text(json.dumps({"A": "Audio - video"}))
    code, err = _run([TR, parcels, paradigm, bolds[0], "-o", out, "-c", tmp_path / "c.json"],
                     capsys)
    assert code == 64 and "'Audio' -> 'audio'" in err
    # more BOLD files than sessions
    code, err = _run([TR, parcels, paradigm, bolds[0], bolds[0], "-o", out], capsys)
    assert code == 65 and "2 BOLD files for 1 session(s)" in err
    # missing paradigm, bad option value
    code, err = _run([TR, parcels, tmp_path / "none.csv", bolds[0], "-o", out], capsys)
    assert code == 66 and "none.csv" in err
    code, err = _run([TR, parcels, paradigm, bolds[0], "--drifts-type", "spline"], capsys)
    assert code == 64
    assert not out.exists()  # nothing written when the inputs are refused


def _pyhrf_data() -> Path | None:
    for candidate in (os.environ.get("BIDS_HRF_PYHRF_DATA"),
                      Path.home() / ".cache" / "bids_hrf" / "pyhrf"):
        if candidate and (Path(candidate) / "subj0_bold_session0.nii.gz").is_file():
            return Path(candidate)
    return None


FETCH = "bash .ci/pyhrf_data.sh ~/.cache/bids_hrf/pyhrf (or set BIDS_HRF_PYHRF_DATA)"


@pytest.mark.slow
def test_seed_example_on_pyhrf_sample_data(tmp_path, capsys):
    """The seed's command on PyHRF's real localizer: auditory parcels answer audio."""
    data = _pyhrf_data()
    if data is None:
        if os.environ.get("BIDS_HRF_REQUIRE_PYHRF"):
            pytest.fail(f"PyHRF sample data missing: {FETCH}")
        pytest.skip(f"PyHRF sample data not found: fetch them with {FETCH}")
    audio = ["calculaudio", "clicDaudio", "clicGaudio", "phraseaudio"]
    video = ["calculvideo", "clicDvideo", "clicGvideo", "phrasevideo"]
    (tmp_path / "contrasts.json").write_text(json.dumps({
        "Audio-Video": "clicDaudio-clicDvideo",  # the seed's example contrast
        "audio-video": " + ".join(audio) + " - " + " - ".join(video)}))
    out = tmp_path / "out"
    cwd = os.getcwd()
    os.chdir(out.parent)
    try:  # the seed's command as written, plus -o and -c
        code, err = _run(["2.4", data / "subj0_parcellation.nii.gz", data / "paradigm_loc.csv",
                          data / "subj0_bold_session0.nii.gz", "-o", out, "-c",
                          tmp_path / "contrasts.json"], capsys)
    finally:
        os.chdir(cwd)
    assert code == 0, err
    assert "the TR argument 2.4 s is used" in err
    roi = np.asarray(nib.load(out / "jde_vem_roi_mask.nii").dataobj)
    con = np.asarray(nib.load(out / "jde_vem_contrasts.nii").dataobj)
    for parcel in (1, 2):
        assert con[roi == parcel][:, 1].mean() > 0  # audio - video, both parcels
        assert con[roi == parcel][:, 0].mean() > 0  # the seed's clicDaudio - clicDvideo
    import pandas as pd

    params = pd.read_csv(out / "bids" / "desc-jdevem_hrfparams.tsv", sep="\t")
    assert params["time_to_peak"].between(3.0, 7.5).all(), params
    assert not params["silent"].any()
    assert (out / "jde_vem_report.html").stat().st_size > 10_000
