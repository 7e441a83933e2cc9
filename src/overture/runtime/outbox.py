"""Transactional outbox: messages owed to destinations, written with the state change that causes
them, then sent by a dispatcher that records every outcome in the ledger.

Ledger states: the machine `overture.runtime.states.OUTBOX` (pending -> sending -> sent | failed |
pending (retry, Retry-After honoured); a `sending` message whose claim lease expired (the dispatcher
died) -> unknown, claimed again and resent with possible_duplicate = true). Every set-based UPDATE
here takes its statuses from that table.

Delivery guarantee: every message is sent until it is `sent` or `failed` (at least once), always
with its stable idempotency key. A receiver can see a message twice only if a dispatcher died
after the receiver accepted it and before the ledger recorded it (the message was then in
`sending`); that resend, and only a resend after such a crash, carries `possible_duplicate`.
A dispatcher that is merely slow keeps its claim alive with heartbeats, so slowness never causes
a resend; an outcome is recorded only by the attempt that claimed the message (fenced by
`attempts`), so a stale dispatcher cannot overwrite a newer outcome.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from overture.clock import ASAP
from overture.db import dialects
from overture.db.context import AppContext
from overture.db.dialects import rowcount
from overture.db.notify import bus
from overture.db.session import now_of
from overture.delivery.messages import Message, Outcome
from overture.delivery.service import get_destination, send_batch
from overture.errors import NotFound
from overture.runtime.job_context import heartbeat_seconds
from overture.runtime.job_runs import backoff_seconds
from overture.runtime.models import OutboxMessage, OutboxPause
from overture.runtime.states import OUTBOX, OutboxStatus

log = logging.getLogger(__name__)

__all__ = ["OutboxItem", "dispatch_once", "enqueue", "idempotency_key", "outbox_wakeup", "withdraw"]

#: Rows per INSERT statement when enqueueing (multi-row VALUES; both dialects).
ENQUEUE_CHUNK = 2000
#: Messages handed to a destination in one send_batch call; also the most a crash can leave
#: accepted-but-unrecorded per dispatcher (the duplicate window).
BATCH_SIZE = 100
#: How long a claim is held without a heartbeat; dispatchers heartbeat while a batch is in flight.
LEASE = timedelta(seconds=60)
#: Send attempts before a retryable message is failed: about two hours of backoff in all.
MAX_ATTEMPTS = 12
RETRY_BASE_SECONDS = 5.0
RETRY_CAP_SECONDS = 3600.0
#: A message whose dispatcher died this many times while sending it is failed, not resent again
#: (protects the queue from a message that crashes the process).
MAX_CRASHES = 10
MAX_ERROR_CHARS = 2000

Sender = Callable[[AppContext, Any, Sequence[Message]], list[Outcome]]
#: Set after a transaction that enqueued messages commits (in this process, or in another one on
#: PostgreSQL: `TOPIC` is NOTIFYed), so an idle dispatcher wakes up.
outbox_wakeup = threading.Event()
TOPIC = "outbox"
_table: sa.Table = OutboxMessage.__table__  # type: ignore[assignment]  # Core executemany
_pauses_table: sa.Table = OutboxPause.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One message to owe: where it goes, its stable idempotency key, and the JSON payload.
    `source_kind`/`source_id` say what caused it (e.g. "journey_run", run id) for reporting."""

    workspace_id: str
    destination_id: str
    idempotency_key: str
    payload: dict[str, Any] = field(hash=False)
    source_kind: str
    source_id: str | None = None
    #: Not sent before this instant (a send in each recipient's local time, a throttled send).
    not_before: datetime | None = None


def idempotency_key(*parts: object) -> str:
    """A stable key from what identifies a message, e.g. ("journey", run_id, member_id, step_id).
    Readable when short; hashed (sha256) when the parts would exceed the column."""
    raw = ":".join(str(p) for p in parts)
    if len(raw) <= 200:
        return raw
    return f"{str(parts[0])[:40]}:{hashlib.sha256(raw.encode()).hexdigest()}"


_ENQUEUE_COLUMNS = (
    "workspace_id",
    "destination_id",
    "idempotency_key",
    "payload",
    "source_kind",
    "source_id",
    "status",
    "next_attempt_at",
    "created_at",
)
_ENQUEUE_CONSTANTS = {"attempts": 0, "crashes": 0, "possible_duplicate": False}
#: The state a message is owed in (plain text: rows go to the driver as they are).
_OWED = OutboxStatus.PENDING.value
# The set-based moves, checked against the table once, at import.
#: Claimed in this order: crash survivors first, then pending messages.
_CLAIM_FROM = (OutboxStatus.UNKNOWN, OutboxStatus.PENDING)
if frozenset(_CLAIM_FROM) != OUTBOX.sources(OutboxStatus.SENDING):
    raise RuntimeError("outbox claim order does not list the sources of 'sending' in OUTBOX")
_SENT = OUTBOX.transition(OutboxStatus.SENDING, OutboxStatus.SENT)
_FAILED = OUTBOX.transition(OutboxStatus.SENDING, OutboxStatus.FAILED)
_RETRY = OUTBOX.transition(OutboxStatus.SENDING, OutboxStatus.PENDING)
_LOST = OUTBOX.transition(OutboxStatus.SENDING, OutboxStatus.UNKNOWN)


def enqueue(session: Session, items: Iterable[OutboxItem]) -> int:
    """Insert messages in the CALLER's transaction (they exist only if it commits), set-based in
    multi-row statements. A message whose idempotency key is already in the ledger is skipped
    (ON CONFLICT DO NOTHING), so re-running a step never owes a message twice. Returns the number
    of rows inserted.

    Rows go to the driver's executemany already serialized (payload JSON via orjson, constant
    columns formatted once): SQLAlchemy's per-row bind processing would cost more than the insert."""
    connection = session.connection()
    sql = dialects.driver_insert_sql(
        connection,
        "outbox_messages",
        _ENQUEUE_COLUMNS,
        json_columns=("payload",),
        constants=_ENQUEUE_CONSTANTS,
        on_conflict_do_nothing="idempotency_key",
    )
    asap, created = (
        dialects.driver_datetime(connection, ASAP),
        dialects.driver_datetime(connection, now_of(session)),
    )
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    inserted = 0
    chunk: list[tuple[Any, ...]] = []
    try:
        for item in items:
            chunk.append(
                (
                    item.workspace_id,
                    item.destination_id,
                    item.idempotency_key,
                    orjson.dumps(item.payload, option=orjson.OPT_NON_STR_KEYS).decode(),
                    item.source_kind,
                    item.source_id,
                    _OWED,
                    asap
                    if item.not_before is None
                    else dialects.driver_datetime(connection, item.not_before),
                    created,
                )
            )
            if len(chunk) >= ENQUEUE_CHUNK:
                inserted += _insert_chunk(cursor, sql, chunk)
                chunk = []
        if chunk:
            inserted += _insert_chunk(cursor, sql, chunk)
    finally:
        cursor.close()
    if inserted:
        bus.publish_on_commit(session, TOPIC, "")
    return inserted


def withdraw(session: Session, source_kind: str, source_id: str) -> list[str]:
    """Delete the messages of one source that no dispatcher has claimed yet (`pending`) and return
    their idempotency keys: a cancelled send takes back what it still owes. Messages being sent, or
    whose send may have happened (`sending`, `unknown`), are left to reach an outcome."""
    rows = session.execute(
        sa.delete(OutboxMessage)
        .where(
            OutboxMessage.source_kind == source_kind,
            OutboxMessage.source_id == source_id,
            OutboxMessage.status == _OWED,
        )
        .returning(OutboxMessage.idempotency_key)
    )
    return [str(r[0]) for r in rows]


def _insert_chunk(cursor: Any, sql: str, rows: list[tuple[Any, ...]]) -> int:
    cursor.executemany(sql, rows)
    return int(cursor.rowcount)  # both drivers sum executemany's rows; conflicts count 0


# An enqueue anywhere wakes this process's dispatcher: here after commit, elsewhere by NOTIFY.
bus.subscribe(TOPIC, lambda _payload: outbox_wakeup.set())


# -- dispatcher ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    workspace_id: str
    destination_id: str
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int
    crashes: int
    possible_duplicate: bool

    @property
    def tries(self) -> int:
        """Attempts that reached an outcome; claims lost to a dying dispatcher don't count."""
        return self.attempts - self.crashes


def _pauses(ctx: AppContext) -> dict[str, datetime]:
    """Destinations that answered Retry-After, paused until then: this process's copy of the
    `outbox_pauses` table, refreshed at every claim and written through by `_pause`."""
    pauses: dict[str, datetime] = ctx.service("runtime.outbox.pauses", lambda _c: {})
    return pauses


def _read_pauses(ctx: AppContext, session: Session, now: datetime) -> list[str]:
    """The destinations paused now, by any dispatcher (the process's copy learns them)."""
    rows = session.execute(
        sa.select(_pauses_table.c.destination_id, _pauses_table.c.paused_until).where(
            _pauses_table.c.paused_until > now
        )
    ).all()
    pauses = _pauses(ctx)
    pauses.update({str(d): until for d, until in rows})  # never emptied: other threads read it
    for destination_id, until in list(pauses.items()):
        if until <= now:
            pauses.pop(destination_id, None)
    return [str(d) for d, _ in rows]


def _pause(ctx: AppContext, session: Session, pause_until: dict[str, datetime]) -> None:
    """Record Retry-After pauses for every dispatcher (a later pause never shortens an earlier one)."""
    stmt = dialects.insert(session, _pauses_table).values(
        [{"destination_id": d, "paused_until": until} for d, until in pause_until.items()]
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[_pauses_table.c.destination_id],
            set_={
                "paused_until": dialects.greatest(
                    session, _pauses_table.c.paused_until, stmt.excluded.paused_until
                )
            },
        )
    )
    _pauses(ctx).update(pause_until)


def recover_lost(ctx: AppContext) -> int:
    """Messages left in `sending` by a dispatcher whose claim expired (it died) become `unknown`,
    flagged possible_duplicate: the receiver may or may not have them. A message that was in
    flight when MAX_CRASHES dispatchers died is failed instead (it may be what kills them)."""
    now = ctx.clock.now()
    doomed = OutboxMessage.crashes + 1 >= MAX_CRASHES
    with ctx.transaction() as session:
        lost = rowcount(
            session.execute(
                sa.update(OutboxMessage)
                .where(OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.locked_until < now)
                .values(
                    status=sa.case((doomed, _FAILED), else_=_LOST),
                    last_error=sa.case(
                        (doomed, f"a dispatcher died while sending it, {MAX_CRASHES} times"),
                        else_=OutboxMessage.last_error,
                    ),
                    crashes=OutboxMessage.crashes + 1,
                    possible_duplicate=True,
                    locked_until=None,
                )
            )
        )
    if lost:
        log.warning("outbox: %d message(s) were being sent by a dispatcher that died; resending", lost)
    return lost


_CLAIMED_COLUMNS = (
    _table.c.id,
    _table.c.workspace_id,
    _table.c.destination_id,
    _table.c.idempotency_key,
    _table.c.payload,
    _table.c.attempts,
    _table.c.crashes,
    _table.c.possible_duplicate,
)


def _claim(ctx: AppContext, limit: int, lease: timedelta, *, unknown: bool = True) -> list[_Claimed]:
    """Claim up to `limit` due messages: `unknown` ones (crash survivors) first when asked, then
    `pending` ones; each an index range scan in due order (Core statements: this is the hot path)."""
    now = ctx.clock.now()
    claimed: list[_Claimed] = []
    with ctx.transaction() as session:
        paused = _read_pauses(ctx, session, now)
        for status in _CLAIM_FROM if unknown else (OutboxStatus.PENDING,):
            want = limit - len(claimed)
            if want <= 0:
                break
            query = (
                sa.select(_table.c.id)
                .where(_table.c.status == status, _table.c.next_attempt_at <= now)
                .order_by(_table.c.next_attempt_at)
                .limit(want)
            )
            if paused:
                query = query.where(_table.c.destination_id.not_in(paused))
            ids = list(session.scalars(dialects.skip_locked(query, session)))
            if not ids:
                continue
            rows = session.execute(
                sa.update(_table)
                .where(_table.c.id.in_(ids), _table.c.status == status)
                .values(status=OutboxStatus.SENDING, attempts=_table.c.attempts + 1, locked_until=now + lease)
                .returning(*_CLAIMED_COLUMNS)
            ).all()
            claimed.extend(_Claimed(*row) for row in rows)
    claimed.sort(key=lambda c: c.id)
    return claimed


class _RateLimitedLog:
    """At most `limit` warnings per `window` seconds in this process (a destination that refuses
    everything must not flood the log); the next window starts with how many were left out."""

    def __init__(self, limit: int = 20, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._lock = threading.Lock()
        self._start, self._count, self._dropped = 0.0, 0, 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._start >= self.window:
                if self._dropped:
                    log.warning("outbox: %d more permanent failure(s) not logged", self._dropped)
                self._start, self._count, self._dropped = now, 0, 0
            if self._count >= self.limit:
                self._dropped += 1
                return
            self._count += 1
        log.warning(message, *args)


_failures = _RateLimitedLog()


_FENCE = sa.and_(
    _table.c.id == sa.bindparam("b_id"),
    _table.c.attempts == sa.bindparam("b_attempts"),
    _table.c.status == OutboxStatus.SENDING,
)


class _ClaimKeeper:
    """One thread per context that extends the claims of messages being sent, every heartbeat:
    a slow receiver never makes another dispatcher think this one died (only a real crash opens
    the duplicate window). Extensions are fenced, so a recorded message is left alone."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.lock = threading.Lock()
        self.claims: dict[int, tuple[list[dict[str, Any]], timedelta, float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="overture-outbox-claims", daemon=True)
        self.thread.start()
        ctx.closers.append(self.stop.set)

    def hold(self, batch: Sequence[_Claimed], lease: timedelta) -> int:
        token = id(batch)
        fences = [{"b_id": c.id, "b_attempts": c.attempts} for c in batch]
        with self.lock:
            self.claims[token] = (fences, lease, time.monotonic())
        return token

    def release(self, token: int) -> None:
        with self.lock:
            self.claims.pop(token, None)

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            now = time.monotonic()
            with self.lock:
                due = [
                    (token, fences, lease)
                    for token, (fences, lease, since) in self.claims.items()
                    if now - since >= heartbeat_seconds(self.ctx.settings, lease)
                ]
            for token, fences, lease in due:
                try:
                    with self.ctx.transaction() as session:
                        session.execute(
                            sa.update(_table).where(_FENCE).values(locked_until=self.ctx.clock.now() + lease),
                            fences,
                        )
                except Exception:  # the claim may lapse; fencing keeps that safe, just log it
                    log.exception("outbox: could not extend a claim")
                with self.lock:
                    if token in self.claims:
                        self.claims[token] = (fences, lease, now)


def _keeper(ctx: AppContext) -> _ClaimKeeper:
    keeper: _ClaimKeeper = ctx.service("runtime.outbox.claim_keeper", _ClaimKeeper)
    return keeper


def _error(text: str | None) -> str:
    return (text or "unknown error")[:MAX_ERROR_CHARS]


#: Transport failures after which the receiver may have accepted the request: the request was
#: sent but its response never arrived. Failures to connect are not among them.
_AMBIGUOUS_PREFIXES = ("timeout:", "network error:", "unexpected error:")
_NOT_SENT_MARKERS = ("ConnectError", "ConnectTimeout")


def _maybe_delivered(outcome: Outcome) -> bool:
    """True for a retry whose request may have reached the receiver (timeout or connection lost
    after sending): its resend is flagged possible_duplicate like a resend after a crash. A retry
    with an HTTP status (the receiver answered and refused) is not."""
    error = outcome.error or ""
    return error.startswith(_AMBIGUOUS_PREFIXES) and not any(m in error for m in _NOT_SENT_MARKERS)


def _record(ctx: AppContext, batch: Sequence[_Claimed], outcomes: Sequence[Outcome]) -> None:
    """Write each message's outcome, fenced by its attempt number, in one transaction."""
    now = ctx.clock.now()
    sent: list[dict[str, Any]] = []
    retry: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    pause_until: dict[str, datetime] = {}
    ambiguous = 0
    for claimed, outcome in zip(batch, outcomes, strict=True):
        fence = {"b_id": claimed.id, "b_attempts": claimed.attempts}
        if outcome.status == "sent":
            sent.append(fence)
        elif outcome.status == "retry" and claimed.tries < MAX_ATTEMPTS:
            maybe = _maybe_delivered(outcome)
            ambiguous += maybe
            if outcome.retry_after is not None:
                delay = max(outcome.retry_after, 1.0)
                until = now + timedelta(seconds=delay)
                pause_until[claimed.destination_id] = max(
                    until, pause_until.get(claimed.destination_id, until)
                )
            else:
                delay = backoff_seconds(claimed.tries, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS)
            next_at, error = now + timedelta(seconds=delay), _error(outcome.error)
            retry.append({**fence, "b_next": next_at, "b_error": error, "b_maybe": maybe})
        else:
            error = _error(outcome.error)
            if outcome.status == "retry":
                error = _error(f"gave up after {claimed.tries} attempts: {outcome.error}")
            failed.append({**fence, "b_error": error})
            _failures.warning(
                "outbox: message %s to destination %s failed permanently: %s",
                claimed.idempotency_key,
                claimed.destination_id,
                error,
            )
    with ctx.transaction() as session:
        if sent:
            session.execute(
                sa.update(_table)
                .where(_FENCE)
                .values(status=_SENT, sent_at=now, locked_until=None, last_error=None),
                sent,
            )
        if retry:
            session.execute(
                sa.update(_table)
                .where(_FENCE)
                .values(
                    status=_RETRY,
                    next_attempt_at=sa.bindparam("b_next"),
                    last_error=sa.bindparam("b_error"),
                    possible_duplicate=sa.or_(
                        _table.c.possible_duplicate, sa.bindparam("b_maybe", type_=sa.Boolean)
                    ),
                    locked_until=None,
                ),
                retry,
            )
        if failed:
            session.execute(
                sa.update(_table)
                .where(_FENCE)
                .values(status=_FAILED, last_error=sa.bindparam("b_error"), locked_until=None),
                failed,
            )
        if pause_until:
            _pause(ctx, session, pause_until)
    if ambiguous:
        log.warning(
            "outbox: %d message(s) may have been delivered (the response was lost); they will be "
            "resent flagged possible_duplicate",
            ambiguous,
        )
    for destination_id, until in pause_until.items():
        log.info("outbox: destination %s asked to wait; paused until %s", destination_id, until)


def _release(ctx: AppContext, batch: Sequence[_Claimed], until: datetime) -> None:
    """Give claimed-but-unsent messages back (their destination is paused): no attempt used."""
    with ctx.transaction() as session:
        session.execute(
            sa.update(_table)
            .where(_FENCE)
            .values(
                status=sa.case((_table.c.possible_duplicate.is_(True), _LOST), else_=_RETRY),
                attempts=_table.c.attempts - 1,
                next_attempt_at=until,
                locked_until=None,
            ),
            [{"b_id": c.id, "b_attempts": c.attempts} for c in batch],
        )


def next_due(ctx: AppContext) -> datetime | None:
    """When the earliest claimable message becomes due (None: none waits): an idle dispatcher
    sleeps until then rather than a whole poll interval (a throttled or local-time send, a retry)."""
    query = sa.select(sa.func.min(_table.c.next_attempt_at)).where(_table.c.status.in_(_CLAIM_FROM))
    with ctx.engine.connect() as conn:
        due: datetime | None = conn.execute(query).scalar()  # min() keeps the column's UTC type
    return due


def dispatch_once(
    ctx: AppContext,
    *,
    limit: int = 500,
    batch_size: int = BATCH_SIZE,
    lease: timedelta = LEASE,
    sender: Sender | None = None,
) -> int:
    """Send up to `limit` due messages: claim a batch of `batch_size`, send it (per destination),
    record every outcome, repeat (the next batch is claimed while the current one is sent). Returns
    the number of messages processed (sent, failed, retried).

    Outcomes are recorded before the next batch is sent, so a crash can leave at most the one batch
    in flight delivered-but-unrecorded (plus one claimed, unsent batch, resent once, not a duplicate).
    `sender(ctx, destination, messages) -> list[Outcome]` defaults to overture.delivery's
    `send_batch`; tests may pass a fake. Safe to run in any number of threads and processes."""
    send = sender or send_batch
    recover_lost(ctx)
    keeper = _keeper(ctx)
    destinations: dict[str, Any] = {}  # read once per call, not once per batch
    prefetch = _ledger_thread(ctx)
    processed = 0
    # Crash survivors are looked for on the first claim of a call; later claims take pending.
    claimed, token = _claim_held(ctx, keeper, min(batch_size, limit), lease, True)
    upcoming: Future[tuple[list[_Claimed], int]] | None = None
    try:
        while claimed:
            processed += len(claimed)
            # Claim the next batch while this one is on the wire (a claimed, unsent batch is never a
            # duplicate: if we die it is resent once, and was not delivered before).
            if processed < limit:
                upcoming = prefetch.submit(
                    _claim_held, ctx, keeper, min(batch_size, limit - processed), lease, False
                )
            by_destination: dict[str, list[_Claimed]] = {}
            for c in claimed:
                by_destination.setdefault(c.destination_id, []).append(c)
            try:
                for destination_id, batch in by_destination.items():
                    _dispatch_batch(ctx, destinations, destination_id, batch, send)
            finally:
                keeper.release(token)
            claimed, token = upcoming.result() if upcoming is not None else ([], 0)
            upcoming = None
    finally:
        if upcoming is not None:  # an error above: give the prefetched batch back unsent
            leftover, leftover_token = upcoming.result()
            keeper.release(leftover_token)
            if leftover:
                _release(ctx, leftover, ctx.clock.now())
    return processed


def _claim_held(
    ctx: AppContext, keeper: _ClaimKeeper, limit: int, lease: timedelta, unknown: bool
) -> tuple[list[_Claimed], int]:
    """Claim a batch and put it under the keeper at once (so a prefetched batch keeps its claim too)."""
    claimed = _claim(ctx, limit, lease, unknown=unknown)
    return claimed, keeper.hold(claimed, lease) if claimed else 0


def _ledger_thread(ctx: AppContext) -> ThreadPoolExecutor:
    def build(c: AppContext) -> ThreadPoolExecutor:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="overture-outbox-ledger")
        c.closers.append(lambda: pool.shutdown(wait=False, cancel_futures=True))
        return pool

    pool: ThreadPoolExecutor = ctx.service("runtime.outbox.ledger", build)
    return pool


def _dispatch_batch(
    ctx: AppContext, destinations: dict[str, Any], destination_id: str, batch: list[_Claimed], send: Sender
) -> None:
    destination = destinations.get(destination_id)
    if destination is None:
        try:
            with ctx.transaction(write=False) as session:
                destination = get_destination(session, destination_id)
                session.expunge(destination)
        except NotFound:
            _record(ctx, batch, [Outcome.failed(m.idempotency_key, "destination not found") for m in batch])
            return
        destinations[destination_id] = destination
    paused_until = _pauses(ctx).get(destination_id)
    if paused_until is not None and paused_until > ctx.clock.now():
        _release(ctx, batch, paused_until)
        return
    wire = [
        Message(c.idempotency_key, c.payload, possible_duplicate=c.possible_duplicate, attempt=c.attempts)
        for c in batch
    ]
    try:
        outcomes = send(ctx, destination, wire)
    except Exception as exc:  # a sender bug must not strand the batch in `sending`
        log.exception("outbox: sending to destination %s raised", destination_id)
        outcomes = [Outcome.retry(m.idempotency_key, f"{type(exc).__name__}: {exc}") for m in wire]
    if len(outcomes) != len(batch):
        by_key = {o.idempotency_key: o for o in outcomes}
        outcomes = [
            by_key.get(m.idempotency_key) or Outcome.retry(m.idempotency_key, "no outcome reported")
            for m in wire
        ]
    _record(ctx, batch, outcomes)
