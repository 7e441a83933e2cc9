"""Durable job queue in the application database: enqueue, claim with a lease, run, finish fenced.

Job states: the machine `overture.runtime.states.JOB` (queued -> running -> succeeded | queued
(retry with backoff and jitter) | dead | cancelled; a running job whose lease expired is claimed
again, attempt + 1).

Ownership is a lease (`locked_until`) plus the attempt number as a fencing token: every write that
finishes or extends a job is `UPDATE ... WHERE id = ? AND attempt = ? AND status = 'running'`, so a
worker that lost its lease (killed, paused past it, partitioned) can never finish or overwrite the
job another worker now holds. Handlers that write to the database should do so in
`job.transaction()`, which performs that check inside the same transaction as their writes; with
`complete=True` the job is marked succeeded in that same transaction (exactly-once effects).

Handlers are registered with `@job_handler("kind")` in a surface's `tasks.py`, listed in
`overture.api.tasks.TASK_MODULES` so every process that runs jobs imports them.

This module is what surfaces use (enqueue, cancel, the handler API re-exported from
`job_context` and `job_runs`); the worker's claim/run/record loop is `overture.runtime.job_runs`.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from overture.clock import ASAP
from overture.db import dialects
from overture.db.base import new_id
from overture.db.dialects import rowcount
from overture.db.notify import bus
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
from overture.runtime.job_runs import backoff_seconds, drain, job_handler
from overture.runtime.models import Job
from overture.runtime.states import JOB, JobStatus

__all__ = [
    "DEFAULT_LEASE",
    "JobCancelled",
    "JobContext",
    "JobInterrupted",
    "LeaseLost",
    "Permanent",
    "Retry",
    "backoff_seconds",
    "cancel_job",
    "drain",
    "enqueue_job",
    "enqueue_job_created",
    "job_handler",
    "job_wakeup",
]

#: Set after a transaction that enqueued a job commits (in this process, or in another one on
#: PostgreSQL: `TOPIC` is NOTIFYed), so idle job threads wake up.
job_wakeup = threading.Event()
TOPIC = "jobs"
_CANCEL = (JobStatus.QUEUED, JOB.transition(JobStatus.QUEUED, JobStatus.CANCELLED))


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
        "status": JobStatus.QUEUED,  # the initial state of JOB
        "attempt": 0,
        "max_attempts": max_attempts,
        "run_at": run_at or ASAP,
        "cancel_requested": False,
        "created_at": session.now(),
    }
    if unique_key is None:
        session.execute(sa.insert(Job).values(**values))
    else:
        stmt = (
            dialects.insert(session, Job)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["unique_key"])
            .returning(Job.id)
        )
        if session.execute(stmt).scalar() is None:
            existing = session.execute(sa.select(Job.id).where(Job.unique_key == unique_key)).scalar_one()
            return str(existing), False
    bus.publish_on_commit(session, TOPIC, "")
    return job_id, True


# An enqueue anywhere wakes this process's idle job threads: here after commit, elsewhere by NOTIFY.
bus.subscribe(TOPIC, lambda _payload: job_wakeup.set())


def cancel_job(session: Session, job_id: str) -> bool:
    """Cancel a queued job now, or ask a running one to stop at its next `check()`/heartbeat."""
    done = rowcount(
        session.execute(
            sa.update(Job)
            .where(Job.id == job_id, Job.status == _CANCEL[0])
            .values(status=_CANCEL[1], finished_at=session.now())
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
