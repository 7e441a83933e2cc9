"""What a run does to members: exit criteria, splits, re-entry, edits of live journeys, waits."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from overture.data.source import get_source
from overture.journeys.members.tables import MemberStore, bucket_of
from tests.journeys.conftest import Api, create_customers_table, edge, execute

ENTRY = {"id": "in", "type": "entry"}
WAIT_DAY = {"id": "wait", "type": "wait", "config": {"duration": 1, "unit": "days"}}
EXIT = {"id": "out", "type": "exit"}


def _active_journey(
    api: Api, model_id: str, tiles: list[dict[str, Any]], edges: list[dict[str, Any]], **extra: Any
) -> str:
    journey = api.create(
        {"name": "semantics", "parent_model_id": model_id, "tiles": tiles, "edges": edges, **extra}
    )
    api.activate(journey["id"])
    return str(journey["id"])


def _wait_then_exit(api: Api, model_id: str, **extra: Any) -> str:
    return _active_journey(
        api,
        model_id,
        [ENTRY, WAIT_DAY, EXIT],
        [{"from": "in", "to": "wait"}, {"from": "wait", "to": "out"}],
        **extra,
    )


def test_exit_criteria__matched_mid_journey__member_exited_with_reason(api: Api, frozen_clock: Any) -> None:
    # Given 12 members waiting a day, exit criteria "plan is enterprise" nobody matches yet
    table = create_customers_table(api.ctx, 12)
    model_id = api.model(table)
    exit_rule = {"field": "plan", "operator": "is", "value": "enterprise"}
    execute(api.ctx, f"UPDATE {table} SET plan = 'free' WHERE plan = 'enterprise'")
    jid = _wait_then_exit(api, model_id, exit_criteria=exit_rule)
    assert api.run(jid)["counts"]["entered"] == 12

    # When three of them upgrade while waiting
    execute(
        api.ctx,
        f"UPDATE {table} SET plan = 'enterprise' WHERE customer_id IN ('c000001', 'c000002', 'c000003')",
    )
    frozen_clock.advance(hours=1)
    run = api.run(jid)

    # Then the next run removes exactly them, where they stood
    assert run["counts"]["exited"] == 3 and run["counts"]["entered"] == 0
    assert api.stats(jid)["tiles"]["wait"] == {"active": 9, "completed": 0, "exited": 3}
    member = api.get(f"/{jid}/members/c000002")
    assert (
        member["status"] == "exited" and member["reason"] == "exit_criteria" and member["tile_id"] == "wait"
    )
    assert member["path"][-1]["event"] == "exited" and member["path"][-1]["detail"] == "exit_criteria"
    # And the rest finish normally
    frozen_clock.advance(days=1)
    api.run(jid)
    assert api.stats(jid)["total"] == {"active": 0, "completed": 9, "exited": 3}


def test_entry__member_matching_exit_criteria__does_not_enter(api: Api) -> None:
    model_id = api.model(create_customers_table(api.ctx, 9))
    jid = _wait_then_exit(api, model_id, exit_criteria={"field": "plan", "operator": "is", "value": "pro"})
    run = api.run(jid)
    assert run["counts"]["entered"] == 6 and run["counts"]["exited"] == 0


def test_split__10000_members__proportions_within_tolerance_and_reproducible(api: Api) -> None:
    # Given 10,000 members through a 20/30/50 split
    model_id = api.model(create_customers_table(api.ctx, 10_000))
    split = {
        "id": "ab",
        "type": "split",
        "config": {
            "variants": [
                {"name": "control", "percentage": 20},
                {"name": "short", "percentage": 30},
                {"name": "long", "percentage": 50},
            ]
        },
    }
    tiles = [
        ENTRY,
        split,
        {"id": "c", "type": "exit"},
        {"id": "s", "type": "exit"},
        {"id": "l", "type": "exit"},
    ]
    edges = [edge("in", "ab"), edge("ab", "c", "control"), edge("ab", "s", "short"), edge("ab", "l", "long")]
    jid = _active_journey(api, model_id, tiles, edges)
    api.run(jid)

    # Then each variant holds its share within 3 standard deviations (binomial, n = 10,000)
    tiles_stats = api.stats(jid)["tiles"]
    for tile, share in (("c", 0.2), ("s", 0.3), ("l", 0.5)):
        sigma = (10_000 * share * (1 - share)) ** 0.5
        assert abs(tiles_stats[tile]["completed"] - 10_000 * share) <= 3 * sigma, (tile, tiles_stats[tile])

    # And every assignment is the documented md5 bucket, computed the same way in Python
    store_members = _final_tiles(api, jid)
    expected = {
        member: ("c" if b < 2000 else "s" if b < 5000 else "l")
        for member in store_members
        for b in [bucket_of(jid, "ab", member)]
    }
    assert store_members == expected


def _final_tiles(api: Api, journey_id: str) -> dict[str, str]:
    members = MemberStore(get_source(api.ctx), api.ws.id, journey_id).members
    with get_source(api.ctx).connect() as conn:
        return {str(m): str(t) for m, t in conn.execute(sa.select(members.c.member_id, members.c.tile_id))}


@pytest.mark.parametrize(("reentry", "second_entries"), [("never", 0), ("after_exit", 5)])
def test_reentry__after_completion__only_with_after_exit(
    api: Api, frozen_clock: Any, reentry: str, second_entries: int
) -> None:
    # Given 5 members that completed the journey
    model_id = api.model(create_customers_table(api.ctx, 5))
    tiles = [{"id": "in", "type": "entry", "config": {"reentry": reentry}}, WAIT_DAY, EXIT]
    jid = _active_journey(api, model_id, tiles, [{"from": "in", "to": "wait"}, {"from": "wait", "to": "out"}])
    assert api.run(jid)["counts"]["entered"] == 5
    # While they are in the journey nobody enters twice, whatever the rule
    assert api.run(jid)["counts"]["entered"] == 0
    frozen_clock.advance(days=1)
    done = api.run(jid)
    assert done["counts"]["completed"] == 5

    # When the next run evaluates entry again
    again = api.run(jid)

    # Then only after_exit lets them in once more, as a second entry with its own path
    assert again["counts"]["entered"] == second_entries
    member = api.get(f"/{jid}/members/c000000")
    if second_entries:
        assert member["status"] == "active" and member["entry_number"] == 2
        assert [s["entry_number"] for s in member["path"]].count(2) == 2  # entered, arrived at wait
        assert api.stats(jid)["total"] == {"active": 5, "completed": 5, "exited": 0}
    else:
        assert member["status"] == "completed" and member["entry_number"] == 1
        assert api.stats(jid)["total"] == {"active": 0, "completed": 5, "exited": 0}


def test_reentry_after_exit__exited_member__enters_again_when_no_longer_matching_exit(
    api: Api, frozen_clock: Any
) -> None:
    table = create_customers_table(api.ctx, 3)
    model_id = api.model(table)
    tiles = [{"id": "in", "type": "entry", "config": {"reentry": "after_exit"}}, WAIT_DAY, EXIT]
    jid = _active_journey(
        api,
        model_id,
        tiles,
        [{"from": "in", "to": "wait"}, {"from": "wait", "to": "out"}],
        exit_criteria={"field": "email", "operator": "ends_with", "value": "@gone.example"},
    )
    api.run(jid)
    execute(api.ctx, f"UPDATE {table} SET email = 'x@gone.example' WHERE customer_id = 'c000000'")
    assert api.run(jid)["counts"]["exited"] == 1
    assert api.run(jid)["counts"]["entered"] == 0  # still matches the exit criteria
    execute(api.ctx, f"UPDATE {table} SET email = 'back@example.com' WHERE customer_id = 'c000000'")
    assert api.run(jid)["counts"]["entered"] == 1
    assert api.get(f"/{jid}/members/c000000")["entry_number"] == 2


def test_put_on_active__tile_removed__members_on_it_exit_with_tile_removed(
    api: Api, frozen_clock: Any
) -> None:
    # Given members waiting on tile "wait" of an active journey
    model_id = api.model(create_customers_table(api.ctx, 8))
    jid = _wait_then_exit(api, model_id)
    api.run(jid)
    # When the journey is edited so the wait tile is gone (the edit takes effect at the next run)
    r = api.client.put(
        api.url(f"/{jid}"),
        headers=api.ws.headers,
        json={
            "tiles": [
                ENTRY,
                {"id": "wait2", "type": "wait", "config": {"duration": 1, "unit": "hours"}},
                EXIT,
            ],
            "edges": [{"from": "in", "to": "wait2"}, {"from": "wait2", "to": "out"}],
        },
    )
    assert r.status_code == 200, r.text
    assert api.stats(jid)["tiles"]["wait"]["active"] == 8  # nothing moved yet
    run = api.run(jid)
    # Then they leave with reason tile_removed, counted where they stood
    assert run["counts"]["exited"] == 8
    stats = api.stats(jid)
    assert stats["tiles"]["wait"] == {"active": 0, "completed": 0, "exited": 8}
    assert set(stats["tiles"]) == {"in", "wait", "wait2", "out"}
    assert api.get(f"/{jid}/members/c000004")["reason"] == "tile_removed"


def test_wait_until__next_local_time_of_day(api: Api, frozen_clock: Any) -> None:
    # 2026-01-01T00:00Z is 01:00 in Berlin: the next 09:00 there is 08:00Z the same day
    model_id = api.model(create_customers_table(api.ctx, 2))
    tiles = [
        ENTRY,
        {"id": "nine", "type": "wait", "config": {"until": "09:00", "timezone": "Europe/Berlin"}},
        EXIT,
    ]
    jid = _active_journey(api, model_id, tiles, [{"from": "in", "to": "nine"}, {"from": "nine", "to": "out"}])
    api.run(jid)
    member = api.get(f"/{jid}/members/c000001")
    assert member["tile_id"] == "nine" and member["wait_until"] == "2026-01-01T08:00:00Z"
    frozen_clock.advance(hours=7, minutes=59)
    assert api.run(jid)["counts"]["completed"] == 0
    frozen_clock.advance(minutes=1)
    assert api.run(jid)["counts"]["completed"] == 2


def test_integer_primary_key_and_deleted_profiles(api: Api, frozen_clock: Any) -> None:
    # Given a model keyed by an integer, and members waiting
    table = create_customers_table(api.ctx, 6)
    execute(api.ctx, f"ALTER TABLE {table} ADD COLUMN num INTEGER")
    execute(api.ctx, f"UPDATE {table} SET num = CAST(substr(customer_id, 2) AS INTEGER)")
    model_id = api.model(table, primary_key="num")
    jid = _wait_then_exit(api, model_id)
    api.run(jid)
    assert api.get(f"/{jid}/members/3")["member_id"] == "3"
    api.get(f"/{jid}/members/three", expect=404)
    # When a profile is deleted, its member leaves (it cannot be evaluated any more)
    execute(api.ctx, f"DELETE FROM {table} WHERE num = 3")
    assert api.run(jid)["counts"]["exited"] == 1
    assert api.get(f"/{jid}/members/3")["reason"] == "profile_missing"


def test_filter__criteria_on_timestamp_and_number__branches_follow_profiles(api: Api) -> None:
    table = create_customers_table(api.ctx, 100)
    model_id = api.model(table)
    criteria = {
        "all": [
            {"field": "ltv", "operator": "gte", "value": 20},
            {"field": "signup_at", "operator": "before", "value": "2025-02-01T00:00:00Z"},
        ]
    }
    tiles = [
        ENTRY,
        {"id": "f", "type": "filter", "config": {"criteria": criteria}},
        {"id": "yes", "type": "exit"},
        {"id": "no", "type": "exit"},
    ]
    edges = [
        {"from": "in", "to": "f"},
        {"from": "f", "to": "yes", "branch": "match"},
        {"from": "f", "to": "no", "branch": "no_match"},
    ]
    jid = _active_journey(api, model_id, tiles, edges)
    api.run(jid)
    with get_source(api.ctx).connect() as conn:
        expected = conn.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE ltv >= 20 AND signup_at < TIMESTAMP '2025-02-01'")
        ).scalar_one()
    stats = api.stats(jid)["tiles"]
    assert stats["yes"]["completed"] == expected and stats["no"]["completed"] == 100 - expected
    assert 0 < expected < 100
    assert Counter(_final_tiles(api, jid).values()) == {"yes": expected, "no": 100 - expected}
