"""Workers wake on work (issue #15, item 8): a job or message enqueued by another process is picked up
at once (PostgreSQL LISTEN/NOTIFY; SQLite's change_log relay within half a second), not at the next
poll; a destination's Retry-After pause holds for every dispatcher; lease and heartbeat come from the
settings."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from overture.auth import service as auth_service
from overture.clock import FrozenClock
from overture.config import load_settings
from overture.db.context import AppContext
from overture.delivery.messages import Message, Outcome
from overture.delivery.models import Destination
from overture.runtime import outbox
from overture.runtime.jobs import JobContext, enqueue_job, job_handler
from overture.runtime.models import Job, OutboxMessage
from overture.runtime.outbox import OutboxItem
from overture.runtime.worker import Runtime
from tests.conftest import BACKENDS
from tests.runtime.fresh import fresh_context

RAN: dict[str, float] = {}
HOLD = threading.Event()
STARTED = threading.Event()


@job_handler("test.wake.record")
def _record(ctx: AppContext, job: JobContext) -> None:
    RAN[str(job.payload["tag"])] = time.time()


@job_handler("test.wake.hold")
def _hold(ctx: AppContext, job: JobContext) -> None:
    STARTED.set()
    HOLD.wait(10)


@pytest.fixture(params=BACKENDS)
def wctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppContext]:
    yield from fresh_context(tmp_path, request.param)


def _workspace_and_destination(ctx: AppContext, name: str = "log") -> tuple[str, str]:
    with ctx.transaction() as session:
        ws, _, _ = auth_service.bootstrap_workspace(session, "wake")
        dest = Destination(workspace_id=ws.id, name=name, type="log", config={})
        session.add(dest)
        session.flush()
        return ws.id, dest.id


def _in_another_process(ctx: AppContext, code: str) -> float:
    """Run `code` (with `session` open on the same database) in a fresh interpreter; returns the
    wall time right after its transaction committed."""
    script = (
        "import time\n"
        "from pathlib import Path\n"
        "from overture.config import Settings\n"
        "from overture.db.context import AppContext\n"
        "from overture.runtime import outbox\n"
        "from overture.runtime.jobs import enqueue_job\n"
        f"ctx = AppContext.from_settings(Settings(home=Path({str(ctx.settings.home)!r}), "
        f"database_url={ctx.settings.resolved_database_url!r}))\n"
        "with ctx.transaction() as session:\n"
        f"    {code}\n"
        "print(time.time())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip().splitlines()[-1])


def _status(ctx: AppContext, idempotency_key: str) -> str | None:
    with ctx.transaction(write=False) as session:
        status: str | None = session.scalar(
            sa.select(OutboxMessage.status).where(OutboxMessage.idempotency_key == idempotency_key)
        )
    return status


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


#: How soon another process's enqueue is picked up: PostgreSQL NOTIFY is immediate; SQLite's
#: change_log relay reads every 0.5 s. Either is far below the 10 s poll the tests set.
PICKUP = {"postgresql": 1.0, "sqlite": 1.5}


def test_a_job_enqueued_by_another_process__runs_well_before_the_poll(wctx: AppContext) -> None:
    ctx = wctx
    runtime = Runtime(
        ctx,
        concurrency=1,
        run_scheduler=False,
        run_dispatcher=False,
        poll_interval=10.0,
        kinds=["test.wake.record"],
    ).start()
    try:
        time.sleep(0.5)  # the job thread is idle: waiting out its 10 s poll
        committed = _in_another_process(ctx, "enqueue_job(session, 'test.wake.record', {'tag': 'pg-job'})")
        assert _wait_for(lambda: "pg-job" in RAN, 5.0), "job not run within 5 s"
        assert RAN["pg-job"] - committed < PICKUP[ctx.engine.dialect.name]
    finally:
        runtime.stop(timeout=10)


def test_a_message_enqueued_by_another_process__is_sent_well_before_the_poll(wctx: AppContext) -> None:
    ctx = wctx
    ws, dest = _workspace_and_destination(ctx)
    runtime = Runtime(ctx, run_scheduler=False, run_jobs=False, poll_interval=10.0).start()
    try:
        time.sleep(0.5)
        committed = _in_another_process(
            ctx, f"outbox.enqueue(session, [outbox.OutboxItem({ws!r}, {dest!r}, 'pg-msg', {{}}, 'test')])"
        )
        sent_at: list[float] = []

        def sent() -> bool:
            if _status(ctx, "pg-msg") == "sent":
                sent_at.append(time.time())
                return True
            return False

        assert _wait_for(sent, 5.0), "message not sent within 5 s"
        assert sent_at[0] - committed < PICKUP[ctx.engine.dialect.name]
    finally:
        runtime.stop(timeout=10)


def test_a_delayed_job__runs_when_due_not_at_the_next_poll(wctx: AppContext) -> None:
    """A job enqueued to run in 1.5 s (a journey wait, a retry's backoff) runs then, although no
    enqueue wakes the thread when it becomes due and the poll is 10 s."""
    ctx = wctx
    runtime = Runtime(
        ctx,
        concurrency=1,
        run_scheduler=False,
        run_dispatcher=False,
        poll_interval=10.0,
        kinds=["test.wake.record"],
    ).start()
    try:
        time.sleep(0.5)
        RAN.pop("delayed", None)
        due = time.time() + 1.5
        with ctx.transaction() as session:
            enqueue_job(
                session,
                "test.wake.record",
                {"tag": "delayed"},
                run_at=ctx.clock.now() + timedelta(seconds=1.5),
            )
        assert _wait_for(lambda: "delayed" in RAN, 5.0), "delayed job not run within 5 s"
        assert -0.05 <= RAN["delayed"] - due < 1.0
    finally:
        runtime.stop(timeout=10)


def test_a_delayed_message__is_sent_when_due_not_at_the_next_poll(wctx: AppContext) -> None:
    """A message held back 1.5 s (a throttled or local-time broadcast send) goes out then."""
    ctx = wctx
    ws, dest = _workspace_and_destination(ctx)
    runtime = Runtime(ctx, run_scheduler=False, run_jobs=False, poll_interval=10.0).start()
    try:
        time.sleep(0.5)
        due = time.time() + 1.5
        with ctx.transaction() as session:
            not_before = ctx.clock.now() + timedelta(seconds=1.5)
            outbox.enqueue(session, [OutboxItem(ws, dest, "later", {}, "test", not_before=not_before)])

        assert _wait_for(lambda: _status(ctx, "later") == "sent", 5.0), "delayed message not sent within 5 s"
        assert time.time() - due < 1.0
    finally:
        runtime.stop(timeout=10)


def test_a_retry_after_pause__holds_for_every_dispatcher(wctx: AppContext, tmp_path: Path) -> None:
    """Two dispatchers with nothing in common but the database (two AppContexts, as two processes)."""
    first = wctx
    second = AppContext.from_settings(first.settings)
    clock = FrozenClock(datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
    first.clock = second.clock = clock
    ws, dest = _workspace_and_destination(first)
    calls: list[tuple[str, list[str]]] = []

    def busy(ctx: AppContext, destination: Any, messages: Sequence[Message]) -> list[Outcome]:
        calls.append(("first", [m.idempotency_key for m in messages]))
        return [Outcome.retry(m.idempotency_key, "HTTP 429", retry_after=120) for m in messages]

    def ok(ctx: AppContext, destination: Any, messages: Sequence[Message]) -> list[Outcome]:
        calls.append(("second", [m.idempotency_key for m in messages]))
        return [Outcome.sent(m.idempotency_key) for m in messages]

    try:
        with first.transaction() as session:
            outbox.enqueue(session, [OutboxItem(ws, dest, "p1", {}, "test")])
        assert outbox.dispatch_once(first, sender=busy) == 1  # 429, Retry-After: 120
        with second.transaction() as session:
            outbox.enqueue(session, [OutboxItem(ws, dest, "p2", {}, "test")])
        clock.advance(timedelta(seconds=60))
        # The other dispatcher does not send to the paused destination,
        assert outbox.dispatch_once(second, sender=ok) == 0
        assert outbox.dispatch_once(first, sender=ok) == 0
        assert calls == [("first", ["p1"])]
        # and sends both once the pause is over.
        clock.advance(timedelta(seconds=61))
        assert outbox.dispatch_once(second, sender=ok) == 2
        assert calls[1:] == [("second", ["p1", "p2"])]
    finally:
        second.close()


def test_lease_and_heartbeat__from_the_environment(wctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERTURE_WORKER_LEASE_SECONDS", "6")
    monkeypatch.setenv("OVERTURE_WORKER_HEARTBEAT_SECONDS", "0.5")
    settings = load_settings(
        home=wctx.settings.home, database_url=wctx.settings.resolved_database_url, run_workers=False
    )
    assert (settings.worker_lease_seconds, settings.worker_heartbeat_seconds) == (6, 0.5)
    ctx = AppContext.from_settings(settings)
    with ctx.transaction() as session:
        job_id = enqueue_job(session, "test.wake.hold", {})
    HOLD.clear()
    STARTED.clear()
    runtime = Runtime(ctx, concurrency=1, run_scheduler=False, run_dispatcher=False, kinds=["test.wake.hold"])
    runtime.start()
    try:
        assert STARTED.wait(10)

        def lease() -> tuple[datetime, datetime]:
            with ctx.transaction(write=False) as session:
                row = session.execute(
                    sa.select(Job.started_at, Job.locked_until).where(Job.id == job_id)
                ).one()
            return row[0], row[1]

        started, first_until = lease()
        # The lease is the setting's 6 s (the default would be 60 s),
        assert timedelta(seconds=5) <= first_until - started <= timedelta(seconds=7)
        # and the heartbeat extends it every 0.5 s (the default, a third of the lease, would be 2 s).
        time.sleep(1.2)
        _, later_until = lease()
        assert later_until - first_until >= timedelta(seconds=0.9)
    finally:
        HOLD.set()
        runtime.stop(timeout=10)
        ctx.close()
