"""Experiment statistics: the exact chance to beat against Monte Carlo, intervals, the promotion rule,
and simulated experiments (A/A: rarely promoted; a real effect: the true winner is promoted)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from overture.core import stats
from overture.core.stats import (
    MIN_EXPOSURES_PER_ARM,
    Arm,
    analyze,
    chance_to_beat,
    look_verdict,
    next_look,
    promotion_winner,
    rate_interval,
    uplift_interval,
)


def _monte_carlo(control: Arm, variant: Arm, draws: int = 2_000_000) -> float:
    rng = np.random.default_rng(1)
    a = rng.beta(1 + control.conversions, 1 + control.exposures - control.conversions, draws)
    b = rng.beta(1 + variant.conversions, 1 + variant.exposures - variant.conversions, draws)
    return float((b > a).mean())


@pytest.mark.parametrize(
    ("control", "variant"),
    [
        (Arm(1000, 100), Arm(1000, 120)),
        (Arm(50, 3), Arm(80, 9)),
        (Arm(200, 150), Arm(180, 120)),
        (Arm(10, 0), Arm(10, 1)),
        (Arm(5000, 40), Arm(4000, 45)),
    ],
)
def test_chance_to_beat__exact__matches_monte_carlo(control: Arm, variant: Arm) -> None:
    assert chance_to_beat(control, variant) == pytest.approx(_monte_carlo(control, variant), abs=0.002)


def test_chance_to_beat__swapped_arms__complement() -> None:
    a, b = Arm(700, 70), Arm(650, 80)
    assert chance_to_beat(a, b) + chance_to_beat(b, a) == pytest.approx(1.0, abs=1e-9)


def test_chance_to_beat__identical_arms__one_half() -> None:
    assert chance_to_beat(Arm(0, 0), Arm(0, 0)) == pytest.approx(0.5, abs=1e-12)
    assert chance_to_beat(Arm(400, 40), Arm(400, 40)) == pytest.approx(0.5, abs=1e-9)


def test_chance_to_beat__huge_counts__normal_approximation_close_to_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    control, variant = Arm(200_000, 20_000), Arm(200_000, 20_300)
    exact = chance_to_beat(control, variant)
    monkeypatch.setattr(stats, "EXACT_TERMS_LIMIT", 1000)
    assert chance_to_beat(control, variant) == pytest.approx(exact, abs=1e-3)


def test_rate_interval__beta_posterior_quantiles() -> None:
    lo, hi = rate_interval(Arm(1000, 100))
    assert (lo, hi) == pytest.approx(tuple(sps.beta.ppf([0.025, 0.975], 101, 901)))
    assert lo < 0.1 < hi


def test_uplift_interval__fixed_seed__repeatable_and_sensible() -> None:
    control, variant = Arm(5000, 500), Arm(5000, 650)  # true uplift 0.3
    first = uplift_interval(control, variant)
    assert first == uplift_interval(control, variant)
    assert first[0] < 0.3 < first[1]
    assert first[0] > 0  # clearly better


def test_analyze__figures_per_arm() -> None:
    control, variant = analyze([Arm(100, 10, revenue=50.0), Arm(200, 40, revenue=300.0)])
    assert control.conversion_rate == 0.1 and control.revenue_per_user == 0.5
    assert control.chance_to_beat_control is None and control.uplift_interval is None
    assert variant.conversion_rate == 0.2 and variant.revenue_per_user == 1.5
    assert variant.chance_to_beat_control is not None and variant.chance_to_beat_control > 0.95
    empty = analyze([Arm(0, 0), Arm(0, 0)])[0]
    assert empty.conversion_rate is None and empty.revenue_per_user is None


def test_arm__more_conversions_than_exposures__refused() -> None:
    with pytest.raises(ValueError):
        Arm(10, 11)


def test_promotion_winner__below_minimum_sample__none() -> None:
    # An overwhelming effect but only 50 users per arm: not yet.
    assert promotion_winner([Arm(50, 5), Arm(50, 40)], 0.95) is None
    # Enough users but too few conversions in the control arm.
    assert promotion_winner([Arm(500, 5), Arm(500, 100)], 0.95) is None
    assert promotion_winner([Arm(500, 20), Arm(500, 100)], 0.95) == 1


def test_promotion_winner__control_best__never_promoted() -> None:
    assert promotion_winner([Arm(1000, 300), Arm(1000, 100)], 0.95) is None


def test_promotion_winner__several_variants__highest_chance_wins() -> None:
    arms = [Arm(1000, 100), Arm(1000, 140), Arm(1000, 180)]
    assert promotion_winner(arms, 0.95) == 2


def test_look_verdict__needs_the_same_leader_twice() -> None:
    arms = [Arm(1000, 100), Arm(1000, 180)]
    assert look_verdict(arms, 0.95, previous_leader=None) == (1, False)
    assert look_verdict(arms, 0.95, previous_leader=1) == (1, True)
    assert look_verdict([Arm(1000, 100), Arm(1000, 100)], 0.95, previous_leader=1) == (None, False)


def test_next_look__doubles_from_the_minimum() -> None:
    assert next_look(0) == MIN_EXPOSURES_PER_ARM
    assert next_look(99) == 100
    assert next_look(100) == 200
    assert next_look(250) == 400
    assert next_look(6400) == 12800


def _simulate(rates: list[float], reps: int, n_max: int = 6400, seed: int = 7) -> list[int | None]:
    """Run the auto-promotion policy (looks at 100, 200, ... n_max exposures per arm) on simulated
    Bernoulli conversions; returns the promoted arm of each repetition (None: never promoted)."""
    rng = np.random.default_rng(seed)
    outcomes: list[int | None] = []
    for _ in range(reps):
        conversions = [np.cumsum(rng.random(n_max) < p) for p in rates]
        look, leader, promoted = next_look(0), None, None
        while look <= n_max and promoted is None:
            arms = [Arm(look, int(c[look - 1])) for c in conversions]
            leader, promote = look_verdict(arms, 0.95, leader)
            if promote:
                promoted = leader
            look = next_look(look)
        outcomes.append(promoted)
    return outcomes


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.3])
def test_simulated_aa_experiment__large_majority_never_promoted(rate: float) -> None:
    outcomes = _simulate([rate, rate], reps=300)
    false_promotions = sum(o is not None for o in outcomes) / len(outcomes)
    assert false_promotions <= 0.12, false_promotions


def test_simulated_real_effect__true_winner_promoted() -> None:
    # Control 10%, a worse variant 8%, the true winner 14%.
    outcomes = _simulate([0.10, 0.08, 0.14], reps=200)
    assert sum(o == 2 for o in outcomes) / len(outcomes) >= 0.9
    assert not any(o == 1 for o in outcomes)
