"""Deterministic bucketing: `user.seed` and experiment variant assignment from stable hashes.

The recipe is part of Overture's public contract (documented in docs/paywalls.md): a user keeps
their seed and their variant across processes, machines and versions, so it must never change.

    unit(namespace, key) = XXH3_64(utf8(namespace + "\\x1f" + key), seed=0) / 2**64   in [0, 1)
    user_seed(user_id)   = floor(unit("overture.seed", user_id) * 100)                  in 0..99
    variant              = first i with unit("overture.exp." + experiment_id, user_id)
                           < sum(traffic_percentage[0..i]) / 100, else holdout

XXH3-64's output is frozen by the xxHash specification since v0.8.0. Mixing the experiment id into
the hashed text makes assignments independent across experiments and independent of `user.seed`.
"""

from __future__ import annotations

from collections.abc import Sequence

import xxhash

__all__ = [
    "SEED_BUCKETS",
    "SEED_NAMESPACE",
    "assign_variant",
    "cumulative_bounds",
    "experiment_unit",
    "unit",
    "user_seed",
]

SEED_NAMESPACE = "overture.seed"
EXPERIMENT_NAMESPACE = "overture.exp."
SEED_BUCKETS = 100
_SEPARATOR = "\x1f"  # ASCII unit separator: cannot be confused with ordinary id characters
_TWO_POW_64 = float(2**64)
_hash = xxhash.xxh3_64_intdigest


def unit(namespace: str, key: str) -> float:
    """A uniform number in [0, 1) fixed by (namespace, key)."""
    return _hash((namespace + _SEPARATOR + key).encode()) / _TWO_POW_64


def user_seed(user_id: str) -> int:
    """The user's stable cohort number 0-99 (the seed's `user.seed`)."""
    return int(unit(SEED_NAMESPACE, user_id) * SEED_BUCKETS)


def experiment_unit(experiment_id: str, user_id: str) -> float:
    return unit(EXPERIMENT_NAMESPACE + experiment_id, user_id)


def cumulative_bounds(percentages: Sequence[float]) -> tuple[float, ...]:
    """Upper bounds in [0, 1] of each variant's slice of the unit interval, in variant order."""
    bounds: list[float] = []
    total = 0.0
    for pct in percentages:
        if pct < 0:
            raise ValueError("traffic percentages cannot be negative")
        total += pct
        bounds.append(total / 100.0)
    if total > 100.0 + 1e-9:
        raise ValueError("traffic percentages sum to more than 100")
    return tuple(bounds)


def assign_variant(experiment_id: str, user_id: str, bounds: Sequence[float]) -> int | None:
    """Index of the user's variant, or None for the holdout (the part of 100% no variant covers).

    `bounds` comes from `cumulative_bounds` (precomputed once per experiment, not per call)."""
    u = experiment_unit(experiment_id, user_id)
    for index, bound in enumerate(bounds):
        if u < bound:
            return index
    return None
