"""The decision path's writes (frequency-cap increments and exposures), group-committed.

Every register that must write hands its writes to one recorder thread per process and waits for
the commit before answering, so nothing is lost: an answer the SDK received is a write that is in
the database. Requests that arrive while a transaction commits are written together in the next one
(group commit), which turns 64 concurrent writes into one transaction instead of 64 queued ones.

A batch is one transaction of a few multi-row statements, not a statement per request: every cap
increment of the batch is one `INSERT ... VALUES (...), (...) ON CONFLICT DO UPDATE SET count =
count + 1 WHERE count < limit RETURNING key` (a key not returned: the allowance is spent), then its
exposures one `INSERT ... ON CONFLICT DO NOTHING`. Each row's upsert is atomic on SQLite and
PostgreSQL alike, and therefore also across processes and recorder threads. The statements go to the
driver as text with plain parameters: SQLAlchemy's statement caching and bind processing cost more
per row than the database's work here.

Why so few statements matters: the recorder thread and the event loop share the GIL. The driver drops
the GIL around every call into the database, and under load the thread then waits for the loop to hand
it back (up to `sys.getswitchinterval()`, 5 ms). One statement per request made a batch of 64 wait
64 times; now a batch waits a handful of times whatever its size.

The requests waiting on the event loop are answered in one callback per batch
(`loop.call_soon_threadsafe`, one wake-up of the loop), not one wake-up per request.

Exposures are written once per user per variant; the recorder remembers (bounded) which it already
wrote, so a returning user's register writes nothing at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any, TypeVar

import orjson
from prometheus_client import Histogram
from sqlalchemy.orm import Session

from overture.db import dialects
from overture.db.context import AppContext
from overture.db.dialects import Bind
from overture.errors import Unavailable
from overture.paywalls.decisions import CapSpend, Decision, ExposureRecord
from overture.paywalls.models import CapCounter, Exposure

log = logging.getLogger(__name__)

#: Requests per group commit at most (a batch is split into statements of ROWS_PER_STATEMENT).
MAX_BATCH = 1024
MAX_REMEMBERED = 1_000_000
_STOP = object()

BATCH_ROWS = Histogram(
    "overture_decision_write_batch_requests",
    "Register requests written per group commit of the decision recorder.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)

#: A queued job: (workspace id, cap spend or None, exposure or None, when, waiter, its event loop or
#: None for a concurrent future). A tuple: the register path builds no object of its own per request.
_Job = tuple[str, CapSpend | None, ExposureRecord | None, datetime, Any, asyncio.AbstractEventLoop | None]
_Key = tuple[str, str, str]  # (audience_id, user_id, period): the cap counter's primary key

_CAP_TABLE: Any = CapCounter.__table__
_EXPOSURE_TABLE: Any = Exposure.__table__
_CAP_COLUMNS = ("workspace_id", "audience_id", "user_id", "period", "updated_at")
_EXPOSURE_COLUMNS = ("workspace_id", "experiment_id", "user_id", "variant_id", "exposed_at")
#: Rows per statement: far below SQLite's and PostgreSQL's limits on bound parameters.
ROWS_PER_STATEMENT = 500

#: (dialect, kind, rows, cap limit) -> statement text, built once.
_SQL: dict[tuple[str, str, int, int], str] = {}


def _sql(bind: Bind, kind: str, rows: int, limit: int = 0) -> str:
    key = (dialects.dialect_name(bind), kind, rows, limit)
    sql = _SQL.get(key)
    if sql is None:
        sql = _SQL[key] = _build_sql(bind, kind, rows, limit)
    return sql


def _build_sql(bind: Bind, kind: str, rows: int, limit: int) -> str:
    table = _CAP_TABLE.name
    if kind == "exposure":
        return dialects.driver_insert_sql(
            bind,
            _EXPOSURE_TABLE.name,
            _EXPOSURE_COLUMNS,
            on_conflict_do_nothing="experiment_id, user_id, variant_id",
            rows=rows,
        )
    if kind == "counts":  # SQLite: every counter of the batch in one row of JSON
        keys = ", ".join(["(?, ?, ?)"] * rows)
        return (
            "SELECT json_group_array(json_array(c.audience_id, c.user_id, c.period, c.count))"
            f" FROM (VALUES {keys}) AS k JOIN {table} AS c"
            " ON c.audience_id = k.column1 AND c.user_id = k.column2 AND c.period = k.column3"
        )
    if kind == "add":  # SQLite: add what was granted (the batch holds the write lock)
        return dialects.driver_insert_sql(bind, table, (*_CAP_COLUMNS, "count"), rows=rows) + (
            " ON CONFLICT (audience_id, user_id, period) DO UPDATE"
            f" SET count = {table}.count + excluded.count, updated_at = excluded.updated_at"
        )
    # PostgreSQL: take one where one is left, atomically per row; the keys that got one come back.
    return dialects.driver_insert_sql(bind, table, _CAP_COLUMNS, constants={"count": 1}, rows=rows) + (
        " ON CONFLICT (audience_id, user_id, period) DO UPDATE"
        f" SET count = {table}.count + 1, updated_at = excluded.updated_at"
        f" WHERE {table}.count < {int(limit)} RETURNING audience_id, user_id, period"
    )


def spend_caps(bind: Bind, cursor: Any, spends: Sequence[tuple[str, CapSpend]], at: datetime) -> list[bool]:
    """Take one from each allowance (in order: first come, first served); False where it is spent.
    `cursor` is the driver's, inside a writing transaction on `bind`'s database.

    - SQLite: a writing transaction holds the database-wide write lock from `BEGIN IMMEDIATE`, across
      processes too, so the batch reads every counter it needs (one statement), decides in memory
      and writes what it granted (one statement). Two statements whatever the batch size, and no
      row-by-row results: the driver drops the GIL at every step of a statement.
    - PostgreSQL: `INSERT ... ON CONFLICT DO UPDATE ... WHERE count < limit RETURNING key`, atomic
      per row against every other transaction; one statement per distinct limit, again for a key
      asked for twice (a statement may touch a row only once). Rows go in key order, so concurrent
      batches lock rows in the same order."""
    stamp = dialects.driver_datetime(bind, at)
    if dialects.is_sqlite(bind):
        return _spend_caps_locked(bind, cursor, spends, stamp)
    shown = [False] * len(spends)
    pending = sorted(range(len(spends)), key=lambda i: _key(spends[i][1]))
    while pending:
        this_round: dict[_Key, int] = {}
        later: list[int] = []
        for i in pending:
            key = _key(spends[i][1])
            if key in this_round:
                later.append(i)
            else:
                this_round[key] = i
        by_limit: dict[int, list[int]] = {}
        for i in this_round.values():
            by_limit.setdefault(spends[i][1].limit, []).append(i)
        granted: set[_Key] = set()
        for limit, indexes in by_limit.items():
            for chunk in _chunks(indexes):
                params: list[Any] = []
                for i in chunk:
                    workspace_id, spend = spends[i]
                    params += (workspace_id, spend.audience_id, spend.user_id, spend.period, stamp)
                cursor.execute(_sql(bind, "spend", len(chunk), limit), params)
                granted.update(tuple(row) for row in cursor.fetchall())
        for key, i in this_round.items():
            shown[i] = key in granted
        # A key refused once stays refused in this batch: the count only grows.
        pending = [i for i in later if _key(spends[i][1]) in granted]
    return shown


def _spend_caps_locked(
    bind: Bind, cursor: Any, spends: Sequence[tuple[str, CapSpend]], stamp: Any
) -> list[bool]:
    keys = sorted({_key(spend) for _, spend in spends})
    counts: dict[_Key, int] = {}
    for chunk in _chunks(keys):
        cursor.execute(_sql(bind, "counts", len(chunk)), [part for key in chunk for part in key])
        for audience_id, user_id, period, count in orjson.loads(cursor.fetchone()[0]):
            counts[(audience_id, user_id, period)] = count
    shown: list[bool] = []
    granted: dict[_Key, list[Any]] = {}
    for workspace_id, spend in spends:
        key = _key(spend)
        count = counts.get(key, 0)
        if count < spend.limit:
            counts[key] = count + 1
            granted.setdefault(key, [workspace_id, *key, stamp, 0])[-1] += 1
        shown.append(count < spend.limit)
    rows = [granted[key] for key in sorted(granted)]
    for part in _chunks(rows):
        cursor.execute(_sql(bind, "add", len(part)), [value for row in part for value in row])
    return shown


def record_exposures(
    bind: Bind, cursor: Any, exposures: Iterable[tuple[str, ExposureRecord, datetime]]
) -> None:
    """One row per user and variant (INSERT ... ON CONFLICT DO NOTHING), in one statement."""
    rows: dict[ExposureRecord, tuple[str, datetime]] = {}
    for workspace_id, exposure, at in exposures:
        rows.setdefault(exposure, (workspace_id, at))
    ordered = sorted(rows, key=lambda e: (e.experiment_id, e.user_id, e.variant_id))
    for chunk in _chunks(ordered):
        params: list[Any] = []
        for exposure in chunk:
            workspace_id, at = rows[exposure]
            params += (
                workspace_id,
                exposure.experiment_id,
                exposure.user_id,
                exposure.variant_id,
                dialects.driver_datetime(bind, at),
            )
        cursor.execute(_sql(bind, "exposure", len(chunk)), params)


def spend_cap(session: Session, workspace_id: str, spend: CapSpend, now: datetime) -> bool:
    """Take one from the allowance in the session's (writing) transaction; False when it is spent."""
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    return spend_caps(session, cursor, [(workspace_id, spend)], now)[0]


def _key(spend: CapSpend) -> _Key:
    return (spend.audience_id, spend.user_id, spend.period)


T = TypeVar("T")


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), ROWS_PER_STATEMENT):
        yield items[start : start + ROWS_PER_STATEMENT]


def _settle_on_loop(outcomes: list[tuple[asyncio.Future[bool], bool | BaseException]]) -> None:
    """Answer a batch's waiting requests (on their event loop: one callback per batch)."""
    for waiter, outcome in outcomes:
        if waiter.done():  # the request was cancelled (client gone); its write stands
            continue
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)


class DecisionRecorder:
    """One writer thread per process. `record` (on an event loop) and `submit` (from a thread)
    return a future resolved after the commit with True (shown) or False (the frequency cap was
    spent), or None when the decision writes nothing."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._remembered: set[ExposureRecord] = set()
        self._driver: Any = None  # the writer thread's own pooled driver connection
        #: Jobs decided on each event loop during its current iteration, not yet handed over.
        self._handover: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        ctx.closers.append(self.close)

    def record(self, workspace_id: str, decision: Decision) -> asyncio.Future[bool] | None:
        """From a coroutine: the future to await. The requests a loop decides in one iteration are
        handed to the writer thread together, at the end of it (one wake-up of the thread)."""
        exposure = self._unwritten(decision)
        if decision.cap is None and exposure is None:
            return None
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        pending = self._handover.get(loop)
        if pending is None:
            pending = self._handover[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append((workspace_id, decision.cap, exposure, self._ctx.clock.now(), waiter, loop))
        return waiter

    def submit(self, workspace_id: str, decision: Decision) -> Future[bool] | None:
        """From a thread (no event loop): a concurrent future."""
        exposure = self._unwritten(decision)
        if decision.cap is None and exposure is None:
            return None
        waiter: Future[bool] = Future()
        self._put([(workspace_id, decision.cap, exposure, self._ctx.clock.now(), waiter, None)])
        return waiter

    def _unwritten(self, decision: Decision) -> ExposureRecord | None:
        exposure = decision.exposure
        return None if exposure is None or exposure in self._remembered else exposure

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        self._put(self._handover.pop(loop))

    def _put(self, jobs: list[_Job]) -> None:
        if self._thread is None:
            self._start()
        self._queue.put(jobs)

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout=10)
        if self._driver is not None:
            self._driver.close()
            self._driver = None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="overture-paywall-recorder", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            first = get()
            if first is _STOP:
                return
            batch: list[_Job] = list(first)
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch += more
            BATCH_ROWS.observe(len(batch))
            self._settle(batch, self._write(batch))
            if stop:
                return

    def _write(self, batch: list[_Job]) -> list[bool | BaseException]:
        """One transaction for the batch on the recorder's own driver connection (held for the
        thread's life: no pool checkout, no SQLAlchemy execution machinery per batch)."""
        try:
            connection = self._connection()
            try:
                cursor = connection.cursor()
                if dialects.is_sqlite(self._ctx.engine):
                    cursor.execute("BEGIN IMMEDIATE")
                shown = self._apply(cursor, batch)
                connection.commit()
                return shown
            except BaseException:
                self._drop_connection()
                raise
        except Exception:
            if len(batch) == 1:
                log.exception("recording a paywall decision failed")
                return [Unavailable("the decision could not be recorded; try again")]
            # One bad write must not fail the others: retry each in its own transaction.
            return [self._write([job])[0] for job in batch]

    def _connection(self) -> Any:
        if self._driver is None:
            self._driver = self._ctx.engine.raw_connection()
        return self._driver.driver_connection

    def _drop_connection(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.invalidate()  # a failed transaction's connection is not reused

    def _apply(self, cursor: Any, batch: list[_Job]) -> list[bool | BaseException]:
        engine = self._ctx.engine
        capped = [i for i, job in enumerate(batch) if job[1] is not None]
        shown: list[bool | BaseException] = [True] * len(batch)
        if capped:
            spends = [(batch[i][0], batch[i][1]) for i in capped]
            for i, ok in zip(capped, spend_caps(engine, cursor, spends, batch[0][3]), strict=True):  # type: ignore[arg-type]
                shown[i] = ok
        # Capped: nothing shown, nothing exposed.
        record_exposures(
            engine,
            cursor,
            (
                (job[0], job[2], job[3])
                for job, ok in zip(batch, shown, strict=True)
                if ok is True and job[2] is not None
            ),
        )
        return shown

    def _settle(self, batch: list[_Job], outcomes: list[bool | BaseException]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool | BaseException]]] = {}
        for job, outcome in zip(batch, outcomes, strict=True):
            if outcome is True and job[2] is not None:
                self._remember(job[2])
            waiter, loop = job[4], job[5]
            if loop is not None:
                by_loop.setdefault(loop, []).append((waiter, outcome))
            elif isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
        for loop, outcomes_of_loop in by_loop.items():
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle_on_loop, outcomes_of_loop)

    def _remember(self, exposure: ExposureRecord) -> None:
        if len(self._remembered) >= MAX_REMEMBERED:
            self._remembered.clear()  # forgetting only costs a redundant INSERT ... DO NOTHING
        self._remembered.add(exposure)
