"""Build the example atlas shipped in ``bids_hrf/data/`` (listed by ``bids-hrf-datafiles``).

A 100-parcel, 3 mm gray-matter parcellation of the MNI152 2009a symmetric template that
nilearn ships (no download): gray-matter probability > 0.35, each hemisphere cut into 50
spatially compact parcels by k-means on the voxel coordinates (deterministic), the
midline plane given to the left hemisphere. A stand-in for PyHRF's shipped parcellations
(e.g. the Willard atlas, which is not redistributed here): spatially compact, cortex and
deep gray matter, usable as ``--atlas FILE --atlas-labels TSV`` on data in MNI space.

    python tools/make_example_atlas.py   # rewrites bids_hrf/data/example_atlas*.{nii.gz,tsv}
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn import datasets, image
from sklearn.cluster import KMeans

OUT = Path(__file__).resolve().parents[1] / "bids_hrf" / "data"
STEM = "tpl-MNI152NLin2009aSym_res-3mm_atlas-bidshrfExample_desc-100_dseg"
PER_HEMISPHERE = 50


def build() -> tuple[nib.Nifti1Image, pd.DataFrame]:
    """The atlas image and its labels table (``index``, ``name``)."""
    gm = datasets.load_mni152_gm_template(resolution=1)
    gm3 = image.resample_img(gm, target_affine=np.diag([3.0, 3.0, 3.0]),
                             interpolation="linear", force_resample=True,
                             copy_header=True)
    prob = np.asarray(gm3.dataobj, dtype=float)
    ijk = np.argwhere(prob > 0.35)
    xyz = nib.affines.apply_affine(gm3.affine, ijk)
    labels = np.zeros(prob.shape, dtype=np.int16)
    rows = []
    for offset, (hemi, side) in enumerate((("L", xyz[:, 0] <= 0), ("R", xyz[:, 0] > 0))):
        km = KMeans(n_clusters=PER_HEMISPHERE, n_init=4, random_state=0).fit(xyz[side])
        # number parcels from front to back, then bottom to top, for stable names
        order = np.lexsort((km.cluster_centers_[:, 2], -km.cluster_centers_[:, 1]))
        rank = np.empty(PER_HEMISPHERE, dtype=int)
        rank[order] = np.arange(PER_HEMISPHERE)
        index = rank[km.labels_] + 1 + offset * PER_HEMISPHERE
        labels[tuple(ijk[side].T)] = index
        for k in range(PER_HEMISPHERE):
            centre = km.cluster_centers_[order[k]]
            rows.append({"index": k + 1 + offset * PER_HEMISPHERE,
                         "name": f"{hemi}_{k + 1:02d}",
                         "x": round(float(centre[0]), 1), "y": round(float(centre[1]), 1),
                         "z": round(float(centre[2]), 1)})
    img = nib.Nifti1Image(labels, gm3.affine)
    img.header.set_xyzt_units("mm")
    return img, pd.DataFrame(rows)


def main() -> None:
    """Write the atlas and its labels."""
    img, table = build()
    OUT.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(OUT / f"{STEM}.nii.gz"))
    table.to_csv(OUT / f"{STEM}.tsv", sep="\t", index=False)
    print(OUT / f"{STEM}.nii.gz", img.shape, int(img.get_fdata().max()), "parcels")


if __name__ == "__main__":
    main()
