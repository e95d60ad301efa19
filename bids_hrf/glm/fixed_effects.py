"""Combining contrasts across runs (fixed effects) and conjunctions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bids_hrf.glm.contrasts import ContrastResult


def _check(results: Sequence[ContrastResult]) -> None:
    if len(results) == 0:
        raise ValueError("fixed_effects needs at least one ContrastResult")
    first = results[0]
    for i, r in enumerate(results[1:], start=1):
        if r.contrast_type != first.contrast_type or r.dim != first.dim:
            raise ValueError(
                f"ContrastResult {i} is a {r.contrast_type} contrast of dimension {r.dim}, "
                f"result 0 a {first.contrast_type} contrast of dimension {first.dim}"
            )
        if r.variance.shape != first.variance.shape:
            raise ValueError(
                f"ContrastResult {i} has {r.variance.size} voxels, result 0 has "
                f"{first.variance.size}; all runs must share the voxel mask"
            )


def fixed_effects(
    results: Sequence[ContrastResult], precision_weighted: bool = True
) -> ContrastResult:
    """Combine one contrast over runs with a fixed-effects model.

    Parameters
    ----------
    results : sequence of ContrastResult
        The same contrast in each run, on the same voxels.
    precision_weighted : bool, default=True
        t contrasts: ``True`` weights each run by its inverse variance (effect
        ``sum(e_i / v_i) / sum(1 / v_i)``, variance ``1 / sum(1 / v_i)``), as nilearn's
        ``compute_fixed_effects(precision_weighted=True)``; ``False`` averages effects
        (variance ``mean(v_i) / n``), as ``FirstLevelModel`` does with several runs.
        F contrasts always use nilearn's approximate average of whitened effects and
        residual variances (``FirstLevelModel``'s multi-run F).

    Returns
    -------
    ContrastResult
        With the dof summed over runs and stat, z and p recomputed.
    """
    _check(results)
    dof = np.sum([np.asarray(r.dof, dtype=float) for r in results], axis=0)
    kind = results[0].contrast_type
    if kind == "t":
        effects = np.array([r.effect for r in results], dtype=float)
        variances = np.maximum(np.array([r.variance for r in results], dtype=float), 1e-16)
        if precision_weighted:
            variance = 1.0 / np.sum(1.0 / variances, axis=0)
            effect = np.sum(effects / variances, axis=0) * variance
        else:
            variance = np.mean(variances, axis=0) / len(results)
            effect = np.mean(effects, axis=0)
        return ContrastResult.from_effects(effect, variance, dof, "t")
    n = len(results)
    effect = np.sum([r.effect for r in results], axis=0) / n
    variance = np.sum([r.variance for r in results], axis=0) / n**2
    return ContrastResult.from_effects(effect, variance, dof, "F", results[0].dim)


def conjunction_tmin(results: Sequence[ContrastResult]) -> ContrastResult:
    """Minimum-statistic conjunction of t contrasts (valid conjunction, Nichols 2005).

    Each voxel takes the contrast whose statistic is smallest; its z and p are that
    contrast's (the test of the conjunction null: all effects present).

    Parameters
    ----------
    results : sequence of ContrastResult
        t contrasts on the same voxels.

    Returns
    -------
    ContrastResult
    """
    _check(results)
    if results[0].contrast_type != "t":
        raise ValueError("conjunction_tmin needs t contrasts")
    stats = np.array([r.stat for r in results])
    pick = np.argmin(stats, axis=0)
    cols = np.arange(stats.shape[1])

    def take(attr: str) -> np.ndarray:
        return np.array([np.asarray(getattr(r, attr), dtype=float) for r in results])[pick, cols]

    return ContrastResult(
        effect=take("effect"), variance=take("variance"), stat=take("stat"), z=take("z"),
        p=take("p"), dof=take("dof"), contrast_type="t",
    )
