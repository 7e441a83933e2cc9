"""Parsing: both input forms, value shapes per operator, error paths, bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from overture.core.filters import (
    MAX_DEPTH,
    MAX_NODES,
    All,
    AnyOf,
    Condition,
    EventCondition,
    FilterError,
    Not,
    fields_of,
    has_behavioural,
    needs_clock,
    parse,
    parse_duration,
    to_json,
)


def c(field: str, operator: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    rule = {"field": field, "operator": operator, **extra}
    if value is not None:
        rule["value"] = value
    return rule


def cond(field: str, operator: str, value: Any = None) -> Condition:
    return Condition(field=field, operator=operator, value=value)


@pytest.mark.parametrize("raw", [None, {}, [], {"all": []}])
def test_parse__empty_input__matches_everyone(raw: Any) -> None:
    assert parse(raw) == All()


def test_parse__canonical_tree__builds_immutable_nodes() -> None:
    tree = parse(
        {
            "all": [
                c("device.platform", "is", "ios"),
                {"any": [c("user.plan", "is", "free"), c("user.ltv", "gt", 100)]},
                {"not": c("user.email", "exists")},
            ]
        }
    )
    assert tree == All(
        (
            cond("device.platform", "is", "ios"),
            AnyOf((cond("user.plan", "is", "free"), cond("user.ltv", "gt", 100))),
            Not(cond("user.email", "exists")),
        )
    )
    assert hash(tree) == hash(parse(to_json(tree)))
    with pytest.raises(AttributeError):
        tree.children = ()  # type: ignore[misc]


def test_parse__flat_list__and_binds_tighter_than_or() -> None:
    # a and b or c and d  ==  (a and b) or (c and d)
    rules = [
        c("a", "is", 1),
        c("b", "is", 2, conjunction="and"),
        c("c", "is", 3, conjunction="or"),
        c("d", "is", 4, conjunction="and"),
    ]
    assert parse(rules) == AnyOf(
        (All((cond("a", "is", 1), cond("b", "is", 2))), All((cond("c", "is", 3), cond("d", "is", 4))))
    )


def test_parse__flat_list_seed_example__is_an_and_of_three() -> None:
    rules = [
        {"field": "device.platform", "operator": "is", "value": "ios"},
        {"field": "device.session_count", "operator": "gte", "value": 5, "conjunction": "and"},
        {"field": "user.subscription_status", "operator": "is", "value": "free", "conjunction": "and"},
    ]
    tree = parse(rules, root="filters")
    assert isinstance(tree, All) and len(tree.children) == 3


def test_parse__flat_list_without_conjunction__defaults_to_and() -> None:
    assert parse([c("a", "exists"), c("b", "exists")]) == All((cond("a", "exists"), cond("b", "exists")))


def test_parse__flat_list_or_chain__or_of_singles() -> None:
    tree = parse([c("a", "exists"), c("b", "exists", conjunction="OR"), c("c", "exists", conjunction="or")])
    assert tree == AnyOf((cond("a", "exists"), cond("b", "exists"), cond("c", "exists")))


def test_parse__single_child_group__collapses_to_child() -> None:
    assert parse({"all": [c("a", "exists")]}) == cond("a", "exists")
    assert parse({"any": [{"all": [c("a", "exists")]}]}) == cond("a", "exists")


@pytest.mark.parametrize(
    ("raw", "root", "message"),
    [
        (
            [c("a", "is", 1), c("b", "is", 1), c("c", "equals", 1)],
            "filters",
            "filters[2].operator: unknown operator 'equals'",
        ),
        ({"all": [c("a", "is", 1), c("plna", "in", "x")]}, "filter", "filter.all[1].value: expected a list"),
        (
            {"any": [{"not": c("a", "between", [1])}]},
            "filter",
            "filter.any[0].not.value: expected a list of two",
        ),
        (c("a", "is"), "filter", "filter.value: a value is required"),
        ({"field": "a", "operator": "is", "value": None}, "filter", "filter.value: value cannot be null"),
        (c("a", "exists", 3), "filter", "filter.value: this operator takes no value"),
        (c("a", "gt", True), "filter", "filter.value: expected a number, a string or an ISO timestamp"),
        (c("a", "in", [1, None]), "filter", "filter.value[1]: list values cannot be null"),
        (c("a", "between", [1, "x"]), "filter", "filter.value: both bounds must be numbers"),
        (c("a", "starts_with", 5), "filter", "filter.value: expected a string, got a number"),
        (c("a", "within_last", "7 days"), "filter", "filter.value: invalid duration '7 days'"),
        (
            c("a", "before", "yesterday"),
            "filter",
            "filter.value: expected an ISO 8601 timestamp or a duration",
        ),
        (c("a", "is", float("nan")), "filter", "filter.value: number must be finite"),
        (c("a", "is", 2**70), "filter", "filter.value: integer is out of the 64-bit range"),
        (c("a", "is", "x\x00y"), "filter", "filter.value: string contains a NUL character"),
        (
            c("a", "is", {"x": 1}),
            "filter",
            "filter.value: expected a string, number or boolean, got an object",
        ),
        ({"field": "a", "operator": "is", "vaule": 1}, "filter", "filter: unknown key 'vaule'"),
        ({"all": [c("a", "exists")], "any": []}, "filter", "filter: a 'all' group takes no other key"),
        ({"all": {"field": "a"}}, "filter", "filter.all: 'all' takes a list of filters"),
        ({"not": []}, "filter", "filter.not: 'not' takes one non-empty filter"),
        ({"foo": 1}, "filter", "filter: expected 'all', 'any', 'not'"),
        ("plan = 'pro'", "filter", "filter: expected an object or a list of rules, got a string"),
        (
            [c("a", "exists"), c("b", "exists", conjunction="xor")],
            "f",
            "f[1].conjunction: expected 'and' or 'or'",
        ),
        ([c("a", "exists"), "b"], "f", "f[1]: expected a rule object"),
        (c("a", "exists", conjunction="and"), "filter", "filter: unknown key 'conjunction'"),
        ({"event": ""}, "filter", "filter.event: expected a non-empty event name"),
        ({"event": "buy", "count": {"gt": 1}}, "filter", "filter.count: unknown count operator 'gt'"),
        ({"event": "buy", "count": {"gte": -1}}, "filter", "filter.count.gte: expected a whole number"),
        ({"event": "buy", "count": {"gte": 1, "lte": 3}}, "filter", "filter.count: expected one comparison"),
        (
            {"event": "buy", "within_last": "0d"},
            "filter",
            "filter.within_last: duration '0d' must be positive",
        ),
        ({"event": "buy", "when": "x"}, "filter", "filter: unknown key 'when'"),
        (
            {"event": "buy", "where": {"event": "other"}},
            "filter",
            "filter.where: behavioural conditions cannot be nested inside 'where'",
        ),
    ],
)
def test_parse__bad_input__error_names_the_path(raw: Any, root: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse(raw, root=root)
    assert str(caught.value).startswith(message), str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == f"{caught.value.path}: {caught.value.message}"


@pytest.mark.parametrize(
    "field", ["plan; drop table x", 'a"b', "a b", "a..b", ".a", "a.", "", "a'b", "a]b", "1abc", "a" * 101]
)
def test_parse__hostile_field_name__is_refused(field: str) -> None:
    with pytest.raises(FilterError, match=r"^filter\.field: invalid field"):
        parse(c(field, "is", "x"))


@pytest.mark.parametrize(
    "field", ["plan", "user.plan", "device.session_count", "$os", "a-b.c_d.e9", "user.seed"]
)
def test_parse__dotted_field_names__accepted(field: str) -> None:
    assert parse(c(field, "exists")) == cond(field, "exists")


def test_parse__depth_limit__refused_beyond_32_levels() -> None:
    def nested(depth: int) -> Any:
        node: Any = c("a", "exists")
        for _ in range(depth - 1):
            node = {"not": node}
        return node

    assert parse(nested(MAX_DEPTH))
    with pytest.raises(FilterError, match="nested deeper than 32 levels"):
        parse(nested(MAX_DEPTH + 1))
    # A hostile 100k-deep document fails fast instead of exhausting the stack.
    with pytest.raises(FilterError, match="nested deeper"):
        parse(nested(100_000))


def test_parse__size_limit__refused_beyond_500_nodes() -> None:
    assert parse({"any": [c("a", "is", i) for i in range(MAX_NODES - 1)]})
    with pytest.raises(FilterError, match="more than 500 nodes"):
        parse({"any": [c("a", "is", i) for i in range(MAX_NODES)]})


def test_parse__values_normalized_per_operator() -> None:
    assert parse(c("a", "in", ["x", 1, True])) == cond("a", "in", ("x", 1, True))
    assert parse(c("a", "between", [1, 2.5])) == cond("a", "between", (1, 2.5))
    assert parse(c("a", "within_last", "2w")) == cond("a", "within_last", timedelta(weeks=2))
    assert parse(c("a", "before", "30d")) == cond("a", "before", timedelta(days=30))
    assert parse(c("a", "after", "2024-03-01T12:00:00+02:00")) == cond(
        "a", "after", datetime(2024, 3, 1, 10, tzinfo=UTC)
    )
    assert parse(c("a", "after", "2024-03-01")) == cond("a", "after", datetime(2024, 3, 1, tzinfo=UTC))


def test_parse__event_condition__defaults_count_gte_1() -> None:
    tree = parse({"event": "purchase", "within_last": "30d", "where": c("amount", "gt", 10)})
    assert tree == EventCondition(
        event="purchase", within_last=timedelta(days=30), where=cond("amount", "gt", 10)
    )
    assert parse(to_json(tree)) == tree


def test_fields_of__profile_fields_only() -> None:
    tree = parse(
        {
            "all": [
                c("user.plan", "is", "x"),
                {"not": c("ltv", "gt", 1)},
                {"event": "buy", "where": c("sku", "exists")},
            ]
        }
    )
    assert fields_of(tree) == {"user.plan", "ltv"}
    assert has_behavioural(tree)
    assert not has_behavioural(parse(c("a", "exists")))


def test_needs_clock__relative_operators_and_windows() -> None:
    assert needs_clock(parse(c("a", "within_last", "1h")))
    assert needs_clock(parse(c("a", "before", "1d")))
    assert not needs_clock(parse(c("a", "before", "2024-01-01")))
    assert needs_clock(parse({"event": "x", "within_last": "1d"}))
    assert not needs_clock(parse({"event": "x"}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_parse_duration__units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-7d", "1.5h", "0s", "99999w", 7, None, "7 d"])
def test_parse_duration__bad_input__filter_error(text: Any) -> None:
    with pytest.raises(FilterError, match=r"^duration: "):
        parse_duration(text)


def test_to_json__round_trips_every_operator() -> None:
    rules = [
        c("a", "is", "x"),
        c("a", "is_not", 1.5),
        c("a", "contains", True),
        c("a", "in", ["x", 2]),
        c("a", "not_in", []),
        c("a", "exists"),
        c("a", "not_exists"),
        c("a", "starts_with", "%"),
        c("a", "between", ["a", "b"]),
        c("a", "before", "2024-01-01T00:00:00Z"),
        c("a", "after", "3d"),
        c("a", "within_last", "1w2d"),
    ]
    tree = parse({"all": rules})
    assert parse(to_json(tree)) == tree


def test_filter_error__pickles_with_its_path() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(FilterError("filters[2].operator", "unknown operator 'equals'")))
    assert (error.path, error.message, str(error)) == (
        "filters[2].operator",
        "unknown operator 'equals'",
        "filters[2].operator: unknown operator 'equals'",
    )
