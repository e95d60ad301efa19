"""The contract every HRF method fills: a per-parcel HRF table and optional voxel maps.

An HRF method takes voxel time series of one run (or several runs) and the parcel label of
each voxel, and returns an :class:`HRFEstimate`. The app writes ``estimate.hrfs`` as the
``..._desc-<method>_hrf.tsv`` table (first column ``time``, one column per parcel), its
variance when there is one, and each entry of ``voxel_maps`` as a NIfTI map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class HRFEstimate:
    """Per-parcel HRFs estimated by one method.

    Attributes
    ----------
    time : ndarray, shape (n_samples,)
        Seconds after the onset of a stimulus for each HRF sample.
    hrfs : ndarray, shape (n_samples, n_parcels)
        One HRF per parcel (column order follows ``labels``).
    labels : list of str
        Parcel names, as written in the table header.
    method : str
        ``canonical``, ``fir``, ``jde-vem`` or ``sparse``.
    variance : ndarray, shape (n_samples, n_parcels), optional
        Posterior (or sampling) variance of each HRF sample.
    parameters : dict
        Method parameters, recorded in the JSON sidecar.
    voxel_maps : dict of str to ndarray
        Method-specific maps in masked-voxel space: each value has shape ``(n_voxels,)`` or
        ``(n_volumes, n_voxels)``; keys are BIDS entity-like descriptions chosen by the
        method (e.g. ``"contrast-faces_stat-ppm"``).
    parcel_tables : dict of str to pandas.DataFrame
        Extra per-parcel tables (e.g. convergence traces), keyed by a ``desc`` label.
    """

    time: np.ndarray
    hrfs: np.ndarray
    labels: list[str]
    method: str
    variance: np.ndarray | None = None
    parameters: dict = field(default_factory=dict)
    voxel_maps: dict = field(default_factory=dict)
    parcel_tables: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.time = np.asarray(self.time, dtype=float)
        self.hrfs = np.atleast_2d(np.asarray(self.hrfs, dtype=float))
        if self.hrfs.shape[0] != self.time.size:
            raise ValueError(
                f"HRF table has {self.hrfs.shape[0]} samples but {self.time.size} time points"
            )
        if self.hrfs.shape[1] != len(self.labels):
            raise ValueError(
                f"HRF table has {self.hrfs.shape[1]} columns but {len(self.labels)} labels"
            )

    @property
    def sampling_period(self) -> float:
        """Seconds between HRF samples."""
        return float(np.median(np.diff(self.time))) if self.time.size > 1 else 0.0

    def hrf_for(self, label: str) -> np.ndarray:
        """Return the HRF of parcel ``label``."""
        return self.hrfs[:, self.labels.index(label)]
