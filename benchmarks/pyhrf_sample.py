"""The seed's PyHRF example on PyHRF's real sample data, with figures for docs/pyhrf.md.

Runs ``bids-hrf-jde 2.4 subj0_parcellation.nii.gz paradigm_loc.csv subj0_bold_session0.nii.gz``
(the command of PyHRF's documentation, with a contrasts file), checks the result against an
independent nilearn GLM (canonical HRF, same voxels) and writes:

- ``docs/img/pyhrf_sample_hrfs.png``: the HRF of each parcel (JDE-VEM, +/- 2 SD) with the
  canonical HRF;
- ``docs/img/pyhrf_sample_nrls.png``: mean NRL per condition and parcel, and nilearn's
  mean GLM effect (canonical HRF, 4th-order polynomial drifts) on the same voxels;
- a Markdown table of the numbers (printed).

Data: ``bash .ci/pyhrf_data.sh DIR`` (fetches PyHRF 0.5.0.post1's sdist from PyPI).
Run: ``python benchmarks/pyhrf_sample.py DIR [--out /tmp/pyhrf_sample]``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

AUDIO = ["calculaudio", "clicDaudio", "clicGaudio", "phraseaudio"]
VIDEO = ["calculvideo", "clicDvideo", "clicGvideo", "phrasevideo"]
CONTRASTS = {"Audio-Video": "clicDaudio-clicDvideo",
             "audio-video": " + ".join(AUDIO) + " - " + " - ".join(VIDEO)}
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def run_jde(data: Path, out: Path) -> float:
    """Run bids-hrf-jde as the seed does; return the wall time (s)."""
    from bids_hrf.cli.jde import main

    out.mkdir(parents=True, exist_ok=True)
    (out / "contrasts.json").write_text(json.dumps(CONTRASTS))
    start = time.time()
    code = main(["2.4", str(data / "subj0_parcellation.nii.gz"), str(data / "paradigm_loc.csv"),
                 str(data / "subj0_bold_session0.nii.gz"), "-o", str(out / "jde"),
                 "-c", str(out / "contrasts.json")])
    if code != 0:
        raise SystemExit(f"bids-hrf-jde failed with exit code {code}")
    return time.time() - start


def nilearn_effects(data: Path) -> pd.DataFrame:
    """Mean GLM effect (percent signal change) per condition and parcel with nilearn."""
    from nilearn.glm.first_level import FirstLevelModel

    from bids_hrf.io.paradigm import read_paradigm_csv, session_events

    bold = nib.load(data / "subj0_bold_session0.nii.gz")
    bold = nib.Nifti1Image(np.asarray(bold.dataobj), bold.affine)  # header TR is wrong
    parcels = nib.load(data / "subj0_parcellation.nii.gz")
    labels = np.asarray(parcels.dataobj)
    mask = nib.Nifti1Image((labels > 0).astype(np.uint8), parcels.affine)
    events = session_events(read_paradigm_csv(data / "paradigm_loc.csv"), 0)
    glm = FirstLevelModel(t_r=2.4, hrf_model="spm", drift_model="polynomial", drift_order=4,
                          mask_img=mask, signal_scaling=0, minimize_memory=False)
    with warnings.catch_warnings():  # conditions of the paradigm: nilearn lists them
        warnings.simplefilter("ignore")
        glm.fit(bold, events=events)
    rows = {}
    for cond in sorted(events["trial_type"].unique()):
        eff = np.asarray(glm.compute_contrast(cond, output_type="effect_size").dataobj)
        rows[cond] = {p: float(eff[labels == p].mean()) for p in (1, 2)}
    z = np.asarray(glm.compute_contrast(CONTRASTS["audio-video"].replace(" ", ""),
                                        output_type="z_score").dataobj)
    rows["audio-video (z)"] = {p: float(z[labels == p].mean()) for p in (1, 2)}
    return pd.DataFrame(rows).T


def figures(out: Path, nl: pd.DataFrame) -> pd.DataFrame:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bids_hrf.hrf.basis import canonical_hrf

    jde = out / "jde"
    hrf = pd.read_csv(jde / "bids" / "desc-jdevem_hrf.tsv", sep="\t")
    params = pd.read_csv(jde / "bids" / "desc-jdevem_hrfparams.tsv", sep="\t")
    var = np.asarray(nib.load(jde / "jde_vem_hrf_variance_mapped.nii").dataobj)
    roi = np.asarray(nib.load(jde / "jde_vem_roi_mask.nii").dataobj)
    nrls = np.asarray(nib.load(jde / "jde_vem_nrls.nii").dataobj)
    con = np.asarray(nib.load(jde / "jde_vem_contrasts.nii").dataobj)
    settings = json.loads((jde / "jde_vem_processing.json").read_text())
    conditions = settings["conditions"]
    t = hrf["time"].to_numpy()
    ct, cv = canonical_hrf("spm", 0.1, float(t[-1]))
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=True)
    for ax, p in zip(axes, (1, 2), strict=True):
        h = hrf[str(p)].to_numpy()
        sd = np.sqrt(var[roi == p][0])
        ax.fill_between(t, h - 2 * sd, h + 2 * sd, alpha=0.25)
        ax.plot(t, h, "o-", ms=3, label="JDE-VEM")
        ax.plot(ct, cv * h.max() / cv.max(), "k--", lw=1, label="canonical (scaled)")
        ttp = float(params.loc[params["parcel"] == p, "time_to_peak"].iloc[0])
        ax.axvline(ttp, color="C1", lw=1)
        ax.set_title(f"parcel {p}: time to peak {ttp:.2f} s")
        ax.set_xlabel("time after onset (s)")
        ax.axhline(0, color="grey", lw=0.5)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(DOCS_IMG / "pyhrf_sample_hrfs.png", dpi=90)
    plt.close(fig)
    table = pd.DataFrame({f"JDE parcel {p}": nrls[roi == p].mean(0) for p in (1, 2)},
                         index=conditions)
    for p in (1, 2):
        table[f"nilearn parcel {p}"] = [nl.loc[c, p] for c in conditions]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    x = np.arange(len(conditions))
    for ax, who, unit in zip(axes, ("JDE", "nilearn"), (
            "JDE-VEM NRL (% signal change)", "nilearn GLM effect (regressor units)"),
            strict=True):
        for k, p in enumerate((1, 2)):
            ax.bar(x + 0.4 * k - 0.2, table[f"{who} parcel {p}"], 0.4, label=f"parcel {p}")
        ax.set_xticks(x, conditions, rotation=40, ha="right", fontsize=7)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(unit, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(DOCS_IMG / "pyhrf_sample_nrls.png", dpi=90)
    plt.close(fig)
    corr = [np.corrcoef(table[f"JDE parcel {p}"], table[f"nilearn parcel {p}"])[0, 1]
            for p in (1, 2)]
    for i, name in enumerate(CONTRASTS):
        table.loc[f"contrast {name}"] = [con[roi == p][:, i].mean() for p in (1, 2)] + [
            np.nan, np.nan]
    table.loc["time to peak (s)"] = list(params["time_to_peak"]) + [np.nan, np.nan]
    table.loc["corr(JDE NRL, nilearn effect) over conditions"] = corr + [np.nan, np.nan]
    table.loc["nilearn audio-video mean z"] = [np.nan, np.nan] + [
        nl.loc["audio-video (z)", p] for p in (1, 2)]
    return table


def main(argv=None) -> None:
    """Run the example, write the figures, print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with PyHRF's sample files")
    parser.add_argument("--out", type=Path, default=Path("/tmp/pyhrf_sample"))
    args = parser.parse_args(argv)
    wall = run_jde(args.data, args.out)
    table = figures(args.out, nilearn_effects(args.data))
    print(f"bids-hrf-jde wall time: {wall:.1f} s")
    cols = list(table.columns)
    print("| | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, row in table.iterrows():
        cells = ["" if pd.isna(v) else f"{v:.3g}" for v in row]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
