"""The one filter language: parse input into an immutable tree, compile it to a Python predicate (real
time) and to a SQLAlchemy expression (bulk). Both compilers give the same answer for every tree and every
record; see docs/audiences.md for the language and its null and type rules."""

from .durations import format_duration, parse_duration
from .errors import FilterError
from .model import (
    EVENTS_KEY,
    EXPERIENCE_EVENT_TYPES,
    OPERATORS,
    All,
    AnyOf,
    Condition,
    EventCondition,
    ExperienceEvent,
    Node,
    Not,
    SegmentRef,
    experience_event_name,
)
from .parse import MAX_DEPTH, MAX_NODES, parse
from .predicate import MATCHERS_BY_OPERATOR, Predicate, to_predicate
from .refs import Resolver, expand, segments_of
from .sql import EventsTable, SqlModel, column_kind, to_sql
from .walk import fields_of, has_behavioural, needs_clock, to_json

__all__ = [
    "EVENTS_KEY",
    "EXPERIENCE_EVENT_TYPES",
    "MATCHERS_BY_OPERATOR",
    "MAX_DEPTH",
    "MAX_NODES",
    "OPERATORS",
    "All",
    "AnyOf",
    "Condition",
    "EventCondition",
    "EventsTable",
    "ExperienceEvent",
    "FilterError",
    "Node",
    "Not",
    "Predicate",
    "Resolver",
    "SegmentRef",
    "SqlModel",
    "column_kind",
    "expand",
    "experience_event_name",
    "fields_of",
    "format_duration",
    "has_behavioural",
    "needs_clock",
    "parse",
    "parse_duration",
    "segments_of",
    "to_json",
    "to_predicate",
    "to_sql",
]
