"""Compile a tree once into a Python function over one record (the real-time path).

The tree becomes the source of one small function (constants passed in as closure variables, never
written into the source), so a call costs a few dictionary lookups and comparisons, not a tree walk."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from .errors import FilterError
from .model import (
    EVENTS_KEY,
    NEGATED_OPERATORS,
    All,
    AnyOf,
    Condition,
    EventCondition,
    ExperienceEvent,
    Node,
    Not,
    experience_event_name,
)
from .refs import Resolver, expand
from .values import as_instant, is_number, string_instants

__all__ = ["MATCHERS_BY_OPERATOR", "Predicate", "to_predicate"]

Predicate = Callable[[Mapping[str, Any]], bool]
Clock = Callable[[], datetime]

_NUMBER_TYPES = frozenset({int, float, Decimal})
_LIST_TYPES = frozenset({list, tuple})


def to_predicate(node: Node, *, now: Clock | None = None, segments: Resolver | None = None) -> Predicate:
    """A function `record -> bool` for `node`. Dotted fields index nested mappings; a record's events
    (for behavioural conditions) are a sequence of ``{"event", "timestamp", "properties"}`` mappings
    under the key ``"$events"``. `now` is called by relative-time operators at evaluation time;
    compiling a tree that needs it without one raises FilterError. `segments` resolves segment
    references (`refs.expand`)."""
    return _compile_cached(expand(node, segments), now)


@lru_cache(maxsize=512)
def _compile_cached(node: Node, now: Clock | None) -> Predicate:
    return _compile(node, now)


def _compile(node: Node, now: Clock | None) -> Predicate:
    gen = _Gen(now)
    body = gen.expr(node, "r")
    return gen.build(body)


class _Gen:
    """Collects the constants and helper functions one generated function closes over."""

    def __init__(self, now: Clock | None) -> None:
        self.now = now
        self.names: dict[str, object] = {}
        self.seen: dict[object, str] = {}
        self.counter = 0

    def const(self, value: object) -> str:
        # One name per distinct constant (keys, type sets and helpers repeat across conditions): a big
        # tree otherwise closes over thousands of cells, which CPython compiles slowly.
        try:
            key: object = (type(value), value)
            hash(key)
        except TypeError:
            key = ("id", id(value))
        name = self.seen.get(key)
        if name is None:
            name = self.seen[key] = f"c{len(self.names)}"
            self.names[name] = value
        return name

    def var(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def clock(self, node: Condition) -> str:
        if self.now is None:
            raise FilterError(
                node.path, f"operator '{node.operator}' needs the current time: pass now= to to_predicate"
            )
        return self.const(self.now)

    def build(self, body: str) -> Predicate:
        params = ", ".join(self.names)
        source = (
            f"def _factory({params}):\n    def predicate(r):\n        return {body}\n    return predicate\n"
        )
        namespace: dict[str, Any] = {}
        exec(compile(source, "<overture.filter>", "exec"), namespace)
        predicate: Predicate = namespace["_factory"](**self.names)
        return predicate

    def expr(self, node: Node, record: str) -> str:
        if isinstance(node, All):
            return (
                "(" + " and ".join(self.expr(c, record) for c in node.children) + ")"
                if node.children
                else "True"
            )
        if isinstance(node, AnyOf):
            return (
                "(" + " or ".join(self.expr(c, record) for c in node.children) + ")"
                if node.children
                else "False"
            )
        if isinstance(node, Not):
            return f"(not {self.expr(node.child, record)})"
        if isinstance(node, Condition):
            # A condition's temporaries are dead once it has been evaluated, so every condition reuses the
            # same few local names (thousands of distinct locals make CPython compile big trees slowly).
            self.counter = 0
            positive = NEGATED_OPERATORS.get(node.operator)
            if positive is not None:
                return f"(not {MATCHERS_BY_OPERATOR[positive](self, node, self.lookup(node.field, record))})"
            return MATCHERS_BY_OPERATOR[node.operator](self, node, self.lookup(node.field, record))
        if isinstance(node, EventCondition):
            return f"{self.const(self.events(node))}({record}.get({self.const(EVENTS_KEY)}))"
        if isinstance(node, ExperienceEvent):
            if node.within_last is not None and self.now is None:
                raise FilterError(
                    f"{node.path}.within_last", "needs the current time: pass now= to to_predicate"
                )
            matcher = _experience_matcher(node, self.now)
            return f"{self.const(matcher)}({record}.get({self.const(EVENTS_KEY)}))"
        raise TypeError(f"not a filter node: {node!r}")

    def lookup(self, field: str, record: str) -> str:
        """Expression for the value at a dotted path; None when any step is missing or not a mapping."""
        keys = field.split(".")
        if len(keys) > 3:
            # Rare and long: one helper call keeps the generated source (and its compile time) small.
            return f"{self.const(_dig)}({record}, {self.const(tuple(keys))})"
        expr = f"{record}.get({self.const(keys[0])})"
        for key in keys[1:]:
            tmp = self.var()
            expr = (
                f"({tmp}.get({self.const(key)}) if ({tmp} := {expr}).__class__ is dict "
                f"else {self.const(_get)}({tmp}, {self.const(key)}))"
            )
        return expr

    def events(self, node: EventCondition) -> Callable[[object], bool]:
        where = _compile(node.where, self.now) if node.where is not None else None
        if node.within_last is not None and self.now is None:
            raise FilterError(f"{node.path}.within_last", "needs the current time: pass now= to to_predicate")
        return _event_counter(node, where, self.now)


def _get(value: object, key: str) -> object:
    return value.get(key) if isinstance(value, Mapping) else None


def _dig(value: object, keys: tuple[str, ...]) -> object:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _event_counter(
    node: EventCondition, where: Predicate | None, now: Clock | None
) -> Callable[[object], bool]:
    name, window, op, target = node.event, node.within_last, node.count_operator, node.count
    # Stop counting as soon as the answer is known: gte N needs N hits; lte/eq N is decided at N + 1.
    limit = target if op == "gte" else target + 1

    def matches(events: object) -> bool:
        hits = 0
        if limit > 0 and isinstance(events, Sequence) and not isinstance(events, str):
            since = until = None
            if window is not None and now is not None:
                until = now()
                since = until - window
            for event in events:
                if not isinstance(event, Mapping) or event.get("event") != name:
                    continue
                if since is not None:
                    at = as_instant(event.get("timestamp"))
                    if at is None or not since <= at <= until:  # type: ignore[operator]
                        continue
                if where is not None:
                    properties = event.get("properties")
                    if not where(properties if isinstance(properties, Mapping) else {}):
                        continue
                hits += 1
                if hits >= limit:
                    break
        if op == "gte":
            return hits >= target
        if op == "lte":
            return hits <= target
        return hits == target

    return matches


def _experience_matcher(node: ExperienceEvent, now: Clock | None) -> Callable[[object], bool]:
    names = frozenset(experience_event_name(node.kind, e) for e in node.experiences)
    window = node.within_last

    def matches(events: object) -> bool:
        if not names or not isinstance(events, Sequence) or isinstance(events, str):
            return False
        since = until = None
        if window is not None and now is not None:
            until = now()
            since = until - window
        for event in events:
            if not isinstance(event, Mapping):
                continue
            name = event.get("event")
            if name.__class__ is not str or name not in names:
                continue
            if since is not None:
                at = as_instant(event.get("timestamp"))
                if at is None or not since <= at <= until:  # type: ignore[operator]
                    continue
            return True
        return False

    return matches


# ---- one matcher per positive operator: (generator, condition, value expression) -> bool expression ----
# A matcher is true only for values of the type its filter value asks for; everything else (null, missing,
# another type) is false, and the negated operators are `not` of their positive form.

Matcher = Callable[[_Gen, Condition, str], str]


def _equals(gen: _Gen, node: Condition, get: str) -> str:
    value = node.value
    v = gen.var()
    if isinstance(value, bool):
        return f"({get} is {gen.const(value)})"
    if isinstance(value, int | float):
        return f"(({v} := {get}) == {gen.const(value)} and {v}.__class__ is not bool)"
    assert isinstance(value, str)
    instants = string_instants([value])
    if instants:
        instant = gen.const(instants[0])
        return f"(({v} := {get}) == {gen.const(value)} or {_instant_of_datetime(gen, v)} == {instant})"
    return f"({get} == {gen.const(value)})"


def _instant_of_datetime(gen: _Gen, v: str) -> str:
    """An instant only for datetime and date values: gt/is/in/between compare ISO strings in records as
    strings."""
    return f"({gen.const(as_instant)}({v}) if isinstance({v}, {gen.const(date)}) else None)"


def _member(gen: _Gen, node: Condition, get: str) -> str:
    assert isinstance(node.value, tuple)
    values = node.value
    v = gen.var()
    parts = []
    strings = frozenset(x for x in values if isinstance(x, str))
    numbers = frozenset(x for x in values if is_number(x))
    bools = frozenset(x for x in values if isinstance(x, bool))
    instants = frozenset(string_instants(values))
    # Every part starts with a type check, so null and unhashable values never reach the set lookups.
    if strings:
        parts.append(f"({v}.__class__ is str and {v} in {gen.const(strings)})")
    if numbers:
        parts.append(f"({v}.__class__ in {gen.const(_NUMBER_TYPES)} and {v} in {gen.const(numbers)})")
    if bools:
        parts.append(f"({v}.__class__ is bool and {v} in {gen.const(bools)})")
    if instants:
        parts.append(f"({_instant_of_datetime(gen, v)} in {gen.const(instants)})")
    if not parts:
        return "False"
    # The first part binds the value (it is evaluated first); the later ones reuse it.
    return "(" + " or ".join(parts).replace(f"({v}.", f"(({v} := {get}).", 1) + ")"


def _comparison(symbol: str) -> Matcher:
    def matcher(gen: _Gen, node: Condition, get: str) -> str:
        value = node.value
        v = gen.var()
        if isinstance(value, int | float) and not isinstance(value, bool):
            numbers = gen.const(_NUMBER_TYPES)
            return f"(({v} := {get}).__class__ in {numbers} and {v} {symbol} {gen.const(value)})"
        assert isinstance(value, str)
        text = f"(({v} := {get}).__class__ is str and {v} {symbol} {gen.const(value)})"
        instants = string_instants([value])
        if not instants:
            return text
        t = gen.var()
        return (
            f"({text} or (({t} := {_instant_of_datetime(gen, v)}) is not None "
            f"and {t} {symbol} {gen.const(instants[0])}))"
        )

    return matcher


def _between(gen: _Gen, node: Condition, get: str) -> str:
    assert isinstance(node.value, tuple)
    low, high = node.value
    v = gen.var()
    if not isinstance(low, str):
        return (
            f"(({v} := {get}).__class__ in {gen.const(_NUMBER_TYPES)} "
            f"and {gen.const(low)} <= {v} <= {gen.const(high)})"
        )
    text = f"(({v} := {get}).__class__ is str and {gen.const(low)} <= {v} <= {gen.const(high)})"
    bounds = string_instants([low, high])
    if len(bounds) != 2 or not isinstance(high, str):
        return text
    t = gen.var()
    return (
        f"({text} or (({t} := {_instant_of_datetime(gen, v)}) is not None "
        f"and {gen.const(bounds[0])} <= {t} <= {gen.const(bounds[1])}))"
    )


def _contains(gen: _Gen, node: Condition, get: str) -> str:
    value = node.value
    v = gen.var()
    in_list = f"({v}.__class__ in {gen.const(_LIST_TYPES)} and {gen.const(_list_contains(value))}({v}))"
    if isinstance(value, str):
        return f"((({v} := {get}).__class__ is str and {gen.const(value)} in {v}) or {in_list})"
    return f"(({v} := {get}) is not None and {in_list})"


def _list_contains(value: Any) -> Callable[[Sequence[object]], bool]:
    """Membership with this language's equality: a string equals a string, a number a number, a boolean
    a boolean (Python alone would say True == 1)."""
    if isinstance(value, bool):
        return lambda items: any(item is value for item in items)
    if isinstance(value, str):
        return lambda items: any(item.__class__ is str and item == value for item in items)
    return lambda items: any(item.__class__ in _NUMBER_TYPES and item == value for item in items)


def _starts_with(gen: _Gen, node: Condition, get: str) -> str:
    v = gen.var()
    return f"(({v} := {get}).__class__ is str and {v}.startswith({gen.const(node.value)}))"


def _ends_with(gen: _Gen, node: Condition, get: str) -> str:
    v = gen.var()
    return f"(({v} := {get}).__class__ is str and {v}.endswith({gen.const(node.value)}))"


def _exists(gen: _Gen, node: Condition, get: str) -> str:
    return f"({get} is not None)"


def _instant(gen: _Gen, get: str) -> tuple[str, str]:
    t = gen.var()
    return t, f"({t} := {gen.const(as_instant)}({get})) is not None"


def _time_bound(gen: _Gen, node: Condition) -> str:
    """The instant a before/after compares with: fixed, or `now - duration` computed per call."""
    if isinstance(node.value, timedelta):
        return f"({gen.clock(node)}() - {gen.const(node.value)})"
    return gen.const(node.value)


def _before(gen: _Gen, node: Condition, get: str) -> str:
    t, present = _instant(gen, get)
    return f"({present} and {t} < {_time_bound(gen, node)})"


def _after(gen: _Gen, node: Condition, get: str) -> str:
    t, present = _instant(gen, get)
    return f"({present} and {t} > {_time_bound(gen, node)})"


def _within_last(gen: _Gen, node: Condition, get: str) -> str:
    t, present = _instant(gen, get)
    n = gen.var()
    return f"({present} and ({n} := {gen.clock(node)}()) - {gen.const(node.value)} <= {t} <= {n})"


MATCHERS_BY_OPERATOR: dict[str, Matcher] = {
    "is": _equals,
    "in": _member,
    "gt": _comparison(">"),
    "gte": _comparison(">="),
    "lt": _comparison("<"),
    "lte": _comparison("<="),
    "between": _between,
    "contains": _contains,
    "starts_with": _starts_with,
    "ends_with": _ends_with,
    "exists": _exists,
    "before": _before,
    "after": _after,
    "within_last": _within_last,
}
