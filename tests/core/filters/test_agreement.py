"""Property test: for generated trees and profiles, the Python predicate and the SQL agree row for row
on SQLite, DuckDB and PostgreSQL (the promise every audience surface relies on)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from overture.core import filters
from overture.core.filters import (
    EXPERIENCE_EVENT_TYPES,
    All,
    AnyOf,
    FilterError,
    Node,
    Not,
    experience_event_name,
    parse,
    to_json,
)
from overture.core.filters.model import COUNT_OPERATORS, RELATIVE_TIME_OPERATORS

from .schema import BACKENDS, NOW, backend_engine, compare_all, load

# Values cluster on a few pools so that filters and rows collide often (equal, just above, just below).
HOSTILE_ALPHABET = [
    "a",
    "b",
    "A",
    "é",
    "ß",
    "🎉",
    "%",
    "_",
    "'",
    "\\",
    '"',
    "]",
    "/",
    " ",
    "0",
    "1",
    "-",
    "Z",
]
TEXT = st.text(alphabet=HOSTILE_ALPHABET, max_size=4)
INSTANTS = [
    NOW + delta
    for delta in (
        timedelta(0),
        timedelta(seconds=-1),
        timedelta(hours=-1),
        timedelta(days=-1),
        timedelta(days=-7),
        timedelta(days=-7, seconds=-1),
        timedelta(days=-30),
        timedelta(days=-400),
        timedelta(hours=3),
        timedelta(microseconds=-250),
    )
]
ISO_VALUES = [
    "2025-06-15",
    "2025-06-15T12:00:00Z",
    "2025-06-15T14:00:00+02:00",
    "2025-06-08T12:00:00",
    "2025-06-14T12:00:00.000000+00:00",
    "2024-05-11",
    "2025-06-15T15:00:00Z",
]
DURATIONS = ["1s", "1h", "1d", "7d", "30d", "2w", "1d12h"]
INTS = st.integers(-3, 3) | st.sampled_from([10, 1_000_000, -(2**40)])
FLOATS = st.sampled_from([0.5, -1.5, 2.0, 0.001, 3.25, -0.0, 1e15])
NUMBERS = INTS | FLOATS
STRINGS = TEXT | st.sampled_from(ISO_VALUES)
SCALARS = STRINGS | NUMBERS | st.booleans()
ORDERED = STRINGS | NUMBERS

PROFILE_FIELDS = {
    "s1": "text",
    "s2": "text",
    "n1": "int",
    "n2": "float",
    "b1": "bool",
    "t1": "time",
    "t2": "time",
    "d1": "time",
    "j1": "json",
    "j1.a": "json",
    "j1.b.c": "json",
    "j1.l": "json",
}
PROPERTY_FIELDS = {"amount": "json", "sku": "json", "meta.x": "json", "tags": "json"}
# From the language itself, so a new operator is generated here (and `_value` refuses to guess its
# values) instead of silently skipping the agreement test.
TIME_OPERATORS = sorted(RELATIVE_TIME_OPERATORS)
OPERATORS = [op for op in filters.OPERATORS if op not in RELATIVE_TIME_OPERATORS]


def _value(operator: str) -> st.SearchStrategy[Any]:
    if operator in ("is", "is_not", "contains"):
        return SCALARS
    if operator in ("gt", "gte", "lt", "lte"):
        return ORDERED
    if operator in ("in", "not_in"):
        return st.lists(SCALARS, max_size=4)
    if operator in ("starts_with", "ends_with"):
        return STRINGS
    if operator == "between":
        return st.tuples(NUMBERS, NUMBERS).map(list) | st.tuples(STRINGS, STRINGS).map(list)
    if operator in ("before", "after"):
        return st.sampled_from(ISO_VALUES + DURATIONS)
    if operator == "within_last":
        return st.sampled_from(DURATIONS)
    if operator in ("exists", "not_exists"):
        return st.none()
    raise AssertionError(f"no value strategy for operator {operator!r}: add one to _value")


KIND_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "text": STRINGS,
    "int": INTS,
    "float": NUMBERS,
    "bool": st.booleans(),
    "time": st.sampled_from(ISO_VALUES),
    "json": SCALARS,
}


def _kind_value(operator: str, kind: str) -> st.SearchStrategy[Any]:
    """Mostly values of the field's own type (so rows match), sometimes any type (mixed-type rules)."""
    own = KIND_VALUES[kind]
    if operator in ("is", "is_not", "contains"):
        return own
    if operator in ("gt", "gte", "lt", "lte"):
        return own.filter(lambda v: not isinstance(v, bool))
    if operator in ("in", "not_in"):
        return st.lists(own, max_size=4)
    if operator == "between":
        ordered = own.filter(lambda v: not isinstance(v, bool))
        return (
            st.tuples(ordered, ordered)
            .filter(lambda p: isinstance(p[0], str) == isinstance(p[1], str))
            .map(list)
        )
    return _value(operator)


@st.composite
def conditions(draw: st.DrawFn, fields: dict[str, str]) -> dict[str, Any]:
    field = draw(st.sampled_from(sorted(fields)))
    kind = fields[field]
    # Timestamps live in timestamp columns; SQL does not parse text into instants (it refuses instead).
    allowed = OPERATORS + (TIME_OPERATORS if kind == "time" else [])
    return draw(rules(field, kind, draw(st.sampled_from(allowed))))


@st.composite
def rules(draw: st.DrawFn, field: str, kind: str, operator: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"field": field, "operator": operator}
    if operator not in ("exists", "not_exists"):
        own = kind != "bool" or operator in ("is", "is_not", "in", "not_in", "contains")
        rule["value"] = draw(
            _kind_value(operator, kind) if own and draw(st.integers(0, 2)) else _value(operator)
        )
    return rule


def trees(
    fields: dict[str, str], *, events: bool, experiences: bool = False, refs: tuple[str, ...] = ()
) -> st.SearchStrategy[Any]:
    leaves: st.SearchStrategy[Any] = conditions(fields)
    if events:
        leaves = leaves | event_conditions()
    if experiences:
        leaves = leaves | experience_conditions()
    if refs:
        leaves = leaves | st.sampled_from(refs).map(lambda ref: {"segment": ref})
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, min_size=1, max_size=3).map(lambda items: {"all": items})
            | st.lists(children, min_size=1, max_size=3).map(lambda items: {"any": items})
            | children.map(lambda child: {"not": child})
        ),
        max_leaves=8,
    )


@st.composite
def event_conditions(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"event": draw(st.sampled_from(["buy", "open", "Buy", "never"]))}
    if draw(st.booleans()):
        spec["count"] = {draw(st.sampled_from(COUNT_OPERATORS)): draw(st.integers(0, 3))}
    if draw(st.booleans()):
        spec["within_last"] = draw(st.sampled_from(["1h", "1d", "7d", "30d"]))
    if draw(st.booleans()):
        spec["where"] = draw(trees(PROPERTY_FIELDS, events=False))
    return spec


EXPERIENCES = ["e1", "e2", "e3"]


@st.composite
def experience_conditions(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "experience_event": draw(st.sampled_from(EXPERIENCE_EVENT_TYPES)),
        "experiences": draw(st.lists(st.sampled_from(EXPERIENCES), max_size=3)),
    }
    if draw(st.booleans()):
        spec["within_last"] = draw(st.sampled_from(["1h", "1d", "7d", "30d"]))
    return spec


EXPERIENCE_EVENT_NAMES = [experience_event_name(k, e) for k in EXPERIENCE_EVENT_TYPES for e in EXPERIENCES]


def _instant(naive: bool) -> st.SearchStrategy[Any]:
    base = st.sampled_from(INSTANTS) | st.sampled_from(ISO_VALUES).map(lambda s: parse_iso(s))
    return base.map(lambda t: t.replace(tzinfo=None) if naive else t)


def parse_iso(text: str) -> Any:
    from overture.core.filters.values import parse_instant

    instant = parse_instant(text)
    assert instant is not None
    return instant.astimezone(UTC)


JSON_SCALARS = st.none() | st.booleans() | INTS | FLOATS | STRINGS
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "l", "x"]), children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 4)) == 0:
        return draw(JSON_VALUES)
    keys = draw(st.lists(st.sampled_from(["a", "b", "l"]), unique=True))
    doc: dict[str, Any] = {}
    for key in keys:
        if key == "b":
            doc[key] = draw(
                st.dictionaries(st.sampled_from(["c", "d"]), JSON_VALUES, max_size=2) | JSON_VALUES
            )
        elif key == "l":
            doc[key] = draw(st.lists(JSON_SCALARS, max_size=4) | JSON_VALUES)
        else:
            doc[key] = draw(JSON_VALUES)
    return doc


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def datasets(
    draw: st.DrawFn, *, events: bool, experiences: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    count = draw(st.integers(1, 10))
    rows = []
    for i in range(1, count + 1):
        rows.append(
            {
                "id": i,
                "s1": draw(_maybe(STRINGS)),
                "s2": draw(_maybe(STRINGS)),
                "n1": draw(_maybe(INTS)),
                "n2": draw(_maybe(FLOATS | INTS.map(float))),
                "b1": draw(_maybe(st.booleans())),
                "t1": draw(_maybe(_instant(naive=True))),
                "t2": draw(_maybe(_instant(naive=False))),
                "d1": draw(_maybe(_instant(naive=False).map(lambda t: t.date()))),
                "j1": draw(_maybe(documents())),
            }
        )
    event_rows = []
    if events:
        for _ in range(draw(st.integers(0, 8))):
            props = draw(
                st.none()
                | st.fixed_dictionaries(
                    {},
                    optional={
                        "amount": NUMBERS | STRINGS | st.none(),
                        "sku": STRINGS | st.booleans(),
                        "meta": st.dictionaries(st.sampled_from(["x", "y"]), JSON_SCALARS, max_size=2),
                        "tags": st.lists(JSON_SCALARS, max_size=3),
                    },
                )
            )
            event_rows.append(
                {
                    "entity_id": draw(st.integers(1, count + 1)),
                    "event": draw(
                        st.sampled_from(
                            ["buy", "open", "Buy", *(EXPERIENCE_EVENT_NAMES if experiences else [])]
                        )
                    ),
                    "ts": draw(_maybe(_instant(naive=True))),
                    "props": props,
                }
            )
    return rows, event_rows


def test_generator__covers_every_operator_of_the_language() -> None:
    assert sorted(OPERATORS + TIME_OPERATORS) == sorted(filters.OPERATORS)
    assert set(TIME_OPERATORS) <= set(filters.OPERATORS)


@pytest.mark.parametrize("operator", filters.OPERATORS)
@settings(max_examples=20, deadline=None, database=None)
@given(data=st.data())
def test_generator__every_operator__values_the_parser_accepts(operator: str, data: st.DataObject) -> None:
    """Each operator gets values of its own shape, for a field of every kind it applies to."""
    kinds = ["time"] if operator in RELATIVE_TIME_OPERATORS else sorted(KIND_VALUES)
    for kind in kinds:
        parse(data.draw(rules("f", kind, operator), label=kind))


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    with backend_engine(request.param, tmp_path_factory.mktemp(request.param)) as engine:
        yield engine


def subtrees(node: Node) -> list[Node]:
    """The node and every node below it (not inside an event's `where`, which reads event properties)."""
    out = [node]
    if isinstance(node, All | AnyOf):
        for child in node.children:
            out += subtrees(child)
    elif isinstance(node, Not):
        out += subtrees(node.child)
    return out


def check_agreement(
    engine: sa.Engine,
    data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    raws: list[Any],
    segments: dict[str, Any] | None = None,
) -> None:
    """Every generated tree, and every subtree of it, matches the same rows both ways (checking subtrees
    keeps a disagreement in one leaf from hiding behind an `any` that another leaf already decides)."""
    rows, event_rows = data
    nodes = []
    for raw in raws:
        node = parse(raw)
        assert parse(to_json(node)) == node
        nodes += subtrees(node)
    note(f"trees: {raws}")
    resolver = None
    if segments is not None:
        parsed = {ref: parse(tree) for ref, tree in segments.items()}

        def resolver(ref: str) -> Node:
            return parsed[ref]

    with engine.begin() as conn:
        load(conn, rows, event_rows)
        try:
            results = compare_all(conn, nodes, rows, event_rows, NOW, segments=resolver)
        except FilterError as error:  # pragma: no cover - the generator avoids every refused shape
            raise AssertionError(f"to_sql refused a generated tree: {error}") from error
    for node, (expected, got) in zip(nodes, results, strict=True):
        assert got == expected, (
            f"SQL matched {got}, predicate matched {expected} for {to_json(node)}\n"
            f"rows: {rows}\nevents: {event_rows}"
        )


COMMON = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    database=None,
    print_blob=True,
)


@settings(COMMON, max_examples=150)
@given(
    data=datasets(events=False), raws=st.lists(trees(PROFILE_FIELDS, events=False), min_size=1, max_size=4)
)
def test_agreement__profile_trees__predicate_equals_sql(
    engine: sa.Engine, data: Any, raws: list[Any]
) -> None:
    check_agreement(engine, data, raws)


@settings(COMMON, max_examples=100)
@given(data=datasets(events=True), raws=st.lists(trees(PROFILE_FIELDS, events=True), min_size=1, max_size=3))
def test_agreement__behavioural_trees__predicate_equals_sql(
    engine: sa.Engine, data: Any, raws: list[Any]
) -> None:
    check_agreement(engine, data, raws)


@st.composite
def segment_definitions(draw: st.DrawFn) -> dict[str, Any]:
    """Up to three segments, each free to refer to the ones before it (never a cycle)."""
    out: dict[str, Any] = {}
    for i in range(draw(st.integers(1, 3))):
        out[f"s{i}"] = draw(trees(PROFILE_FIELDS, events=True, experiences=True, refs=tuple(out)))
    return out


@settings(COMMON, max_examples=100)
@given(data=datasets(events=True, experiences=True), segments=segment_definitions(), picks=st.data())
def test_agreement__segment_and_experience_trees__predicate_equals_sql(
    engine: sa.Engine, data: Any, segments: dict[str, Any], picks: st.DataObject
) -> None:
    strategy = trees(PROFILE_FIELDS, events=False, experiences=True, refs=tuple(segments))
    raws = picks.draw(st.lists(strategy, min_size=1, max_size=3))
    check_agreement(engine, data, raws, segments)


# CI runs a bounded long run (100 examples per backend);
# set OVERTURE_LONG_EXAMPLES=5000 for a deeper search before a release.
LONG_EXAMPLES = int(os.environ.get("OVERTURE_LONG_EXAMPLES", "100"))


@pytest.mark.slow
@settings(COMMON, max_examples=LONG_EXAMPLES)
@given(data=datasets(events=True), raws=st.lists(trees(PROFILE_FIELDS, events=True), min_size=1, max_size=4))
def test_agreement__long_run__predicate_equals_sql(engine: sa.Engine, data: Any, raws: list[Any]) -> None:
    check_agreement(engine, data, raws)
