"""Input (canonical tree, seed 004's flat rule list, or empty) -> one validated immutable tree."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from .durations import parse_duration
from .errors import FilterError
from .model import (
    COUNT_OPERATORS,
    EXPERIENCE_EVENT_TYPES,
    OPERATORS,
    All,
    AnyOf,
    Condition,
    EventCondition,
    ExperienceEvent,
    Node,
    Not,
    Scalar,
    SegmentRef,
    Value,
)
from .values import parse_instant

__all__ = [
    "FIELD_PATTERN",
    "MAX_DEPTH",
    "MAX_LIST",
    "MAX_NODES",
    "MAX_STRING",
    "VALIDATORS_BY_OPERATOR",
    "parse",
]

MAX_DEPTH = 32
MAX_NODES = 500
MAX_LIST = 10_000
MAX_STRING = 10_000
MAX_INT = 2**63 - 1
# Dotted paths of plain identifiers: what a real-time record can be indexed by and what an entity model
# can resolve. Anything else (quotes, spaces, semicolons) is refused before it gets near SQL.
FIELD_PATTERN = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]{0,99}(?:\.[A-Za-z_$][A-Za-z0-9_$-]{0,99}){0,7}")
_CONDITION_KEYS = frozenset({"field", "operator", "value"})
_EVENT_KEYS = frozenset({"event", "count", "within_last", "where"})
_EXPERIENCE_KEYS = frozenset({"experience_event", "experiences", "within_last"})
#: Segment and experience ids: what `new_id()` makes, and friendlier prefixed ids; never SQL text.
ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}")
_GROUP_KEYS = ("all", "any", "not")


def parse(raw: Any, *, root: str = "filter") -> Node:
    """Parse and validate a filter. `root` names the input in error paths (``filters[2].operator``).

    ``None``, ``{}`` and ``[]`` match everyone (an empty All)."""
    return _Parser().node(raw, root, depth=1, in_where=False, conjunction_allowed=False)


class _Parser:
    def __init__(self) -> None:
        self.count = 0

    def node(self, raw: Any, path: str, *, depth: int, in_where: bool, conjunction_allowed: bool) -> Node:
        if depth > MAX_DEPTH:
            raise FilterError(path, f"filter is nested deeper than {MAX_DEPTH} levels")
        if raw is None or (isinstance(raw, Mapping | list) and len(raw) == 0):
            return All(path=path)
        self.count += 1
        if self.count > MAX_NODES:
            raise FilterError(path, f"filter has more than {MAX_NODES} nodes")
        if isinstance(raw, list):
            return self.flat(raw, path, depth=depth, in_where=in_where)
        if not isinstance(raw, Mapping):
            raise FilterError(path, f"expected an object or a list of rules, got {_kind(raw)}")
        keys = set(raw)
        if conjunction_allowed:
            keys.discard("conjunction")
        if not all(isinstance(k, str) for k in keys):
            raise FilterError(path, "object keys must be strings")
        groups = [k for k in _GROUP_KEYS if k in keys]
        if groups:
            if len(keys) != 1:
                extra = sorted(keys - {groups[0]})[0]
                raise FilterError(path, f"a '{groups[0]}' group takes no other key, got '{extra}'")
            return self.group(
                groups[0], raw[groups[0]], f"{path}.{groups[0]}", depth=depth, in_where=in_where
            )
        if "event" in keys:
            if in_where:
                raise FilterError(path, "behavioural conditions cannot be nested inside 'where'")
            _no_unknown_keys(keys, _EVENT_KEYS, path)
            return self.event(raw, path, depth=depth)
        if "segment" in keys:
            if in_where:
                raise FilterError(path, "segment conditions cannot be nested inside 'where'")
            _no_unknown_keys(keys, frozenset({"segment"}), path)
            return SegmentRef(segment=_id(raw["segment"], f"{path}.segment"), path=path)
        if "experience_event" in keys:
            if in_where:
                raise FilterError(path, "experience conditions cannot be nested inside 'where'")
            _no_unknown_keys(keys, _EXPERIENCE_KEYS, path)
            return experience_event(raw, path)
        if "field" in keys or "operator" in keys:
            _no_unknown_keys(keys, _CONDITION_KEYS, path)
            return condition(raw, path)
        raise FilterError(
            path,
            "expected 'all', 'any', 'not', a condition with 'field', an 'event', a 'segment' or an "
            f"'experience_event', got keys {sorted(keys)}",
        )

    def group(self, kind: str, raw: Any, path: str, *, depth: int, in_where: bool) -> Node:
        if kind == "not":
            if not isinstance(raw, Mapping | list) or not raw:
                raise FilterError(path, "'not' takes one non-empty filter")
            child = self.node(raw, path, depth=depth + 1, in_where=in_where, conjunction_allowed=False)
            return Not(child, path=path[: -len(".not")])
        if not isinstance(raw, list):
            raise FilterError(path, f"'{kind}' takes a list of filters, got {_kind(raw)}")
        children = tuple(
            self.node(item, f"{path}[{i}]", depth=depth + 1, in_where=in_where, conjunction_allowed=False)
            for i, item in enumerate(raw)
        )
        return _group(All if kind == "all" else AnyOf, children, path[: -len(kind) - 1])

    def flat(self, raw: list[Any], path: str, *, depth: int, in_where: bool) -> Node:
        """Seed 004's rule list: each rule's `conjunction` joins it to the previous one; `and` binds tighter
        than `or` (as in SQL), so the list is an OR of AND-runs."""
        runs: list[list[Node]] = [[]]
        for i, item in enumerate(raw):
            item_path = f"{path}[{i}]"
            conjunction = "and"
            if isinstance(item, Mapping) and "conjunction" in item:
                conjunction = item["conjunction"]
                if not isinstance(conjunction, str) or conjunction.lower() not in ("and", "or"):
                    raise FilterError(
                        f"{item_path}.conjunction", f"expected 'and' or 'or', got {conjunction!r}"
                    )
                conjunction = conjunction.lower()
            if not isinstance(item, Mapping):
                raise FilterError(item_path, f"expected a rule object, got {_kind(item)}")
            child = self.node(item, item_path, depth=depth + 1, in_where=in_where, conjunction_allowed=True)
            if conjunction == "or" and i > 0:
                runs.append([])
            runs[-1].append(child)
        ands = tuple(_group(All, tuple(run), path) for run in runs)
        return _group(AnyOf, ands, path)

    def event(self, raw: Mapping[str, Any], path: str, *, depth: int) -> Node:
        name = raw["event"]
        if not isinstance(name, str) or not name or len(name) > 200 or "\x00" in name:
            raise FilterError(f"{path}.event", "expected a non-empty event name (at most 200 characters)")
        count_operator, count = "gte", 1
        if raw.get("count") is not None:
            spec = raw["count"]
            if not isinstance(spec, Mapping) or len(spec) != 1:
                raise FilterError(f"{path}.count", 'expected one comparison like {"gte": 2} (gte, lte or eq)')
            ((count_operator, count),) = spec.items()
            if count_operator not in COUNT_OPERATORS:
                raise FilterError(
                    f"{path}.count", f"unknown count operator {count_operator!r}: use gte, lte or eq"
                )
            if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1_000_000_000:
                raise FilterError(
                    f"{path}.count.{count_operator}", "expected a whole number from 0 to 1000000000"
                )
        within = None
        if raw.get("within_last") is not None:
            within = parse_duration(raw["within_last"], path=f"{path}.within_last")
        where = None
        if raw.get("where") not in (None, {}, []):
            where = self.node(
                raw["where"], f"{path}.where", depth=depth + 1, in_where=True, conjunction_allowed=False
            )
        return EventCondition(
            event=name, count_operator=count_operator, count=count, within_last=within, where=where, path=path
        )


def _id(value: Any, path: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise FilterError(path, f"expected an id (letters, digits, '_', '-', '.', ':'), got {value!r}")
    return value


def experience_event(raw: Mapping[str, Any], path: str) -> ExperienceEvent:
    kind = raw["experience_event"]
    if kind not in EXPERIENCE_EVENT_TYPES:
        raise FilterError(
            f"{path}.experience_event", f"expected one of {', '.join(EXPERIENCE_EVENT_TYPES)}, got {kind!r}"
        )
    ids = raw.get("experiences")
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, list):
        raise FilterError(f"{path}.experiences", f"expected a list of experience ids, got {_kind(ids)}")
    if len(ids) > MAX_LIST:
        raise FilterError(f"{path}.experiences", f"list has more than {MAX_LIST} values")
    experiences = tuple(dict.fromkeys(_id(v, f"{path}.experiences[{i}]") for i, v in enumerate(ids)))
    within = None
    if raw.get("within_last") is not None:
        within = parse_duration(raw["within_last"], path=f"{path}.within_last")
    return ExperienceEvent(kind=kind, experiences=experiences, within_last=within, path=path)


def condition(raw: Mapping[str, Any], path: str) -> Condition:
    field = raw.get("field")
    if not isinstance(field, str) or not FIELD_PATTERN.fullmatch(field):
        raise FilterError(
            f"{path}.field",
            f"invalid field {field!r}: expected a dotted path of letters, digits, '_', '-' or '$' "
            "(like 'user.plan')",
        )
    operator = raw.get("operator")
    validate = VALIDATORS_BY_OPERATOR.get(operator) if isinstance(operator, str) else None
    if validate is None or not isinstance(operator, str):
        raise FilterError(
            f"{path}.operator", f"unknown operator {operator!r}: expected one of {', '.join(OPERATORS)}"
        )
    value = validate(raw.get("value"), "value" in raw, f"{path}.value")
    return Condition(field=field, operator=operator, value=value, path=path)


def _group(cls: type[All] | type[AnyOf], children: tuple[Node, ...], path: str) -> Node:
    # A group of one is its child: the same meaning, one level less to evaluate.
    if len(children) == 1:
        return children[0]
    return cls(children, path=path)


def _no_unknown_keys(keys: set[str], allowed: frozenset[str], path: str) -> None:
    unknown = sorted(keys - allowed)
    if unknown:
        raise FilterError(path, f"unknown key {unknown[0]!r}")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


# ---- value shapes, one validator per operator ---------------------------------------------------


def _scalar(value: Any, path: str) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise FilterError(path, "integer is out of the 64-bit range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(path, "number must be finite")
        return value
    if isinstance(value, str):
        return _string(value, path)
    raise FilterError(path, f"expected a string, number or boolean, got {_kind(value)}")


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise FilterError(path, f"expected a string, got {_kind(value)}")
    if len(value) > MAX_STRING:
        raise FilterError(path, f"string is longer than {MAX_STRING} characters")
    if "\x00" in value:
        raise FilterError(path, "string contains a NUL character")
    return value


def _require(present: bool, path: str) -> None:
    if not present:
        raise FilterError(path, "a value is required for this operator")


def _any_scalar(value: Any, present: bool, path: str) -> Value:
    _require(present, path)
    if value is None:
        raise FilterError(
            path, "value cannot be null: use 'exists' or 'not_exists' to test for a missing field"
        )
    return _scalar(value, path)


def _ordered(value: Any, present: bool, path: str) -> Value:
    _require(present, path)
    scalar = _any_scalar(value, present, path)
    if isinstance(scalar, bool):
        raise FilterError(path, "expected a number, a string or an ISO timestamp, got a boolean")
    return scalar


def _text(value: Any, present: bool, path: str) -> Value:
    _require(present, path)
    return _string(value, path)


def _list(value: Any, present: bool, path: str) -> Value:
    _require(present, path)
    if not isinstance(value, list):
        raise FilterError(path, f"expected a list of values, got {_kind(value)}")
    if len(value) > MAX_LIST:
        raise FilterError(path, f"list has more than {MAX_LIST} values")
    items: list[Scalar] = []
    for i, item in enumerate(value):
        if item is None:
            raise FilterError(f"{path}[{i}]", "list values cannot be null")
        items.append(_scalar(item, f"{path}[{i}]"))
    return tuple(items)


def _range(value: Any, present: bool, path: str) -> Value:
    _require(present, path)
    if not isinstance(value, list) or len(value) != 2:
        raise FilterError(path, "expected a list of two values [low, high]")
    low = _ordered(value[0], True, f"{path}[0]")
    high = _ordered(value[1], True, f"{path}[1]")
    assert not isinstance(low, tuple | timedelta) and not isinstance(high, tuple | timedelta)
    if isinstance(low, str) != isinstance(high, str):
        raise FilterError(path, "both bounds must be numbers or both strings/timestamps")
    return (low, high)  # type: ignore[return-value]


def _nothing(value: Any, present: bool, path: str) -> Value:
    if value is not None:
        raise FilterError(path, "this operator takes no value")
    return None


def _instant_or_duration(value: Any, present: bool, path: str) -> Value:
    _require(present, path)
    text = _string(value, path)
    if text and text[0].isdigit() and text[-1].lower() in "smhdw" and not text[-1].isdigit():
        return parse_duration(text, path=path)
    instant = parse_instant(text)
    if instant is None:
        raise FilterError(path, f"expected an ISO 8601 timestamp or a duration like '30d', got {text!r}")
    return instant


def _duration(value: Any, present: bool, path: str) -> Value:
    _require(present, path)
    return parse_duration(value, path=path)


VALIDATORS_BY_OPERATOR: dict[str, Callable[[Any, bool, str], Value]] = {
    "is": _any_scalar,
    "is_not": _any_scalar,
    "contains": _any_scalar,
    "gt": _ordered,
    "gte": _ordered,
    "lt": _ordered,
    "lte": _ordered,
    "in": _list,
    "not_in": _list,
    "exists": _nothing,
    "not_exists": _nothing,
    "starts_with": _text,
    "ends_with": _text,
    "between": _range,
    "before": _instant_or_duration,
    "after": _instant_or_duration,
    "within_last": _duration,
}
