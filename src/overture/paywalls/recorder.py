"""The decision path's writes (frequency-cap increments and exposures), group-committed.

Every register that must write hands its writes to one recorder thread per process and waits for
the commit before answering, so nothing is lost: an answer the SDK received is a write that is in
the database. Requests that arrive while a transaction commits are written together in the next one
(group commit), which turns 64 concurrent writes into one transaction instead of 64 queued ones.

Each cap increment is one atomic statement, `INSERT ... ON CONFLICT DO UPDATE SET count = count + 1
WHERE count < limit RETURNING count`: no row back means the allowance is spent. Atomic per statement
on SQLite and PostgreSQL alike, and therefore also across processes and recorder threads.

Exposures are `INSERT ... ON CONFLICT DO NOTHING` (one row per user per variant); the recorder
remembers (bounded) which it already wrote, so a returning user's register writes nothing at all.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from overture.db import dialects
from overture.db.base import UTCDateTime
from overture.db.context import AppContext
from overture.errors import Unavailable
from overture.paywalls.decisions import CapSpend, Decision, ExposureRecord
from overture.paywalls.models import CapCounter, Exposure

log = logging.getLogger(__name__)

MAX_BATCH = 256
MAX_REMEMBERED = 1_000_000
_STOP = object()


#: (statement, dialect name) -> the statement, built once per dialect with bound parameters:
#: constructing an upsert costs ~1 ms of Python, executing a prepared one a few tens of microseconds.
_PREPARED: dict[tuple[str, str], Any] = {}


def _prepared(conn: sa.Connection, build: Callable[[sa.Connection], Any]) -> Any:
    key = (build.__name__, conn.dialect.name)
    stmt = _PREPARED.get(key)
    if stmt is None:
        stmt = _PREPARED.setdefault(key, build(conn))
    return stmt


def _cap_statement(conn: sa.Connection) -> Any:
    table: Any = CapCounter.__table__
    stmt = dialects.insert(conn, table).values(
        workspace_id=sa.bindparam("workspace_id"),
        audience_id=sa.bindparam("audience_id"),
        user_id=sa.bindparam("user_id"),
        period=sa.bindparam("period"),
        count=1,
        updated_at=sa.bindparam("now", type_=UTCDateTime()),
    )
    return stmt.on_conflict_do_update(
        index_elements=[table.c.audience_id, table.c.user_id, table.c.period],
        set_={"count": table.c.count + 1, "updated_at": stmt.excluded.updated_at},
        where=table.c.count < sa.bindparam("cap_limit"),
    ).returning(table.c.count)


def _exposure_statement(conn: sa.Connection) -> Any:
    table: Any = Exposure.__table__
    return (
        dialects.insert(conn, table)
        .values(
            workspace_id=sa.bindparam("workspace_id"),
            experiment_id=sa.bindparam("experiment_id"),
            user_id=sa.bindparam("user_id"),
            variant_id=sa.bindparam("variant_id"),
            exposed_at=sa.bindparam("now", type_=UTCDateTime()),
        )
        .on_conflict_do_nothing(index_elements=[table.c.experiment_id, table.c.user_id, table.c.variant_id])
    )


def spend_cap(session: Session, workspace_id: str, spend: CapSpend, now: datetime) -> bool:
    """Take one from the allowance atomically; False when it is spent."""
    params = {
        "workspace_id": workspace_id,
        "audience_id": spend.audience_id,
        "user_id": spend.user_id,
        "period": spend.period,
        "now": now,
        "cap_limit": spend.limit,
    }
    conn = session.connection()  # Core, not the ORM: no ORM events on the hot path
    return conn.execute(_prepared(conn, _cap_statement), params).first() is not None


def record_exposure(session: Session, workspace_id: str, exposure: ExposureRecord, now: datetime) -> None:
    params = {
        "workspace_id": workspace_id,
        "experiment_id": exposure.experiment_id,
        "user_id": exposure.user_id,
        "variant_id": exposure.variant_id,
        "now": now,
    }
    conn = session.connection()
    conn.execute(_prepared(conn, _exposure_statement), params)


@dataclass
class _Job:
    workspace_id: str
    cap: CapSpend | None
    exposure: ExposureRecord | None
    at: datetime
    future: Future[bool] = field(default_factory=Future)


class DecisionRecorder:
    """One writer thread per process; `submit` returns a future resolved after the commit with
    True (shown) or False (the frequency cap was spent)."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._remembered: set[ExposureRecord] = set()
        ctx.closers.append(self.close)

    def submit(self, workspace_id: str, decision: Decision) -> Future[bool] | None:
        """Queue the decision's writes; None when there is nothing to write."""
        exposure = decision.exposure
        if exposure is not None and exposure in self._remembered:
            exposure = None
        if decision.cap is None and exposure is None:
            return None
        job = _Job(workspace_id, decision.cap, exposure, self._ctx.clock.now())
        self._ensure_thread()
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout=10)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="overture-paywall-recorder", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Job] = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[_Job]) -> None:
        try:
            with self._ctx.transaction() as session:
                results = [self._apply(session, job) for job in batch]
        except Exception:
            if len(batch) == 1:
                log.exception("recording a paywall decision failed")
                batch[0].future.set_exception(Unavailable("the decision could not be recorded; try again"))
                return
            # One bad write must not fail the others: retry each in its own transaction.
            for job in batch:
                self._write([job])
            return
        for job, shown in zip(batch, results, strict=True):
            if shown and job.exposure is not None:
                self._remember(job.exposure)
            job.future.set_result(shown)

    def _apply(self, session: Session, job: _Job) -> bool:
        if job.cap is not None and not spend_cap(session, job.workspace_id, job.cap, job.at):
            return False  # capped: nothing shown, nothing exposed
        if job.exposure is not None:
            record_exposure(session, job.workspace_id, job.exposure, job.at)
        return True

    def _remember(self, exposure: ExposureRecord) -> None:
        if len(self._remembered) >= MAX_REMEMBERED:
            self._remembered.clear()  # forgetting only costs a redundant INSERT ... DO NOTHING
        self._remembered.add(exposure)
