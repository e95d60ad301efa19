"""Voxel-wise HRF methods (rfir, r1glm, library) vs canonical GLM and parcel-wise JDE-VEM.

Part 1, accuracy (``--part accuracy``): :func:`tests.voxel_simulation.simulate` with the
HRF varying within parcels (voxel time to peak = parcel's +- 1 s, uniform), 3 runs of
300 scans, TR 2 s, 2 conditions (~150 events per run), 60 % of voxels active (peak
response ~0.5, condition 2 at 0.7 of condition 1), AR(1) noise (sd 1, rho 0.3), drifts.
The methods are fitted on runs 1-2; run 3 is kept for the library's held-out check.
Reported on active voxels: time-to-peak error and
correlation with the true HRF; over all voxels: ROC AUC of the condition-1 z map (active
vs silent voxels) of a GLM whose regressors use (a) the voxel's own estimated HRF, (b)
nilearn's canonical ``FirstLevelModel`` (spm HRF), (c) the parcel's JDE-VEM HRF, (d) each
method's voxel HRFs pooled per parcel (R^2-weighted mean, ``glm_hrf="parcel"``); and the
library's R^2 on run 3 (``HRFLibrary.score``) with the HRF chosen by cross-validation vs
in sample (betas fitted on runs 1-2).

Part 2, speed (``--part speed``): whole-brain size (70,000 voxels, 2 runs x 300 scans),
each method in its own child process (one thread), wall time of the fit and peak RSS
(``ru_maxrss``) against nilearn's ``FirstLevelModel`` (NIfTI in, one z map per condition)
in the same run.

Run: ``python benchmarks/bench_voxelwise.py [--part accuracy|speed|all] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))

from bids_hrf.hrf._voxel import (  # noqa: E402
    make_event_design,
    pool_hrfs,
    voxel_glm,
    voxel_hrf_parameters,
)
from tests.voxel_simulation import simulate  # noqa: E402


def _auc(score, truth):
    from scipy.stats import rankdata

    s = np.nan_to_num(score, nan=-np.inf)
    r = rankdata(s)
    n1, n0 = truth.sum(), (~truth).sum()
    return float((r[truth].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _nilearn_z(Y, events, tr, shape, condition):
    import nibabel as nib
    from nilearn.glm.first_level import FirstLevelModel

    imgs = [nib.Nifti1Image(y.T.reshape(*shape, -1).astype(np.float32), np.eye(4)) for y in Y]
    mask = nib.Nifti1Image(np.ones(shape, np.uint8), np.eye(4))
    flm = FirstLevelModel(t_r=tr, hrf_model="spm", drift_model="cosine", noise_model="ar1",
                          mask_img=mask, minimize_memory=True)
    flm.fit(imgs, events=events)
    return flm.compute_contrast(condition, output_type="z_score").get_fdata().ravel()


def accuracy(quick: bool, amplitude: float = 0.5, seed: int = 11) -> dict:
    from bids_hrf.hrf.jde.app import estimate_jde_vem
    from bids_hrf.hrf.library import HRFLibrary
    from bids_hrf.hrf.r1glm import RankOneGLM
    from bids_hrf.hrf.rfir import RegularizedFIR

    n_par, vpp = (6, 64) if quick else (20, 100)
    sim = simulate(n_parcels=n_par, voxels_per_parcel=vpp, n_runs=3, n_scans=300,
                   noise_sd=1.0, rho=0.3, active_fraction=0.6, amplitude=amplitude, seed=seed)
    Y, ev, ft = sim.Y[:2], sim.events[:2], sim.frame_times[:2]
    d = make_event_design(ev, ft, fir_duration=24.0)
    act = sim.amplitudes[0] > 0
    truth = sim.true_hrfs(d.time)
    true_ttp = voxel_hrf_parameters(truth, d.time)["time_to_peak"]
    out: dict = {"n_voxels": int(act.size), "n_active": int(act.sum())}
    fits = {
        "rfir": RegularizedFIR(shared_hrf=True),
        "r1glm": RankOneGLM(),
        "library": HRFLibrary(),
    }
    hrfs = {}
    for name, est in fits.items():
        t0 = time.perf_counter()
        if name == "library":
            est.fit(Y, d, parcels=sim.parcels)
        else:
            est.fit(Y, d)
        h = est.voxel_hrf()[0] if name == "rfir" else est.hrfs_
        hrfs[name] = h
        ttp = voxel_hrf_parameters(h, d.time)["time_to_peak"]
        corr = np.array([np.corrcoef(h[:, j], truth[:, j])[0, 1] for j in np.flatnonzero(act)])
        err = np.abs(ttp - true_ttp)[act]
        z = voxel_glm(Y, d, h, rho=est.rho_)["z"][0]
        r2 = est.insample_r2_ if name == "library" else est.r2_
        hp = pool_hrfs(h, sim.parcels, np.clip(r2, 0, None))[2]
        zp = voxel_glm(Y, d, hp, rho=est.rho_)["z"][0]
        out[name] = {"fit_s": round(time.perf_counter() - t0, 2),
                     "ttp_err_median": float(np.nanmedian(err)),
                     "ttp_err_p90": float(np.nanpercentile(err, 90)),
                     "hrf_corr_median": float(np.nanmedian(corr)),
                     "auc_own_hrf": _auc(z, act),
                     "auc_parcel_pooled_hrf": _auc(zp, act)}
    # canonical (nilearn) and parcel-wise JDE-VEM
    shape = (n_par, vpp, 1)
    out["canonical_nilearn"] = {"auc": _auc(_nilearn_z(Y, ev, sim.tr, shape, "c0"), act)}
    ijk = np.stack(np.unravel_index(np.arange(act.size), shape), axis=1)
    labels = sim.parcels + 1
    jde = estimate_jde_vem(Y, ev, ft, sim.tr, labels, {p + 1: f"p{p}" for p in range(n_par)},
                           ijk)
    jh = np.stack([np.interp(d.time, jde.time, jde.hrfs[:, p]) for p in range(n_par)], 1)
    hj = jh[:, sim.parcels]
    ttp = voxel_hrf_parameters(hj, d.time)["time_to_peak"]
    out["jde_vem_parcel"] = {
        "ttp_err_median": float(np.nanmedian(np.abs(ttp - true_ttp)[act])),
        "hrf_corr_median": float(np.nanmedian(
            [np.corrcoef(hj[:, j], truth[:, j])[0, 1] for j in np.flatnonzero(act)])),
        "auc_parcel_hrf": _auc(voxel_glm(Y, d, hj)["z"][0], act)}
    # library: cross-validated vs in-sample choice, judged on run 3
    d3 = make_event_design(sim.events[2:], sim.frame_times[2:], fir_duration=24.0)
    variants = (("cv", fits["library"]), ("cv_noshrink", HRFLibrary(shrinkage=False)),
                ("insample", HRFLibrary(cv=False)),
                ("insample_noshrink", HRFLibrary(cv=False, shrinkage=False)))
    for tag, est in variants:
        if tag != "cv":
            est.fit(Y, d, parcels=sim.parcels)
        r2 = est.score(sim.Y[2:], d3)
        ttp = voxel_hrf_parameters(est.hrfs_, d.time)["time_to_peak"]
        z = voxel_glm(Y, d, est.hrfs_, rho=est.rho_)["z"][0]
        out[f"library_{tag}"] = {"run3_r2_active_mean": float(r2[act].mean()),
                                 "run3_r2_all_mean": float(r2.mean()),
                                 "ttp_err_median": float(np.nanmedian(
                                     np.abs(ttp - true_ttp)[act])),
                                 "auc_own_hrf": _auc(z, act)}
    w = np.array(list(fits["library"].pooling_.values()))
    out["library_cv"]["pooling_weights"] = {str(k): int(n) for k, n in
                                            zip(*np.unique(w, return_counts=True), strict=True)}
    return out


_CHILD = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[3])
kind, path = sys.argv[1], sys.argv[2]
d = np.load(path, allow_pickle=True)
Y = [d["Y0"], d["Y1"]]
import pandas as pd
ev = [pd.DataFrame(e) for e in d["events"]]
ft = [np.arange(Y[0].shape[0]) * 2.0] * 2
if kind != "nilearn":
    from bids_hrf.hrf._voxel import make_event_design, voxel_glm
    from bids_hrf.hrf.library import HRFLibrary
    from bids_hrf.hrf.r1glm import RankOneGLM
    from bids_hrf.hrf.rfir import RegularizedFIR
t0 = time.perf_counter()
if kind == "nilearn":
    import nibabel as nib
    from nilearn.glm.first_level import FirstLevelModel
    shape = tuple(d["shape"])
    imgs = [nib.Nifti1Image(y.T.reshape(*shape, -1), np.eye(4)) for y in Y]
    mask = nib.Nifti1Image(np.ones(shape, np.uint8), np.eye(4))
    t0 = time.perf_counter()
    flm = FirstLevelModel(t_r=2.0, hrf_model="spm", drift_model="cosine", noise_model="ar1",
                          mask_img=mask, minimize_memory=True).fit(imgs, events=ev)
    for c in ("c0", "c1"):
        flm.compute_contrast(c, output_type="z_score")
else:
    des = make_event_design(ev, ft, fir_duration=24.0)
    if kind == "rfir":
        est = RegularizedFIR(shared_hrf=True).fit(Y, des)
        h = est.voxel_hrf()[0]
    elif kind == "r1glm":
        est = RankOneGLM().fit(Y, des)
        h = est.hrfs_
    else:
        est = HRFLibrary().fit(Y, des, parcels=d["parcels"])
        h = est.hrfs_
    voxel_glm(Y, des, h, rho=est.rho_)
print(json.dumps({"wall_s": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def speed(quick: bool) -> dict:
    n_par, vpp = (40, 250) if quick else (280, 250)
    shape = (n_par, 25, 10)
    sim = simulate(n_parcels=n_par, voxels_per_parcel=vpp, n_runs=2, n_scans=300,
                   noise_sd=1.0, seed=5)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = {"n_voxels": n_par * vpp, "n_scans": "2 x 300"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        np.savez(path, Y0=sim.Y[0].astype(np.float32), Y1=sim.Y[1].astype(np.float32),
                 events=np.array([e.to_dict("list") for e in sim.events], dtype=object),
                 parcels=sim.parcels, shape=np.array(shape))
        del sim
        for kind in ("nilearn", "library", "r1glm", "rfir"):
            proc = subprocess.run([sys.executable, "-c", _CHILD, kind, str(path),
                                   str(HERE.parents[1])], capture_output=True, text=True,
                                  env=env)
            if proc.returncode:
                raise RuntimeError(proc.stderr[-3000:])
            out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(kind, out[kind], flush=True)
    base = out["nilearn"]["wall_s"]
    for kind in ("library", "r1glm", "rfir"):
        out[kind]["ratio_vs_nilearn"] = round(out[kind]["wall_s"] / base, 2)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["accuracy", "speed", "all"], default="all")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--amplitude", type=float, default=0.5,
                    help="accuracy part: mean response peak (noise sd 1)")
    ap.add_argument("--seed", type=int, default=11, help="accuracy part: simulation seed")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    res = {}
    if args.part in ("accuracy", "all"):
        res["accuracy"] = accuracy(args.quick, args.amplitude, args.seed)
        print(json.dumps(res["accuracy"], indent=1), flush=True)
    if args.part in ("speed", "all"):
        res["speed"] = speed(args.quick)
        print(json.dumps(res["speed"], indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
