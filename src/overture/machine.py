"""Status machines as data: a table of allowed moves, one `transition()`, a 409 naming both states.

Every status that changes over time (journey lifecycle and runs, segment reach, jobs, outbox
messages, batch runs, broadcast executions) is one `Machine`. Code never assigns such a status by
hand: it asks the machine, so a move the table does not list fails loudly instead of corrupting state.

    RUN = Machine("run", RunStatus, {(PENDING, RUNNING), (RUNNING, COMPLETED), ...})
    run.status = RUN.transition(run.status, RunStatus.COMPLETED)   # or RUN.move(run, "completed")

A table may name the action that makes each move (journeys: activate/pause/...); then
`transition(current, target, action)` also checks that the action is the one listed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from overture.errors import Conflict

__all__ = ["Machine"]

S = TypeVar("S", bound=StrEnum)


class Machine(Generic[S]):
    def __init__(
        self,
        name: str,
        states: type[S],
        moves: Mapping[tuple[S, S], Any] | Iterable[tuple[S, S]],
        *,
        terminal: Iterable[S] = (),
    ) -> None:
        self.name = name
        self.states = states
        table = dict(moves) if isinstance(moves, Mapping) else dict.fromkeys(moves)
        for a, b in table:
            if not isinstance(a, states) or not isinstance(b, states):
                raise TypeError(f"{name}: ({a!r}, {b!r}) are not both {states.__name__}")
        #: (from, to) -> the action that makes the move (None where moves have no named action).
        self.table: Mapping[tuple[S, S], Any] = MappingProxyType(table)
        self.pairs: frozenset[tuple[S, S]] = frozenset(table)
        #: States no move leaves (documentation and checks: nothing may leave them).
        self.terminal: frozenset[S] = frozenset(terminal)
        leaving = {a for a, _ in table}
        if self.terminal & leaving:
            raise ValueError(f"{name}: terminal states {sorted(self.terminal & leaving)} have moves out")

    def allowed(self, current: str, target: str) -> bool:
        try:
            return (self.states(current), self.states(target)) in self.pairs
        except ValueError:
            return False

    def transition(self, current: str, target: str, action: Any = None) -> S:
        """`target` as a state if the table allows `current -> target` (by `action`, when the table
        names actions); otherwise Conflict (409) naming both states."""
        try:
            pair = (self.states(current), self.states(target))
        except ValueError:
            raise self._refused(current, target, action)
        if pair not in self.pairs or (action is not None and self.table[pair] != action):
            raise self._refused(current, target, action)
        return pair[1]

    def move(self, obj: Any, target: str, *, attr: str = "status", action: Any = None) -> S:
        """Set `obj.<attr>` to `target` through `transition()`; returns the new state."""
        new = self.transition(getattr(obj, attr), target, action)
        setattr(obj, attr, new.value)
        return new

    def sources(self, target: str) -> frozenset[S]:
        """The states `target` may be reached from (for set-based `UPDATE ... WHERE status IN`)."""
        return frozenset(a for a, b in self.pairs if b == self.states(target))

    def _refused(self, current: str, target: str, action: Any) -> Conflict:
        details: dict[str, Any] = {"from": str(current), "to": str(target)}
        if action is not None:
            details["action"] = str(action)
        return Conflict(f"Cannot move {self.name} from '{current}' to '{target}'", details=details)
