"""Data-driven parcellation of one BOLD run (nilearn's :class:`~nilearn.regions.Parcellations`)."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np

from bids_hrf.errors import DataError, UsageError

METHODS = ("ward", "kmeans")


def parse_data_driven_spec(spec: str) -> tuple[int, str]:
    """Parse ``data-driven:N[:method]`` into ``(N, method)`` (method ``ward`` by default)."""
    fields = spec.split(":")
    if len(fields) not in (2, 3) or fields[0].lower().replace("-", "") != "datadriven":
        raise UsageError(f"cannot parse atlas specification {spec!r}",
                         fix="write data-driven:N or data-driven:N:kmeans, e.g. data-driven:200")
    try:
        n_parcels = int(fields[1])
    except ValueError as exc:
        raise UsageError(f"data-driven atlas: {fields[1]!r} is not a number of parcels",
                         fix="write data-driven:N with an integer N >= 2") from exc
    if n_parcels < 2:
        raise UsageError(f"data-driven atlas: {n_parcels} parcels requested",
                         fix="ask for at least 2 parcels")
    method = fields[2].lower() if len(fields) == 3 else "ward"
    if method not in METHODS:
        raise UsageError(f"data-driven atlas: unknown method {method!r}",
                         fix=f"use one of {', '.join(METHODS)}")
    return n_parcels, method


def data_driven_labels(
    bold_img: nib.Nifti1Image,
    mask_img: nib.Nifti1Image | None,
    n_parcels: int,
    method: str = "ward",
    random_state: int = 0,
    smoothing_fwhm: float | None = 4.0,
    n_jobs: int = 1,
    where: str = "the BOLD run",
    n_components: int | None = None,
) -> nib.Nifti1Image:
    """Cluster the voxels of one run into ``n_parcels`` parcels inside the brain mask.

    The time series are detrended and z-scored, reduced by nilearn's PCA to
    ``n_components`` components, then clustered by nilearn (Ward agglomeration with spatial
    connectivity, or k-means). nilearn whitens the components, so with a single run keeping
    all of them (its default of 200 is more than most runs have volumes) lets noise
    components weigh as much as the signal: by default ``min(200, max(5, n_scans // 8))``
    are kept. Deterministic for a given ``random_state``.

    Returns
    -------
    nibabel.Nifti1Image
        Labels 1..n_parcels inside the mask, 0 elsewhere, on the BOLD grid (int32).
    """
    from nilearn.regions import Parcellations

    if len(bold_img.shape) != 4 or bold_img.shape[3] < 3:
        raise DataError(f"data-driven atlas: {where} is not a 4D run with several volumes",
                        path=where)
    if mask_img is not None:
        n_mask = int(np.count_nonzero(np.asanyarray(mask_img.dataobj)))
        if n_mask < n_parcels:
            raise DataError(f"data-driven atlas: {n_parcels} parcels requested but the brain "
                            f"mask of {where} has {n_mask} voxels",
                            fix="ask for fewer parcels", path=where)
    parcellation = Parcellations(
        method=method, n_parcels=n_parcels, random_state=random_state, mask=mask_img,
        smoothing_fwhm=smoothing_fwhm, standardize="zscore_sample", detrend=True,
        n_jobs=n_jobs, verbose=0,
    )
    # not an __init__ parameter of Parcellations (fixed at 200), but the attribute it uses
    parcellation.n_components = (n_components if n_components is not None
                                 else min(200, max(5, int(bold_img.shape[3]) // 8)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_components.*")
        parcellation.fit(bold_img)
    labels = parcellation.labels_img_
    data = np.rint(np.asanyarray(labels.dataobj)).astype(np.int32)
    out = nib.Nifti1Image(data, bold_img.affine)
    out.header.set_data_dtype(np.int32)
    return out
