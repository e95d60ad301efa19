"""Ground truth of the simulation: HRFs, active parcels and voxels, amplitudes, group effects.

Pure: a :class:`~bids_hrf.datasets._geometry.Geometry`, the design choices and a random
generator in, a :class:`SyntheticTruth` out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ._geometry import Geometry
from ._signals import double_gamma_hrf, hrf_time

DELAY_S = 1.5  # time-to-peak shift of the delayed parcel in the second group
ACTIVE_FRACTION = 0.6  # fraction of an active parcel's voxels that respond
BASE_AMPLITUDE = 1.0  # percent signal change at the peak of the response to a 1-s event
SUBJECT_AMPLITUDE_SD = 0.15  # relative between-subject variation of amplitudes
LATENT_WEIGHT = 0.2  # standard deviation (percent) of shared connectivity fluctuations

_CONDITION_NETWORKS = {"aud": "Auditory", "vis": "Visual", "motor": "Somatomotor"}
_FALLBACK_NETWORKS = ["Frontoparietal", "Somatomotor", "Visual", "Auditory"]


@dataclass
class SyntheticTruth:
    """What the simulation planted.

    Attributes
    ----------
    hrf : pandas.DataFrame
        ``time`` (s, every 0.1 s from 0 to 32) and one column per parcel name: the HRF
        (unit peak) of the first group (or of everyone when there are no groups).
    hrf_by_group : dict of str to pandas.DataFrame
        Same table for each group (differs from ``hrf`` for the delayed parcel).
    time_to_peak : dict of str to float
        Time to peak (s) of each parcel's HRF in the first group.
    time_to_peak_by_group : dict of str to dict
        Time to peak per group and parcel.
    active_parcels : dict of str to list of str
        Condition -> parcels active in every participant.
    null_parcels : dict of str to list of str
        Condition -> parcels never active for that condition in any group.
    active_voxels : dict of str to ndarray of bool
        Condition -> BOLD-grid map of voxels active in every participant.
    active_voxels_by_group : dict of str to dict of str to ndarray of bool
        Group -> condition -> BOLD-grid map of the voxels active in that group.
    voxel_weights : ndarray, shape (n_conditions, n_brain_voxels)
        Relative amplitude of each brain voxel (voxels of ``brain_mask`` in C order; 0 =
        inactive), patient-only voxels included; a voxel's amplitude in a participant is
        this weight times the participant's parcel amplitude.
    amplitudes : pandas.DataFrame
        ``participant_id``, ``group``, ``condition``, ``parcel``, ``amplitude`` (percent,
        peak of the response to a 1-s event; 0 where inactive).
    group_effects : dict
        The planted effects and nulls (see :func:`plan_truth`).
    parcel_labels : ndarray of int
        BOLD-grid parcel map (0 outside grey matter).
    parcel_names, parcel_networks : list of str
    participants : pandas.DataFrame
        ``participant_id``, ``group``, ``age``, ``sex``.
    brain_mask : ndarray of bool
        BOLD-grid brain mask (the voxel order of ``voxel_weights``).
    parameters : dict
        Simulation parameters (recorded in ``truth.json``).
    """

    hrf: pd.DataFrame
    hrf_by_group: dict
    time_to_peak: dict
    time_to_peak_by_group: dict
    active_parcels: dict
    null_parcels: dict
    active_voxels: dict
    active_voxels_by_group: dict
    voxel_weights: np.ndarray
    amplitudes: pd.DataFrame
    group_effects: dict
    parcel_labels: np.ndarray
    parcel_names: list
    parcel_networks: list
    participants: pd.DataFrame
    brain_mask: np.ndarray
    parameters: dict = field(default_factory=dict)

    def group_of(self, participant_id: str) -> str:
        """Group of ``participant_id`` (``sub-XX`` or ``XX``)."""
        pid = participant_id if participant_id.startswith("sub-") else f"sub-{participant_id}"
        row = self.participants.loc[self.participants["participant_id"] == pid]
        if row.empty:
            raise ValueError(f"no participant {participant_id!r} in the synthetic dataset")
        return str(row["group"].iloc[0])


def condition_networks(conditions: tuple[str, ...]) -> dict[str, tuple[str, bool]]:
    """Network responding to each condition and whether the whole network responds.

    "aud"/"vis"/"motor" in a name select the Auditory/Visual/Somatomotor network (all its
    parcels); other conditions take the first network not yet used (Frontoparietal,
    Somatomotor, Visual, Auditory, cycling) and only half of its parcels respond.
    """
    out: dict[str, tuple[str, bool]] = {}
    for cond in conditions:
        for key, network in _CONDITION_NETWORKS.items():
            if key in cond.lower():
                out[cond] = (network, True)
                break
    used = [n for n, _ in out.values()]
    others = [c for c in conditions if c not in out]
    free = [n for n in _FALLBACK_NETWORKS if n not in used] or list(_FALLBACK_NETWORKS)
    for i, cond in enumerate(others):
        out[cond] = (free[i % len(free)], False)
    return out


def _blob(voxels: np.ndarray, coords: np.ndarray, fraction: float, rng) -> np.ndarray:
    """Indices of the ``fraction`` of ``voxels`` nearest to a random one (a compact blob)."""
    seed = coords[rng.choice(voxels)]
    dist = np.linalg.norm(coords[voxels] - seed, axis=1)
    n = max(1, int(round(fraction * len(voxels))))
    return voxels[np.argsort(dist, kind="stable")[:n]]


def _parcels_of(geom: Geometry, network: str) -> list[int]:
    return [i for i, n in enumerate(geom.networks) if n == network]


def plan_truth(
    geom: Geometry,
    conditions: tuple[str, ...],
    participants: pd.DataFrame,
    groups: tuple[str, ...] | None,
    rng: np.random.Generator,
) -> SyntheticTruth:
    """Draw HRFs, active voxels, amplitudes and the group effects.

    Group effects (with two or more groups; between the first, "reference", and the
    second, "comparison", group): a parcel silent otherwise (Frontoparietal first) responds
    to the first condition only in the comparison group; the first parcel active for the
    first condition peaks ``DELAY_S`` later in the comparison group; the first two silent
    Default parcels share a latent fluctuation in the reference group only. Planted nulls:
    parcels never active, active parcels with the same amplitude distribution and time to
    peak in every group, and the first two silent Somatomotor parcels sharing a latent
    fluctuation in every group. A third or later group is like the reference group except
    that its Default pair is not correlated.
    """
    n_par, names, brain = geom.n_parcels, geom.names, geom.brain
    # HRFs: time to peak uniform in [4, 7] s (drawn first: choosing parcels draws nothing)
    ttp = np.round(rng.uniform(4.0, 7.0, n_par), 1)
    plan = _choose_parcels(geom, conditions, participants, groups)
    if plan.delayed is not None:
        ttp[plan.delayed] = min(ttp[plan.delayed], 5.0)
    t = hrf_time()
    ttp_by_group = {g: ttp.copy() for g in plan.groups}
    if plan.has_groups:
        ttp_by_group[plan.alt][plan.delayed] += DELAY_S
    hrf_by_group = {
        g: pd.DataFrame({"time": t, **{names[p]: double_gamma_hrf(v[p], t) for p in range(n_par)}})
        for g, v in ttp_by_group.items()
    }
    weights, extra = _voxel_weights(geom, conditions, plan, rng)
    amplitudes = _amplitudes(participants, conditions, plan, names, rng)

    def to_map(w: np.ndarray) -> np.ndarray:
        out = np.zeros(geom.shape, dtype=bool)
        out[brain] = w > 0
        return out

    active, patient_only = plan.active, plan.patient_only
    return SyntheticTruth(
        hrf=hrf_by_group[plan.ref],
        hrf_by_group=hrf_by_group,
        time_to_peak={names[p]: float(ttp_by_group[plan.ref][p]) for p in range(n_par)},
        time_to_peak_by_group={
            g: {names[p]: float(v[p]) for p in range(n_par)} for g, v in ttp_by_group.items()
        },
        active_parcels={cond: [names[p] for p in active[cond]] for cond in conditions},
        null_parcels={
            cond: [
                names[p]
                for p in range(n_par)
                if p not in active[cond] and not (c == 0 and p == patient_only)
            ]
            for c, cond in enumerate(conditions)
        },
        active_voxels={cond: to_map(weights[c]) for c, cond in enumerate(conditions)},
        active_voxels_by_group={
            g: {
                cond: to_map(weights[c] + (extra[c] if g == plan.alt else 0))
                for c, cond in enumerate(conditions)
            }
            for g in plan.groups
        },
        voxel_weights=weights + extra,
        amplitudes=amplitudes,
        group_effects=_group_effects(plan, names, conditions),
        parcel_labels=geom.labels.copy(),
        parcel_names=list(names),
        parcel_networks=list(geom.networks),
        participants=participants,
        brain_mask=brain.copy(),
        parameters={
            "latent_pairs": {
                "effect": [names[p] for p in plan.conn_pair],
                "null": [names[p] for p in plan.conn_null_pair],
            }
        },
    )


@dataclass(frozen=True)
class _ParcelPlan:
    """Which parcels carry each planted effect (parcel indices)."""

    groups: list[str]
    has_groups: bool
    ref: str
    alt: str | None
    active: dict[str, list[int]]
    delayed: int | None
    conn_pair: list[int]
    conn_null_pair: list[int]
    patient_only: int | None

    def inactive(self, parcels: list[int]) -> list[int]:
        """The parcels active for no condition."""
        return [p for p in parcels if not any(p in a for a in self.active.values())]


def _choose_parcels(geom: Geometry, conditions: tuple[str, ...], participants: pd.DataFrame,
                    groups: tuple[str, ...] | None) -> _ParcelPlan:
    """Active parcels of each condition and the parcels of the group effects and nulls."""
    group_list = list(dict.fromkeys(participants["group"]))
    has_groups = groups is not None and len(group_list) >= 2
    active: dict[str, list[int]] = {}
    for cond, (network, whole) in condition_networks(conditions).items():
        parcels = _parcels_of(geom, network)
        active[cond] = parcels if whole else parcels[: max(1, len(parcels) // 2)]
    plan = _ParcelPlan(
        groups=group_list, has_groups=has_groups, ref=group_list[0],
        alt=group_list[1] if has_groups else None, active=active,
        delayed=active[conditions[0]][0] if has_groups else None,
        conn_pair=[], conn_null_pair=[], patient_only=None,
    )
    conn_pair = plan.inactive(_parcels_of(geom, "Default"))[:2]
    conn_null_pair = plan.inactive(_parcels_of(geom, "Somatomotor"))[:2]
    patient_only = None
    if has_groups:
        # a parcel otherwise silent, Frontoparietal first
        order = ["Frontoparietal", "Default", "Somatomotor", "Visual", "Auditory"]
        candidates = [
            p
            for network in order
            for p in plan.inactive(_parcels_of(geom, network))
            if p not in conn_pair + conn_null_pair
        ]
        if not candidates:
            raise ValueError(
                f"{len(conditions)} conditions leave no silent parcel for the group effects; "
                "use fewer conditions or groups=None"
            )
        patient_only = candidates[0]
    return replace(plan, conn_pair=conn_pair, conn_null_pair=conn_null_pair,
                   patient_only=patient_only)


def _voxel_weights(geom: Geometry, conditions: tuple[str, ...], plan: _ParcelPlan,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Response weight of each brain voxel to each condition: a compact blob covering
    ``ACTIVE_FRACTION`` of each active parcel; and the comparison group's extra voxels."""
    brain = geom.brain
    labels_b = geom.labels[brain].astype(int) - 1  # parcel index per brain voxel (-1 = none)
    coords = geom.voxel_coords_mm(brain)
    weights = np.zeros((len(conditions), brain.sum()))
    extra = np.zeros((len(conditions), brain.sum()))  # patient-only voxels
    for c, cond in enumerate(conditions):
        for p in plan.active[cond]:
            vox = _blob(np.flatnonzero(labels_b == p), coords, ACTIVE_FRACTION, rng)
            weights[c, vox] = np.exp(rng.normal(0, 0.2, len(vox)))
        if c == 0 and plan.patient_only is not None:
            vox = _blob(np.flatnonzero(labels_b == plan.patient_only), coords,
                        ACTIVE_FRACTION, rng)
            extra[c, vox] = np.exp(rng.normal(0, 0.2, len(vox)))
    return weights, extra


def _amplitudes(participants: pd.DataFrame, conditions: tuple[str, ...], plan: _ParcelPlan,
                names: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Response amplitude of every participant, condition and parcel."""
    rows = []
    for pid, group in zip(participants["participant_id"], participants["group"], strict=True):
        for c, cond in enumerate(conditions):
            for p in range(len(names)):
                amp = 0.0
                if p in plan.active[cond] or (c == 0 and p == plan.patient_only
                                              and group == plan.alt):
                    amp = BASE_AMPLITUDE * max(0.2, 1 + SUBJECT_AMPLITUDE_SD * rng.normal())
                rows.append((pid, group, cond, names[p], round(float(amp), 4)))
    return pd.DataFrame(
        rows, columns=["participant_id", "group", "condition", "parcel", "amplitude"]
    )


def _group_effects(plan: _ParcelPlan, names: list[str], conditions: tuple[str, ...]) -> dict:
    """The planted group effects and nulls, by parcel name (``SyntheticTruth.group_effects``)."""
    effects: dict = {"groups": plan.groups if plan.has_groups else [],
                     "reference_group": plan.ref}
    if not plan.has_groups:
        return effects
    n_par, alt, delayed = len(names), plan.alt, plan.delayed
    effects.update(
        {
            "comparison_group": alt,
            "activation": {
                "parcel": names[plan.patient_only],
                "condition": conditions[0],
                "active_in": [alt],
            },
            "time_to_peak": {
                "parcel": names[delayed],
                "condition": conditions[0],
                "shift_s": DELAY_S,
                "shifted_in": [alt],
            },
            "nulls": {
                "amplitude": [names[p] for a in plan.active.values() for p in a if p != delayed],
                "time_to_peak": [names[p] for p in range(n_par) if p != delayed],
                "inactive": [names[p] for p in plan.inactive(list(range(n_par)))
                             if p != plan.patient_only],
            },
        }
    )
    if len(plan.conn_null_pair) == 2:
        effects["nulls"]["connectivity"] = {
            "parcels": [names[p] for p in plan.conn_null_pair],
            "correlated_in": plan.groups,
        }
    if len(plan.conn_pair) == 2:
        effects["connectivity"] = {
            "parcels": [names[p] for p in plan.conn_pair],
            "correlated_in": [plan.ref],
        }
    return effects


def latent_loadings(truth: SyntheticTruth, geom: Geometry, group: str) -> np.ndarray:
    """Loadings (n_latent, n_brain_voxels) of the connectivity latents for one group.

    A pair listed as correlated in ``group`` shares one latent; otherwise each parcel of
    the pair gets its own latent (same variance, no correlation).
    """
    labels_b = geom.labels[geom.brain].astype(int) - 1
    pairs = [
        (truth.parameters["latent_pairs"]["effect"], truth.group_effects.get("connectivity")),
        (truth.parameters["latent_pairs"]["null"], None),
    ]
    rows = []
    for names, effect in pairs:
        idx = [truth.parcel_names.index(n) for n in names]
        if len(idx) < 2:
            continue
        shared = effect is None or group in effect["correlated_in"]
        masks = [(labels_b == p).astype(float) * LATENT_WEIGHT for p in idx]
        if shared:
            rows.append(masks[0] + masks[1])
        else:
            rows.extend(masks)
    if not rows:
        return np.zeros((0, labels_b.size))
    return np.vstack(rows)
