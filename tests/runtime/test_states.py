"""The job and outbox status machines against their documented moves, over every pair of states.

The allowed pairs are written here, not read from `overture.runtime.states`, so a wrong table entry
(a move added or dropped by mistake) fails."""

from __future__ import annotations

import itertools

import pytest

from overture.errors import Conflict
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


@pytest.mark.parametrize(("start", "end"), list(itertools.product(JOB_STATES, repeat=2)))
def test_job_moves__every_pair(start: str, end: str) -> None:
    if (start, end) in JOB_ALLOWED:
        assert JOB.transition(start, end) == end
    else:
        with pytest.raises(Conflict) as info:
            JOB.transition(start, end)
        assert f"'{start}'" in info.value.message and f"'{end}'" in info.value.message


@pytest.mark.parametrize(("start", "end"), list(itertools.product(OUTBOX_STATES, repeat=2)))
def test_outbox_moves__every_pair(start: str, end: str) -> None:
    if (start, end) in OUTBOX_ALLOWED:
        assert OUTBOX.transition(start, end) == end
    else:
        with pytest.raises(Conflict) as info:
            OUTBOX.transition(start, end)
        assert f"'{start}'" in info.value.message and f"'{end}'" in info.value.message
