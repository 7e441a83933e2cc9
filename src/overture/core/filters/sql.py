"""Compile a tree into one SQLAlchemy boolean expression (bulk evaluation inside any SQL engine).

The expression is two-valued: it is never NULL, so a caller may wrap it in NOT, CASE or a count and get
exactly what the Python predicate says. Field names resolve through the SqlModel (never spliced into
SQL); every value is a bound parameter."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from .errors import FilterError
from .model import (
    NEGATED_OPERATORS,
    All,
    AnyOf,
    Condition,
    EventCondition,
    ExperienceEvent,
    Node,
    Not,
    Scalar,
    experience_event_name,
)
from .refs import Resolver, expand
from .sqljson import (
    BinaryOrder,
    JsonArrayHas,
    JsonBoolean,
    JsonNumber,
    JsonPresent,
    JsonString,
    TextMatch,
    json_path_params,
)
from .values import is_number, string_instants

__all__ = ["SQL_BUILDERS_BY_OPERATOR", "EventsTable", "SqlModel", "to_sql"]

Expr = ColumnElement[bool]


@dataclass(frozen=True, eq=False)
class EventsTable:
    """The event stream behavioural conditions count over: one row per event with the entity's id, the
    event name, its timestamp and a JSON properties document. `scope` adds equality filters every event
    query carries (e.g. ``((events.c.workspace_id, "ws_1"),)``)."""

    entity_id: ColumnElement[Any]
    event: ColumnElement[Any]
    timestamp: ColumnElement[Any]
    properties: ColumnElement[Any] | None = None
    scope: tuple[tuple[ColumnElement[Any], Any], ...] = ()


@dataclass(frozen=True, eq=False)
class SqlModel:
    """How field names resolve: `columns` maps each field to a typed column (``table.c.plan``); a dotted
    field whose first part names a JSON column reads inside it (``traits.tier``). `entity_key` and
    `events` are needed only by behavioural conditions."""

    columns: Mapping[str, ColumnElement[Any]]
    entity_key: ColumnElement[Any] | None = None
    events: EventsTable | None = None


def to_sql(node: Node, model: SqlModel, *, now: datetime, segments: Resolver | None = None) -> Expr:
    """A boolean expression true exactly for the rows `node` matches (never NULL). `now` anchors the
    relative-time operators and behavioural windows; naive means UTC. `segments` resolves segment
    references (`refs.expand`; the referenced segments must be over the same model)."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return _Compiler(model, now).expr(expand(node, segments), _ModelFields(model))


# ---- field access: what a field can be compared as -------------------------------------------------

STRING, NUMBER, BOOLEAN, TIMESTAMP, DATE, JSON = "string", "number", "boolean", "timestamp", "date", "json"
Comparison = Callable[[Any, Any], Any]  # operator.eq / lt / le / gt / ge over (column, bound)


def column_kind(type_: sa.types.TypeEngine[Any]) -> str | None:
    """The language's type for a column type, or None when filters cannot compare it."""
    if isinstance(type_, sa.types.TypeDecorator):
        return column_kind(type_.impl_instance)
    if isinstance(type_, sa.Boolean):
        return BOOLEAN
    if isinstance(type_, sa.Integer | sa.Numeric | sa.Float):
        return NUMBER
    if isinstance(type_, sa.String):
        return STRING
    if isinstance(type_, sa.DateTime):
        return TIMESTAMP
    if isinstance(type_, sa.Date):
        return DATE
    if isinstance(type_, sa.JSON):
        return JSON
    return None


def _timezone_aware(type_: sa.types.TypeEngine[Any]) -> bool:
    if isinstance(type_, sa.types.TypeDecorator):
        return _timezone_aware(type_.impl_instance)
    return bool(getattr(type_, "timezone", False))


class Field:
    """Typed views of one field. A view is None when the field can never hold that type, which makes the
    positive comparison false without touching SQL; a JSON view is NULL on rows of another type."""

    def view(self, kind: str) -> ColumnElement[Any] | None:
        raise NotImplementedError

    def present(self) -> Expr:
        raise NotImplementedError

    def list_has(self, value: Scalar) -> Expr | None:
        return None

    def compare_instant(self, view: ColumnElement[Any], op: Comparison, instant: datetime) -> Expr:
        """`view op instant` for the timestamp view (instants are aware UTC)."""
        raise NotImplementedError


class ColumnField(Field):
    def __init__(self, column: ColumnElement[Any], kind: str) -> None:
        self.column, self.kind = column, kind

    def view(self, kind: str) -> ColumnElement[Any] | None:
        if kind == TIMESTAMP and self.kind == DATE:
            return self.column  # a date is the instant of its midnight, UTC
        return self.column if kind == self.kind else None

    def present(self) -> Expr:
        return self.column.is_not(None)

    def compare_instant(self, view: ColumnElement[Any], op: Comparison, instant: datetime) -> Expr:
        if self.kind == DATE:
            return _date_comparison(view, op, instant)
        # Naive columns hold UTC wall time (our rule); aware ones take the aware instant.
        bound = instant if _timezone_aware(self.column.type) else instant.replace(tzinfo=None)
        return cast(Expr, op(view, bound))


def _date_comparison(column: ColumnElement[Any], op: Comparison, instant: datetime) -> Expr:
    """Compare a DATE column as its midnight (UTC) with an instant, using date bounds so the column stays
    bare (indexes, pushdown) and SQLite's text dates compare right: d < t  <=>  d < ceil(t), and so on."""
    day = instant.date()
    midnight = instant == datetime(day.year, day.month, day.day, tzinfo=UTC)
    ceiling = day if midnight else day + timedelta(days=1)
    if op is operator.eq:
        return column == day if midnight else sa.false()
    if op is operator.lt:
        return column < ceiling
    if op is operator.ge:
        return column >= ceiling
    if op is operator.gt:
        return column > day
    assert op is operator.le
    return column <= day


class JsonField(Field):
    """A value inside a JSON document: dynamically typed, so each view checks the JSON type per row."""

    def __init__(self, document: ColumnElement[Any], keys: tuple[str, ...]) -> None:
        self.document, self.keys = document, keys

    def view(self, kind: str) -> ColumnElement[Any] | None:
        cls = {STRING: JsonString, NUMBER: JsonNumber, BOOLEAN: JsonBoolean}.get(kind)
        return None if cls is None else cls(self.document, *json_path_params(self.keys))

    def present(self) -> Expr:
        return JsonPresent(self.document, *json_path_params(self.keys))

    def list_has(self, value: Scalar) -> Expr | None:
        return JsonArrayHas.for_value(self.document, self.keys, value)


class _ModelFields:
    def __init__(self, model: SqlModel) -> None:
        self.model = model

    def __call__(self, field: str, path: str) -> Field:
        columns = self.model.columns
        column = columns.get(field)
        keys: tuple[str, ...] = ()
        if column is None:
            parts = field.split(".")
            for cut in range(len(parts) - 1, 0, -1):
                candidate = columns.get(".".join(parts[:cut]))
                if candidate is not None and column_kind(candidate.type) == JSON:
                    column, keys = candidate, tuple(parts[cut:])
                    break
        if column is None:
            raise FilterError(path, f"unknown field {field!r}")
        kind = column_kind(column.type)
        if kind is None:
            raise FilterError(path, f"field {field!r} has type {column.type}, which filters cannot compare")
        if kind == JSON:
            return JsonField(column, keys)
        return ColumnField(column, kind)


def _property_fields(properties: ColumnElement[Any]) -> Callable[[str, str], Field]:
    def resolve(field: str, path: str) -> Field:
        return JsonField(properties, tuple(field.split(".")))

    return resolve


# ---- the compiler ------------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, model: SqlModel, now: datetime) -> None:
        self.model, self.now = model, now

    def expr(self, node: Node, fields: Callable[[str, str], Field]) -> Expr:
        if isinstance(node, All):
            return sa.and_(sa.true(), *(self.expr(c, fields) for c in node.children))
        if isinstance(node, AnyOf):
            return sa.or_(sa.false(), *(self.expr(c, fields) for c in node.children))
        if isinstance(node, Not):
            return sa.not_(self.expr(node.child, fields))
        if isinstance(node, Condition):
            field = fields(node.field, f"{node.path}.field")
            positive = NEGATED_OPERATORS.get(node.operator)
            if positive is not None:
                return sa.not_(SQL_BUILDERS_BY_OPERATOR[positive](self, node, field))
            return SQL_BUILDERS_BY_OPERATOR[node.operator](self, node, field)
        if isinstance(node, EventCondition):
            return self.events(node)
        if isinstance(node, ExperienceEvent):
            return self.experience_events(node)
        raise TypeError(f"not a filter node: {node!r}")

    def experience_events(self, node: ExperienceEvent) -> Expr:
        events, key = self.model.events, self.model.entity_key
        if events is None or key is None:
            raise FilterError(node.path, "experience conditions need an event stream for this model")
        if not node.experiences:
            return sa.false()
        names = [sa.literal(experience_event_name(node.kind, e), sa.String) for e in node.experiences]
        where: list[ColumnElement[bool]] = [events.entity_id == key, events.event.in_(names)]
        where += [column == value for column, value in events.scope]
        if node.within_last is not None:
            stamp = ColumnField(events.timestamp, column_kind(events.timestamp.type) or TIMESTAMP)
            where.append(stamp.compare_instant(events.timestamp, operator.ge, self.now - node.within_last))
            where.append(stamp.compare_instant(events.timestamp, operator.le, self.now))
        return sa.exists().where(*where)

    def events(self, node: EventCondition) -> Expr:
        events, key = self.model.events, self.model.entity_key
        if events is None or key is None:
            raise FilterError(node.path, "behavioural conditions need an event stream for this model")
        op, target = node.count_operator, node.count
        # Decide the trivial counts here: every entity has >= 0 events, none has a negative count.
        if op == "gte" and target <= 0:
            return sa.true()
        where: list[ColumnElement[bool]] = [
            events.entity_id == key,
            events.event == sa.literal(node.event, sa.String),
        ]
        where += [column == value for column, value in events.scope]
        if node.within_last is not None:
            stamp = ColumnField(events.timestamp, column_kind(events.timestamp.type) or TIMESTAMP)
            where.append(stamp.compare_instant(events.timestamp, operator.ge, self.now - node.within_last))
            where.append(stamp.compare_instant(events.timestamp, operator.le, self.now))
        if node.where is not None:
            if events.properties is None:
                raise FilterError(f"{node.path}.where", "the event stream has no properties column")
            where.append(self.expr(node.where, _property_fields(events.properties)))
        if (op == "gte" and target == 1) or (op in ("lte", "eq") and target == 0):
            exists = sa.exists().where(*where)
            return exists if op == "gte" else sa.not_(exists)
        count = sa.select(sa.func.count()).where(*where).scalar_subquery()
        if op == "gte":
            return count >= target
        if op == "lte":
            return count <= target
        return count == target


def _guarded(column: ColumnElement[Any], comparison: ColumnElement[bool]) -> Expr:
    """Make a comparison two-valued: NULL (missing, or a JSON value of another type) becomes FALSE."""
    return sa.and_(column.is_not(None), comparison)


def _number(value: Scalar) -> ColumnElement[Any]:
    return sa.literal(value, sa.Float() if isinstance(value, float) else sa.BigInteger())


def _kind_of(value: Scalar) -> str:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, str):
        return STRING
    return NUMBER


def _literal(value: Scalar) -> ColumnElement[Any]:
    kind = _kind_of(value)
    if kind == NUMBER:
        return _number(value)
    return sa.literal(value, sa.Boolean() if kind == BOOLEAN else sa.String())


Builder = Callable[[_Compiler, Condition, Field], Expr]


def _equals(c: _Compiler, node: Condition, field: Field) -> Expr:
    value = node.value
    assert isinstance(value, str | int | float)
    parts = []
    view = field.view(_kind_of(value))
    if view is not None:
        parts.append(_guarded(view, view == _literal(value)))
    stamp = field.view(TIMESTAMP)
    if stamp is not None:
        for instant in string_instants([value]):
            parts.append(_guarded(stamp, field.compare_instant(stamp, operator.eq, instant)))
    return sa.or_(sa.false(), *parts)


def _member(c: _Compiler, node: Condition, field: Field) -> Expr:
    assert isinstance(node.value, tuple)
    values = node.value
    parts = []
    for kind, members in (
        (STRING, [v for v in values if isinstance(v, str)]),
        (NUMBER, [v for v in values if is_number(v)]),
        (BOOLEAN, [v for v in values if isinstance(v, bool)]),
    ):
        view = field.view(kind)
        if view is not None and members:
            literals = [_literal(m) for m in dict.fromkeys(members)]
            parts.append(_guarded(view, view.in_(literals)))
    stamp = field.view(TIMESTAMP)
    if stamp is not None:
        for instant in dict.fromkeys(string_instants(values)):
            parts.append(_guarded(stamp, field.compare_instant(stamp, operator.eq, instant)))
    return sa.or_(sa.false(), *parts)


def _ordered_views(
    field: Field, values: tuple[Scalar, ...]
) -> list[tuple[ColumnElement[Any], OrderedCompare]]:
    """(view, compare) pairs a gt/lt/between checks, compare(op, i) comparing the view with values[i]:
    numbers with numbers; strings with strings (in code-point order) and, when they are ISO timestamps,
    with timestamp fields as instants."""
    if not isinstance(values[0], str):
        number = field.view(NUMBER)
        if number is None:
            return []
        return [(number, lambda op, i: op(number, _number(values[i])))]
    pairs: list[tuple[ColumnElement[Any], OrderedCompare]] = []
    text = field.view(STRING)
    if text is not None:
        ordered = BinaryOrder(text)
        pairs.append((text, lambda op, i: op(ordered, sa.literal(values[i], sa.String()))))
    stamp = field.view(TIMESTAMP)
    instants = string_instants(values)
    if stamp is not None and len(instants) == len(values):
        pairs.append((stamp, lambda op, i: field.compare_instant(stamp, op, instants[i])))
    return pairs


OrderedCompare = Callable[[Comparison, int], Expr]


def _comparison(op: Comparison) -> Builder:
    def build(c: _Compiler, node: Condition, field: Field) -> Expr:
        assert isinstance(node.value, str | int | float)
        parts = [_guarded(view, compare(op, 0)) for view, compare in _ordered_views(field, (node.value,))]
        return sa.or_(sa.false(), *parts)

    return build


def _between(c: _Compiler, node: Condition, field: Field) -> Expr:
    assert isinstance(node.value, tuple)
    parts = [
        _guarded(view, sa.and_(compare(operator.ge, 0), compare(operator.le, 1)))
        for view, compare in _ordered_views(field, node.value)
    ]
    return sa.or_(sa.false(), *parts)


def _text_match(mode: str) -> Builder:
    def build(c: _Compiler, node: Condition, field: Field) -> Expr:
        value = node.value
        parts = []
        text = field.view(STRING)
        if isinstance(value, str) and text is not None:
            parts.append(_guarded(text, TextMatch.build(text, value, mode)))
        if mode == "contains":
            assert isinstance(value, str | int | float)
            has = field.list_has(value)
            if has is not None:
                parts.append(has)
        return sa.or_(sa.false(), *parts)

    return build


def _exists(c: _Compiler, node: Condition, field: Field) -> Expr:
    return field.present()


def _timestamp_view(node: Condition, field: Field) -> ColumnElement[Any]:
    stamp = field.view(TIMESTAMP)
    if stamp is None:
        raise FilterError(
            f"{node.path}.field",
            f"operator '{node.operator}' needs a timestamp field; {node.field!r} is not one",
        )
    return stamp


def _bound(c: _Compiler, node: Condition) -> datetime:
    value = node.value
    if isinstance(value, timedelta):
        return c.now - value
    assert isinstance(value, datetime)
    return value


def _before(c: _Compiler, node: Condition, field: Field) -> Expr:
    stamp = _timestamp_view(node, field)
    return _guarded(stamp, field.compare_instant(stamp, operator.lt, _bound(c, node)))


def _after(c: _Compiler, node: Condition, field: Field) -> Expr:
    stamp = _timestamp_view(node, field)
    return _guarded(stamp, field.compare_instant(stamp, operator.gt, _bound(c, node)))


def _within_last(c: _Compiler, node: Condition, field: Field) -> Expr:
    stamp = _timestamp_view(node, field)
    assert isinstance(node.value, timedelta)
    since = field.compare_instant(stamp, operator.ge, c.now - node.value)
    return _guarded(stamp, sa.and_(since, field.compare_instant(stamp, operator.le, c.now)))


SQL_BUILDERS_BY_OPERATOR: dict[str, Builder] = {
    "is": _equals,
    "in": _member,
    "gt": _comparison(operator.gt),
    "gte": _comparison(operator.ge),
    "lt": _comparison(operator.lt),
    "lte": _comparison(operator.le),
    "between": _between,
    "contains": _text_match("contains"),
    "starts_with": _text_match("starts_with"),
    "ends_with": _text_match("ends_with"),
    "exists": _exists,
    "before": _before,
    "after": _after,
    "within_last": _within_last,
}
