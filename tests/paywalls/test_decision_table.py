"""The compiled decision table (no database): its placement index never changes an answer. For random
audiences and random register contexts, the table's audience is the first one, in order, whose
entitlement the user lacks and whose whole filter (compiled by overture.core.filters) matches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from overture.core.filters import parse, to_predicate
from overture.paywalls.decisions import AudienceConfig, DecisionTable, PaywallConfig, PlacementConfig

PLAIN = ["ios", "android", "web", "5"]
PLATFORMS = [*PLAIN, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00"]
FIELDS = ["device.platform", "user.plan", "user.deep.tier"]
ANY_VALUE = st.one_of(
    st.sampled_from(PLATFORMS),
    st.sampled_from(PLATFORMS),
    st.sampled_from(PLATFORMS),
    st.none(),
    st.integers(-2, 6),
    st.booleans(),
    st.just(datetime(2026, 1, 1, tzinfo=UTC)),  # equal to both timestamp texts: two guards hold at once
    st.lists(st.sampled_from(PLATFORMS), max_size=2),
    st.dictionaries(st.sampled_from(["platform", "tier"]), st.sampled_from(PLATFORMS), max_size=2),
)


def _rule() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.fixed_dictionaries(
            {"field": st.sampled_from(FIELDS), "operator": st.just("is"), "value": st.sampled_from(PLATFORMS)}
        ),
        st.fixed_dictionaries(
            {"field": st.sampled_from(FIELDS), "operator": st.just("is"), "value": st.integers(0, 5)}
        ),
        st.fixed_dictionaries(
            {
                "field": st.just("user.count"),
                "operator": st.sampled_from(["gte", "lt"]),
                "value": st.integers(0, 5),
            }
        ),
        st.fixed_dictionaries(
            {
                "field": st.sampled_from(FIELDS),
                "operator": st.just("in"),
                "value": st.lists(st.sampled_from(PLATFORMS), min_size=1, max_size=3),
            }
        ),
        st.fixed_dictionaries(
            {"field": st.sampled_from(FIELDS), "operator": st.sampled_from(["exists", "not_exists"])}
        ),
    )


@st.composite
def _filters(draw: st.DrawFn) -> Any:
    """Mostly the shape the index is built from (`device.platform is "text"` and other rules), with
    timestamp-like text, or-runs and canonical trees mixed in."""
    rules = []
    if draw(st.integers(0, 4)) > 0:
        value = draw(st.sampled_from(PLAIN) if draw(st.integers(0, 5)) > 0 else st.sampled_from(PLATFORMS))
        rules.append({"field": "device.platform", "operator": "is", "value": value})
    rules += draw(st.lists(_rule(), max_size=3))
    for rule in rules[1:]:
        if draw(st.integers(0, 3)) == 0:
            rule["conjunction"] = draw(st.sampled_from(["and", "or"]))
    if rules and draw(st.integers(0, 4)) == 0:
        return {"all": [{k: v for k, v in r.items() if k != "conjunction"} for r in rules]}
    return rules


@st.composite
def _context(draw: st.DrawFn) -> dict[str, Any]:
    def section(keys: list[str]) -> Any:
        return draw(
            st.one_of(st.none(), st.dictionaries(st.sampled_from(keys), ANY_VALUE, min_size=1, max_size=3))
        )

    return {
        "user": section(["plan", "deep", "count"]),
        "device": section(["platform"]),
        "entitlements": draw(st.one_of(st.none(), st.lists(st.sampled_from(["pro", "basic"]), max_size=2))),
    }


def _table(audiences: list[tuple[Any, str | None]]) -> DecisionTable:
    paywall = PaywallConfig("pw", "pw", {})
    placement = PlacementConfig(
        name="p",
        campaign_id="camp",
        audiences=tuple(
            AudienceConfig(f"aud_{i}", filters, entitlement, None, paywall, None)
            for i, (filters, entitlement) in enumerate(audiences)
        ),
    )
    return DecisionTable([placement], lambda: datetime(2026, 1, 1, tzinfo=UTC))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_filters(), st.sampled_from([None, None, "pro"])), min_size=2, max_size=8),
    st.lists(_context(), min_size=1, max_size=8),
)
def test_decide__indexed_table__same_audience_as_ordered_full_filters(
    audiences: list[tuple[Any, str | None]], contexts: list[dict[str, Any]]
) -> None:
    table = _table(audiences)
    full = [to_predicate(parse(f, root="filters")) for f, _ in audiences]
    for ctx in contexts:
        record = {"user": ctx["user"] or {}, "device": ctx["device"] or {}, "params": {}}
        held = ctx["entitlements"] or []
        expected = next(
            (
                f"aud_{i}"
                for i, ((_, ent), pred) in enumerate(zip(audiences, full, strict=True))
                if not (ent is not None and ent in held) and pred(record)
            ),
            None,
        )
        answer = table.decide(
            "p", "u", user=ctx["user"], device=ctx["device"], entitlements=ctx["entitlements"]
        ).as_dict()
        assert answer["audience_id"] == expected


def test_decide__shared_guard_field__indexed() -> None:
    ios = [{"field": "device.platform", "operator": "is", "value": "ios"}]
    web = [
        {"field": "device.platform", "operator": "is", "value": "web"},
        {"field": "user.plan", "operator": "is", "value": "free"},
    ]
    table = _table([(ios, None), (web, None), ([], None)])
    entry = table._placements["p"]
    assert entry.index_keys == ("device", "platform") and len(entry.guards) == 2
    assert (
        table.decide("p", "u", device={"platform": "web"}, user={"plan": "free"}).as_dict()["audience_id"]
        == "aud_1"
    )
    assert table.decide("p", "u", device={"platform": "web"}).as_dict()["audience_id"] == "aud_2"
    assert table.decide("p", "u", device={"platform": 3}).as_dict()["audience_id"] == "aud_2"


def test_decide__unknown_placement__not_found_echoes_it() -> None:
    answer = _table([([], None)]).decide("elsewhere", "u").as_dict()
    assert answer["result"] == "placement_not_found" and answer["placement"] == "elsewhere"


def test_decide__two_guards_hold_at_once__audiences_of_both_tried() -> None:
    # A datetime equals both spellings of the same instant, so both guards hold for it.
    z, offset = "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00"
    first = [
        {"field": "device.platform", "operator": "is", "value": offset},
        {"field": "user.plan", "operator": "is", "value": "x"},
    ]
    second = [{"field": "device.platform", "operator": "is", "value": z}]
    table = _table([(first, None), (second, None)])
    assert table._placements["p"].index_keys == ()  # timestamp text: guards are evaluated, not looked up
    device = {"platform": datetime(2026, 1, 1, tzinfo=UTC)}
    assert table.decide("p", "u", device=device).as_dict()["audience_id"] == "aud_1"
    assert table.decide("p", "u", device=device, user={"plan": "x"}).as_dict()["audience_id"] == "aud_0"
