"""Retention (issue #15, item 7): under a steady load the runtime's tables stay bounded, and nothing
still needed is pruned — an open run, a scheduled or running job, a message in flight or retrying,
today's cap counter, a session still in use, and every delivery inside the retention window.

Each test gets a database of its own (whole-table counts mean something), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from overture.api.tasks import import_all
from overture.auth import service as auth_service
from overture.broadcasts.models import Broadcast, Execution, Recipient
from overture.clock import FrozenClock
from overture.data.models import EntityModel, EventId
from overture.db.context import AppContext
from overture.delivery.messages import Message, Outcome
from overture.delivery.models import Destination
from overture.journeys.models import Journey, JourneyRun
from overture.paywalls.models import CapCounter
from overture.runtime import outbox, retention
from overture.runtime.jobs import JobContext, drain, enqueue_job, job_handler
from overture.runtime.models import Job, OutboxMessage
from overture.runtime.outbox import OutboxItem
from tests.conftest import BACKENDS
from tests.runtime.fresh import fresh_context

import_all()  # the surfaces' rules (journey runs, cap counters) register with their tasks modules

DAYS = 12
JOBS_PER_DAY, MESSAGES_PER_DAY, RUNS_PER_DAY, USERS = 30, 40, 3, 20
KEEP = {"jobs": 2, "outbox": 3, "runs": 4, "sessions": 2}


@pytest.fixture(params=BACKENDS)
def rctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppContext]:
    yield from fresh_context(
        tmp_path,
        request.param,
        retention_jobs_days=KEEP["jobs"],
        retention_outbox_days=KEEP["outbox"],
        retention_runs_days=KEEP["runs"],
        retention_cap_sessions_days=KEEP["sessions"],
        retention_batch=25,  # several batches per rule per sweep
    )


@job_handler("test.retention.work")
def _work(ctx: AppContext, job: JobContext) -> None:
    pass


def _send_all(ctx: AppContext, destination: Any, messages: Sequence[Message]) -> list[Outcome]:
    return [Outcome.sent(m.idempotency_key) for m in messages]


def _count(ctx: AppContext, table: Any, *where: Any) -> int:
    with ctx.transaction(write=False) as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(table).where(*where)) or 0)


def test_steady_load__tables_stay_bounded__nothing_needed_is_pruned(rctx: AppContext) -> None:
    ctx = rctx
    clock = FrozenClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    ctx.clock = clock
    t0 = clock.now()
    far = t0 + timedelta(days=365)
    with ctx.transaction() as session:
        ws, _, _ = auth_service.bootstrap_workspace(session, "retention")
        dest = Destination(workspace_id=ws.id, name="log", type="log", config={})
        model = EntityModel(workspace_id=ws.id, name="m", primary_key="id", kind="table", table_name="t")
        session.add_all([dest, model])
        session.flush()
        journeys = [
            Journey(
                workspace_id=ws.id,
                name=f"j{i}",
                parent_model_id=model.id,
                entry_criteria={},
                exit_criteria={},
                tiles=[],
                edges=[],
                created_at=t0,
                updated_at=t0,
            )
            for i in range(RUNS_PER_DAY + 1)
        ]
        session.add_all(journeys)
        session.flush()
        wsid, dest_id = ws.id, dest.id
        # What must survive every sweep, made on day 0:
        # a job scheduled for later, and a job a worker is running (leased, heartbeated),
        scheduled = enqueue_job(session, "test.retention.work", {}, run_at=far)
        running = enqueue_job(session, "test.retention.idle", {})
        session.execute(
            sa.update(Job)
            .where(Job.id == running)
            .values(status="running", attempt=1, started_at=t0, locked_until=far)
        )
        # a message being sent (claim held by heartbeats), one retrying later, one due later,
        outbox.enqueue(
            session,
            [
                OutboxItem(wsid, dest_id, "in-flight", {}, "test"),
                OutboxItem(wsid, dest_id, "retrying", {}, "test"),
                OutboxItem(wsid, dest_id, "delayed", {}, "test", not_before=far),
            ],
        )
        session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.idempotency_key == "in-flight")
            .values(status="sending", attempts=1, locked_until=far)
        )
        session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.idempotency_key == "retrying")
            .values(attempts=4, next_attempt_at=far, last_error="HTTP 503")
        )
        # an open run (never finished) of the last journey, and a lifetime cap counter.
        open_run = JourneyRun(
            workspace_id=wsid, journey_id=journeys[-1].id, status="running", trigger="manual", created_at=t0
        )
        session.add(open_run)
        session.add(
            CapCounter(
                workspace_id=wsid, audience_id="a", user_id="u0", period="total", count=1, updated_at=t0
            )
        )
        session.flush()
        open_run_id = journeys[-1].last_run_id = open_run.id

    counts: list[dict[str, int]] = []
    for day in range(DAYS):
        now = clock.now()
        with ctx.transaction() as session:
            for i in range(JOBS_PER_DAY):
                enqueue_job(session, "test.retention.work", {"day": day, "i": i})
            outbox.enqueue(
                session,
                [OutboxItem(wsid, dest_id, f"d{day}-{i}", {}, "test") for i in range(MESSAGES_PER_DAY)],
            )
            for j in journeys[:RUNS_PER_DAY]:
                run = JourneyRun(
                    workspace_id=wsid,
                    journey_id=j.id,
                    status="completed",
                    trigger="schedule",
                    created_at=now,
                    started_at=now,
                    finished_at=now,
                )
                session.add(run)
                session.flush()
                session.execute(sa.update(Journey).where(Journey.id == j.id).values(last_run_id=run.id))
            session.add_all(
                [
                    CapCounter(
                        workspace_id=wsid,
                        audience_id="a",
                        user_id=f"u{u}",
                        period=f"session:{day}-{u}" if kind == "session" else f"day:{now.date().isoformat()}",
                        count=1,
                        updated_at=now,
                    )
                    for u in range(USERS)
                    for kind in ("day", "session")
                ]
            )
            # A session still in use: its counter changes every day.
            session.merge(
                CapCounter(
                    workspace_id=wsid,
                    audience_id="a",
                    user_id="u0",
                    period="session:long",
                    count=day + 1,
                    updated_at=now,
                )
            )
        assert drain(ctx, kinds=["test.retention.work"]) == JOBS_PER_DAY
        while outbox.dispatch_once(ctx, sender=_send_all):
            pass
        clock.advance(timedelta(hours=23))
        retention.sweep(ctx)
        counts.append(
            {
                "jobs": _count(ctx, Job.__table__),
                "outbox": _count(ctx, OutboxMessage.__table__),
                "runs": _count(ctx, JourneyRun.__table__),
                "counters": _count(ctx, CapCounter.__table__),
            }
        )
        clock.advance(timedelta(hours=1))

    # Bounded: each table holds at most its retention window (plus the day in progress) of work.
    bound = {
        "jobs": (KEEP["jobs"] + 1) * JOBS_PER_DAY + 2,
        "outbox": (KEEP["outbox"] + 1) * MESSAGES_PER_DAY + 3,
        "runs": (KEEP["runs"] + 1) * RUNS_PER_DAY + 1,
        # today's and yesterday's day counters, the sessions of the window, `total`, the long session
        "counters": 2 * USERS + (KEEP["sessions"] + 1) * USERS + 2,
    }
    for day, seen in enumerate(counts):
        for table, n in seen.items():
            assert n <= bound[table], (day, table, n, bound[table])
    assert counts[-1]["jobs"] > (KEEP["jobs"] - 1) * JOBS_PER_DAY  # and not emptied either

    now = clock.now()
    with ctx.transaction(write=False) as session:
        jobs = dict(
            session.execute(sa.select(Job.id, Job.status).where(Job.id.in_([scheduled, running]))).all()
        )
        assert jobs == {scheduled: "queued", running: "running"}
        keys = set(session.scalars(sa.select(OutboxMessage.idempotency_key)))
        assert {"in-flight", "retrying", "delayed"} <= keys
        # Every message of the window is still listed (what GET /deliveries reads), none older.
        window = [f"d{d}-{i}" for d in range(DAYS) for i in range(MESSAGES_PER_DAY)]
        created = {f"d{d}-{i}": t0 + timedelta(days=d) for d in range(DAYS) for i in range(MESSAGES_PER_DAY)}
        cutoff = now - timedelta(days=KEEP["outbox"])
        assert {k for k in window if created[k] >= cutoff} <= keys
        assert not {k for k in window if created[k] < cutoff - timedelta(days=1)} & keys
        runs = set(session.scalars(sa.select(JourneyRun.id)))
        assert open_run_id in runs
        assert set(session.scalars(sa.select(Journey.last_run_id))) <= runs  # each journey's last run
        periods = set(session.scalars(sa.select(CapCounter.period)))
        yesterday = f"day:{(now.date() - timedelta(days=1)).isoformat()}"  # the last day of load
        assert {"total", "session:long", yesterday} <= periods
        assert all(p >= yesterday for p in periods if p.startswith("day:"))


def test_todays_day_counter__and_yesterdays__are_kept(rctx: AppContext) -> None:
    ctx = rctx
    now = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)  # just after midnight: yesterday was an hour ago
    ctx.clock = FrozenClock(now)
    with ctx.transaction() as session:
        ws, _, _ = auth_service.bootstrap_workspace(session, "caps")
        for days_ago in range(4):
            day = (now - timedelta(days=days_ago)).date().isoformat()
            session.add(
                CapCounter(
                    workspace_id=ws.id,
                    audience_id="a",
                    user_id="u",
                    period=f"day:{day}",
                    count=1,
                    updated_at=now,
                )
            )
    retention.sweep(ctx)
    with ctx.transaction(write=False) as session:
        assert sorted(session.scalars(sa.select(CapCounter.period))) == ["day:2026-03-09", "day:2026-03-10"]


def test_zero_days_keeps_everything(tmp_path: Path) -> None:
    for ctx in fresh_context(tmp_path, "sqlite", retention_jobs_days=0, retention_outbox_days=0):
        ctx.clock = FrozenClock(datetime(2026, 3, 1, tzinfo=UTC))
        with ctx.transaction() as session:
            enqueue_job(session, "test.retention.work", {})
        drain(ctx, kinds=["test.retention.work"])
        ctx.clock = FrozenClock(datetime(2030, 3, 1, tzinfo=UTC))
        assert retention.sweep(ctx)["jobs"] == 0
        assert _count(ctx, Job.__table__) == 1


def test_broadcast_recipients__settled_rows_of_old_executions_go__failed_and_open_ones_stay(
    rctx: AppContext,
) -> None:
    ctx = rctx
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    ctx.clock = FrozenClock(now)
    old, recent = now - timedelta(days=KEEP["runs"] + 1), now - timedelta(days=KEEP["runs"] - 1)
    outcomes = ["sent"] * 20 + ["dropped"] * 3 + ["cancelled"] * 2 + ["failed"] * 4

    def execution(session: Any, broadcast_id: str, n: int, status: str, completed: datetime | None) -> str:
        row = Execution(
            workspace_id=ws,
            broadcast_id=broadcast_id,
            trigger_key=f"send-now:{n}",
            touchpoint_id=n,
            status=status,
            plan={},
            started_at=old - timedelta(hours=1),
            completed_at=completed,
            sent=20,
            failed=4,
        )
        session.add(row)
        session.flush()
        session.execute(
            sa.insert(Recipient),
            [
                {"execution_id": row.id, "entity_id": f"c{i}", "stage": 3, "outcome": o}
                for i, o in enumerate([*outcomes, None, None] if status == "running" else outcomes)
            ],
        )
        return str(row.id)

    with ctx.transaction() as session:
        ws = auth_service.bootstrap_workspace(session, "bc")[0].id
        b = Broadcast(workspace_id=ws, name="b", channel="email", address_field="email", audience={})
        session.add(b)
        session.flush()
        finished_long_ago = execution(session, b.id, 1, "completed", old)
        failed_long_ago = execution(session, b.id, 2, "failed", old)
        finished_lately = execution(session, b.id, 3, "completed", recent)
        still_running = execution(session, b.id, 4, "running", None)  # started long ago, still going
    retention.sweep(ctx)
    with ctx.transaction(write=False) as session:
        left = dict(
            session.execute(
                sa.select(Recipient.execution_id, sa.func.count()).group_by(Recipient.execution_id)
            ).all()
        )
        assert left == {finished_long_ago: 4, failed_long_ago: 4, finished_lately: 29, still_running: 31}
        assert set(
            session.scalars(sa.select(Recipient.outcome).where(Recipient.execution_id == finished_long_ago))
        ) == {"failed"}
        # The execution keeps its record (counts) whatever its recipients.
        assert session.scalar(sa.select(Execution.sent).where(Execution.id == finished_long_ago)) == 20


def test_one_statement_deletes_at_most_one_batch(rctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = rctx
    ctx.clock = FrozenClock(datetime(2026, 3, 1, tzinfo=UTC))
    with ctx.transaction() as session:
        for i in range(60):
            enqueue_job(session, "test.retention.work", {"i": i})
    assert drain(ctx, kinds=["test.retention.work"]) == 60
    ctx.clock = FrozenClock(datetime(2026, 4, 1, tzinfo=UTC))
    monkeypatch.setattr(retention, "MAX_BATCHES_PER_SWEEP", 1)
    assert retention.sweep(ctx)["jobs"] == 25  # one statement: the batch (25), not every expired row
    assert _count(ctx, Job.__table__) == 35
    monkeypatch.setattr(retention, "MAX_BATCHES_PER_SWEEP", 100)
    assert retention.sweep(ctx)["jobs"] == 35  # the backlog goes over the next sweeps


def test_event_ids__forgotten_after_the_idempotency_window__recent_ones_kept(rctx: AppContext) -> None:
    """The event-id table grows with every identified event: ids past the window go (a retry that
    late is stored again), ids inside it stay, so a retried batch is still stored once."""
    ctx = rctx
    now = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
    ctx.clock = FrozenClock(now)
    with ctx.transaction() as session:
        ws, _, _ = auth_service.bootstrap_workspace(session, "events")
        for age in range(60):
            session.add(
                EventId(workspace_id=ws.id, event_id=f"e{age}", created_at=now - timedelta(days=age, hours=1))
            )
    assert ctx.settings.retention_event_ids_days == 30
    assert retention.sweep(ctx)["event_ids"] == 30
    with ctx.transaction(write=False) as session:
        kept = set(session.scalars(sa.select(EventId.event_id)))
    assert kept == {f"e{age}" for age in range(30)}
