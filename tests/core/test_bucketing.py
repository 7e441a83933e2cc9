"""Bucketing: fixed test vectors (the recipe is a public contract), stickiness, uniformity (chi-square
sample-ratio tests over 100,000 users), independence across experiments, and cross-process identity."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from overture.core.bucketing import (
    assign_variant,
    cumulative_bounds,
    experiment_unit,
    unit,
    user_seed,
)

USERS = [f"user_{i}" for i in range(100_000)]
SRM_P = 0.001  # the usual sample-ratio-mismatch alarm level


@pytest.mark.parametrize(
    ("user_id", "seed"),
    [("user_123", 15), ("alice", 10), ("bob", 82), ("", 63), ("Ünïcode-用户", 97), ("a" * 300, 35)],
)
def test_user_seed__known_vectors__never_change(user_id: str, seed: int) -> None:
    assert user_seed(user_id) == seed


def test_unit__recipe__is_xxh3_64_of_namespace_separator_key() -> None:
    # XXH3_64(b"overture.seed\x1fuser_123") == 2924391737203869253, divided by 2**64.
    assert unit("overture.seed", "user_123") == 2924391737203869253 / 2**64
    assert experiment_unit("exp_abc", "user_123") == pytest.approx(0.1393292471316801, abs=0)


def test_assign_variant__known_vectors() -> None:
    half = cumulative_bounds([50, 50])
    assert [assign_variant("exp_1", u, half) for u in ["user_123", "alice", "bob", "carol", "dave"]] == [
        0,
        0,
        0,
        1,
        0,
    ]
    partial = cumulative_bounds([20, 30])
    got = [assign_variant("exp_2", u, partial) for u in ["user_123", "alice", "frank"]]
    assert got == [0, None, 1]


def test_user_seed__another_process_with_other_hash_seed__same_values() -> None:
    code = "from overture.core.bucketing import user_seed;print([user_seed(f'u{i}') for i in range(50)])"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str([user_seed(f"u{i}") for i in range(50)])


def test_user_seed__100k_users__uniform_over_100_buckets() -> None:
    counts = Counter(user_seed(u) for u in USERS)
    assert set(counts) == set(range(100))
    assert stats.chisquare([counts[b] for b in range(100)]).pvalue > SRM_P


@pytest.mark.parametrize("split", [[50, 50], [10, 20, 70], [25, 25, 25, 25], [33.3, 33.3, 33.4]])
def test_assign_variant__100k_users__passes_srm_chi_square(split: list[float]) -> None:
    bounds = cumulative_bounds(split)
    counts = Counter(assign_variant("exp_srm", u, bounds) for u in USERS)
    observed = [counts[i] for i in range(len(split))]
    expected = [len(USERS) * p / 100 for p in split]
    assert stats.chisquare(observed, expected).pvalue > SRM_P


def test_assign_variant__holdout_remainder__gets_its_share() -> None:
    bounds = cumulative_bounds([30, 30])  # 40% holdout
    counts = Counter(assign_variant("exp_holdout", u, bounds) for u in USERS)
    observed = [counts[0], counts[1], counts[None]]
    assert stats.chisquare(observed, [30_000, 30_000, 40_000]).pvalue > SRM_P


def test_assign_variant__two_experiments__independent() -> None:
    bounds = cumulative_bounds([50, 50])
    table = Counter((assign_variant("exp_a", u, bounds), assign_variant("exp_b", u, bounds)) for u in USERS)
    contingency = [[table[(0, 0)], table[(0, 1)]], [table[(1, 0)], table[(1, 1)]]]
    assert stats.chi2_contingency(contingency).pvalue > SRM_P


def test_assign_variant__independent_of_user_seed() -> None:
    bounds = cumulative_bounds([50, 50])
    table = Counter((user_seed(u) < 50, assign_variant("exp_a", u, bounds)) for u in USERS)
    contingency = [[table[(True, 0)], table[(True, 1)]], [table[(False, 0)], table[(False, 1)]]]
    assert stats.chi2_contingency(contingency).pvalue > SRM_P


@given(st.text(max_size=50), st.text(max_size=50))
def test_assign_variant__any_ids__sticky_and_in_range(experiment_id: str, user_id: str) -> None:
    bounds = cumulative_bounds([40, 40])
    first = assign_variant(experiment_id, user_id, bounds)
    assert first == assign_variant(experiment_id, user_id, bounds)
    assert first in (0, 1, None)
    assert 0 <= user_seed(user_id) <= 99


def test_cumulative_bounds__over_100__refused() -> None:
    with pytest.raises(ValueError):
        cumulative_bounds([60, 50])
    with pytest.raises(ValueError):
        cumulative_bounds([-1, 50])
    assert cumulative_bounds([100]) == (1.0,)
