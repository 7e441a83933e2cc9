"""The paywall status machines against allowed pairs written here, not read from the tables, so a
wrong table entry fails; and the API's status literals against the machines' states."""

from __future__ import annotations

from enum import StrEnum
from itertools import product
from typing import Any, get_args

import pytest

from overture.errors import Conflict
from overture.machine import Machine
from overture.paywalls import schemas
from overture.paywalls.states import (
    CAMPAIGN,
    EXPERIMENT,
    PLACEMENT,
    CampaignStatus,
    ExperimentState,
    PlacementStatus,
)

ALLOWED: dict[str, set[tuple[str, str]]] = {
    # The operator sets a campaign's status freely; archiving and unarchiving move placement claims.
    "campaign": {
        ("active", "inactive"),
        ("active", "archived"),
        ("inactive", "active"),
        ("inactive", "archived"),
        ("archived", "active"),
        ("archived", "inactive"),
    },
    "placement": {("active", "paused"), ("paused", "active")},
    # Promotion is final.
    "experiment": {("running", "promoted")},
}

MACHINES: list[tuple[Machine[Any], type[StrEnum], tuple[str, ...]]] = [
    (CAMPAIGN, CampaignStatus, ("active", "inactive", "archived")),
    (PLACEMENT, PlacementStatus, ("active", "paused")),
    (EXPERIMENT, ExperimentState, ("running", "promoted")),
]


@pytest.mark.parametrize(("machine", "states", "values"), MACHINES, ids=lambda m: getattr(m, "name", ""))
def test_machine__every_pair__allowed_exactly_as_listed(
    machine: Machine[Any], states: type[StrEnum], values: tuple[str, ...]
) -> None:
    assert tuple(s.value for s in states) == values
    allowed = ALLOWED[machine.name]
    for current, target in product(values, values):
        if (current, target) in allowed:
            assert machine.transition(current, target) == target
        else:
            with pytest.raises(Conflict) as refused:
                machine.transition(current, target)
            assert f"'{current}'" in refused.value.message and f"'{target}'" in refused.value.message


def test_experiment__promoted_is_terminal() -> None:
    assert EXPERIMENT.terminal == {ExperimentState.PROMOTED}
    assert EXPERIMENT.sources(ExperimentState.PROMOTED) == {ExperimentState.RUNNING}


@pytest.mark.parametrize(
    ("literal", "states"),
    [
        (schemas.CampaignStatus, CampaignStatus),
        (schemas.PlacementStatus, PlacementStatus),
        (schemas.ExperimentState, ExperimentState),
    ],
)
def test_api_literals__name_the_machine_states(literal: Any, states: type[StrEnum]) -> None:
    assert get_args(literal) == tuple(s.value for s in states)
