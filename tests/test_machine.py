"""`overture.machine.Machine`: every pair of states against allowed pairs written here, not read from the
table, so a wrong table entry (or a Machine that ignores its table) fails."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import StrEnum

import pytest

from overture.errors import Conflict
from overture.machine import Machine


class Run(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


P, R, C, F, X = Run.PENDING, Run.RUNNING, Run.COMPLETED, Run.FAILED, Run.CANCELLED

RUN = Machine(
    "run",
    Run,
    {(P, R), (P, X), (R, C), (R, F), (R, X), (F, P)},
    terminal={C, X},
)

# Written out by hand, independently of the table above.
ALLOWED = {
    ("pending", "running"),
    ("pending", "cancelled"),
    ("running", "completed"),
    ("running", "failed"),
    ("running", "cancelled"),
    ("failed", "pending"),
}


class Door(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    LOCKED = "locked"


# A table that names the action making each move (like the journey lifecycle).
DOOR = Machine(
    "door",
    Door,
    {
        (Door.OPEN, Door.CLOSED): "close",
        (Door.CLOSED, Door.OPEN): "open",
        (Door.CLOSED, Door.LOCKED): "lock",
        (Door.LOCKED, Door.CLOSED): "unlock",
    },
)
DOOR_ACTIONS = {
    ("open", "closed"): "close",
    ("closed", "open"): "open",
    ("closed", "locked"): "lock",
    ("locked", "closed"): "unlock",
}


def _refused(exc: pytest.ExceptionInfo[Conflict], name: str, current: str, target: str) -> None:
    assert exc.value.status_code == 409
    assert exc.value.message == f"Cannot move {name} from '{current}' to '{target}'"
    assert exc.value.details["from"] == current and exc.value.details["to"] == target


@pytest.mark.parametrize(("current", "target"), list(itertools.product([s.value for s in Run], repeat=2)))
def test_transition__every_pair__allowed_succeed_others_409_naming_both(current: str, target: str) -> None:
    if (current, target) in ALLOWED:
        result = RUN.transition(current, target)
        assert result is Run(target)
        assert RUN.allowed(current, target)
    else:
        with pytest.raises(Conflict) as exc:
            RUN.transition(current, target)
        _refused(exc, "run", current, target)
        assert not RUN.allowed(current, target)


def test_transition__enum_members_and_strings__same_answer() -> None:
    assert RUN.transition(Run.PENDING, Run.RUNNING) is Run.RUNNING
    assert RUN.transition("pending", Run.RUNNING) is Run.RUNNING
    with pytest.raises(Conflict):
        RUN.transition(Run.COMPLETED, "running")


@pytest.mark.parametrize(("current", "target"), list(itertools.product([s.value for s in Door], repeat=2)))
@pytest.mark.parametrize("action", ["open", "close", "lock", "unlock", None])
def test_transition__named_actions__only_the_listed_action_makes_the_move(
    current: str, target: str, action: str | None
) -> None:
    listed = DOOR_ACTIONS.get((current, target))
    if listed is not None and action in (listed, None):
        assert DOOR.transition(current, target, action) is Door(target)
    else:
        with pytest.raises(Conflict) as exc:
            DOOR.transition(current, target, action)
        _refused(exc, "door", current, target)
        if action is not None:
            assert exc.value.details["action"] == action
        else:
            assert "action" not in exc.value.details


@pytest.mark.parametrize(
    ("current", "target"),
    [("bogus", "running"), ("pending", "bogus"), ("", ""), ("PENDING", "RUNNING"), ("pending ", "running")],
)
def test_transition__unknown_state_strings__409_naming_both(current: str, target: str) -> None:
    with pytest.raises(Conflict) as exc:
        RUN.transition(current, target)
    _refused(exc, "run", current, target)
    assert not RUN.allowed(current, target)


@dataclass
class Row:
    status: str
    phase: str = "pending"


def test_move__allowed__sets_the_attribute_to_the_plain_value() -> None:
    row = Row("pending")
    assert RUN.move(row, "running") is Run.RUNNING
    assert row.status == "running" and type(row.status) is str  # the value, not the enum member
    RUN.move(row, Run.COMPLETED)
    assert row.status == "completed"


def test_move__refused__leaves_the_attribute_unchanged() -> None:
    row = Row("completed")
    with pytest.raises(Conflict) as exc:
        RUN.move(row, "running")
    _refused(exc, "run", "completed", "running")
    assert row.status == "completed"


def test_move__other_attribute_and_action() -> None:
    row = Row("x", phase="pending")
    RUN.move(row, "running", attr="phase")
    assert (row.status, row.phase) == ("x", "running")
    door = Row("closed")
    with pytest.raises(Conflict):
        DOOR.move(door, "locked", action="close")
    assert door.status == "closed"
    DOOR.move(door, "locked", action="lock")
    assert door.status == "locked"


@pytest.mark.parametrize("target", [s.value for s in Run])
def test_sources__every_state__exactly_the_listed_origins(target: str) -> None:
    expected = {a for a, b in ALLOWED if b == target}
    assert {s.value for s in RUN.sources(target)} == expected
    assert all(isinstance(s, Run) for s in RUN.sources(target))


def test_sources__unknown_state__value_error() -> None:
    with pytest.raises(ValueError, match="bogus"):
        RUN.sources("bogus")


def test_terminal__no_move_leaves_a_terminal_state() -> None:
    assert RUN.terminal == {Run.COMPLETED, Run.CANCELLED}
    for state, target in itertools.product(RUN.terminal, Run):
        assert not RUN.allowed(state, target)


def test_construction__terminal_state_with_a_move_out__refused() -> None:
    with pytest.raises(ValueError, match="terminal"):
        Machine("run", Run, {(P, R), (R, C), (C, P)}, terminal={C})


def test_construction__pair_of_another_enum_or_a_string__refused() -> None:
    with pytest.raises(TypeError, match="Run"):
        Machine("run", Run, {(P, Door.OPEN)})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Machine("run", Run, {("pending", R)})  # type: ignore[arg-type]


def test_table__read_only_and_pairs_match() -> None:
    assert {(a.value, b.value) for a, b in RUN.pairs} == ALLOWED
    with pytest.raises(TypeError):
        RUN.table[(C, P)] = None  # type: ignore[index]
    assert DOOR.table[(Door.CLOSED, Door.LOCKED)] == "lock"
