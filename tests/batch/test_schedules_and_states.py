"""Schedules (manual, daily, weekly, monthly incl. last working day, DST) and the two status machines."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from overture.batch.states import RUN, CampaignStatus, RunStatus
from overture.clock import FrozenClock
from overture.errors import Conflict
from overture.runtime import jobs, scheduler
from tests.batch.conftest import Api, World


def _campaign(api: Api, world: World, schedule: dict[str, Any], status: str = "active") -> dict[str, Any]:
    flow = api.flow(world.model_id)
    return api.campaign(flow, world.segment_id, schedule=schedule, status=status)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("now", "schedule", "next_run"),
    [
        # daily: today's slot is past -> tomorrow, on the zone's wall clock
        (
            "2026-03-10T12:00:00Z",
            {"type": "daily", "scheduleTime": "09:30", "scheduleTimezone": "America/New_York"},
            "2026-03-10T13:30:00Z",
        ),
        # weekly: 0 = Sunday; Tuesday 2026-03-10 -> Sunday 2026-03-15 08:00 Berlin (UTC+1)
        (
            "2026-03-10T12:00:00Z",
            {
                "type": "weekly",
                "scheduleDayOfWeek": 0,
                "scheduleTime": "08:00",
                "scheduleTimezone": "Europe/Berlin",
            },
            "2026-03-15T07:00:00Z",
        ),
        # weekly on Saturday (6)
        (
            "2026-03-10T12:00:00Z",
            {"type": "weekly", "scheduleDayOfWeek": 6, "scheduleTime": "23:00", "scheduleTimezone": "UTC"},
            "2026-03-14T23:00:00Z",
        ),
        # monthly on the 15th
        (
            "2026-03-20T00:00:00Z",
            {"type": "monthly", "scheduleDayOfMonth": 15, "scheduleTime": "06:00", "scheduleTimezone": "UTC"},
            "2026-04-15T06:00:00Z",
        ),
        # last working day: February 2026 ends on Saturday the 28th -> Friday the 27th
        (
            "2026-02-10T00:00:00Z",
            {
                "type": "monthly",
                "scheduleDayOfMonth": "last_working_day",
                "scheduleTime": "18:00",
                "scheduleTimezone": "Europe/Paris",
            },
            "2026-02-27T17:00:00Z",
        ),
        # ... May 2026 ends on Sunday the 31st -> Friday the 29th (Paris in summer time, UTC+2)
        (
            "2026-05-01T00:00:00Z",
            {
                "type": "monthly",
                "scheduleDayOfMonth": "last_working_day",
                "scheduleTime": "18:00",
                "scheduleTimezone": "Europe/Paris",
            },
            "2026-05-29T16:00:00Z",
        ),
        # ... March 2026 ends on Tuesday the 31st, the day after... the DST change of the 29th: UTC+2
        (
            "2026-03-01T00:00:00Z",
            {
                "type": "monthly",
                "scheduleDayOfMonth": "last_working_day",
                "scheduleTime": "09:00",
                "scheduleTimezone": "Europe/Paris",
            },
            "2026-03-31T07:00:00Z",
        ),
        # DST gap: 02:30 does not exist in Paris on 2026-03-29; it fires at the jump (03:00 CEST = 01:00Z)
        (
            "2026-03-28T12:00:00Z",
            {"type": "daily", "scheduleTime": "02:30", "scheduleTimezone": "Europe/Paris"},
            "2026-03-29T01:00:00Z",
        ),
        # DST fold: 02:30 happens twice in Paris on 2026-10-25; it fires once, at the first (CEST)
        (
            "2026-10-24T12:00:00Z",
            {"type": "daily", "scheduleTime": "02:30", "scheduleTimezone": "Europe/Paris"},
            "2026-10-25T00:30:00Z",
        ),
    ],
)
def test_next_run_at__each_schedule_type(
    api: Api, world: World, frozen_clock: FrozenClock, now: str, schedule: dict[str, Any], next_run: str
) -> None:
    frozen_clock.set(_at(now))
    c = _campaign(api, world, schedule)
    assert c["schedule"]["type"] == schedule["type"]
    assert _at(c["nextRunAt"]) == _at(next_run)


def test_only_active_campaigns_run_on_schedule(api: Api, world: World, frozen_clock: FrozenClock) -> None:
    frozen_clock.set(_at("2026-02-26T12:00:00Z"))
    schedule = {
        "type": "monthly",
        "scheduleDayOfMonth": "last_working_day",
        "scheduleTime": "18:00",
        "scheduleTimezone": "Europe/Paris",
    }
    c = _campaign(api, world, schedule, status="draft")
    assert c["nextRunAt"] is None
    cid = c["id"]
    active = api.patch(f"/batch-campaigns/{cid}", {"status": "active"})
    assert _at(active["nextRunAt"]) == _at("2026-02-27T17:00:00Z")
    frozen_clock.set(_at("2026-02-27T17:00:01Z"))
    assert scheduler.tick(api.ctx) >= 1
    jobs.drain(api.ctx)
    runs = api.get(f"/batch-campaigns/{cid}/runs")
    assert len(runs) == 1 and runs[0]["trigger"] == "schedule" and runs[0]["status"] == "completed"
    # the file lands under the run's date in the schedule's zone
    assert api.get(f"/batch-campaigns/{cid}")["nextRunAt"].startswith("2026-03-31T")
    paused = api.patch(f"/batch-campaigns/{cid}", {"status": "paused"})
    assert paused["nextRunAt"] is None
    frozen_clock.set(_at("2026-03-31T17:00:01Z"))
    scheduler.tick(api.ctx)
    jobs.drain(api.ctx)
    assert len(api.get(f"/batch-campaigns/{cid}/runs")) == 1  # paused: no scheduled run
    # Run Now still works on a paused campaign; an archived one never runs.
    api.post(f"/batch-campaigns/{cid}/runs")
    api.patch(f"/batch-campaigns/{cid}", {"status": "archived"})
    r = api.post(f"/batch-campaigns/{cid}/runs", expect=None)
    assert r.status_code == 409
    jobs.drain(api.ctx)
    runs = api.get(f"/batch-campaigns/{cid}/runs")
    assert [r["trigger"] for r in runs] == ["manual", "schedule"]  # newest first


def test_a_slot_fires_once_even_if_the_scheduler_ticks_twice(
    api: Api, world: World, frozen_clock: FrozenClock
) -> None:
    frozen_clock.set(_at("2026-06-01T08:00:00Z"))
    c = _campaign(api, world, {"type": "daily", "scheduleTime": "09:00", "scheduleTimezone": "UTC"})
    frozen_clock.set(_at("2026-06-01T09:00:05Z"))
    scheduler.tick(api.ctx)
    scheduler.tick(api.ctx)
    jobs.drain(api.ctx)
    assert len(api.get(f"/batch-campaigns/{c['id']}/runs")) == 1


CAMPAIGN_MOVES = {
    ("draft", "active"),
    ("draft", "archived"),
    ("active", "paused"),
    ("active", "archived"),
    ("paused", "active"),
    ("paused", "archived"),
}
PATH_TO = {
    "draft": [],
    "active": ["active"],
    "paused": ["active", "paused"],
    "archived": ["archived"],
}


@pytest.mark.parametrize(
    ("start", "target"), list(itertools.product(list(CampaignStatus), list(CampaignStatus)))
)
def test_campaign_status__every_pair(api: Api, world: World, start: str, target: str) -> None:
    c = _campaign(api, world, {"type": "manual"}, status="draft")
    for step in PATH_TO[start]:
        api.patch(f"/batch-campaigns/{c['id']}", {"status": step})
    r = api.patch(f"/batch-campaigns/{c['id']}", {"status": target}, expect=None)
    if (start, target) in CAMPAIGN_MOVES:
        assert r.status_code == 200, r.text
        assert r.json()["status"] == target
    else:
        assert r.status_code == 409, r.text
        assert f"'{start}'" in r.json()["detail"] and f"'{target}'" in r.json()["detail"]
        assert api.get(f"/batch-campaigns/{c['id']}")["status"] == start


RUN_MOVES = {
    ("pending", "running"),
    ("pending", "failed"),
    ("running", "completed"),
    ("running", "completed_with_errors"),
    ("running", "failed"),
}


@pytest.mark.parametrize(("start", "target"), list(itertools.product(list(RunStatus), list(RunStatus))))
def test_run_status__every_pair(start: RunStatus, target: RunStatus) -> None:
    class Run:
        status = start.value

    if (start.value, target.value) in RUN_MOVES:
        assert RUN.move(Run, target) == target and Run.status == target.value
    else:
        with pytest.raises(Conflict) as info:
            RUN.move(Run, target)
        assert f"'{start.value}'" in info.value.message and f"'{target.value}'" in info.value.message


def test_run_status__pending_then_completed_over_http(
    api: Api, world: World, frozen_clock: FrozenClock
) -> None:
    c = _campaign(api, world, {"type": "manual"}, status="draft")
    run = api.post(f"/batch-campaigns/{c['id']}/runs")
    assert run["status"] == "pending" and run["startedAt"] is None and run["results"] is None
    frozen_clock.advance(timedelta(seconds=3))
    jobs.drain(api.ctx)
    done = api.get(f"/batch-campaigns/{c['id']}/runs/{run['id']}")
    assert done["status"] == "completed" and done["error"] is None
    assert _at(done["startedAt"]) <= _at(done["completedAt"])
    assert _at(done["startedAt"]).tzinfo == UTC
    api.get(f"/batch-campaigns/{c['id']}/runs/nope", expect=404)
