"""The lifecycle: declarative transition tables, checked over every pair of statuses against the allowed
moves written out here (not read from the tables, so a wrong table entry fails)."""

from __future__ import annotations

from itertools import product
from typing import Any

import pytest
import sqlalchemy as sa

from overture.errors import Conflict
from overture.journeys.lifecycle import (
    ACTION_TARGETS,
    DELETABLE,
    JOURNEY,
    MEMBER,
    RUN,
    UNFINISHED_RUN,
    Action,
    JourneyStatus,
    MemberStatus,
    RunStatus,
)
from overture.journeys.models import Journey
from overture.runtime import scheduler
from tests.journeys.conftest import Api, create_customers_table, execute

STATUSES = list(JourneyStatus)
ENDPOINT_ACTIONS = [Action.ACTIVATE, Action.PAUSE, Action.RESUME, Action.DRAIN]

#: The journey moves docs/journeys.md documents, and the action making each.
JOURNEY_MOVES: dict[tuple[str, str], Action] = {
    ("draft", "active"): Action.ACTIVATE,
    ("error", "active"): Action.ACTIVATE,
    ("active", "paused"): Action.PAUSE,
    ("draining", "paused"): Action.PAUSE,
    ("paused", "active"): Action.RESUME,
    ("active", "draining"): Action.DRAIN,
    ("paused", "draining"): Action.DRAIN,
    ("draining", "archived"): Action.RUN,
    ("active", "error"): Action.RUN,
    ("draining", "error"): Action.RUN,
}
RUN_MOVES = {
    ("pending", "running"),
    ("running", "completed"),
    ("pending", "failed"),
    ("running", "failed"),
    ("pending", "cancelled"),
    ("running", "cancelled"),
}
MEMBER_MOVES = {("active", "completed"), ("active", "exited")}


def _valid_body(model_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "lifecycle",
        "parent_model_id": model_id,
        "tiles": [
            {"id": "in", "type": "entry"},
            {"id": "wait", "type": "wait", "config": {"duration": 1, "unit": "days"}},
            {"id": "out", "type": "exit"},
        ],
        "edges": [{"from": "in", "to": "wait"}, {"from": "wait", "to": "out"}],
        **extra,
    }


def _force_status(api: Api, journey_id: str, status: str) -> None:
    """Given-step shortcut: put a journey in any status (the real paths are tested below)."""
    with api.ctx.transaction() as session:
        session.execute(sa.update(Journey).where(Journey.id == journey_id).values(status=status))


@pytest.fixture
def model_id(api: Api) -> str:
    return api.model(create_customers_table(api.ctx, 30))


@pytest.mark.parametrize(("current", "target"), list(product(STATUSES, STATUSES)))
def test_journey_machine__every_pair__allowed_by_its_action_only(
    current: JourneyStatus, target: JourneyStatus
) -> None:
    for action in Action:
        if JOURNEY_MOVES.get((current, target)) == action:
            assert JOURNEY.transition(current, target, action) == target
        else:
            with pytest.raises(Conflict) as refused:
                JOURNEY.transition(current, target, action)
            assert f"'{current}'" in refused.value.message and f"'{target}'" in refused.value.message


@pytest.mark.parametrize(
    ("machine", "states", "allowed"),
    [(RUN, list(RunStatus), RUN_MOVES), (MEMBER, list(MemberStatus), MEMBER_MOVES)],
    ids=["run", "member"],
)
def test_run_and_member_machines__every_pair__allowed_iff_listed(
    machine: Any, states: list[str], allowed: set[tuple[str, str]]
) -> None:
    for current, target in product(states, states):
        if (current, target) in allowed:
            assert machine.transition(current, target) == target
        else:
            with pytest.raises(Conflict) as refused:
                machine.transition(current, target)
            assert f"'{current}'" in refused.value.message and f"'{target}'" in refused.value.message
    for target in states:  # what set-based updates select from (`WHERE status IN sources`)
        assert machine.sources(target) == {a for a, b in allowed if b == target}
    with pytest.raises(Conflict) as unknown:
        machine.transition(states[0], "nope")
    assert "'nope'" in unknown.value.message


def test_unfinished_runs__the_states_a_run_can_still_leave() -> None:
    assert {"pending", "running"} == UNFINISHED_RUN


@pytest.mark.parametrize(("current", "action"), list(product(STATUSES, ENDPOINT_ACTIONS)))
def test_lifecycle_endpoint__every_status__succeeds_iff_in_table_else_409_naming_both(
    api: Api, model_id: str, current: JourneyStatus, action: Action
) -> None:
    journey = api.create(_valid_body(model_id))
    _force_status(api, journey["id"], current)
    target = ACTION_TARGETS[action]

    r = api.post(f"/{journey['id']}/{action}", expect=None)

    if JOURNEY_MOVES.get((current, target)) == action:
        assert r.status_code == 200, r.text
        assert r.json()["status"] == target and r.json()["status_error"] == ""
    else:
        assert r.status_code == 409, r.text
        assert f"'{current}'" in r.json()["detail"] and f"'{target}'" in r.json()["detail"]
        assert api.get(f"/{journey['id']}")["status"] == current


@pytest.mark.parametrize("current", STATUSES)
def test_delete__every_status__allowed_unless_moving_members(
    api: Api, model_id: str, current: JourneyStatus
) -> None:
    journey = api.create(_valid_body(model_id))
    _force_status(api, journey["id"], current)
    r = api.client.delete(api.url(f"/{journey['id']}"), headers=api.ws.headers)
    if current in DELETABLE:
        assert r.status_code == 200 and r.json() == {"status": "deleted"}
    else:
        assert r.status_code == 409 and "pause it first" in r.json()["detail"]
        assert api.get(f"/{journey['id']}")["status"] == current


def test_activate__invalid__422_with_every_error_and_stays_draft(api: Api, model_id: str) -> None:
    journey = api.create({"name": "bad", "parent_model_id": model_id, "tiles": [{"id": "w", "type": "wait"}]})
    r = api.post(f"/{journey['id']}/activate", expect=422)
    body = r.json()
    assert body["code"] == "invalid"
    assert [e["message"] for e in body["errors"]] == [
        "Orchestration must have exactly one entry tile",
        "Tile 'w' has no incoming edges and is not an entry tile",
        "Tile 'w' (wait) needs a duration and unit, or an until time",
    ]
    assert api.get(f"/{journey['id']}")["status"] == "draft"


def _schedule(api: Api, journey_id: str) -> Any:
    with api.ctx.transaction() as session:
        row = scheduler.get_schedule(session, f"journey:{journey_id}")
        return None if row is None else (row.enabled, row.spec.get("cron"), row.job_kind)


def test_schedule__registered_while_running_removed_otherwise(api: Api, model_id: str) -> None:
    journey = api.create(_valid_body(model_id, schedule="0 */6 * * *"))
    jid = journey["id"]
    assert _schedule(api, jid) is None
    api.activate(jid)
    assert _schedule(api, jid) == (True, "0 */6 * * *", "journeys.scheduled")
    api.post(f"/{jid}/pause")
    assert _schedule(api, jid) is None
    api.post(f"/{jid}/resume")
    assert _schedule(api, jid) is not None
    # An edit of a live journey's schedule re-registers it.
    r = api.client.put(api.url(f"/{jid}"), headers=api.ws.headers, json={"schedule": "30 8 * * 1"})
    assert r.status_code == 200, r.text
    assert _schedule(api, jid) == (True, "30 8 * * 1", "journeys.scheduled")
    api.post(f"/{jid}/drain")
    assert _schedule(api, jid) is not None  # draining journeys still run, to move members out
    api.post(f"/{jid}/pause")
    api.client.delete(api.url(f"/{jid}"), headers=api.ws.headers)
    assert _schedule(api, jid) is None


def test_put_on_active__invalid_definition__422_and_unchanged(api: Api, model_id: str) -> None:
    journey = api.create(_valid_body(model_id))
    api.activate(journey["id"])
    r = api.client.put(api.url(f"/{journey['id']}"), headers=api.ws.headers, json={"edges": []})
    assert r.status_code == 422 and r.json()["detail"].startswith("Journey is not valid")
    assert api.get(f"/{journey['id']}")["edges"] == journey["edges"]


def test_drain__members_finish_then_archived_automatically(
    api: Api, model_id: str, frozen_clock: Any
) -> None:
    # Given an active journey whose members wait one day
    journey = api.create(_valid_body(model_id, schedule="0 * * * *"))
    jid = journey["id"]
    api.activate(jid)
    assert api.run(jid)["counts"]["entered"] == 30
    # When it drains, nobody new enters, and while members remain it stays draining
    api.post(f"/{jid}/drain")
    execute(api.ctx, "SELECT 1")
    run = api.run(jid)
    assert run["status"] == "completed" and run["counts"]["entered"] == 0
    assert api.get(f"/{jid}")["status"] == "draining"
    # Then once the wait is over the last members complete and the journey archives itself
    frozen_clock.advance(days=1)
    run = api.run(jid)
    assert run["counts"]["completed"] == 30
    after = api.get(f"/{jid}")
    assert after["status"] == "archived" and after["last_run_id"] == run["id"]
    assert _schedule(api, jid) is None
    assert api.stats(jid)["total"] == {"active": 0, "completed": 30, "exited": 0}
    api.post(f"/{jid}/trigger", expect=409)


def test_run__parent_table_vanished__journey_error_with_status_error(api: Api, frozen_clock: Any) -> None:
    table = create_customers_table(api.ctx, 10)
    model_id = api.model(table)
    journey = api.create(_valid_body(model_id))
    jid = journey["id"]
    api.activate(jid)
    assert api.run(jid)["status"] == "completed"

    execute(api.ctx, f"ALTER TABLE {table} RENAME TO {table}_gone")
    run = api.run(jid)

    assert run["status"] == "failed" and table in run["error"]
    after = api.get(f"/{jid}")
    assert after["status"] == "error" and table in after["status_error"]
    api.post(f"/{jid}/trigger", expect=409)
    # Re-activating needs the problem fixed: validation still fails while the table is gone.
    assert api.post(f"/{jid}/activate", expect=422).json()["detail"].startswith("Journey is not valid")
    execute(api.ctx, f"ALTER TABLE {table}_gone RENAME TO {table}")
    fixed = api.activate(jid)
    assert fixed["status"] == "active" and fixed["status_error"] == ""
    assert api.stats(jid)["total"]["active"] == 10  # members kept their place through the error
