"""Segment references and experience conditions: parsing, expansion, cycles, error paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from overture.core.filters import (
    EVENTS_KEY,
    ExperienceEvent,
    FilterError,
    Node,
    SegmentRef,
    expand,
    experience_event_name,
    has_behavioural,
    needs_clock,
    parse,
    segments_of,
    to_json,
    to_predicate,
)

PRO = {"field": "plan", "operator": "is", "value": "pro"}


def resolver(defs: dict[str, Any]) -> Any:
    def resolve(ref: str) -> Node:
        if ref not in defs:
            raise LookupError(f"segment '{ref}' not found")
        return parse(defs[ref])

    return resolve


def test_parse__segment_reference__round_trips() -> None:
    node = parse({"all": [{"segment": "abc-1"}, PRO]})
    assert segments_of(node) == {"abc-1"}
    assert parse(to_json(node)) == node
    assert SegmentRef(segment="abc-1") in node.children  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"segment": ""}, "filter.segment"),
        ({"segment": "a'; drop"}, "filter.segment"),
        ({"segment": 3}, "filter.segment"),
        ({"segment": "a", "field": "x"}, "filter"),
        ({"event": "buy", "where": {"segment": "a"}}, "filter.where"),
        ({"experience_event": "click", "experiences": []}, "filter.experience_event"),
        ({"experience_event": "conversion", "experiences": "a b"}, "filter.experiences[0]"),
        ({"experience_event": "conversion", "experiences": {"a": 1}}, "filter.experiences"),
        ({"experience_event": "conversion", "experiences": [], "count": 2}, "filter"),
        ({"experience_event": "conversion", "experiences": [], "within_last": "x"}, "filter.within_last"),
    ],
)
def test_parse__bad_reference_or_experience_condition__error_names_path(raw: Any, path: str) -> None:
    with pytest.raises(FilterError) as info:
        parse(raw)
    assert info.value.path == path


def test_parse__experience_condition__ids_deduplicated_and_round_trip() -> None:
    node = parse({"experience_event": "conversion", "experiences": ["a", "b", "a"], "within_last": "6h"})
    assert node == ExperienceEvent(kind="conversion", experiences=("a", "b"), within_last=timedelta(hours=6))
    assert parse(to_json(node)) == node
    assert has_behavioural(node) and needs_clock(node)
    assert parse({"experience_event": "delivery", "experiences": "x"}) == ExperienceEvent(
        kind="delivery", experiences=("x",)
    )


def test_expand__chain_of_references__inlines_each_tree() -> None:
    defs = {"a": PRO, "b": {"not": {"segment": "a"}}}
    assert expand(parse({"segment": "b"}), resolver(defs)) == parse({"not": PRO})


def test_expand__cycle__refused_at_reference_path() -> None:
    defs = {"a": {"segment": "b"}, "b": {"any": [PRO, {"segment": "a"}]}}
    with pytest.raises(FilterError) as info:
        expand(parse({"all": [PRO, {"segment": "a"}]}), resolver(defs))
    assert "cycle (a -> b -> a)" in info.value.message


def test_expand__self_reference__refused() -> None:
    with pytest.raises(FilterError, match="cycle"):
        expand(parse({"segment": "a"}), resolver({"a": {"segment": "a"}}))


def test_expand__unknown_segment__error_names_reference() -> None:
    with pytest.raises(FilterError) as info:
        expand(parse({"all": [PRO, {"segment": "zz"}]}), resolver({}))
    assert info.value.path == "filter.all[1].segment"
    assert "'zz' not found" in info.value.message


def test_expand__no_resolver__refused() -> None:
    with pytest.raises(FilterError, match="resolver"):
        to_predicate(parse({"segment": "a"}))


def test_expand__diamond__not_a_cycle() -> None:
    defs = {"a": PRO, "b": {"segment": "a"}, "c": {"all": [{"segment": "a"}, {"segment": "b"}]}}
    predicate = to_predicate(parse({"segment": "c"}), segments=resolver(defs))
    assert predicate({"plan": "pro"}) and not predicate({"plan": "free"})


def test_predicate__experience_condition__matches_named_events_in_window() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    node = parse({"experience_event": "conversion", "experiences": ["e1", "e2"], "within_last": "1d"})
    predicate = to_predicate(node, now=lambda: now)
    hit = {"event": experience_event_name("conversion", "e2"), "timestamp": now - timedelta(hours=2)}
    old = {**hit, "timestamp": now - timedelta(days=2)}
    other = {"event": experience_event_name("delivery", "e2"), "timestamp": now}
    assert predicate({EVENTS_KEY: [other, hit]})
    assert not predicate({EVENTS_KEY: [other, old]})
    assert not predicate({EVENTS_KEY: [{"event": ["not", "hashable"]}]})
    assert not to_predicate(parse({"experience_event": "conversion", "experiences": []}))({EVENTS_KEY: [hit]})
