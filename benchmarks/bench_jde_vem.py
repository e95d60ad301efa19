"""Benchmark JDE-VEM (bids_hrf) against nilearn's FirstLevelModel on the same synthetic data.

Full size: 200 parcels of 8x8x5 voxels (64,000 voxels on a 40x40x40 grid), 2 runs x 300
scans, TR 2 s, 3 conditions; each parcel has its own HRF (time to peak 4-7 s), half-block
activations per condition, AR(1) noise and drifts. Each method runs in its own child
process whose peak memory (the process tree's summed RSS, sampled every 0.1 s with psutil)
is reported. Then small sweeps time one parcel against voxels, scans and conditions.

Usage::

    python benchmarks/bench_jde_vem.py            # full size (a few minutes)
    python benchmarks/bench_jde_vem.py --quick    # 24 parcels of 4x4x5 voxels, 150 scans/run
    python benchmarks/bench_jde_vem.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tests"))


def make_data(side=5, depth=8, block=(8, 8, 5), n_runs=2, n_scans=300, tr=2.0, n_cond=3,
              noise_sd=1.0, seed=0):
    """Synthetic parcellated data; returns a dict of arrays (voxels in C order of the grid)."""
    import pandas as pd
    from jde_simulation import gamma_hrf, make_events

    rng = np.random.default_rng(seed)
    shape = (side * block[0], side * block[1], depth * block[2])
    ijk = np.argwhere(np.ones(shape, dtype=bool))
    pid = (ijk[:, 0] // block[0]) * side * depth + (ijk[:, 1] // block[1]) * depth + (
        ijk[:, 2] // block[2])
    labels = pid + 1
    n_par = side * side * depth
    ttp = rng.uniform(4.0, 7.0, n_par)
    conds = [f"cond{c}" for c in range(n_cond)]
    local = ijk % np.array(block)
    half = [local[:, c % 3] < block[c % 3] // 2 for c in range(n_cond)]
    active = np.stack([h if c % 2 == 0 else ~h for c, h in enumerate(half)])
    active &= (rng.random(n_par) < 0.7)[pid][None]  # 30 % of parcels silent
    nrl = np.where(active, rng.normal(1.0, 0.2, active.shape), rng.normal(0, 0.05, active.shape))
    Y, evs, fts = [], [], []
    for _ in range(n_runs):
        ft = np.arange(n_scans) * tr
        ev = make_events(rng, n_scans, tr, conds)
        sig = np.zeros((n_scans, ijk.shape[0]), dtype=np.float32)
        for m, c in enumerate(conds):
            on = ev.loc[ev.trial_type == c, "onset"].to_numpy()
            lag = ft[:, None] - on[None, :]
            regs = np.stack([np.where(lag >= 0, gamma_hrf(lag, t), 0).sum(1) for t in ttp], 1)
            sig += (regs[:, pid] * nrl[m][None]).astype(np.float32)
        noise = np.empty_like(sig)
        noise[0] = rng.normal(0, noise_sd, ijk.shape[0])
        for n in range(1, n_scans):
            noise[n] = 0.3 * noise[n - 1] + rng.normal(0, noise_sd * np.sqrt(1 - 0.09),
                                                       ijk.shape[0])
        tt = ft / ft[-1]
        drift = rng.normal(0, 1, ijk.shape[0])[None] * np.cos(np.pi * tt)[:, None]
        Y.append(100.0 + sig + noise + drift.astype(np.float32))
        evs.append(pd.DataFrame(ev))
        fts.append(ft)
    return dict(Y=Y, events=evs, frame_times=fts, labels=labels, ijk=ijk, shape=shape, tr=tr,
                active=active, ttp=ttp, conditions=conds, n_parcels=n_par)


def _auc(truth, score):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth.ravel(), score.ravel()))


def child_jde(cfg):
    from jde_simulation import gamma_hrf

    from bids_hrf.hrf.jde.app import estimate_jde_vem

    d = make_data(**cfg["data"])
    names = {p + 1: f"p{p + 1}" for p in range(d["n_parcels"])}
    t0 = time.perf_counter()
    est = estimate_jde_vem(d["Y"], d["events"], d["frame_times"], d["tr"], d["labels"], names,
                           d["ijk"], n_jobs=cfg["n_jobs"])
    elapsed = time.perf_counter() - t0
    ppm = np.stack([est.voxel_maps[f"contrast-{c}_desc-jdevem_stat-ppm_statmap"]
                    for c in d["conditions"]])
    truth = np.column_stack([gamma_hrf(est.time, t) for t in d["ttp"]])
    r = [np.corrcoef(truth[:, p], est.hrfs[:, p])[0, 1] for p in range(d["n_parcels"])]
    r = np.asarray(r)
    live = np.zeros(d["n_parcels"], dtype=bool)
    live[np.unique(d["labels"][d["active"].any(0)]) - 1] = True
    conv = est.parcel_tables["convergence"].groupby("parcel").iteration.max()
    from bids_hrf.hrf.params import hrf_parameters

    true_ttp = hrf_parameters(truth, est.time).time_to_peak
    ttp_err = np.abs(est.parcel_tables["hrfparams"].time_to_peak.to_numpy() - true_ttp)
    return dict(seconds=elapsed, per_parcel=elapsed / d["n_parcels"] * cfg["n_jobs"],
                auc_ppm=_auc(d["active"], ppm), hrf_corr_median=float(np.median(r)),
                hrf_corr_p10=float(np.percentile(r, 10)),
                hrf_corr_median_active_parcels=float(np.median(r[live])),
                hrf_corr_min_active_parcels=float(np.min(r[live])),
                hrf_corr_median_silent_parcels=float(np.median(r[~live])) if (~live).any()
                else None,
                ttp_abs_err_median_active=float(np.nanmedian(ttp_err[live])),
                ttp_abs_err_p90_active=float(np.nanpercentile(ttp_err[live], 90)),
                n_active_parcels=int(live.sum()),
                iterations_median=float(conv.median()))


def child_nilearn(cfg):
    import nibabel as nib
    from nilearn.glm.first_level import FirstLevelModel

    d = make_data(**cfg["data"])
    shape, ijk = d["shape"], d["ijk"]
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    imgs = []
    for y in d["Y"]:
        vol = np.zeros((*shape, y.shape[0]), dtype=np.float32)
        vol[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = y.T
        imgs.append(nib.Nifti1Image(vol, affine))
    mask = nib.Nifti1Image(np.ones(shape, dtype=np.uint8), affine)
    d["Y"] = None
    t0 = time.perf_counter()
    flm = FirstLevelModel(t_r=d["tr"], hrf_model="spm", drift_model="cosine", high_pass=0.01,
                          noise_model="ar1", mask_img=mask, minimize_memory=True,
                          n_jobs=cfg["n_jobs"], smoothing_fwhm=None, signal_scaling=False)
    flm.fit(imgs, events=d["events"])
    z = np.stack([flm.compute_contrast(c, output_type="z_score").get_fdata(dtype=np.float32)[
        ijk[:, 0], ijk[:, 1], ijk[:, 2]] for c in d["conditions"]])
    elapsed = time.perf_counter() - t0
    return dict(seconds=elapsed, auc_z=_auc(d["active"], z))


def child_sweep(cfg):
    import warnings

    from jde_simulation import simulate_parcel
    from scipy import sparse  # noqa: F401

    from bids_hrf.hrf.jde.vem import JDEVEM

    warnings.simplefilter("ignore")

    def one(shape=(8, 8, 5), n_scans=300, n_cond=3, reps=2):
        sim = simulate_parcel(shape=shape, n_scans=n_scans, seed=1,
                              conditions=tuple(f"c{i}" for i in range(n_cond)))
        best, fixed = np.inf, np.inf
        for _ in range(reps):
            t0 = time.perf_counter()
            est = JDEVEM(tr=2.0).fit(sim.Y, sim.events, sim.frame_times, sim.adjacency)
            best = min(best, time.perf_counter() - t0)
            t0 = time.perf_counter()  # fixed iteration count: cost per iteration + setup
            JDEVEM(tr=2.0, n_iter_min=30, n_iter_max=30).fit(
                sim.Y, sim.events, sim.frame_times, sim.adjacency)
            fixed = min(fixed, time.perf_counter() - t0)
        return dict(seconds=best, iterations=est.n_iter_, seconds_30_iterations=fixed,
                    per_iteration_ms=1e3 * (fixed - best) / (30 - est.n_iter_)
                    if est.n_iter_ < 30 else None,
                    setup_ms=1e3 * (best - (fixed - best) / (30 - est.n_iter_) * est.n_iter_)
                    if est.n_iter_ < 30 else None)

    q = cfg["quick"]
    out = {"voxels": {}, "scans": {}, "conditions": {}}
    for shp in ([(5, 5, 2), (8, 8, 5)] if q else [(5, 5, 2), (8, 8, 2), (8, 8, 5), (10, 10, 8)]):
        out["voxels"][int(np.prod(shp))] = one(shape=shp)
    for n in ([150, 300] if q else [150, 300, 600]):
        out["scans"][n] = one(n_scans=n)
    for c in ([1, 3] if q else [1, 2, 3, 5]):
        out["conditions"][c] = one(n_cond=c)
    return out


def run_child(kind, cfg):
    """Run one measurement in a child process; return its result and peak tree RSS (MB)."""
    import psutil

    proc = subprocess.Popen([sys.executable, str(HERE), "--child", kind, json.dumps(cfg)],
                            stdout=subprocess.PIPE, text=True)
    peak = [0.0]
    stop = threading.Event()

    def sample():
        p = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [p, *p.children(recursive=True)]
                rss = sum(x.memory_info().rss for x in procs if x.is_running())
                peak[0] = max(peak[0], rss / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    stop.set()
    th.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed with code {proc.returncode}")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss_mb"] = peak[0]
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--only-sweep", action="store_true")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, cfg = args.child[0], json.loads(args.child[1])
        res = {"jde": child_jde, "nilearn": child_nilearn, "sweep": child_sweep}[kind](cfg)
        print(json.dumps(res))
        return
    data = (dict(side=3, depth=2, block=(4, 4, 5), n_scans=150) if args.quick
            else dict(side=5, depth=8, block=(8, 8, 5), n_scans=300))
    n_vox = (data["side"] * data["block"][0]) * (data["side"] * data["block"][1]) * (
        data["depth"] * data["block"][2])
    cfg = {"data": data, "n_jobs": args.n_jobs, "quick": args.quick}
    print(f"data: {data['side'] ** 2 * data['depth']} parcels, {n_vox} voxels, 2 runs x "
          f"{data['n_scans']} scans, TR 2 s, 3 conditions; n_jobs={args.n_jobs}", flush=True)
    res = {"config": cfg, "n_voxels": n_vox}
    if args.only_sweep:
        print(json.dumps(run_child("sweep", cfg), indent=1))
        return
    res["nilearn"] = run_child("nilearn", cfg)
    print("nilearn FirstLevelModel:", res["nilearn"], flush=True)
    res["jde"] = run_child("jde", cfg)
    print("JDE-VEM:", res["jde"], flush=True)
    res["ratio"] = res["jde"]["seconds"] / res["nilearn"]["seconds"]
    print(f"time ratio JDE-VEM / nilearn GLM: {res['ratio']:.2f}", flush=True)
    if not args.no_sweep:
        res["sweep"] = run_child("sweep", cfg)
        print("sweeps (one parcel, one process):", json.dumps(res["sweep"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
