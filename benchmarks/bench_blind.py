"""Paradigm-free parcel HRFs vs rsHRF 1.8.0 and the canonical HRF on simulated rest data.

Data: :func:`bids_hrf.datasets.rest_sim.simulate_rest` (per parcel a known HRF, time to peak
and width drawn independently, HRF family ``gamma`` or inverse ``logit``, sparse spontaneous
events shared by the parcel's voxels, AR(1) noise, a parcel-shared 0.01-0.1 Hz fluctuation,
drifts, motion artefacts), cleaned as the app does (motion regressors, detrending, 0.01 Hz
cosine high-pass; :func:`~bids_hrf.datasets.rest_sim.clean_runs`).

Methods, all on the same cleaned data of one participant (16 parcels x 20 voxels, 2 runs x
300 scans, TR 2 s):

* ``canonical``: SPM's canonical HRF, not estimated;
* ``parcel``: :class:`bids_hrf.hrf.blind.parcel.ParcelBlindHRF` (both runs, all voxels; all
  parcels of the participant in one batch, ``fit_parcels``);
* ``previous``: :func:`bids_hrf.hrf.blind.estimator.estimate_blind_hrf` per run on the voxels,
  runs averaged (what ``--estimate-hrf`` did before; slow, ``--previous`` to include it);
* ``rshrf-canon2dd``, ``rshrf-gamma``: rsHRF 1.8.0 (its own defaults: 0.01-0.08 Hz band-pass,
  point-process events at 1 SD, lag search 4-8 s, AR(1) GLM) on each parcel's mean series,
  per run, the two runs averaged. rsHRF runs in a child process of its own virtualenv
  (``--rshrf-python``, default ``/tmp/a15-blind/rshrf-venv/bin/python``; create it with
  ``python -m venv DIR && DIR/bin/pip install rshrf==1.8.0``).

Metrics per parcel: correlation of the estimated with the true HRF over 0-24 s (0.1 s grid),
absolute errors of time to peak and FWHM (both measured by
:func:`bids_hrf.hrf.params.hrf_parameters` on the curves), and across the parcels of all
datasets the correlation of estimated with true time to peak. Times: estimation only (no
imports, no I/O), per participant.

Usage::

    python benchmarks/bench_blind.py                 # default SNR, 5 seeds + SNR curve
    python benchmarks/bench_blind.py --quick         # 2 seeds, no curve
    python benchmarks/bench_blind.py --json out.json --figure docs/img/blind_snr.png
    python benchmarks/bench_blind.py --from-json out.json --figure docs/img/blind_snr.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from bids_hrf.datasets.rest_sim import clean_runs, simulate_rest
from bids_hrf.hrf._hrf_matrix import canonical_hrf
from bids_hrf.hrf.blind.parcel import ParcelBlindHRF
from bids_hrf.hrf.params import hrf_parameters

GRID = np.arange(0.0, 24.0 + 1e-9, 0.1)
RSHRF_CHILD = textwrap.dedent(
    """
    import sys, time, warnings
    warnings.filterwarnings("ignore")
    import numpy as np
    from rsHRF import basis_functions, processing, utils
    from rsHRF.utils.default_parameters import default_parameters
    data = np.load(sys.argv[1])
    out = {}
    for est in ("canon2dd", "gamma"):
        para = {k: (v.copy() if hasattr(v, "copy") else v)
                for k, v in default_parameters.items()}
        para["estimation"] = est
        para["TR"] = float(data["tr"])
        para["dt"] = para["TR"] / para["T"]
        para["lag"] = np.arange(np.trunc(para["min_onset_search"] / para["dt"]),
                                np.trunc(para["max_onset_search"] / para["dt"]) + 1, dtype=int)
        utils.hrf_estimation.apply_localK_default(para)
        hrfs, elapsed = [], 0.0
        for key in sorted(k for k in data.files if k.startswith("run")):
            sig = data[key]
            t0 = time.perf_counter()
            sig = processing.rest_filter.rest_IdealFilter(sig, para["TR"], para["passband"])
            bf = basis_functions.basis_functions.get_basis_function(sig.shape, para)
            beta, _ = utils.hrf_estimation.compute_hrf(sig, para, [], 1, bf=bf)
            hrfs.append(bf @ beta[: bf.shape[1], :])
            elapsed += time.perf_counter() - t0
        out[est] = np.mean(hrfs, axis=0)
        out[est + "_time"] = elapsed
        out[est + "_dt"] = para["dt"]
    np.savez(sys.argv[2], **out)
    """
)


def _on_grid(time_axis: np.ndarray, hrf: np.ndarray) -> np.ndarray:
    h = np.interp(GRID, time_axis, hrf, right=0.0)
    peak = h[np.argmax(np.abs(h))]
    return h / peak if peak != 0 else h


def run_rshrf(python: str, series: list[np.ndarray], tr: float) -> dict:
    """rsHRF canon2dd and gamma HRFs (on GRID, one column per parcel) and times (s)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, tr=tr, **{f"run{i}": s for i, s in enumerate(series)})
        script = Path(tmp) / "child.py"
        script.write_text(RSHRF_CHILD)
        subprocess.run([python, str(script), str(src), str(dst)], check=True,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
        res = np.load(dst)
        out = {}
        for est in ("canon2dd", "gamma"):
            h = res[est]
            t = np.arange(h.shape[0]) * float(res[est + "_dt"])
            out["rshrf-" + est] = np.column_stack([_on_grid(t, h[:, p]) for p in range(h.shape[1])])
            out["rshrf-" + est + "_time"] = float(res[est + "_time"])
        return out


def one_dataset(seed: int, snr: float, rate: float, family: str, rshrf: str | None,
                previous: bool) -> dict:
    """Simulate one participant and estimate its parcel HRFs with every method."""
    sim = simulate_rest(n_parcels=16, n_voxels=20, n_runs=2, n_scans=300, snr=snr,
                        event_rate=rate, family=family, seed=seed)
    clean = clean_runs(sim)
    parcels = np.unique(sim.labels)
    truth = np.column_stack([_on_grid(sim.time, sim.hrfs[:, p]) for p in range(parcels.size)])
    est = {"canonical": np.repeat(_on_grid(GRID, canonical_hrf(GRID))[:, None], parcels.size, 1)}
    times = {}
    t0 = time.perf_counter()
    cols, sd_t, sd_f, ident = [], [], [], []
    fits = ParcelBlindHRF(sim.tr).fit_parcels(clean, sim.labels)  # all parcels in one batch
    for p in parcels:
        fit = fits[int(p)]
        cols.append(_on_grid(fit.time_, fit.hrf_))
        sd_t.append(fit.ttp_sd_)
        sd_f.append(fit.fwhm_sd_)
        ident.append(fit.identifiable_)
    times["parcel"] = time.perf_counter() - t0
    est["parcel"] = np.column_stack(cols)
    if previous:
        from bids_hrf.hrf.blind.estimator import estimate_blind_hrf

        t0 = time.perf_counter()
        cols = []
        for p in parcels:
            m = sim.labels == p
            hs = [estimate_blind_hrf(c[:, m], sim.tr) for c in clean]
            cols.append(_on_grid(hs[0].time, np.mean([h.hrf for h in hs], axis=0)))
        times["previous"] = time.perf_counter() - t0
        est["previous"] = np.column_stack(cols)
    if rshrf:
        means = [np.column_stack([c[:, sim.labels == p].mean(axis=1) for p in parcels])
                 for c in clean]
        res = run_rshrf(rshrf, means, sim.tr)
        for key in ("rshrf-canon2dd", "rshrf-gamma"):
            est[key] = res[key]
            times[key] = res[key + "_time"]
    true_par = hrf_parameters(truth, GRID)
    rows = {}
    for name, h in est.items():
        par = hrf_parameters(h, GRID)
        rows[name] = {
            "corr": [float(np.corrcoef(h[:, i], truth[:, i])[0, 1]) for i in range(h.shape[1])],
            "ttp": par.time_to_peak.tolist(),
            "fwhm": par.fwhm.tolist(),
        }
    return {"seed": seed, "snr": snr, "rate": rate, "family": family, "times": times,
            "true_ttp": true_par.time_to_peak.tolist(), "true_fwhm": true_par.fwhm.tolist(),
            "family_per_parcel": sim.family, "methods": rows,
            "parcel_ttp_sd": sd_t, "parcel_fwhm_sd": sd_f, "parcel_identifiable": ident}


def summarise(results: list[dict]) -> dict:
    """Medians over parcels of all datasets, per method."""
    out = {}
    for name in results[0]["methods"]:
        corr = np.concatenate([r["methods"][name]["corr"] for r in results])
        ttp = np.concatenate([r["methods"][name]["ttp"] for r in results])
        fwhm = np.concatenate([r["methods"][name]["fwhm"] for r in results])
        tt = np.concatenate([r["true_ttp"] for r in results])
        tf = np.concatenate([r["true_fwhm"] for r in results])
        ok = np.isfinite(ttp)
        out[name] = {
            "corr_median": float(np.median(corr)),
            "corr_min": float(np.min(corr)),
            "ttp_err_median": float(np.nanmedian(np.abs(ttp - tt))),
            "fwhm_err_median": float(np.nanmedian(np.abs(fwhm - tf))),
            "ttp_corr_across": (float(np.corrcoef(ttp[ok], tt[ok])[0, 1])
                                if name != "canonical" else float("nan")),
            "time_per_participant": float(np.mean([r["times"].get(name, np.nan)
                                                   for r in results])),
            "n": int(corr.size),
        }
    can = np.concatenate([r["methods"]["canonical"]["corr"] for r in results])
    for name in out:
        c = np.concatenate([r["methods"][name]["corr"] for r in results])
        out[name]["n_below_0.7_where_canonical_above_0.9"] = int(np.sum((c < 0.7) & (can > 0.9)))
    return out


def print_table(title: str, summary: dict) -> None:
    print(f"\n{title}")
    print("| method | HRF corr (median / min) | TTP error | FWHM error | corr(TTP est, true) "
          "| corr<0.7 where canonical>0.9 | time / participant |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, s in summary.items():
        print(f"| {name} | {s['corr_median']:.3f} / {s['corr_min']:.2f} | "
              f"{s['ttp_err_median']:.2f} s | {s['fwhm_err_median']:.2f} s | "
              f"{s['ttp_corr_across']:.2f} | {s['n_below_0.7_where_canonical_above_0.9']} | "
              f"{s['time_per_participant']:.2f} s |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--previous", action="store_true",
                        help="include the previous alternating estimator (slow)")
    parser.add_argument("--rshrf-python", default="/tmp/a15-blind/rshrf-venv/bin/python")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--from-json", type=Path,
                        help="only redraw --figure from the JSON of an earlier run")
    args = parser.parse_args(argv)
    if args.from_json:
        plot_curve(json.loads(args.from_json.read_text())["snr_curve"], args.figure)
        return 0
    rshrf = args.rshrf_python if Path(args.rshrf_python).exists() else None
    if rshrf is None:
        print(f"rsHRF not found at {args.rshrf_python}: rsHRF columns left out")
    seeds = range(2) if args.quick else range(5)
    report = {}
    default = [one_dataset(s, 1.0, 3.0, "mixed", rshrf, args.previous) for s in seeds]
    report["default"] = summarise(default)
    print_table("Default (SNR 1, 3 events/min, mixed families)", report["default"])
    if not args.quick:
        for fam in ("gamma", "logit"):
            res = [one_dataset(s, 1.0, 3.0, fam, rshrf, False) for s in range(3)]
            report[f"family-{fam}"] = summarise(res)
            print_table(f"Family {fam} only (SNR 1, 3 seeds)", report[f"family-{fam}"])
        for rate in (1.5, 6.0):
            res = [one_dataset(s, 1.0, rate, "mixed", rshrf, False) for s in range(3)]
            report[f"rate-{rate}"] = summarise(res)
            print_table(f"{rate} events/min (SNR 1, 3 seeds)", report[f"rate-{rate}"])
        report["snr_curve"] = {}
        for snr in (0.25, 0.5, 1.0, 2.0, 4.0):
            res = [one_dataset(s, snr, 3.0, "mixed", rshrf, False) for s in range(3)]
            report["snr_curve"][snr] = summarise(res)
            print_table(f"SNR {snr} (3 seeds)", report["snr_curve"][snr])
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.figure and "snr_curve" in report:
        plot_curve(report["snr_curve"], args.figure)
    return 0


def plot_curve(curve: dict, path: Path) -> None:
    """HRF correlation, TTP and FWHM errors against SNR, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = {float(k): v for k, v in curve.items()}
    snrs = sorted(curve)
    methods = list(curve[snrs[0]])
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for key, ax, label in (("corr_median", axes[0], "median HRF correlation"),
                           ("ttp_err_median", axes[1], "median |TTP error| (s)"),
                           ("fwhm_err_median", axes[2], "median |FWHM error| (s)"),
                           ("ttp_corr_across", axes[3], "corr(estimated, true TTP)")):
        for m in methods:
            ax.plot(snrs, [curve[s][m][key] for s in snrs], marker="o", label=m)
        ax.set_xscale("log")
        ax.set_xticks(snrs, [f"{v:g}" for v in snrs])
        ax.minorticks_off()
        ax.set_xlabel("SNR (voxel)")
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle("benchmarks/bench_blind.py: paradigm-free parcel HRFs vs SNR", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
