"""The worker runtime: scheduler loop, N job threads, the outbox dispatcher and lease heartbeats,
started by `overture worker` (a process of its own) or inside `overture serve` (embedded).

Any number of runtimes may run against one PostgreSQL database: claims skip each other's rows,
leases and fencing keep each job and message with one owner, unique slot keys keep each schedule
slot to one job. On SQLite run one (the embedded one); writers queue on the database lock.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from overture.db import dialects
from overture.db.context import AppContext
from overture.db.notify import bus
from overture.runtime import outbox, retention, scheduler
from overture.runtime.job_context import JobContext, heartbeat_seconds
from overture.runtime.job_runs import claim_batch, drain, execute, job_context, next_due, release, worker_name
from overture.runtime.jobs import job_wakeup

log = logging.getLogger(__name__)

__all__ = ["Runtime", "run_once"]

#: After an unexpected error (database unreachable...), a loop waits this long before trying again.
ERROR_PAUSE_SECONDS = 2.0
#: Due work that could not be claimed (a paused destination, rows held elsewhere) is retried this often.
IDLE_RECHECK_SECONDS = 1.0
#: Sleeping this much past a due time keeps a claim from landing a hair before it (clock rounding).
DUE_SLACK_SECONDS = 0.005
#: Retention sweeps run this often (each deletes a bounded number of batches per rule).
RETENTION_INTERVAL_SECONDS = 300.0


@dataclass
class Runtime:
    """Background threads that run schedules, jobs and the outbox for one AppContext.

    `start()` returns at once; `stop()` asks every loop to finish: a running job sees
    `JobContext.check()` raise JobInterrupted (it goes back to the queue without using an attempt),
    a batch in flight is sent and recorded. Threads still busy after `timeout` are abandoned
    (daemon threads); their leases expire and other workers reclaim the work."""

    ctx: AppContext
    concurrency: int = 2
    run_scheduler: bool = True
    run_jobs: bool = True
    run_dispatcher: bool = True
    #: How long idle job threads and the dispatcher sleep when nothing wakes them (None: the
    #: OVERTURE_WORKER_POLL_SECONDS setting, by default 1 s on SQLite, 10 s on PostgreSQL).
    poll_interval: float | None = None
    #: Leases and their heartbeat (None: OVERTURE_WORKER_LEASE_SECONDS, _HEARTBEAT_SECONDS).
    job_lease: timedelta | None = None
    outbox_lease: timedelta | None = None
    heartbeat: timedelta | None = None
    #: Due schedule slots are looked for this often (time, not an enqueue, makes a slot due).
    scheduler_interval: float = 1.0
    #: Seconds between retention sweeps (in runtimes that run the scheduler); 0 disables them.
    retention_interval: float = RETENTION_INTERVAL_SECONDS
    batch_size: int = outbox.BATCH_SIZE
    dispatch_limit: int = 500
    #: Jobs a job thread claims at once (one statement); the waiting ones are heartbeated.
    prefetch: int = 1
    kinds: list[str] | None = None
    name: str = "overture"
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    _active: dict[str, JobContext] = field(default_factory=dict, repr=False)
    _started: bool = field(default=False, repr=False)
    _stop_listening: Any = field(default=None, repr=False)

    # Resolved from the fields above and the settings.
    _poll: float = field(init=False, repr=False)
    _job_lease: timedelta = field(init=False, repr=False)
    _outbox_lease: timedelta = field(init=False, repr=False)
    _heartbeat: timedelta = field(init=False, repr=False)

    def __post_init__(self) -> None:
        settings = self.ctx.settings
        default_poll = 10.0 if dialects.has_notify(self.ctx.engine) else 1.0
        self._poll = self.poll_interval or settings.worker_poll_seconds or default_poll
        lease = timedelta(seconds=settings.worker_lease_seconds)
        self._job_lease = self.job_lease or lease
        self._outbox_lease = self.outbox_lease or lease
        self._heartbeat = self.heartbeat or timedelta(seconds=heartbeat_seconds(settings, self._job_lease))

    def start(self) -> Runtime:
        if self._started:
            return self
        self._started = True
        # On PostgreSQL, enqueues in other processes wake this one (NOTIFY); shared with the API's relay.
        self._stop_listening = bus.start_listening(self.ctx.engine)
        loops: list[tuple[str, Any]] = []
        if self.run_scheduler:
            loops.append((f"{self.name}-scheduler", self._scheduler_loop))
            if self.retention_interval > 0:
                loops.append((f"{self.name}-retention", self._retention_loop))
        if self.run_jobs:
            loops += [(f"{self.name}-job-{i}", self._job_loop) for i in range(self.concurrency)]
            loops.append((f"{self.name}-heartbeat", self._heartbeat_loop))
        if self.run_dispatcher:
            loops.append((f"{self.name}-outbox", self._dispatch_loop))
        for thread_name, target in loops:
            thread = threading.Thread(target=target, name=thread_name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "runtime started: scheduler=%s jobs=%s dispatcher=%s",
            self.run_scheduler,
            self.concurrency if self.run_jobs else 0,
            self.run_dispatcher,
        )
        return self

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop every loop; True if all threads ended within `timeout` seconds."""
        self._stop.set()
        job_wakeup.set()
        outbox.outbox_wakeup.set()
        started = time.monotonic()
        for thread in self._threads:
            thread.join(max(0.0, timeout - (time.monotonic() - started)))
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("runtime stop: still busy after %.0fs, abandoned: %s", timeout, ", ".join(alive))
        else:
            log.info("runtime stopped")
        return not alive

    def join(self) -> None:
        """Block until `stop()` is called (from a signal handler or another thread)."""
        while not self._stop.wait(1.0):
            pass

    # -- loops -------------------------------------------------------------------------------

    def _guarded(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception:
            log.exception("runtime %s failed; retrying in %.0fs", what, ERROR_PAUSE_SECONDS)
            self._stop.wait(ERROR_PAUSE_SECONDS)
            return None

    def _scheduler_loop(self) -> None:
        while not self._stop.is_set():
            self._guarded("scheduler tick", lambda: scheduler.tick(self.ctx))
            self._stop.wait(self.scheduler_interval)

    def _retention_loop(self) -> None:
        while not self._stop.wait(self.retention_interval):
            self._guarded("retention sweep", lambda: retention.sweep(self.ctx))

    def _job_loop(self) -> None:
        worker = worker_name()
        # Expired leases are looked for at most once a second per thread (they are rare, and the
        # extra query would otherwise ride on every claim).
        next_expiry_check = 0.0
        while not self._stop.is_set():
            check_expired = time.monotonic() >= next_expiry_check
            if check_expired:
                next_expiry_check = time.monotonic() + min(1.0, self._job_lease.total_seconds() / 4)
            batch = self._guarded(
                "job claim",
                lambda e=check_expired: claim_batch(
                    self.ctx,
                    worker,
                    self.prefetch,
                    lease=self._job_lease,
                    kinds=self.kinds,
                    include_expired=e,
                ),
            )
            if not batch:
                due = self._guarded("job due time", lambda: next_due(self.ctx, self.kinds))
                if job_wakeup.wait(self._idle_seconds(due)):
                    job_wakeup.clear()
                continue
            # Claimed jobs waiting their turn are heartbeated like the running one.
            waiting = [job_context(self.ctx, c, lease=self._job_lease, stopping=self._stop) for c in batch]
            for job in waiting:
                self._active[job.id] = job
            for claimed, job in zip(batch, waiting, strict=True):
                if self._stop.is_set():
                    self._active.pop(job.id, None)
                    self._guarded(f"release of job {claimed.id}", lambda c=claimed: release(self.ctx, c))
                    continue
                self._guarded(
                    f"job {claimed.id}",
                    lambda c=claimed, j=job: execute(
                        self.ctx, c, lease=self._job_lease, stopping=self._stop, active=self._active, job=j
                    ),
                )

    def _heartbeat_loop(self) -> None:
        """Extend the lease of every job this process is running, so a long job keeps its owner
        for as long as the process is alive (and loses it within one lease if the process dies or
        stops). A lost lease or a cancellation is noted for the job's next `check()`."""
        while not self._stop.wait(self._heartbeat.total_seconds()):
            for job in list(self._active.values()):
                self._guarded(f"heartbeat of job {job.id}", job.keepalive)

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            processed = self._guarded(
                "outbox dispatch",
                lambda: outbox.dispatch_once(
                    self.ctx, limit=self.dispatch_limit, batch_size=self.batch_size, lease=self._outbox_lease
                ),
            )
            if processed:
                continue
            due = self._guarded("outbox due time", lambda: outbox.next_due(self.ctx))
            if outbox.outbox_wakeup.wait(self._idle_seconds(due)):
                outbox.outbox_wakeup.clear()

    def _idle_seconds(self, due: datetime | None) -> float:
        """How long an idle loop sleeps: until the earliest waiting work is due (a delayed job, a
        retry, a throttled send), at most the poll; an enqueue wakes it sooner. Work already due but
        not claimable (a paused destination, rows another worker holds) is looked at every second."""
        if due is None:
            return self._poll
        left = (due - self.ctx.clock.now()).total_seconds()
        if left <= 0:
            return min(IDLE_RECHECK_SECONDS, self._poll)
        return min(left + DUE_SLACK_SECONDS, self._poll)


def run_once(ctx: AppContext, *, max_rounds: int = 100) -> dict[str, int]:
    """Run everything that is due now, synchronously, until a round finds nothing to do:
    scheduler tick, every due job, every due outbox message; then one retention sweep. For
    `overture worker --once` and tests. Returns counts per kind of work."""
    totals = {"slots_fired": 0, "jobs_run": 0, "messages_processed": 0, "rows_pruned": 0}
    for _ in range(max_rounds):
        fired = scheduler.tick(ctx)
        ran = drain(ctx)
        processed = 0
        while (n := outbox.dispatch_once(ctx)) > 0:
            processed += n
        totals["slots_fired"] += fired
        totals["jobs_run"] += ran
        totals["messages_processed"] += processed
        if not (fired or ran or processed):
            break
    totals["rows_pruned"] = sum(retention.sweep(ctx).values())
    return totals
