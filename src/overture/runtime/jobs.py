"""Durable job queue in the application database: enqueue, claim with a lease, run, finish fenced.

Job states (column `status`)::

    queued ──claim──> running ──ok──> succeeded
      ^                 │ ├─error, attempts left──> queued (run_at = now + backoff with jitter)
      │                 │ ├─error, none left / Permanent──> dead (last_error kept)
      │                 │ └─cancel requested──> cancelled
      └──lease expired──┘   (a crashed or paused worker's job is claimed again: attempt + 1)

Ownership is a lease (`locked_until`) plus the attempt number as a fencing token: every write that
finishes or extends a job is `UPDATE ... WHERE id = ? AND attempt = ? AND status = 'running'`, so a
worker that lost its lease (killed, paused past it, partitioned) can never finish or overwrite the
job another worker now holds. Handlers that write to the database should do so in
`job.transaction()`, which performs that check inside the same transaction as their writes; with
`complete=True` the job is marked succeeded in that same transaction (exactly-once effects).

Claiming: PostgreSQL uses `SELECT ... FOR UPDATE SKIP LOCKED` so any number of workers claim
disjoint jobs; SQLite takes the write lock at `BEGIN IMMEDIATE`, which serializes claims.

Handlers are registered with `@job_handler("kind")` in a surface's `tasks.py`, listed in
`overture.api.tasks.TASK_MODULES` so every process that runs jobs imports them.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as _OrmSession

from overture.clock import ASAP
from overture.db.base import new_id
from overture.db.context import AppContext
from overture.db.session import Session, now_of
from overture.runtime.models import Job, JobStatus

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_LEASE",
    "JobCancelled",
    "JobContext",
    "JobInterrupted",
    "LeaseLost",
    "Permanent",
    "Retry",
    "cancel_job",
    "drain",
    "enqueue_job",
    "job_handler",
]

#: How long a claim is held without a heartbeat. Workers heartbeat running jobs automatically.
DEFAULT_LEASE = timedelta(seconds=60)
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 3600.0
MAX_ERROR_CHARS = 4000

Handler = Callable[[AppContext, "JobContext"], None]
_jobs: sa.Table = Job.__table__  # type: ignore[assignment]  # Core statements on the hot path
_HANDLERS: dict[str, Handler] = {}
#: Set after a transaction that enqueued a job commits, so idle workers in this process wake up.
job_wakeup = threading.Event()


class LeaseLost(Exception):
    """This attempt no longer owns the job (its lease expired and another worker claimed it)."""


class JobCancelled(Exception):
    """Cancellation was requested; raised by `JobContext.check()`."""


class JobInterrupted(Exception):
    """The worker is shutting down; the job goes back to the queue without using up an attempt."""


class Retry(Exception):
    """Raise from a handler to retry after `after` seconds (counts as an attempt)."""

    def __init__(self, message: str = "retry requested", *, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


class Permanent(Exception):
    """Raise from a handler for an error retrying cannot fix: the job goes straight to dead."""


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


def rowcount(result: sa.Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE (session.execute types it as a plain Result)."""
    return int(result.rowcount)  # type: ignore[attr-defined]


def registered_kinds() -> list[str]:
    return sorted(_HANDLERS)


def _dialect_insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def enqueue_job(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    workspace_id: str | None = None,
    unique_key: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 5,
) -> str:
    """Add a job in the caller's transaction and return its id (it runs once that commits).

    With `unique_key`, enqueueing again returns the existing job's id instead of adding one; the
    key is a UNIQUE column, so this holds across processes and keeps holding after the job has
    finished. `run_at` defaults to "as soon as possible" (due under any clock). `payload` must be
    JSON-serializable."""
    job_id, _ = enqueue_job_created(
        session,
        kind,
        payload,
        workspace_id=workspace_id,
        unique_key=unique_key,
        run_at=run_at,
        max_attempts=max_attempts,
    )
    return job_id


def enqueue_job_created(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    workspace_id: str | None = None,
    unique_key: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 5,
) -> tuple[str, bool]:
    """`enqueue_job`, also telling whether a new job was added (False: the unique key existed)."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    job_id = new_id()
    values: dict[str, Any] = {
        "id": job_id,
        "kind": kind,
        "payload": payload,
        "workspace_id": workspace_id,
        "unique_key": unique_key,
        "status": JobStatus.QUEUED,
        "attempt": 0,
        "max_attempts": max_attempts,
        "run_at": run_at or ASAP,
        "cancel_requested": False,
        "created_at": now_of(session),
    }
    if unique_key is None:
        session.execute(sa.insert(Job).values(**values))
    else:
        stmt = (
            _dialect_insert(session)(Job)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["unique_key"])
            .returning(Job.id)
        )
        if session.execute(stmt).scalar() is None:
            existing = session.execute(sa.select(Job.id).where(Job.unique_key == unique_key)).scalar_one()
            return str(existing), False
    session.info["overture_job_enqueued"] = True
    return job_id, True


@event.listens_for(_OrmSession, "after_commit")
def _wake_workers(session: _OrmSession) -> None:
    if session.info.pop("overture_job_enqueued", False):
        job_wakeup.set()


def cancel_job(session: Session, job_id: str) -> bool:
    """Cancel a queued job now, or ask a running one to stop at its next `check()`/heartbeat."""
    now = now_of(session)
    done = rowcount(
        session.execute(
            sa.update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.CANCELLED, finished_at=now)
        )
    )
    if done:
        return True
    return bool(
        rowcount(
            session.execute(
                sa.update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
                .values(cancel_requested=True)
            )
        )
    )


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
class JobContext:
    """What a handler gets: the job's identity and payload, plus fenced access to the database."""

    id: str
    kind: str
    payload: dict[str, Any]
    attempt: int
    workspace_id: str | None
    max_attempts: int
    _ctx: AppContext = field(repr=False)
    _lease: timedelta = field(repr=False, default=DEFAULT_LEASE)
    _stopping: threading.Event | None = field(repr=False, default=None)
    _completed: bool = field(repr=False, default=False)
    _lost: bool = field(repr=False, default=False)
    _cancelled: bool = field(repr=False, default=False)

    def _fence(self) -> Any:
        return sa.and_(
            _jobs.c.id == self.id, _jobs.c.attempt == self.attempt, _jobs.c.status == JobStatus.RUNNING
        )

    def heartbeat(self) -> None:
        """Extend the lease. Raises LeaseLost if this attempt no longer owns the job and
        JobCancelled if cancellation was requested."""
        with self._ctx.transaction() as session:
            cancel = self._extend(session)
        if cancel:
            raise JobCancelled(f"job {self.id} was cancelled")

    def _extend(self, session: Session) -> bool:
        row = session.execute(
            sa.update(_jobs)
            .where(self._fence())
            .values(locked_until=self._ctx.clock.now() + self._lease)
            .returning(_jobs.c.cancel_requested)
        ).first()
        if row is None:
            self._lost = True
            raise LeaseLost(f"job {self.id} attempt {self.attempt} lost its lease")
        return bool(row[0])

    def keepalive(self) -> None:
        """Heartbeat for the worker's background thread: never raises for a lost lease or a
        cancellation, it records them so the handler's next `check()` raises."""
        if self._lost or self._completed:
            return
        try:
            with self._ctx.transaction() as session:
                self._cancelled = self._extend(session)
        except LeaseLost:
            log.warning("job %s attempt %s lost its lease", self.id, self.attempt)

    def check(self) -> None:
        """Raise if the job should stop: lease lost, cancelled, or the worker is shutting down.
        Cheap enough to call between chunks of work (one indexed read)."""
        if self._lost:
            raise LeaseLost(f"job {self.id} attempt {self.attempt} lost its lease")
        if self._stopping is not None and self._stopping.is_set():
            raise JobInterrupted("worker shutting down")
        if self._cancelled:
            raise JobCancelled(f"job {self.id} was cancelled")
        with self._ctx.transaction(write=False) as session:
            row = session.execute(
                sa.select(Job.attempt, Job.status, Job.cancel_requested).where(Job.id == self.id)
            ).first()
        if row is None or row.attempt != self.attempt or row.status != JobStatus.RUNNING:
            self._lost = True
            raise LeaseLost(f"job {self.id} attempt {self.attempt} lost its lease")
        if row.cancel_requested:
            raise JobCancelled(f"job {self.id} was cancelled")

    @contextmanager
    def transaction(self, *, complete: bool = False) -> Iterator[Session]:
        """A write transaction that commits only while this attempt still owns the job (the check
        and the lease extension run inside it). With `complete=True` the job is also marked
        succeeded in it, so its writes and its completion commit together or not at all.
        The session is bound to the job's workspace when the job has one."""
        with self._ctx.transaction(workspace_id=self.workspace_id) as session:
            if complete:
                now = self._ctx.clock.now()
                done = rowcount(
                    session.execute(
                        sa.update(_jobs)
                        .where(self._fence())
                        .values(
                            status=JobStatus.SUCCEEDED, finished_at=now, locked_until=None, last_error=None
                        )
                    )
                )
                if done != 1:
                    self._lost = True
                    raise LeaseLost(f"job {self.id} attempt {self.attempt} lost its lease")
            else:
                self._extend(session)
            yield session
        if complete:
            self._completed = True


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
    now = ctx.clock.now()
    postgres = ctx.engine.dialect.name == "postgresql"
    claimed_values = {
        "status": JobStatus.RUNNING,
        "attempt": _jobs.c.attempt + 1,
        "locked_until": now + lease,
        "locked_by": worker,
        "started_at": now,
    }
    with ctx.transaction() as session:
        if include_expired:
            reclaimed = _reclaim_expired(session, now, claimed_values, kinds, postgres)
            if reclaimed is not None:
                return [reclaimed]
        pick = (
            sa.select(_jobs.c.id)
            .where(_jobs.c.status == JobStatus.QUEUED, _jobs.c.run_at <= now)
            .order_by(_jobs.c.run_at)  # ties (ASAP jobs) in arbitrary order
            .limit(limit)
        )
        if kinds is not None:
            pick = pick.where(_jobs.c.kind.in_(kinds))
        if postgres:
            pick = pick.with_for_update(skip_locked=True)
        # A materialized CTE: evaluated once. As a plain IN/= subquery PostgreSQL may re-run it per
        # row, and with ties in run_at each run can pick a different row (claiming more than asked).
        picked = pick.cte("picked").prefix_with("MATERIALIZED")
        rows = session.execute(
            sa.update(_jobs)
            .where(_jobs.c.id.in_(sa.select(picked.c.id)), _jobs.c.status == JobStatus.QUEUED)
            .values(**claimed_values)
            .returning(*_RETURNED)
        ).all()
    return [_Claimed(*row) for row in rows]


def _reclaim_expired(
    session: Session, now: datetime, claimed_values: dict[str, Any], kinds: list[str] | None, postgres: bool
) -> _Claimed | None:
    while True:
        query = (
            sa.select(_jobs.c.id, _jobs.c.attempt, _jobs.c.max_attempts)
            .where(_jobs.c.status == JobStatus.RUNNING, _jobs.c.locked_until < now)
            .order_by(_jobs.c.locked_until)
            .limit(1)
        )
        if kinds is not None:
            query = query.where(_jobs.c.kind.in_(kinds))
        if postgres:
            query = query.with_for_update(skip_locked=True)
        row = session.execute(query).first()
        if row is None:
            return None
        fence = sa.and_(_jobs.c.id == row.id, _jobs.c.attempt == row.attempt)
        if row.attempt >= row.max_attempts:
            # Its last attempt died with its worker: nothing left to retry.
            session.execute(
                sa.update(_jobs)
                .where(fence)
                .values(
                    status=JobStatus.DEAD,
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


def _fenced_update(ctx: AppContext, claimed: _Claimed, **values: Any) -> bool:
    with ctx.transaction() as session:
        done = rowcount(
            session.execute(
                sa.update(_jobs)
                .where(
                    _jobs.c.id == claimed.id,
                    _jobs.c.attempt == claimed.attempt,
                    _jobs.c.status == JobStatus.RUNNING,
                )
                .values(**values)
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
        status=JobStatus.QUEUED,
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
        ok = _fenced_update(ctx, claimed, status=JobStatus.CANCELLED, finished_at=now(), locked_until=None)
        return JobStatus.CANCELLED if ok else "lost"
    except JobInterrupted:
        # Back to the queue; the attempt it used is given back so shutdowns never kill a job.
        ok = _fenced_update(
            ctx,
            claimed,
            status=JobStatus.QUEUED,
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
            ctx, claimed, status=JobStatus.SUCCEEDED, finished_at=now(), locked_until=None, last_error=None
        )
        return JobStatus.SUCCEEDED if ok else "lost"
    text = _error_text(error)
    if isinstance(error, Permanent) or claimed.attempt >= claimed.max_attempts:
        log.error("job %s (%s) dead after attempt %s: %s", claimed.id, claimed.kind, claimed.attempt, text)
        ok = _fenced_update(
            ctx, claimed, status=JobStatus.DEAD, finished_at=now(), locked_until=None, last_error=text
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
            status=JobStatus.QUEUED,
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
