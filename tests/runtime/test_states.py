"""The job and outbox status machines against their documented moves, over every pair of states.

The allowed pairs are written here, not read from `overture.runtime.states`, so a wrong table entry
(a move added or dropped by mistake) fails."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from overture.errors import Conflict
from overture.machine import Machine
from overture.runtime.states import JOB, OUTBOX, JobStatus, OutboxStatus

JOB_STATES = ("queued", "running", "succeeded", "dead", "cancelled")
JOB_ALLOWED = {
    ("queued", "running"),
    ("queued", "cancelled"),
    ("running", "succeeded"),
    ("running", "queued"),
    ("running", "dead"),
    ("running", "cancelled"),
    ("running", "running"),
}
OUTBOX_STATES = ("pending", "sending", "sent", "failed", "unknown")
OUTBOX_ALLOWED = {
    ("pending", "sending"),
    ("unknown", "sending"),
    ("sending", "sent"),
    ("sending", "failed"),
    ("sending", "pending"),
    ("sending", "unknown"),
}


def test_states__are_the_documented_ones() -> None:
    assert sorted(JobStatus) == sorted(JOB_STATES)
    assert sorted(OutboxStatus) == sorted(OUTBOX_STATES)
    assert JOB.terminal == {"succeeded", "dead", "cancelled"} == JobStatus.FINISHED
    assert OUTBOX.terminal == {"sent", "failed"} == OutboxStatus.TERMINAL


@pytest.mark.parametrize(
    ("machine", "states", "allowed"),
    [(JOB, JOB_STATES, JOB_ALLOWED), (OUTBOX, OUTBOX_STATES, OUTBOX_ALLOWED)],
    ids=["job", "outbox"],
)
def test_moves__every_pair__allowed_iff_listed(
    machine: Machine[Any], states: tuple[str, ...], allowed: set[tuple[str, str]]
) -> None:
    for start, end in itertools.product(states, repeat=2):
        if (start, end) in allowed:
            assert machine.transition(start, end) == end
        else:
            with pytest.raises(Conflict) as info:
                machine.transition(start, end)
            assert f"'{start}'" in info.value.message and f"'{end}'" in info.value.message
    for target in states:  # what the set-based UPDATEs select from
        assert machine.sources(target) == {a for a, b in allowed if b == target}
