"""Scheduler: due slots become jobs once, catch-up after downtime, pause/resume, concurrent schedulers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from overture.clock import FrozenClock
from overture.config import Settings
from overture.db.context import AppContext
from overture.errors import Invalid
from overture.runtime.models import Job, JobStatus, ScheduleRow
from overture.runtime.scheduler import get_schedule, remove_schedule, set_schedule, slot_key, tick
from tests.conftest import WorkspaceFixture

KIND = "test.scheduler.run"
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clean(ctx: AppContext, frozen_clock: FrozenClock) -> Iterator[None]:
    frozen_clock.set(START)
    yield
    with ctx.transaction() as session:  # tests share a database: leave no due schedule behind
        session.execute(sa.delete(ScheduleRow).where(ScheduleRow.job_kind.like("test.scheduler%")))
        session.execute(
            sa.update(Job).where(Job.kind.like("test.scheduler%")).values(status=JobStatus.CANCELLED)
        )


def _owner() -> str:
    return f"test:{uuid.uuid4()}"


def _save(ctx: AppContext, ws: str, owner: str, spec: object, enabled: bool = True) -> None:
    with ctx.transaction() as session:
        set_schedule(
            session, workspace_id=ws, owner=owner, spec=spec, job_kind=KIND, payload={"x": 1}, enabled=enabled
        )  # type: ignore[arg-type]


def _fired(ctx: AppContext, owner: str) -> list[str]:
    with ctx.transaction(write=False) as session:
        rows = session.scalars(
            sa.select(Job.payload).where(Job.unique_key.like(f"schedule:{owner}:%")).order_by(Job.unique_key)
        ).all()
    return [p["fire_time"] for p in rows]


def test_set_schedule__invalid_timezone__422_names_timezone(
    ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    with pytest.raises(Invalid) as err, ctx.transaction() as session:
        set_schedule(
            session,
            workspace_id=workspace.id,
            owner=_owner(),
            spec={"kind": "daily", "time": "09:00", "timezone": "Mars/Olympus"},
            job_kind=KIND,
            payload={},
        )
    assert err.value.field == "schedule" and "timezone" in err.value.message


def test_tick__daily_slot__one_job_with_fire_time__once(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture
) -> None:
    owner = _owner()
    _save(ctx, workspace.id, owner, {"kind": "daily", "time": "09:00", "timezone": "UTC"})
    assert tick(ctx) == 0
    frozen_clock.set(START.replace(hour=9))
    assert tick(ctx) == 1
    assert tick(ctx) == 0
    assert _fired(ctx, owner) == ["2026-03-01T09:00:00Z"]
    with ctx.transaction(write=False) as session:
        job = session.scalars(
            sa.select(Job).where(Job.unique_key == slot_key(owner, START.replace(hour=9)))
        ).one()
        row = get_schedule(session, owner)
    assert job.kind == KIND and job.workspace_id == workspace.id
    assert job.payload == {"x": 1, "fire_time": "2026-03-01T09:00:00Z", "schedule_owner": owner}
    assert row is not None and row.next_fire_at == datetime(2026, 3, 2, 9, tzinfo=UTC)


def test_tick__after_downtime__only_latest_missed_slot_fires(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture
) -> None:
    owner = _owner()
    _save(ctx, workspace.id, owner, "0 * * * *")
    frozen_clock.set(START + timedelta(hours=5, minutes=30))  # 09:00 .. 13:00 missed
    assert tick(ctx) == 1
    assert _fired(ctx, owner) == ["2026-03-01T13:00:00Z"]
    frozen_clock.set(START + timedelta(hours=6))
    assert tick(ctx) == 1
    assert _fired(ctx, owner) == ["2026-03-01T13:00:00Z", "2026-03-01T14:00:00Z"]


def test_tick__long_downtime_minutely__latest_slot_found_fast(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture
) -> None:
    owner = _owner()
    _save(ctx, workspace.id, owner, "* * * * *")
    frozen_clock.set(START + timedelta(days=30, seconds=30))
    assert tick(ctx) == 1
    assert _fired(ctx, owner) == ["2026-03-31T08:00:00Z"]


def test_disable_then_enable__nothing_missed_fires(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture
) -> None:
    owner = _owner()
    _save(ctx, workspace.id, owner, "0 * * * *")
    _save(ctx, workspace.id, owner, "0 * * * *", enabled=False)
    frozen_clock.advance(hours=5)
    assert tick(ctx) == 0
    _save(ctx, workspace.id, owner, "0 * * * *", enabled=True)
    assert tick(ctx) == 0
    frozen_clock.advance(hours=1)
    assert tick(ctx) == 1 and _fired(ctx, owner) == ["2026-03-01T14:00:00Z"]


def test_resave_unchanged__due_slot_not_skipped(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture
) -> None:
    owner = _owner()
    _save(ctx, workspace.id, owner, "0 9 * * *")
    frozen_clock.set(START.replace(hour=9, second=1))  # due, not yet ticked
    _save(ctx, workspace.id, owner, "0 9 * * *")
    assert tick(ctx) == 1


def test_remove_schedule__never_fires(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture
) -> None:
    owner = _owner()
    _save(ctx, workspace.id, owner, "0 * * * *")
    with ctx.transaction() as session:
        remove_schedule(session, owner)
    frozen_clock.advance(hours=3)
    assert tick(ctx) == 0 and _fired(ctx, owner) == []


def test_once__fires_once_then_never(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture
) -> None:
    owner = _owner()
    _save(ctx, workspace.id, owner, {"kind": "once", "send_at": "2026-03-01T10:30:00Z"})
    frozen_clock.advance(hours=3)
    assert tick(ctx) == 1
    frozen_clock.advance(days=10)
    assert tick(ctx) == 0
    assert _fired(ctx, owner) == ["2026-03-01T10:30:00Z"]


@pytest.mark.slow
def test_three_schedulers_over_advancing_clock__every_slot_once(
    ctx: AppContext,
    frozen_clock: FrozenClock,
    workspace: WorkspaceFixture,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Given three scheduler loops, each with its own engine (own connections) and one shared clock,
    specs = {
        _owner(): "*/30 * * * *",
        _owner(): {"kind": "daily", "time": "09:00", "timezone": "Europe/Paris"},
        _owner(): {"kind": "cron", "cron": "30 * * * *", "timezone": "Australia/Lord_Howe"},
        _owner(): {"kind": "weekly", "day_of_week": 0, "time": "02:30", "timezone": "America/Santiago"},
    }
    for owner, spec in specs.items():
        _save(ctx, workspace.id, owner, spec)
    settings: Settings = ctx.settings
    contexts = [AppContext.from_settings(settings, clock=frozen_clock) for _ in range(3)]
    steps = 2 * 24 * 8  # eight days in 30-minute steps
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def loop(c: AppContext) -> None:
        try:
            for _ in range(steps):
                barrier.wait()  # all three tick the same instant concurrently
                tick(c)
                barrier.wait()
        except BaseException as exc:  # surface thread failures to the test
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=loop, args=(c,)) for c in contexts]
    for t in threads:
        t.start()
    end = START
    try:
        for _ in range(steps):
            end = frozen_clock.advance(minutes=30)
            barrier.wait()
            barrier.wait()
    finally:
        for t in threads:
            t.join(30)
        for c in contexts:
            c.close()
    assert not errors
    # Then every slot between start and end fired exactly once (jobs have unique slot keys).
    from overture.core.schedules import parse_schedule

    for owner, spec in specs.items():
        schedule = parse_schedule(spec)  # type: ignore[arg-type]
        expected, t = [], START
        while (t := schedule.next_after(t)) is not None and t <= end:  # type: ignore[assignment]
            expected.append(t.strftime("%Y-%m-%dT%H:%M:%SZ"))
        assert _fired(ctx, owner) == expected, owner
        assert expected
