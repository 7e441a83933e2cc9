"""Runs: trigger (201, or 200 with the open run), the schedule, history, get, cancel."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from overture.journeys import runner
from overture.journeys.models import JourneyRun
from overture.runtime import jobs, scheduler
from overture.runtime.models import Job
from tests.journeys.conftest import PRO, Api, create_customers_table, edge, tile

RUN_FIELDS = {
    "id",
    "journey_id",
    "status",
    "trigger",
    "created_at",
    "started_at",
    "finished_at",
    "counts",
    "error",
}
COUNT_FIELDS = {"entered", "advanced", "exited", "completed", "synced", "failed"}


def _journey(api: Api, rows: int = 20, **extra: Any) -> str:
    model_id = api.model(create_customers_table(api.ctx, rows))
    body = {
        "name": "runs",
        "parent_model_id": model_id,
        "tiles": [
            tile("in", "entry"),
            tile("pro", "filter", criteria=PRO),
            tile("wait", "wait", duration=2, unit="hours"),
            tile("done", "exit"),
        ],
        "edges": [
            edge("in", "pro"),
            edge("pro", "wait", "match"),
            edge("pro", "done", "no_match"),
            edge("wait", "done"),
        ],
        **extra,
    }
    journey_id = str(api.create(body)["id"])
    api.activate(journey_id)
    return journey_id


def test_trigger__creates_pending_run_201_then_runtime_completes_it(api: Api, frozen_clock: Any) -> None:
    jid = _journey(api, rows=30)
    r = api.post(f"/{jid}/trigger", expect=201)
    run = r.json()
    assert set(run) == RUN_FIELDS and set(run["counts"]) == COUNT_FIELDS
    assert run["journey_id"] == jid and run["status"] == "pending" and run["trigger"] == "manual"
    assert run["started_at"] is None and run["finished_at"] is None and run["error"] is None

    jobs.drain(api.ctx)

    done = api.get(f"/{jid}/runs/{run['id']}")
    assert done["status"] == "completed" and done["error"] is None
    assert done["started_at"] == "2026-01-01T00:00:00Z" and done["finished_at"] is not None
    # 30 entered; 10 pro members wait, 20 others complete: 30 moves onto the filter, 30 onward
    assert done["counts"] == {
        "entered": 30,
        "advanced": 60,
        "exited": 0,
        "completed": 20,
        "synced": 0,
        "failed": 0,
    }
    journey = api.get(f"/{jid}")
    assert journey["last_run_id"] == run["id"] and journey["last_run_at"] == "2026-01-01T00:00:00Z"


def test_trigger__while_a_run_is_open__200_with_that_run(api: Api) -> None:
    jid = _journey(api)
    first = api.post(f"/{jid}/trigger", expect=201).json()
    again = api.post(f"/{jid}/trigger", expect=200).json()
    assert again["id"] == first["id"]
    jobs.drain(api.ctx)
    assert api.post(f"/{jid}/trigger", expect=201).json()["id"] != first["id"]


@pytest.mark.parametrize("status", ["draft", "paused"])
def test_trigger__journey_not_running__409(api: Api, status: str) -> None:
    model_id = api.model(create_customers_table(api.ctx, 3))
    journey = api.create({"name": "x", "parent_model_id": model_id, "tiles": [{"id": "in", "type": "entry"}]})
    if status == "paused":
        api.activate(journey["id"])
        api.post(f"/{journey['id']}/pause")
    r = api.post(f"/{journey['id']}/trigger", expect=409)
    assert status in r.json()["detail"]


def test_runs__last_50_newest_first(api: Api, frozen_clock: Any) -> None:
    jid = _journey(api, rows=3)
    # Given 53 finished runs in the history (written directly: the runs themselves are tested above)
    with api.ctx.transaction() as session:
        for i in range(53):
            at = frozen_clock.now() + timedelta(minutes=i)
            session.add(
                JourneyRun(
                    id=f"00000000-0000-0000-0000-{i:012d}",
                    workspace_id=api.ws.id,
                    journey_id=jid,
                    status="completed",
                    trigger="schedule",
                    created_at=at,
                    started_at=at,
                    finished_at=at,
                    counts={},
                )
            )
    runs = api.get(f"/{jid}/runs")
    assert len(runs) == 50
    assert [r["id"] for r in runs] == [f"00000000-0000-0000-0000-{i:012d}" for i in range(52, 2, -1)]


def test_get_run__unknown_or_of_another_journey__404(api: Api) -> None:
    a, b = _journey(api), _journey(api)
    run = api.run(a)
    api.get(f"/{b}/runs/{run['id']}", expect=404)
    api.get(f"/{a}/runs/00000000-0000-0000-0000-000000000000", expect=404)


def test_cancel__pending_run__cancelled_and_never_executes(api: Api) -> None:
    jid = _journey(api)
    run = api.trigger(jid)
    assert api.post(f"/{jid}/runs/{run['id']}/cancel").json() == {"status": "cancelled"}
    jobs.drain(api.ctx)
    after = api.get(f"/{jid}/runs/{run['id']}")
    assert after["status"] == "cancelled" and after["counts"]["entered"] == 0
    assert api.stats(jid)["total"] == {"active": 0, "completed": 0, "exited": 0}
    # A cancelled run no longer blocks the next one.
    assert api.post(f"/{jid}/trigger", expect=201).json()["id"] != run["id"]


def test_cancel__finished_run__409(api: Api) -> None:
    jid = _journey(api)
    run = api.run(jid)
    r = api.post(f"/{jid}/runs/{run['id']}/cancel", expect=409)
    assert "completed" in r.json()["detail"]
    api.post(f"/{jid}/runs/{run['id']}/cancel", expect=409)


def _sync_journey(api: Api, rows: int) -> str:
    """entry -> sync (to a destination nobody dispatches to here) -> exit."""
    model_id = api.model(create_customers_table(api.ctx, rows))
    hook = api.webhook("http://127.0.0.1:9/not-dispatched")
    body = {
        "name": "batches",
        "parent_model_id": model_id,
        "tiles": [
            {"id": "in", "type": "entry"},
            {
                "id": "send",
                "type": "sync",
                "config": {"destination_id": hook, "field_mapping": [{"from": "email", "to": "e"}]},
            },
            {"id": "out", "type": "exit"},
        ],
        "edges": [{"from": "in", "to": "send"}, {"from": "send", "to": "out"}],
    }
    journey_id = str(api.create(body)["id"])
    api.activate(journey_id)
    return journey_id


def test_cancel__running_run__stops_between_batches_members_consistent(
    api: Api, frozen_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run syncing 30 members in batches of 10, cancelled from outside after the first batch
    monkeypatch.setattr(runner, "SYNC_BATCH", 10)
    jid = _sync_journey(api, 30)
    run = api.trigger(jid)
    calls: list[int] = []

    def cancel_after_first_batch() -> None:
        calls.append(1)
        if len(calls) == 3:  # 1: before the first pass, 2: before batch 1, 3: before batch 2
            assert api.post(f"/{jid}/runs/{run['id']}/cancel").json() == {"status": "cancelled"}

    # When the worker executes it
    status = runner.execute_run(api.ctx, run["id"], check=cancel_after_first_batch)

    # Then it stopped after that batch, says so, and every member stands on a consistent tile
    assert status == "cancelled"
    after = api.get(f"/{jid}/runs/{run['id']}")
    assert after["status"] == "cancelled" and after["error"] == "cancelled by request"
    assert after["counts"]["entered"] == 30 and after["counts"]["synced"] == 10
    stats = api.stats(jid)
    assert stats["tiles"]["send"]["active"] == 20 and stats["tiles"]["out"]["completed"] == 10
    # And the next run carries the rest on from where they stood
    jobs.drain(api.ctx)  # the cancelled run's job: nothing to do
    nxt = api.run(jid)
    assert (
        nxt["counts"]["entered"] == 0 and nxt["counts"]["synced"] == 20 and nxt["counts"]["completed"] == 20
    )
    assert api.stats(jid)["total"] == {"active": 0, "completed": 30, "exited": 0}


def test_pause__during_a_run__run_stops_cancelled(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "SYNC_BATCH", 5)
    jid = _sync_journey(api, 12)
    run = api.trigger(jid)
    calls: list[int] = []

    def pause_midway() -> None:
        calls.append(1)
        if len(calls) == 3:
            api.post(f"/{jid}/pause")

    assert runner.execute_run(api.ctx, run["id"], check=pause_midway) == "cancelled"
    assert "paused" in api.get(f"/{jid}/runs/{run['id']}")["error"]
    assert api.stats(jid)["tiles"]["send"]["active"] == 7


def test_schedule__slot_fires__run_with_trigger_schedule(api: Api, frozen_clock: Any) -> None:
    jid = _journey(api, rows=6, schedule="0 * * * *")
    assert scheduler.tick(api.ctx) == 0  # 00:00 was "now" at activation; next slot is 01:00
    frozen_clock.advance(hours=1)
    assert scheduler.tick(api.ctx) == 1
    jobs.drain(api.ctx)
    runs = api.get(f"/{jid}/runs")
    assert len(runs) == 1 and runs[0]["trigger"] == "schedule" and runs[0]["status"] == "completed"
    assert runs[0]["counts"]["entered"] == 6
    # A slot firing while a run is open starts no second run.
    manual = api.trigger(jid)
    frozen_clock.advance(hours=1)
    assert scheduler.tick(api.ctx) == 1
    assert jobs.drain(api.ctx, kinds=["journeys.scheduled"]) == 1
    runs = api.get(f"/{jid}/runs")
    assert [r["id"] for r in runs if r["status"] in ("pending", "running")] == [manual["id"]]
    assert len(runs) == 2


def test_trigger__open_run_whose_worker_was_lost__reaped_and_replaced(api: Api) -> None:
    jid = _journey(api)
    stuck = api.trigger(jid)
    with api.ctx.transaction() as session:
        session.execute(
            sa.update(Job).where(Job.unique_key == f"journey-run:{stuck['id']}").values(status="dead")
        )
    fresh = api.post(f"/{jid}/trigger", expect=201).json()
    assert fresh["id"] != stuck["id"]
    lost = api.get(f"/{jid}/runs/{stuck['id']}")
    assert lost["status"] == "failed" and "lost" in lost["error"]
