"""Questions about a parsed tree that callers ask at save time, and its canonical JSON form."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from ..encode import isoformat_z
from .durations import format_duration
from .model import All, AnyOf, Condition, EventCondition, ExperienceEvent, Node, Not, SegmentRef

__all__ = ["fields_of", "has_behavioural", "needs_clock", "to_json", "walk"]


def walk(node: Node) -> Iterator[Node]:
    """Every node of the profile-level tree, depth first (not the insides of an event's `where`)."""
    yield node
    if isinstance(node, All | AnyOf):
        for child in node.children:
            yield from walk(child)
    elif isinstance(node, Not):
        yield from walk(node.child)


def fields_of(node: Node) -> frozenset[str]:
    """The profile fields a tree reads (event property fields inside `where` are not profile fields)."""
    return frozenset(n.field for n in walk(node) if isinstance(n, Condition))


def has_behavioural(node: Node) -> bool:
    """Whether the tree reads the event stream (behavioural or experience conditions)."""
    return any(isinstance(n, EventCondition | ExperienceEvent) for n in walk(node))


def needs_clock(node: Node) -> bool:
    """Whether evaluating the tree depends on the current time (relative operators, event windows)."""
    for n in walk(node):
        if isinstance(n, Condition) and n.relative:
            return True
        if isinstance(n, ExperienceEvent) and n.within_last is not None:
            return True
        if isinstance(n, EventCondition) and (
            n.within_last is not None or (n.where is not None and needs_clock(n.where))
        ):
            return True
    return False


def to_json(node: Node) -> Any:
    """The canonical JSON form; ``parse(to_json(node)) == node``."""
    if isinstance(node, All):
        return {"all": [to_json(c) for c in node.children]}
    if isinstance(node, AnyOf):
        return {"any": [to_json(c) for c in node.children]}
    if isinstance(node, Not):
        return {"not": to_json(node.child)}
    if isinstance(node, Condition):
        out: dict[str, Any] = {"field": node.field, "operator": node.operator}
        if node.value is not None or node.operator not in ("exists", "not_exists"):
            out["value"] = _value_json(node.value)
        return out
    if isinstance(node, EventCondition):
        event: dict[str, Any] = {"event": node.event, "count": {node.count_operator: node.count}}
        if node.within_last is not None:
            event["within_last"] = format_duration(node.within_last)
        if node.where is not None:
            event["where"] = to_json(node.where)
        return event
    if isinstance(node, SegmentRef):
        return {"segment": node.segment}
    if isinstance(node, ExperienceEvent):
        spec: dict[str, Any] = {"experience_event": node.kind, "experiences": list(node.experiences)}
        if node.within_last is not None:
            spec["within_last"] = format_duration(node.within_last)
        return spec
    raise TypeError(f"not a filter node: {node!r}")


def _value_json(value: object) -> Any:
    if isinstance(value, tuple):
        return [_value_json(v) for v in value]
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, datetime):
        return isoformat_z(value)
    return value
