"""JDE-VEM in the app: the generated `small` dataset through `bids-hrf --hrf-method jde-vem`.

Generates ``python -m bids_hrf.datasets DIR --size small`` (seed 0: 2 subjects x 2 runs x
78 kept scans, TR 2 s, 10 parcels, 2 conditions, physiological noise, global signal and
AR(1) noise), runs the participant level of both subjects once per HRF smoothness setting
(default = data-driven, and PyHRF's fixed rate 1000, this project's previous default), with
the contrast ``audio - visual``, and compares the outputs with the simulation truth:

- HRF correlation with the true HRF and time-to-peak error, active parcels (range);
- roughness of the active parcels' HRFs (mean squared second difference of the unit-norm
  HRF relative to the canonical SPM HRF's on the same grid; median);
- PPM > 0.95 in truth-active voxels and outside them (audio / visual);
- GLM with the JDE HRFs (``desc-jdevemHrf`` fixed-effects z): z > 3.1 inside / outside;
- the parcels flagged silent (truth: parcels without activation in that participant's
  group).

Usage::

    python benchmarks/bench_jde_app.py [--work /tmp/jde_app] [--nprocs 2]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

SPACE = "MNI152NLin2009cAsym"
CONDITIONS = ("audio", "visual")
SETTINGS = {"auto (default)": [], "1000 (PyHRF)": ["--jde-hrf-hyperprior", "1000"]}


def _data(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=float)


def evaluate(ds, out: Path, sub: str) -> dict:
    from bids_hrf.hrf.jde._design import canonical_hrf

    groups = pd.read_csv(ds.bids_dir / "participants.tsv", sep="\t").set_index(
        "participant_id")["group"]
    group = str(groups[f"sub-{sub}"])
    pfx = out / f"sub-{sub}" / "func" / f"sub-{sub}_task-localizer_space-{SPACE}_"
    hrf = pd.read_csv(f"{pfx}seg-Synthetic_desc-jdevem_hrf.tsv", sep="\t")
    params = pd.read_csv(f"{pfx}seg-Synthetic_desc-jdevem_hrfparams.tsv",
                         sep="\t").set_index("parcel")
    truth = ds.truth.hrf_by_group[group]
    active = {p for c in CONDITIONS for p in ds.truth.active_parcels[c]}
    planted = ds.truth.group_effects.get("activation", {})
    if group in planted.get("active_in", []):  # a parcel active in this group only
        active.add(planted["parcel"])
    active = sorted(active)
    t = hrf["time"].to_numpy()
    ref = canonical_hrf(t)
    ref_rough = np.mean(np.diff(ref / np.linalg.norm(ref), 2) ** 2)
    corr, ttp_err, rough = [], [], []
    for name in active:
        h = hrf[name].to_numpy()
        corr.append(np.corrcoef(np.interp(t, truth["time"], truth[name]), h)[0, 1])
        ttp_err.append(abs(params.loc[name, "time_to_peak"]
                           - ds.truth.time_to_peak_by_group[group][name]))
        rough.append(np.mean(np.diff(h / np.linalg.norm(h), 2) ** 2) / ref_rough)
    row = {"corr": (min(corr), max(corr)), "ttp_err": (min(ttp_err), max(ttp_err)),
           "roughness": float(np.median(rough))}
    for c in CONDITIONS:
        act = ds.truth.active_voxels_by_group[group][c]
        ppm = _data(Path(f"{pfx}contrast-{c}_stat-ppm_desc-jdevem_statmap.nii.gz"))
        z = _data(Path(f"{pfx}contrast-{c}_stat-z_desc-jdevemHrf_statmap.nii.gz"))
        brain = z != 0
        row[f"ppm_in_{c}"] = float(np.mean(ppm[brain & act] > 0.95))
        row[f"ppm_out_{c}"] = float(np.mean(ppm[brain & ~act] > 0.95))
        row[f"z_in_{c}"] = float(np.mean(z[brain & act] > 3.1))
        row[f"z_out_{c}"] = float(np.mean(z[brain & ~act] > 3.1))
    silent = set(params.index[params["silent"].astype(bool)])
    row["silent_active"] = len(silent & set(active))
    row["silent_inactive"] = len(silent - set(active))
    row["n_active"], row["n_inactive"] = len(active), len(params) - len(active)
    return row


def main(argv=None):
    from bids_hrf.cli.run import main as bids_hrf
    from bids_hrf.datasets import make_synthetic_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_jde_app"))
    ap.add_argument("--nprocs", type=int, default=2)
    args = ap.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    ds = make_synthetic_dataset(args.work / "bids", size="small", seed=0)
    contrasts = args.work / "contrasts.json"
    contrasts.write_text('{"audio - visual": "audio - visual"}')
    results = {}
    for name, extra in SETTINGS.items():
        out = args.work / ("out_" + name.split()[0])
        t0 = time.perf_counter()
        code = bids_hrf([str(ds.bids_dir), str(out), "participant", "--atlas",
                         str(ds.atlas_img), "--hrf-method", "jde-vem", "--contrasts",
                         str(contrasts), "--no-report", "--nprocs", str(args.nprocs),
                         "-w", str(args.work / ("work_" + name.split()[0])), *extra])
        assert code == 0, f"bids-hrf failed ({code}) for {name}"
        results[name] = {s: evaluate(ds, out, s) for s in ds.subjects}
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)

    def rng(v, fmt):
        return f"{v[0]:{fmt}}-{v[1]:{fmt}}"

    subs = ds.subjects
    print("\n| | " + " | ".join(f"sub-{s}: {n}" for n in results for s in subs) + " |")
    print("| --- " * (1 + len(results) * len(subs)) + "|")
    lines = [
        ("HRF correlation with the truth, active parcels", lambda r: rng(r["corr"], ".3f")),
        ("time-to-peak error (s), active parcels", lambda r: rng(r["ttp_err"], ".2f")),
        ("HRF roughness vs canonical (median)", lambda r: f"{r['roughness']:.2f}"),
        ("PPM > 0.95 in truth-active voxels (audio / visual)",
         lambda r: f"{100 * r['ppm_in_audio']:.0f} % / {100 * r['ppm_in_visual']:.0f} %"),
        ("PPM > 0.95 outside them",
         lambda r: f"{100 * r['ppm_out_audio']:.1f} % / {100 * r['ppm_out_visual']:.1f} %"),
        ("GLM with the JDE HRFs, z > 3.1 in active voxels",
         lambda r: f"{100 * r['z_in_audio']:.1f} % / {100 * r['z_in_visual']:.1f} %"),
        ("same, z > 3.1 outside",
         lambda r: f"{100 * r['z_out_audio']:.1f} % / {100 * r['z_out_visual']:.1f} %"),
        ("parcels flagged silent: active / inactive in truth",
         lambda r: f"{r['silent_active']}/{r['n_active']} / "
                   f"{r['silent_inactive']}/{r['n_inactive']}"),
    ]
    for label, fmt in lines:
        print(f"| {label} | " + " | ".join(fmt(results[n][s]) for n in results for s in subs)
              + " |")


if __name__ == "__main__":
    main()
