"""The parsed filter tree: small frozen dataclasses, hashable, so compiled forms can be cached by node."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeAlias

__all__ = [
    "COUNT_OPERATORS",
    "EVENTS_KEY",
    "EXPERIENCE_EVENT_TYPES",
    "NEGATED_OPERATORS",
    "OPERATORS",
    "RELATIVE_TIME_OPERATORS",
    "All",
    "AnyOf",
    "Condition",
    "EventCondition",
    "ExperienceEvent",
    "Node",
    "Not",
    "Scalar",
    "SegmentRef",
    "Value",
    "experience_event_name",
]

Scalar: TypeAlias = str | int | float | bool
# What a condition carries after parsing: a scalar, a tuple (in/not_in/between), an absolute instant
# (aware UTC) or a duration (within_last, and before/after relative to now), or None (exists).
Value: TypeAlias = Scalar | tuple[Scalar, ...] | datetime | timedelta | None

OPERATORS = (
    "is",
    "is_not",
    "contains",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "exists",
    "not_exists",
    "starts_with",
    "ends_with",
    "between",
    "before",
    "after",
    "within_last",
)
# The three operators that are true on a missing/null field; each is the negation of a positive one.
NEGATED_OPERATORS = {"is_not": "is", "not_in": "in", "not_exists": "exists"}
RELATIVE_TIME_OPERATORS = frozenset({"before", "after", "within_last"})
COUNT_OPERATORS = ("gte", "lte", "eq")
# Where a real-time record carries its events for behavioural conditions.
EVENTS_KEY = "$events"


@dataclass(frozen=True, slots=True)
class Node:
    """Base of every tree node. `path` locates the node in the input for error messages; it takes no
    part in equality or hashing, so the same tree parsed from two input forms compares equal."""

    path: str = field(default="", compare=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class All(Node):
    """True when every child is (an empty All matches everyone)."""

    children: tuple[Node, ...] = ()


@dataclass(frozen=True, slots=True)
class AnyOf(Node):
    """True when at least one child is (an empty AnyOf matches no one)."""

    children: tuple[Node, ...] = ()


@dataclass(frozen=True, slots=True)
class Not(Node):
    child: Node = field(default_factory=All)


@dataclass(frozen=True, slots=True, eq=False)
class Condition(Node):
    """`field operator value` over one profile field (a dotted path)."""

    field: str = ""
    operator: str = "exists"
    value: Value = None

    # Python says True == 1 and hash(True) == hash(1); this language does not, so equality (and the
    # compile caches keyed on nodes) compares values with their type.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Condition):
            return NotImplemented
        return (self.field, self.operator, _typed(self.value)) == (
            other.field,
            other.operator,
            _typed(other.value),
        )

    def __hash__(self) -> int:
        return hash((self.field, self.operator, _typed(self.value)))

    @property
    def relative(self) -> bool:
        """Whether evaluating needs the current time."""
        return self.operator == "within_last" or isinstance(self.value, timedelta)


@dataclass(frozen=True, slots=True)
class EventCondition(Node):
    """How many of the entity's events named `event` (within the window, matching `where` over the
    event's properties) there are, compared with `count` using `count_operator`."""

    event: str = ""
    count_operator: str = "gte"
    count: int = 1
    within_last: timedelta | None = None
    where: Node | None = None


@dataclass(frozen=True, slots=True)
class SegmentRef(Node):
    """Membership of another segment (`{"segment": "<id>"}`): true exactly for that segment's members.
    Compilers replace it by the referenced segment's tree (see `refs.expand`); cycles are refused."""

    segment: str = ""


#: The kinds of experience events (seed 000): delivered, seen, converted.
EXPERIENCE_EVENT_TYPES = ("delivery", "impression", "conversion")


def experience_event_name(kind: str, experience_id: str) -> str:
    """The event-stream name of an experience event: one name per (kind, experience), so a condition
    over a set of experiences is an `event IN (...)` lookup on the stream's index, not a JSON scan."""
    return f"experience.{kind}.{experience_id}"


@dataclass(frozen=True, slots=True)
class ExperienceEvent(Node):
    """Whether the entity has at least one `kind` event (delivery, impression, conversion) on any of
    `experiences` (within the window, when one is given). No experiences: never."""

    kind: str = "conversion"
    experiences: tuple[str, ...] = ()
    within_last: timedelta | None = None


def _typed(value: Value) -> object:
    if isinstance(value, tuple):
        return tuple(_typed(v) for v in value)
    return (isinstance(value, bool), value)
