"""Scheduler: turns due schedule slots into jobs, each slot exactly once however many schedulers run.

A schedule row belongs to an owner (e.g. "journey:<uuid>") and names the job kind to enqueue.
`tick` finds rows whose `next_fire_at` has passed, enqueues one job per slot with the unique key
`schedule:<owner>:<fire_time>` (a UNIQUE column: a second scheduler firing the same slot gets the
existing job back) and moves `next_fire_at` on. On PostgreSQL concurrent schedulers also skip rows
another one holds (`FOR UPDATE SKIP LOCKED`); on SQLite `BEGIN IMMEDIATE` serializes them.

Catch-up policy: after downtime (or a paused scheduler) only the LATEST missed slot fires, once;
the slots before it are skipped, so a campaign never bursts through a backlog of stale runs.
A schedule that is disabled and re-enabled starts from the next slot after the moment it is
re-enabled: nothing missed while paused is fired.

The job payload is the schedule's payload plus `fire_time` (ISO-8601 UTC of the slot) and
`schedule_owner`, so a run knows which slot it is for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from overture.core.encode import isoformat_z
from overture.core.schedules import Schedule, ScheduleError, parse_schedule
from overture.db import dialects
from overture.db.context import AppContext
from overture.db.session import now_of
from overture.errors import Invalid
from overture.runtime.jobs import enqueue_job_created
from overture.runtime.models import ScheduleRow

log = logging.getLogger(__name__)

__all__ = ["get_schedule", "latest_due_slot", "remove_schedule", "set_schedule", "slot_key", "tick"]

TICK_BATCH = 500
_WALK_LIMIT = 1000


def _parse(spec: str | Mapping[str, Any]) -> Schedule:
    try:
        return parse_schedule(spec)
    except ScheduleError as exc:
        field = "schedule" if exc.field == "schedule" else f"schedule.{exc.field}"
        raise Invalid(f"{field}: {exc.message}", field="schedule", details={"field": exc.field})


def set_schedule(
    session: Session,
    *,
    workspace_id: str,
    owner: str,
    spec: str | Mapping[str, Any],
    job_kind: str,
    payload: dict[str, Any],
    enabled: bool = True,
    now: datetime | None = None,
) -> None:
    """Create or replace the schedule of `owner` in the caller's transaction.

    Validates `spec` (an invalid one raises Invalid(field="schedule") naming the bad key, e.g.
    "schedule.timezone: unknown timezone 'Mars/Base'"). The next fire time is computed from `now`
    (default: the context clock). Saving an unchanged enabled schedule keeps its pending slot, so an
    unrelated edit never skips a slot that is due but not yet fired."""
    schedule = _parse(spec)
    canonical = schedule.to_dict()
    now = now or now_of(session)
    row = session.scalars(
        sa.select(ScheduleRow).where(ScheduleRow.owner == owner).execution_options(all_workspaces=True)
    ).one_or_none()
    if row is None:
        row = ScheduleRow(
            workspace_id=workspace_id,
            owner=owner,
            spec=canonical,
            job_kind=job_kind,
            payload=payload,
            enabled=enabled,
            next_fire_at=schedule.next_after(now) if enabled else None,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return
    if row.workspace_id != workspace_id:
        raise Invalid("schedule owner belongs to another workspace", field="owner")
    unchanged = row.spec == canonical and row.enabled and enabled and row.next_fire_at is not None
    row.spec, row.job_kind, row.payload, row.enabled, row.updated_at = (
        canonical,
        job_kind,
        payload,
        enabled,
        now,
    )
    if not unchanged:
        row.next_fire_at = schedule.next_after(now) if enabled else None
    session.flush()


def remove_schedule(session: Session, owner: str) -> None:
    """Delete `owner`'s schedule (nothing happens if it has none). Jobs already enqueued stay."""
    session.execute(sa.delete(ScheduleRow).where(ScheduleRow.owner == owner))


def get_schedule(session: Session, owner: str) -> ScheduleRow | None:
    """The schedule row of `owner` (spec, enabled, next_fire_at, last_fire_at), if any."""
    return session.scalars(sa.select(ScheduleRow).where(ScheduleRow.owner == owner)).one_or_none()


def slot_key(owner: str, fire_time: datetime) -> str:
    """The job unique key of one slot: the same for every scheduler process."""
    return f"schedule:{owner}:{isoformat_z(fire_time)}"


def latest_due_slot(schedule: Schedule, due: datetime, now: datetime) -> datetime:
    """The last slot at or before `now`, given that `due` (<= now) is a slot (catch-up: latest)."""
    slot = due
    for _ in range(_WALK_LIMIT):
        nxt = schedule.next_after(slot)
        if nxt is None or nxt > now:
            return slot
        slot = nxt
    # Long downtime on a frequent schedule: look back from now in growing windows instead.
    window = timedelta(minutes=1)
    while True:
        start = max(now - window, slot)
        candidate = schedule.next_after(start)
        if candidate is not None and candidate <= now:
            while (nxt := schedule.next_after(candidate)) is not None and nxt <= now:
                candidate = nxt
            return candidate
        if start == slot:
            return slot
        window *= 2


def tick(ctx: AppContext) -> int:
    """One scheduler pass: enqueue a job for each due slot and advance its schedule. Returns the
    number of slots this call fired (a slot another scheduler fired first is not counted)."""
    fired = 0
    while True:
        count, more = _tick_batch(ctx)
        fired += count
        if not more:
            return fired


def _tick_batch(ctx: AppContext) -> tuple[int, bool]:
    now = ctx.clock.now()
    due = sa.and_(ScheduleRow.enabled.is_(True), ScheduleRow.next_fire_at <= now)
    # Most ticks find nothing: look first without taking the (SQLite: database-wide) write lock.
    with ctx.transaction(write=False) as session:
        if session.execute(sa.select(ScheduleRow.id).where(due).limit(1)).first() is None:
            return 0, False
    fired = 0
    with ctx.transaction() as session:
        query = sa.select(ScheduleRow).where(due).order_by(ScheduleRow.next_fire_at).limit(TICK_BATCH)
        rows = list(session.scalars(dialects.skip_locked(query, session)))
        for row in rows:
            assert row.next_fire_at is not None
            try:
                schedule = parse_schedule(row.spec)
            except ScheduleError as exc:  # only a row written around the API could be unparseable
                log.error("schedule %s is invalid (%s); disabling it", row.owner, exc)
                row.enabled, row.next_fire_at = False, None
                continue
            slot = latest_due_slot(schedule, row.next_fire_at, now)
            if slot != row.next_fire_at:
                log.warning(
                    "schedule %s missed slots since %s; firing only %s", row.owner, row.next_fire_at, slot
                )
            _, created = enqueue_job_created(
                session,
                row.job_kind,
                {**row.payload, "fire_time": isoformat_z(slot), "schedule_owner": row.owner},
                workspace_id=row.workspace_id,
                unique_key=slot_key(row.owner, slot),
            )
            fired += int(created)
            row.last_fire_at = slot
            row.next_fire_at = schedule.next_after(slot)
            row.updated_at = now
    return fired, len(rows) == TICK_BATCH
