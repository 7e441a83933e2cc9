"""A run that dies half way and runs again loses no member and syncs nobody twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from overture.clock import FrozenClock
from overture.data.source import get_source
from overture.journeys import runner
from overture.journeys.members import syncs
from overture.journeys.members.tables import MemberStore, parse_events
from overture.runtime import jobs, outbox
from overture.runtime.models import OutboxMessage
from tests.delivery.conftest import Receiver
from tests.journeys.conftest import PRO, Api, create_customers_table, edge, sync_tile, tile


def _sync_journey(api: Api, rows: int, destination: str) -> str:
    model_id = api.model(create_customers_table(api.ctx, rows))
    journey = api.create(
        {
            "name": "crash",
            "parent_model_id": model_id,
            "tiles": [
                tile("in", "entry"),
                tile("pro", "filter", criteria=PRO),
                sync_tile("send", destination, "email"),
                tile("wait", "wait", duration=1, unit="days"),
                tile("out", "exit"),
            ],
            "edges": [
                edge("in", "pro"),
                edge("pro", "send", "match"),
                edge("pro", "out", "no_match"),
                edge("send", "wait"),
                edge("wait", "out"),
            ],
        }
    )
    api.activate(journey["id"])
    return str(journey["id"])


def _ledger(api: Api, destination: str) -> list[str]:
    with api.ctx.transaction(write=False) as session:
        return list(
            session.scalars(
                sa.select(OutboxMessage.idempotency_key).where(OutboxMessage.destination_id == destination)
            )
        )


def _members(api: Api, journey_id: str) -> dict[str, tuple[str, str]]:
    store = MemberStore(get_source(api.ctx), api.ws.id, journey_id)
    with store.source.connect() as conn:
        rows = conn.execute(
            sa.select(store.members.c.member_id, store.members.c.tile_id, store.members.c.status)
        )
        return {str(m): (str(t), str(s)) for m, t, s in rows}


def _synced_events(api: Api, journey_id: str) -> Counter[str]:
    """How many times each member's history says it was synced."""
    store = MemberStore(get_source(api.ctx), api.ws.id, journey_id)
    with store.source.connect() as conn:
        rows = conn.execute(sa.select(store.path.c.member_id, store.path.c.events))
        return Counter(str(m) for m, events in rows for event, _ in parse_events(events) if event == "synced")


def test_crash_between_outbox_and_advance__retry_resumes__nothing_lost_nothing_twice(
    api: Api, frozen_clock: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sync over 3 batches, and a worker that dies right after the 2nd batch's messages
    # committed but before its members moved on
    monkeypatch.setattr(runner, "SYNC_BATCH", 40)
    hook = api.webhook(f"{receiver.url}/crash")
    jid = _sync_journey(api, 300, hook)  # 100 pro members
    real_pass_sync = syncs.pass_sync
    advances: list[int] = []

    def dying_pass_sync(*args: Any, **kwargs: Any) -> int:
        advances.append(1)
        if len(advances) == 2:
            raise RuntimeError("worker killed")
        return real_pass_sync(*args, **kwargs)

    monkeypatch.setattr(syncs, "pass_sync", dying_pass_sync)
    run = api.trigger(jid)
    jobs.drain(api.ctx)

    # Then the run is still open, 80 messages are owed, 40 members moved past the sync tile
    assert api.get(f"/{jid}/runs/{run['id']}")["status"] == "running"
    assert len(_ledger(api, hook)) == 80
    tiles = Counter(t for t, _ in _members(api, jid).values())
    assert tiles["wait"] == 40 and tiles["send"] == 60

    # When the job's retry comes round (the worker is healthy again)
    monkeypatch.setattr(syncs, "pass_sync", real_pass_sync)
    frozen_clock.advance(seconds=30)
    jobs.drain(api.ctx)

    # Then the same run finishes: every pro member synced exactly once, every member accounted for
    done = api.get(f"/{jid}/runs/{run['id']}")
    assert (
        done["status"] == "completed" and done["counts"]["synced"] == 100 and done["counts"]["entered"] == 300
    )
    keys = _ledger(api, hook)
    assert len(keys) == len(set(keys)) == 100
    members = _members(api, jid)
    assert len(members) == 300
    assert Counter(members.values()) == {("wait", "active"): 100, ("out", "completed"): 200}
    assert set(_synced_events(api, jid).values()) == {1} and len(_synced_events(api, jid)) == 100
    while outbox.dispatch_once(api.ctx):
        pass
    assert len(receiver.requests) == 100
    assert len({r.headers["idempotency-key"] for r in receiver.requests}) == 100


def test_crash_mid_walk__next_run_continues__every_member_on_one_tile(
    api: Api, frozen_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = api.webhook("http://127.0.0.1:9/unused")
    jid = _sync_journey(api, 90, hook)
    real_sync = runner._Execution.sync

    def dies_at_send(self: runner._Execution, tile_id: str, *args: Any) -> bool:
        raise RuntimeError("killed at the sync tile")

    monkeypatch.setattr(runner._Execution, "sync", dies_at_send)
    run = api.trigger(jid)
    # The last attempt fails the run (without blaming the journey): it is not a definition problem
    assert runner.execute_run(api.ctx, run["id"], last_attempt=True) == "failed"
    failed = api.get(f"/{jid}/runs/{run['id']}")
    assert "killed" in failed["error"] and api.get(f"/{jid}")["status"] == "active"
    assert Counter(_members(api, jid).values()) == {("send", "active"): 30, ("out", "completed"): 60}

    monkeypatch.setattr(runner._Execution, "sync", real_sync)
    jobs.drain(api.ctx)  # the run's job: the run is already over, nothing happens
    again = api.run(jid)
    assert again["counts"] == {
        "entered": 0,
        "advanced": 30,
        "exited": 0,
        "completed": 0,
        "synced": 30,
        "failed": 0,
    }
    assert Counter(_members(api, jid).values()) == {("wait", "active"): 30, ("out", "completed"): 60}
    assert len(set(_ledger(api, hook))) == len(_ledger(api, hook)) == 30


WORKER = textwrap.dedent(
    """
    import sys, time
    from overture.api.tasks import import_all
    from overture.config import Settings
    from overture.db.context import AppContext
    from overture.journeys import runner
    from overture.runtime import jobs

    runner.SYNC_BATCH = 1000
    home, db_url, data_url = sys.argv[1:4]
    settings = Settings(home=home, database_url=db_url, data_url=data_url, egress_allow=["127.0.0.1/32"])
    ctx = AppContext.from_settings(settings)
    import_all()
    print("ready", flush=True)
    while True:
        jobs.drain(ctx, kinds=["journeys.run"])
        time.sleep(0.05)
    """
)


@pytest.mark.slow
def test_worker_killed_with_sigkill_mid_sync__resumed_run_loses_nothing_sends_nothing_twice(api: Api) -> None:
    # Given a journey syncing 5,000 pro members in batches of 1,000, run by a separate worker process
    hook = api.webhook("http://127.0.0.1:9/never-dispatched")
    jid = _sync_journey(api, 15_000, hook)
    run = api.trigger(jid)
    source = get_source(api.ctx)
    source.engine.dispose()  # DuckDB admits one process at a time: hand the file to the worker
    settings = api.ctx.settings
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WORKER,
            str(settings.home),
            settings.resolved_database_url,
            settings.resolved_data_url,
        ],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        # When it is killed (SIGKILL) once some, but not all, messages are in the ledger
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            owed = len(_ledger(api, hook))
            if 1000 <= owed < 5000:
                break
            assert worker.poll() is None, "worker exited early"
            time.sleep(0.01)
        else:
            pytest.fail("the worker never got half way")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    killed_at = len(_ledger(api, hook))
    assert killed_at < 5000

    # Then, once its lease expires, this process reclaims the job and resumes the same run
    previous = api.ctx.clock
    api.ctx.clock = FrozenClock(previous.now() + jobs.DEFAULT_LEASE * 2)
    try:
        jobs.drain(api.ctx, kinds=["journeys.run"])
    finally:
        api.ctx.clock = previous
    done = api.get(f"/{jid}/runs/{run['id']}")
    assert done["status"] == "completed", done
    keys = _ledger(api, hook)
    assert len(keys) == len(set(keys)) == 5000
    members = _members(api, jid)
    assert len(members) == 15_000
    assert Counter(members.values()) == {("wait", "active"): 5000, ("out", "completed"): 10_000}
    synced = _synced_events(api, jid)
    assert len(synced) == 5000 and set(synced.values()) == {1}
