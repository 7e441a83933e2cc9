"""The Python predicate: every operator over every kind of record value, null rules, paths, events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from overture.core.filters import EVENTS_KEY, FilterError, parse, to_predicate

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
MISSING = object()


def clock() -> datetime:
    return NOW


def matches(operator: str, value: Any, record_value: Any, *, field: str = "x") -> bool:
    rule: dict[str, Any] = {"field": field, "operator": operator}
    if value is not MISSING:
        rule["value"] = value
    record: dict[str, Any] = {} if record_value is MISSING else {"x": record_value}
    return to_predicate(parse(rule), now=clock)(record)


CASES: list[tuple[str, Any, Any, bool]] = [
    # is: same type and equal; strings case-sensitive; a number never equals its string or a boolean
    ("is", "pro", "pro", True),
    ("is", "pro", "Pro", False),
    ("is", "5", 5, False),
    ("is", 5, "5", False),
    ("is", 5, 5.0, True),
    ("is", 5, Decimal(5), True),
    ("is", 1, True, False),
    ("is", True, 1, False),
    ("is", True, True, True),
    ("is", False, False, True),
    ("is", False, None, False),
    ("is", "pro", ["pro"], False),
    ("is", "2024-01-01T00:00:00Z", datetime(2024, 1, 1), True),
    ("is", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00+00:00", False),
    ("is_not", "pro", "free", True),
    ("is_not", "pro", "pro", False),
    ("is_not", 5, "5", True),
    # contains: substring on strings, membership (same typing as `is`) on lists
    ("contains", "ro", "pro", True),
    ("contains", "RO", "pro", False),
    ("contains", "%", "50%", True),
    ("contains", "_", "ab", False),
    ("contains", "", "", True),
    ("contains", "a", ["a", "b"], True),
    ("contains", "a", ["ab"], False),
    ("contains", 1, [1, 2], True),
    ("contains", 1, [True], False),
    ("contains", True, [1], False),
    ("contains", True, [True], True),
    ("contains", 1, "1", False),
    ("contains", "1", [1], False),
    # ordered comparisons: numbers with numbers, strings by code point, timestamps as instants
    ("gt", 5, 6, True),
    ("gt", 5, 5, False),
    ("gte", 5, 5, True),
    ("lt", 5, 4.5, True),
    ("lte", 5, 5.0, True),
    ("gt", 5, "6", False),
    ("gt", 0, True, False),
    ("gt", "b", "c", True),
    ("gt", "b", "B", False),
    ("gt", "a", "é", True),
    ("lt", "2", "10", True),  # code-point order, not numeric
    ("gt", "2024-01-01", datetime(2024, 1, 2), True),
    ("gt", "2024-01-01T00:00:00+01:00", datetime(2023, 12, 31, 23, 30, tzinfo=UTC), True),
    ("lt", "2024-01-01", datetime(2024, 1, 2, tzinfo=timezone(timedelta(hours=5))), False),
    ("gt", "abc", datetime(2024, 1, 2), False),
    ("gt", 5, datetime(2024, 1, 2), False),
    # between: inclusive
    ("between", [1, 3], 1, True),
    ("between", [1, 3], 3, True),
    ("between", [1, 3], 3.5, False),
    ("between", [3, 1], 2, False),
    ("between", ["a", "c"], "b", True),
    ("between", ["2024-01-01", "2024-12-31"], datetime(2024, 6, 1), True),
    ("between", ["2024-01-01", "2024-12-31"], "2024-06-01", True),
    ("between", [1, 3], "2", False),
    # in / not_in
    ("in", ["a", "b"], "a", True),
    ("in", ["a", "b"], "c", False),
    ("in", [1, 2], 2.0, True),
    ("in", [1, 2], True, False),
    ("in", [True], 1, False),
    ("in", ["1"], 1, False),
    ("in", [], "a", False),
    ("in", ["a"], ["a"], False),
    ("in", ["2024-01-01T00:00:00Z"], datetime(2024, 1, 1, tzinfo=UTC), True),
    ("not_in", ["a"], "b", True),
    ("not_in", ["a"], "a", False),
    ("not_in", [], "a", True),
    # exists
    ("exists", MISSING, "", True),
    ("exists", MISSING, 0, True),
    ("exists", MISSING, False, True),
    ("exists", MISSING, [], True),
    ("not_exists", MISSING, "", False),
    # starts_with / ends_with
    ("starts_with", "pr", "pro", True),
    ("starts_with", "Pr", "pro", False),
    ("starts_with", "%", "%x", True),
    ("ends_with", "ro", "pro", True),
    ("ends_with", "", "pro", True),
    ("ends_with", "ro", ["pro"], False),
    # before / after: absolute, or relative to now; ISO strings in records are parsed; naive = UTC
    ("before", "2024-01-01", datetime(2023, 12, 31), True),
    ("before", "2024-01-01", "2023-12-31T23:59:59Z", True),
    ("before", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00+02:00", True),
    ("before", "2024-01-01", datetime(2024, 1, 1), False),
    ("after", "2024-01-01", datetime(2024, 1, 1, 0, 0, 1), True),
    ("after", "2024-01-01", "not a date", False),
    ("after", "2024-01-01", 1_800_000_000, False),
    ("before", "30d", NOW - timedelta(days=31), True),
    ("before", "30d", NOW - timedelta(days=29), False),
    ("after", "1h", NOW - timedelta(minutes=30), True),
    # within_last: [now - d, now]
    ("within_last", "7d", NOW - timedelta(days=7), True),
    ("within_last", "7d", NOW - timedelta(days=7, seconds=1), False),
    ("within_last", "7d", NOW, True),
    ("within_last", "7d", NOW + timedelta(seconds=1), False),
    ("within_last", "7d", (NOW - timedelta(days=1)).isoformat(), True),
    ("within_last", "7d", (NOW - timedelta(days=1)).replace(tzinfo=None), True),
    # dates are the instant of their midnight, UTC
    ("before", "2024-01-01", date(2023, 12, 31), True),
    ("before", "2024-01-01", date(2024, 1, 1), False),
    ("before", "2024-01-01T00:00:01Z", date(2024, 1, 1), True),
    ("after", "2023-12-31T23:59:59Z", date(2024, 1, 1), True),
    ("after", "2024-01-01T00:00:00Z", date(2024, 1, 1), False),
    ("is", "2024-01-01", date(2024, 1, 1), True),
    ("is", "2024-01-01T00:00:01Z", date(2024, 1, 1), False),
    ("is_not", "2024-01-01T00:00:01Z", date(2024, 1, 1), True),
    ("gte", "2024-01-01T10:00:00Z", date(2024, 1, 1), False),
    ("gte", "2024-01-01T10:00:00Z", date(2024, 1, 2), True),
    ("gt", "2024-01-01", date(2024, 1, 1), False),
    ("lte", "2024-01-01T10:00:00Z", date(2024, 1, 1), True),
    ("lt", "2024-01-01T10:00:00+12:00", date(2023, 12, 31), True),
    ("between", ["2024-01-01T00:00:01Z", "2024-01-02T00:00:00Z"], date(2024, 1, 2), True),
    ("between", ["2024-01-01T00:00:01Z", "2024-01-02T00:00:00Z"], date(2024, 1, 1), False),
    ("within_last", "1d", date(2025, 6, 15), True),
    ("within_last", "1d", date(2025, 6, 14), False),
    ("in", ["2024-01-01", "x"], date(2024, 1, 1), True),
    ("is", 20240101, date(2024, 1, 1), False),
]


@pytest.mark.parametrize(("operator", "value", "record_value", "expected"), CASES)
def test_predicate__operator_semantics(operator: str, value: Any, record_value: Any, expected: bool) -> None:
    assert matches(operator, value, record_value) is expected


POSITIVE = [
    ("is", "a"),
    ("contains", "a"),
    ("gt", 1),
    ("gte", 1),
    ("lt", 1),
    ("lte", 1),
    ("in", ["a"]),
    ("exists", MISSING),
    ("starts_with", "a"),
    ("ends_with", "a"),
    ("between", [1, 2]),
    ("before", "2024-01-01"),
    ("after", "2024-01-01"),
    ("within_last", "7d"),
]
NEGATIVE = [("is_not", "a"), ("not_in", ["a"]), ("not_exists", MISSING)]


@pytest.mark.parametrize(("operator", "value"), POSITIVE)
@pytest.mark.parametrize("record_value", [MISSING, None])
def test_predicate__null_or_missing__positive_operators_false(
    operator: str, value: Any, record_value: Any
) -> None:
    assert matches(operator, value, record_value) is False


@pytest.mark.parametrize(("operator", "value"), NEGATIVE)
@pytest.mark.parametrize("record_value", [MISSING, None])
def test_predicate__null_or_missing__negated_operators_true(
    operator: str, value: Any, record_value: Any
) -> None:
    assert matches(operator, value, record_value) is True


@pytest.mark.parametrize(("operator", "value"), POSITIVE)
def test_predicate__not_over_null__is_true(operator: str, value: Any) -> None:
    rule: dict[str, Any] = {"field": "x", "operator": operator}
    if value is not MISSING:
        rule["value"] = value
    assert to_predicate(parse({"not": rule}), now=clock)({"x": None}) is True


def test_predicate__dotted_paths__index_nested_mappings() -> None:
    pred = to_predicate(parse({"field": "user.plan", "operator": "is", "value": "pro"}))
    assert pred({"user": {"plan": "pro"}}) is True
    assert pred({"user": {"plan": "free"}}) is False
    assert pred({"user": None}) is False
    assert pred({"user": "pro"}) is False
    assert pred({"user": ["pro"]}) is False
    assert pred({"user.plan": "pro"}) is False
    assert pred({}) is False
    deep = to_predicate(parse({"field": "a.b.c.d", "operator": "exists"}))
    assert deep({"a": {"b": {"c": {"d": 0}}}}) is True
    assert deep({"a": {"b": {"c": {}}}}) is False
    assert deep({"a": {"b": 1}}) is False


def test_predicate__nested_non_dict_mapping__is_indexed() -> None:
    from types import MappingProxyType

    pred = to_predicate(parse({"field": "user.plan", "operator": "is", "value": "pro"}))
    assert pred(MappingProxyType({"user": MappingProxyType({"plan": "pro"})})) is True


def test_predicate__groups__all_any_not() -> None:
    tree = parse(
        [
            {"field": "a", "operator": "is", "value": 1},
            {"field": "b", "operator": "is", "value": 2, "conjunction": "and"},
            {"field": "c", "operator": "is", "value": 3, "conjunction": "or"},
            {"field": "d", "operator": "is", "value": 4, "conjunction": "and"},
        ]
    )
    pred = to_predicate(tree)
    assert pred({"a": 1, "b": 2}) is True
    assert pred({"c": 3, "d": 4}) is True
    assert pred({"a": 1, "d": 4}) is False
    assert pred({"b": 2, "c": 3}) is False
    assert to_predicate(parse({"any": []}))({}) is False
    assert to_predicate(parse({}))({}) is True


def test_predicate__hostile_values__match_literally() -> None:
    for value in ["'", "\\", "%", "_", '"]', "'; drop table x; --", "ü🎉", "a%b_c\\d"]:
        pred = to_predicate(parse({"field": "x", "operator": "is", "value": value}))
        assert pred({"x": value}) is True
        assert pred({"x": value + "z"}) is False
        assert to_predicate(parse({"field": "x", "operator": "contains", "value": value}))(
            {"x": f"<{value}>"}
        )


def test_predicate__relative_operator_without_clock__filter_error() -> None:
    with pytest.raises(FilterError, match=r"^filter: operator 'within_last' needs the current time"):
        to_predicate(parse({"field": "x", "operator": "within_last", "value": "1d"}))
    with pytest.raises(FilterError, match=r"^filter.within_last: needs the current time"):
        to_predicate(parse({"event": "x", "within_last": "1d"}))


def test_predicate__clock_is_read_per_call() -> None:
    current = [NOW]
    pred = to_predicate(
        parse({"field": "x", "operator": "within_last", "value": "1h"}), now=lambda: current[0]
    )
    record = {"x": NOW - timedelta(minutes=30)}
    assert pred(record) is True
    current[0] = NOW + timedelta(hours=1)
    assert pred(record) is False


def _events(*items: tuple[str, datetime | str | None, dict[str, Any] | None]) -> list[dict[str, Any]]:
    return [{"event": e, "timestamp": t, "properties": p} for e, t, p in items]


def test_predicate__behavioural__counts_matching_events() -> None:
    day = timedelta(days=1)
    record = {
        EVENTS_KEY: _events(
            ("purchase", NOW - day, {"amount": 30, "sku": "a"}),
            ("purchase", (NOW - 2 * day).isoformat(), {"amount": 5}),
            ("purchase", NOW - 40 * day, {"amount": 100}),
            ("app_open", NOW, None),
        )
    }

    def check(raw: dict[str, Any]) -> bool:
        return to_predicate(parse(raw), now=clock)(record)

    assert check({"event": "purchase"}) is True
    assert check({"event": "refund"}) is False
    assert check({"event": "purchase", "count": {"gte": 3}}) is True
    assert check({"event": "purchase", "count": {"gte": 3}, "within_last": "30d"}) is False
    assert check({"event": "purchase", "count": {"eq": 2}, "within_last": "30d"}) is True
    assert check({"event": "purchase", "count": {"lte": 1}, "within_last": "30d"}) is False
    assert check({"event": "purchase", "where": {"field": "amount", "operator": "gt", "value": 10}}) is True
    assert check(
        {"event": "purchase", "count": {"eq": 2}, "where": {"field": "amount", "operator": "gt", "value": 10}}
    )
    assert check({"event": "app_open", "where": {"field": "amount", "operator": "not_exists"}}) is True
    assert check({"event": "Purchase"}) is False


@pytest.mark.parametrize("events", [MISSING, None, [], "purchase", [None, 1, "x"]])
def test_predicate__behavioural__no_events(events: Any) -> None:
    record = {} if events is MISSING else {EVENTS_KEY: events}

    def check(raw: dict[str, Any]) -> bool:
        return to_predicate(parse(raw), now=clock)(record)

    assert check({"event": "purchase"}) is False
    assert check({"event": "purchase", "count": {"gte": 0}}) is True
    assert check({"event": "purchase", "count": {"lte": 3}}) is True
    assert check({"event": "purchase", "count": {"eq": 0}}) is True
    assert check({"not": {"event": "purchase"}}) is True


def test_predicate__compiled_once__same_function_for_equal_trees() -> None:
    raw = {"field": "x", "operator": "is", "value": "a"}
    assert to_predicate(parse(raw)) is to_predicate(parse([raw]))


def test_condition_equality__boolean_is_not_number() -> None:
    assert parse({"field": "x", "operator": "is", "value": True}) != parse(
        {"field": "x", "operator": "is", "value": 1}
    )
    assert parse({"field": "x", "operator": "in", "value": [1]}) != parse(
        {"field": "x", "operator": "in", "value": [True]}
    )
    assert to_predicate(parse({"field": "x", "operator": "is", "value": 1}))({"x": 1}) is True
    assert to_predicate(parse({"field": "x", "operator": "is", "value": True}))({"x": 1}) is False


def _largest_trees() -> list[Any]:
    """The deepest (32 levels) and the widest (500 nodes) trees the parser accepts, with long paths."""
    leaf = {"field": "a.b.c.d.e.f.g.h", "operator": "in", "value": ["x", 1, True, "2024-01-01"]}
    deep: Any = leaf
    for i in range(31):
        deep = {"not": deep} if i % 3 == 2 else {("all", "any")[i % 3]: [deep, leaf]}
    groups = [
        {
            "all": [
                leaf,
                {"field": "user.plan", "operator": "is", "value": f"p{i}"},
                {"field": "t", "operator": "within_last", "value": "1d"},
                {"field": "n", "operator": "between", "value": [i, i + 1]},
            ]
        }
        for i in range(99)
    ]
    return [deep, {"any": groups}]


def test_predicate__largest_trees__compile_and_evaluate() -> None:
    deep, wide = (parse(raw) for raw in _largest_trees())
    nested = {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": "x"}}}}}}}}
    assert to_predicate(deep)(nested) in (True, False)
    pred = to_predicate(wide, now=clock)
    assert pred({}) is False
    assert pred({**nested, "user": {"plan": "p7"}, "t": NOW, "n": 7.5}) is True
    assert pred({**nested, "user": {"plan": "p7"}, "t": NOW, "n": 9}) is False
