"""What a job handler gets: `JobContext` (payload, fenced transactions, heartbeats, cancellation
checks) and the exceptions that steer its outcome. The queue itself is `overture.runtime.jobs`; the
worker's side (claim, run, record) is `overture.runtime.job_runs`; the states are
`overture.runtime.states.JOB`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from overture.config import Settings
from overture.db.context import AppContext
from overture.db.dialects import rowcount
from overture.db.session import Session
from overture.runtime.models import Job
from overture.runtime.states import JOB, JobStatus

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_LEASE",
    "JobCancelled",
    "JobContext",
    "JobInterrupted",
    "LeaseLost",
    "Permanent",
    "Retry",
]

#: How long a claim is held without a heartbeat. Workers heartbeat running jobs automatically.
DEFAULT_LEASE = timedelta(seconds=60)


def heartbeat_seconds(settings: Settings, lease: timedelta) -> float:
    """How often a lease of `lease` is extended: OVERTURE_WORKER_HEARTBEAT_SECONDS (default a third
    of OVERTURE_WORKER_LEASE_SECONDS), or a third of `lease` when that is shorter than the beat."""
    beat = settings.heartbeat_seconds
    return beat if beat < lease.total_seconds() else lease.total_seconds() / 3


_jobs: sa.Table = Job.__table__  # type: ignore[assignment]  # Core statements on the hot path
_SUCCEED = JOB.transition(JobStatus.RUNNING, JobStatus.SUCCEEDED)


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
            .values(locked_until=session.now() + self._lease)
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
                done = rowcount(
                    session.execute(
                        sa.update(_jobs)
                        .where(self._fence())
                        .values(
                            status=_SUCCEED, finished_at=session.now(), locked_until=None, last_error=None
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
