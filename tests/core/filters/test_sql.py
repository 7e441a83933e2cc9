"""to_sql on SQLite, DuckDB and PostgreSQL: the operator table gives the predicate's exact answers,
nulls and NOT agree, resolution errors name the path, hostile input stays data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from overture.core.filters import FilterError, SqlModel, parse, to_sql

from .schema import BACKENDS, MODEL, NOW, backend_engine, compare, load, profiles
from .test_predicate import CASES, MISSING, NEGATIVE, POSITIVE


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    with backend_engine(request.param, tmp_path_factory.mktemp(request.param)) as engine:
        yield engine


def _column_for(value: Any) -> tuple[str, Any]:
    """The typed column a record value lives in, and the value as stored."""
    if value is MISSING or value is None:
        return "s1", None
    if isinstance(value, bool):
        return "b1", value
    if isinstance(value, int):
        return "n1", value
    if isinstance(value, float | Decimal):
        return "n2", float(value)
    if isinstance(value, str):
        return "s1", value
    if isinstance(value, datetime):
        return ("t1", value) if value.tzinfo is None else ("t2", value.astimezone(UTC))
    if isinstance(value, date):
        return "d1", value
    return "j1", value


def _rule(field: str, operator: str, value: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"field": field, "operator": operator}
    if value is not MISSING:
        rule["value"] = value
    return rule


def _run(
    engine: sa.Engine, raw: Any, rows: list[dict[str, Any]], events: list[dict[str, Any]] | None = None
) -> list[int]:
    node = parse(raw)
    with engine.begin() as conn:
        load(conn, rows, events or [])
        expected, got = compare(conn, node, rows, events or [], NOW)
    assert got == expected, f"SQL {got} != predicate {expected} for {raw}"
    return got


@pytest.mark.parametrize(("operator", "value", "record_value", "expected"), CASES)
def test_to_sql__operator_table__same_answer_as_predicate(
    engine: sa.Engine, operator: str, value: Any, record_value: Any, expected: bool
) -> None:
    column, stored = _column_for(record_value)
    raw = _rule(column, operator, value)
    if operator in ("before", "after", "within_last") and column not in ("t1", "t2", "d1"):
        # Text is not parsed into instants inside SQL: refused rather than answered differently.
        with pytest.raises(FilterError, match="needs a timestamp field"):
            to_sql(parse(raw), MODEL, now=NOW)
        return
    got = _run(engine, raw, [{"id": 1, column: stored}])
    assert got == ([1] if expected else [])


@pytest.mark.parametrize(("operator", "value"), POSITIVE + NEGATIVE)
@pytest.mark.parametrize("column", ["s1", "n1", "b1", "t1", "t2", "d1", "j1"])
def test_to_sql__null_column__positive_false_negated_true_and_not_agrees(
    engine: sa.Engine, operator: str, value: Any, column: str
) -> None:
    if operator in ("before", "after", "within_last") and column not in ("t1", "t2", "d1"):
        return
    rows = [{"id": 1}]
    expected = [1] if operator in ("is_not", "not_in", "not_exists") else []
    assert _run(engine, _rule(column, operator, value), rows) == expected
    assert _run(engine, {"not": _rule(column, operator, value)}, rows) == ([] if expected else [1])


def test_to_sql__not_over_null_json_path__agrees(engine: sa.Engine) -> None:
    rows = [{"id": 1, "j1": {"a": None}}, {"id": 2, "j1": {"a": "x"}}, {"id": 3, "j1": {"a": 1}}, {"id": 4}]
    assert _run(engine, {"not": {"field": "j1.a", "operator": "is", "value": "x"}}, rows) == [1, 3, 4]
    assert _run(engine, {"not": {"field": "j1.a", "operator": "gt", "value": 0}}, rows) == [1, 2, 4]
    assert _run(engine, {"field": "j1.a", "operator": "not_exists"}, rows) == [1, 4]


HOSTILE = ["'", "\\", "%", "_", '"]', "'; drop table filter_profiles; --", "a%b_c/d\\e", "ü🎉", "/", "//%"]


@pytest.mark.parametrize("operator", ["is", "is_not", "contains", "starts_with", "ends_with", "gt", "in"])
def test_to_sql__hostile_values__match_literally(engine: sa.Engine, operator: str) -> None:
    rows = [{"id": i, "s1": text} for i, text in enumerate([*HOSTILE, "plain", "x%y", "x_y", "X"], start=1)]
    rows += [{"id": 100 + i, "j1": {"a": text, "l": [text]}} for i, text in enumerate(HOSTILE)]
    for value in HOSTILE:
        literal: Any = [value] if operator == "in" else value
        _run(engine, {"field": "s1", "operator": operator, "value": literal}, rows)
        _run(engine, {"field": "j1.a", "operator": operator, "value": literal}, rows)
    for value in HOSTILE:
        _run(engine, {"field": "j1.l", "operator": "contains", "value": value}, rows)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(profiles)).scalar_one() == len(rows)


def test_to_sql__values_are_bound_never_spliced() -> None:
    node = parse(
        {
            "all": [
                {"field": "s1", "operator": "contains", "value": "'; drop table x; --"},
                {"field": "j1.a", "operator": "is", "value": "sneaky'value"},
                {"field": "n1", "operator": "in", "value": [41, 42]},
            ]
        }
    )
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        sql = str(sa.select(profiles.c.id).where(to_sql(node, MODEL, now=NOW)).compile(dialect=dialect))
        assert "drop table" not in sql and "sneaky" not in sql and "42" not in sql


def test_to_sql__unknown_field__error_names_the_path() -> None:
    node = parse(
        {"all": [{"field": "s1", "operator": "exists"}, {"field": "plna", "operator": "is", "value": "x"}]}
    )
    with pytest.raises(FilterError) as caught:
        to_sql(node, MODEL, now=NOW)
    assert str(caught.value) == "filter.all[1].field: unknown field 'plna'"


def test_to_sql__json_prefix__reads_inside_json_column_only() -> None:
    model = SqlModel(columns={"plan": profiles.c.s1, "traits": profiles.c.j1})
    assert to_sql(parse({"field": "traits.tier.level", "operator": "exists"}), model, now=NOW) is not None
    with pytest.raises(FilterError, match=r"unknown field 'plan\.tier'"):
        to_sql(parse({"field": "plan.tier", "operator": "exists"}), model, now=NOW)


def test_to_sql__unsupported_column_type__filter_error() -> None:
    model = SqlModel(columns={"at": sa.column("at", sa.Time()), "raw": sa.column("raw")})
    with pytest.raises(FilterError, match=r"^filter.field: field 'at' has type TIME"):
        to_sql(parse({"field": "at", "operator": "exists"}), model, now=NOW)
    with pytest.raises(FilterError, match=r"^filter.field: field 'raw' has type NULL"):
        to_sql(parse({"field": "raw", "operator": "exists"}), model, now=NOW)


def test_to_sql__behavioural_without_event_stream__filter_error() -> None:
    model = SqlModel(columns={"s1": profiles.c.s1})
    with pytest.raises(FilterError, match=r"^filter.any\[1\]: behavioural conditions need an event stream"):
        to_sql(parse({"any": [{"field": "s1", "operator": "exists"}, {"event": "buy"}]}), model, now=NOW)


def _events(entity: int, *items: tuple[str, datetime | None, Any]) -> list[dict[str, Any]]:
    return [{"entity_id": entity, "event": e, "ts": ts, "props": props} for e, ts, props in items]


def test_to_sql__behavioural_counts__entities_without_events_included(engine: sa.Engine) -> None:
    day = timedelta(days=1)
    naive_now = NOW.replace(tzinfo=None)
    rows = [{"id": 1}, {"id": 2}, {"id": 3}]
    events = _events(
        1, ("buy", naive_now - day, {"amount": 30}), ("buy", naive_now - 40 * day, {"amount": 5})
    )
    events += _events(2, ("buy", naive_now - 2 * day, {"amount": 50, "tags": ["vip"]}), ("open", None, None))

    def run(raw: dict[str, Any]) -> list[int]:
        return _run(engine, raw, rows, events)

    assert run({"event": "buy"}) == [1, 2]
    assert run({"event": "buy", "count": {"gte": 0}}) == [1, 2, 3]
    assert run({"event": "buy", "count": {"lte": 1}}) == [2, 3]
    assert run({"event": "buy", "count": {"eq": 0}}) == [3]
    assert run({"event": "buy", "count": {"eq": 2}}) == [1]
    assert run({"event": "buy", "count": {"lte": 0}, "within_last": "30d"}) == [3]
    assert run({"event": "buy", "count": {"gte": 2}, "within_last": "30d"}) == []
    assert run({"event": "buy", "where": {"field": "amount", "operator": "gte", "value": 30}}) == [1, 2]
    assert run({"event": "buy", "where": {"field": "tags", "operator": "contains", "value": "vip"}}) == [2]
    assert run({"event": "open", "within_last": "1d"}) == []
    assert run({"not": {"event": "open"}}) == [1, 3]


def test_to_sql__behavioural__scope_filters_other_workspaces_events(engine: sa.Engine) -> None:
    from .schema import events as events_table

    with engine.begin() as conn:
        load(conn, [{"id": 1}], [])
        conn.execute(events_table.insert(), [{"entity_id": 1, "workspace": "other", "event": "buy"}])
        matched = conn.execute(
            sa.select(profiles.c.id).where(to_sql(parse({"event": "buy"}), MODEL, now=NOW))
        ).all()
    assert matched == []


def test_to_sql__json_on_unsupported_dialect__compile_error() -> None:
    from sqlalchemy.dialects import mysql

    expression = to_sql(parse({"field": "j1.a", "operator": "is", "value": "x"}), MODEL, now=NOW)
    with pytest.raises(sa.exc.CompileError, match="not supported on the mysql dialect"):
        str(sa.select(profiles.c.id).where(expression).compile(dialect=mysql.dialect()))


def test_to_sql__empty_tree__matches_everyone(engine: sa.Engine) -> None:
    assert _run(engine, {}, [{"id": 1}, {"id": 2}]) == [1, 2]
    assert _run(engine, {"any": []}, [{"id": 1}]) == []


def test_to_sql__flat_precedence(engine: sa.Engine) -> None:
    rows = [{"id": 1, "s1": "a", "n1": 1}, {"id": 2, "s1": "b", "n1": 2}, {"id": 3, "s1": "a", "n1": 2}]
    rules = [
        {"field": "s1", "operator": "is", "value": "a"},
        {"field": "n1", "operator": "is", "value": 1, "conjunction": "and"},
        {"field": "s1", "operator": "is", "value": "b", "conjunction": "or"},
        {"field": "n1", "operator": "is", "value": 2, "conjunction": "and"},
    ]
    assert _run(engine, rules, rows) == [1, 2]


def test_to_sql__string_order_is_code_point_order(engine: sa.Engine) -> None:
    # PostgreSQL's locale collation would put "B" after "a"; Python and our SQL do not.
    rows = [{"id": i, "s1": s} for i, s in enumerate(["a", "B", "b", "É", "é", "z", "Z", "_", "0"], start=1)]
    for value in ["a", "B", "Z", "é", "_"]:
        _run(engine, {"field": "s1", "operator": "gt", "value": value}, rows)
        _run(engine, {"field": "s1", "operator": "between", "value": ["B", value]}, rows)


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1e-400", "1.7976931348623157e308"])
def test_to_sql__json_numbers_beyond_double_range__no_error_same_answer(
    engine: sa.Engine, number: str
) -> None:
    # JSON allows them and events come from public SDK keys: they must not break a segment on any backend.
    import json

    document = f'{{"a": {number}, "l": [{number}, "x"]}}'
    rows = [{"id": 1, "j1": json.loads(document)}, {"id": 2, "j1": {"a": 5, "l": [5]}}]
    for raw in (
        {"field": "j1.a", "operator": "gt", "value": 5},
        {"field": "j1.a", "operator": "lt", "value": 5},
        {"field": "j1.a", "operator": "is", "value": 0},
        {"field": "j1.l", "operator": "contains", "value": 5},
        {"not": {"field": "j1.a", "operator": "between", "value": [-1, 1]}},
    ):
        node = parse(raw)
        with engine.begin() as conn:
            load(conn, rows[1:], [])
            text: Any = sa.literal(document)  # SQLite stores JSON as text; CAST AS JSON there means NUMERIC
            if conn.dialect.name != "sqlite":
                text = sa.cast(text, profiles.c.j1.type)
            conn.execute(profiles.insert().values(id=1, j1=text))
            expected, got = compare(conn, node, rows, [], NOW)
        assert got == expected, raw


@pytest.mark.parametrize("dialect_name", ["sqlite", "postgresql", "duckdb"])
def test_to_sql__largest_trees__compile_on_every_dialect(dialect_name: str) -> None:
    from duckdb_engine import Dialect as DuckDBDialect

    from .test_predicate import _largest_trees

    dialect = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect(), "duckdb": DuckDBDialect()}
    model = SqlModel(
        columns={"a": profiles.c.j1, "user.plan": profiles.c.s1, "t": profiles.c.t1, "n": profiles.c.n2}
    )
    for raw in _largest_trees():
        expression = to_sql(parse(raw), model, now=NOW)
        assert "SELECT" in str(
            sa.select(profiles.c.id).where(expression).compile(dialect=dialect[dialect_name])
        )
