"""The worker's side of the job queue: claim due jobs under a lease, run their handlers, record each
outcome fenced by the attempt number, and give back what never started. Surfaces do not call this
module: they enqueue through `overture.runtime.jobs` and write handlers against `JobContext`.

Claiming: PostgreSQL uses `SELECT ... FOR UPDATE SKIP LOCKED` so any number of workers claim
disjoint jobs; SQLite takes the write lock at `BEGIN IMMEDIATE`, which serializes claims
(`overture.db.dialects.skip_locked`). Every status written here is a move of `states.JOB`."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from overture.db import dialects
from overture.db.context import AppContext
from overture.db.dialects import rowcount
from overture.db.session import Session
from overture.runtime.job_context import (
    DEFAULT_LEASE,
    JobCancelled,
    JobContext,
    JobInterrupted,
    LeaseLost,
    Permanent,
    Retry,
)
from overture.runtime.models import Job
from overture.runtime.states import JOB, JobStatus

log = logging.getLogger(__name__)

__all__ = [
    "backoff_seconds",
    "claim",
    "claim_batch",
    "drain",
    "execute",
    "job_context",
    "job_handler",
    "release",
    "worker_name",
]

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 3600.0
MAX_ERROR_CHARS = 4000

Handler = Callable[[AppContext, JobContext], None]
_jobs: sa.Table = Job.__table__  # type: ignore[assignment]  # Core statements on the hot path
_HANDLERS: dict[str, Handler] = {}
# The set-based moves, checked against the table once, at import.
_CLAIM = (JobStatus.QUEUED, JOB.transition(JobStatus.QUEUED, JobStatus.RUNNING))
_RECLAIM = (JobStatus.RUNNING, JOB.transition(JobStatus.RUNNING, JobStatus.RUNNING))
_EXPIRED_DEAD = JOB.transition(JobStatus.RUNNING, JobStatus.DEAD)


def job_handler(kind: str) -> Callable[[Handler], Handler]:
    """Register `fn(ctx, job)` as the handler of jobs of `kind` (one handler per kind)."""

    def decorate(fn: Handler) -> Handler:
        existing = _HANDLERS.get(kind)
        if existing is not None and existing is not fn and _qualname(existing) != _qualname(fn):
            raise ValueError(f"job kind {kind!r} already has a handler: {_qualname(existing)}")
        _HANDLERS[kind] = fn
        return fn

    return decorate


def _qualname(fn: Handler) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"


def backoff_seconds(
    attempt: int,
    *,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, scaled by a factor in [0.5, 1)
    (the jitter spreads retries of jobs that failed together)."""
    raw = min(cap, base * (2 ** max(0, attempt - 1)))
    return float(raw * (0.5 + 0.5 * (rng or random).random()))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"[:100]


@dataclass
class _Claimed:
    id: str
    kind: str
    payload: dict[str, Any]
    attempt: int
    workspace_id: str | None
    max_attempts: int


_RETURNED = (
    _jobs.c.id,
    _jobs.c.kind,
    _jobs.c.payload,
    _jobs.c.attempt,
    _jobs.c.workspace_id,
    _jobs.c.max_attempts,
)


def claim(
    ctx: AppContext,
    worker: str,
    *,
    lease: timedelta = DEFAULT_LEASE,
    kinds: list[str] | None = None,
    include_expired: bool = True,
) -> _Claimed | None:
    """Claim the next job: one whose lease expired (when `include_expired`), else the oldest due
    queued one."""
    batch = claim_batch(ctx, worker, 1, lease=lease, kinds=kinds, include_expired=include_expired)
    return batch[0] if batch else None


def next_due(ctx: AppContext, kinds: list[str] | None = None) -> datetime | None:
    """When the earliest queued job becomes due (None: nothing queued): an idle job thread sleeps
    until then rather than a whole poll interval (ix_jobs_due answers it from the index)."""
    query = sa.select(sa.func.min(_jobs.c.run_at)).where(_jobs.c.status == _CLAIM[0])
    if kinds is not None:
        query = query.where(_jobs.c.kind.in_(kinds))
    with ctx.engine.connect() as conn:
        due: datetime | None = conn.execute(query).scalar()  # min() keeps the column's UTC type
    return due


def claim_batch(
    ctx: AppContext,
    worker: str,
    limit: int,
    *,
    lease: timedelta = DEFAULT_LEASE,
    kinds: list[str] | None = None,
    include_expired: bool = True,
) -> list[_Claimed]:
    """Claim up to `limit` jobs in one statement: `WITH picked AS MATERIALIZED (SELECT … LIMIT n FOR
    UPDATE SKIP LOCKED) UPDATE … WHERE id IN picked RETURNING …` (SQLite: the same under its BEGIN
    IMMEDIATE write lock). A job whose lease expired comes first, alone, when `include_expired`."""
    with ctx.transaction() as session:
        now = session.now()
        claimed_values = {
            "status": _CLAIM[1],
            "attempt": _jobs.c.attempt + 1,
            "locked_until": now + lease,
            "locked_by": worker,
            "started_at": now,
        }
        if include_expired:
            reclaimed = _reclaim_expired(session, now, claimed_values, kinds)
            if reclaimed is not None:
                return [reclaimed]
        pick = (
            sa.select(_jobs.c.id)
            .where(_jobs.c.status == _CLAIM[0], _jobs.c.run_at <= now)
            .order_by(_jobs.c.run_at)  # ties (ASAP jobs) in arbitrary order
            .limit(limit)
        )
        if kinds is not None:
            pick = pick.where(_jobs.c.kind.in_(kinds))
        # A materialized CTE: evaluated once. As a plain IN/= subquery PostgreSQL may re-run it per
        # row, and with ties in run_at each run can pick a different row (claiming more than asked).
        picked = dialects.skip_locked(pick, session).cte("picked").prefix_with("MATERIALIZED")
        rows = session.execute(
            sa.update(_jobs)
            .where(_jobs.c.id.in_(sa.select(picked.c.id)), _jobs.c.status == _CLAIM[0])
            .values(**claimed_values)
            .returning(*_RETURNED)
        ).all()
    return [_Claimed(*row) for row in rows]


def _reclaim_expired(
    session: Session, now: datetime, claimed_values: dict[str, Any], kinds: list[str] | None
) -> _Claimed | None:
    while True:
        query = (
            sa.select(_jobs.c.id, _jobs.c.attempt, _jobs.c.max_attempts)
            .where(_jobs.c.status == _RECLAIM[0], _jobs.c.locked_until < now)
            .order_by(_jobs.c.locked_until)
            .limit(1)
        )
        if kinds is not None:
            query = query.where(_jobs.c.kind.in_(kinds))
        row = session.execute(dialects.skip_locked(query, session)).first()
        if row is None:
            return None
        fence = sa.and_(_jobs.c.id == row.id, _jobs.c.attempt == row.attempt)
        if row.attempt >= row.max_attempts:
            # Its last attempt died with its worker: nothing left to retry.
            session.execute(
                sa.update(_jobs)
                .where(fence)
                .values(
                    status=_EXPIRED_DEAD,
                    finished_at=now,
                    locked_until=None,
                    last_error=f"lease expired on attempt {row.attempt} (worker lost)",
                )
            )
            continue
        got = session.execute(
            sa.update(_jobs).where(fence).values(**claimed_values).returning(*_RETURNED)
        ).first()
        if got is not None:
            log.warning("job %s reclaimed after its lease expired (attempt %s)", got.id, got.attempt)
            return _Claimed(*got)


def _fenced_update(ctx: AppContext, claimed: _Claimed, to: JobStatus, **values: Any) -> bool:
    """Move the job from running to `to` (a move `JOB` allows), only while this attempt owns it."""
    status = JOB.transition(JobStatus.RUNNING, to)
    with ctx.transaction() as session:
        done = rowcount(
            session.execute(
                sa.update(_jobs)
                .where(
                    _jobs.c.id == claimed.id,
                    _jobs.c.attempt == claimed.attempt,
                    _jobs.c.status == JobStatus.RUNNING,
                )
                .values(status=status, **values)
            )
        )
    if not done:
        log.warning("job %s attempt %s: lease lost, outcome discarded", claimed.id, claimed.attempt)
    return bool(done)


def _error_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text[:MAX_ERROR_CHARS]


def job_context(
    ctx: AppContext,
    claimed: _Claimed,
    *,
    lease: timedelta = DEFAULT_LEASE,
    stopping: threading.Event | None = None,
) -> JobContext:
    return JobContext(
        id=claimed.id,
        kind=claimed.kind,
        payload=claimed.payload,
        attempt=claimed.attempt,
        workspace_id=claimed.workspace_id,
        max_attempts=claimed.max_attempts,
        _ctx=ctx,
        _lease=lease,
        _stopping=stopping,
    )


def release(ctx: AppContext, claimed: _Claimed) -> bool:
    """Give a claimed job that never started back to the queue, without using up an attempt."""
    return _fenced_update(
        ctx,
        claimed,
        JobStatus.QUEUED,
        run_at=ctx.clock.now(),
        locked_until=None,
        max_attempts=_jobs.c.max_attempts + 1,
    )


def execute(
    ctx: AppContext,
    claimed: _Claimed,
    *,
    lease: timedelta = DEFAULT_LEASE,
    stopping: threading.Event | None = None,
    active: dict[str, JobContext] | None = None,
    raise_errors: bool = False,
    job: JobContext | None = None,
) -> str:
    """Run one claimed job to an outcome and record it, fenced by its attempt. Returns the status
    recorded ("succeeded", "queued", "dead", "cancelled") or "lost" when the lease was lost."""
    job = job or job_context(ctx, claimed, lease=lease, stopping=stopping)
    if active is not None:
        active[job.id] = job
    try:
        return _run(ctx, claimed, job, raise_errors=raise_errors)
    finally:
        if active is not None:
            active.pop(job.id, None)


def _run(ctx: AppContext, claimed: _Claimed, job: JobContext, *, raise_errors: bool) -> str:
    now = ctx.clock.now
    if job._lost:  # it waited in a prefetched batch and its lease lapsed meanwhile
        return "lost"
    handler = _HANDLERS.get(claimed.kind)
    error: BaseException | None = None
    try:
        if handler is None:
            raise LookupError(f"no handler registered for job kind {claimed.kind!r}")
        handler(ctx, job)
    except LeaseLost as exc:
        log.warning("%s", exc)
        return "lost"
    except JobCancelled:
        ok = _fenced_update(ctx, claimed, JobStatus.CANCELLED, finished_at=now(), locked_until=None)
        return JobStatus.CANCELLED if ok else "lost"
    except JobInterrupted:
        # Back to the queue; the attempt it used is given back so shutdowns never kill a job.
        ok = _fenced_update(
            ctx,
            claimed,
            JobStatus.QUEUED,
            run_at=now(),
            locked_until=None,
            max_attempts=_jobs.c.max_attempts + 1,
        )
        return JobStatus.QUEUED if ok else "lost"
    except Exception as exc:
        error = exc
    if error is None:
        if job._completed:
            return JobStatus.SUCCEEDED
        ok = _fenced_update(
            ctx, claimed, JobStatus.SUCCEEDED, finished_at=now(), locked_until=None, last_error=None
        )
        return JobStatus.SUCCEEDED if ok else "lost"
    text = _error_text(error)
    if isinstance(error, Permanent) or claimed.attempt >= claimed.max_attempts:
        log.error("job %s (%s) dead after attempt %s: %s", claimed.id, claimed.kind, claimed.attempt, text)
        ok = _fenced_update(
            ctx, claimed, JobStatus.DEAD, finished_at=now(), locked_until=None, last_error=text
        )
        status = JobStatus.DEAD
    else:
        delay = error.after if isinstance(error, Retry) and error.after is not None else None
        delay = backoff_seconds(claimed.attempt) if delay is None else delay
        log.warning(
            "job %s (%s) attempt %s failed, retry in %.1fs: %s",
            claimed.id,
            claimed.kind,
            claimed.attempt,
            delay,
            text,
        )
        ok = _fenced_update(
            ctx,
            claimed,
            JobStatus.QUEUED,
            run_at=now() + timedelta(seconds=delay),
            locked_until=None,
            last_error=text,
        )
        status = JobStatus.QUEUED
    if raise_errors and not isinstance(error, Retry | Permanent):
        raise error
    return status if ok else "lost"


def drain(
    ctx: AppContext, *, max_jobs: int = 1000, kinds: list[str] | None = None, raise_errors: bool = False
) -> int:
    """Run every due job synchronously in this thread, until none is due or `max_jobs` ran.

    For tests and `overture worker --once`. A failing job is rescheduled with backoff (so it is not
    due again until the clock moves); `raise_errors=True` re-raises a handler's exception after
    recording the failure. Returns the number of jobs run."""
    worker = f"drain:{worker_name()}"
    ran = 0
    while ran < max_jobs:
        claimed = claim(ctx, worker, kinds=kinds)
        if claimed is None:
            break
        ran += 1
        execute(ctx, claimed, raise_errors=raise_errors)
    return ran
