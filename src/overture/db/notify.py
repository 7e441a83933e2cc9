"""Change notifications between processes: caches (API keys, decision tables) subscribe to a
channel and drop what they hold when it fires. In-process always; across processes on PostgreSQL
through LISTEN/NOTIFY, delivered by one background listener thread per engine; on SQLite (several
`overture serve --workers` processes on one file) through the `change_log` table, which the same
thread reads every `SQLITE_POLL_SECONDS`."""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from overture.db import dialects
from overture.db.base import UTCDateTime

log = logging.getLogger(__name__)

PG_CHANNEL = "overture_changes"
#: How often a process sharing a SQLite file looks for the others' changes (their delay at most).
SQLITE_POLL_SECONDS = 0.5
#: Rows older than this are deleted by the readers: every running process has read them long before.
CHANGE_LOG_KEEP = timedelta(minutes=10)

CHANGE_LOG = sa.Table(
    "change_log",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message", sa.String(300), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)
Listener = Callable[[str], None]  # receives the payload (usually a workspace id)


class ChangeBus:
    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._lock = threading.Lock()
        #: id(engine) -> (callers listening, the function that stops its relay thread)
        self._relays: dict[int, tuple[int, Callable[[], None] | None]] = {}

    def subscribe(self, topic: str, listener: Listener) -> None:
        with self._lock:
            self._listeners[topic].append(listener)

    def deliver(self, topic: str, payload: str) -> None:
        with self._lock:
            listeners = list(self._listeners.get(topic, ()))
        for listener in listeners:
            try:
                listener(payload)
            except Exception:  # a faulty cache must not break the writer
                log.exception("change listener for %s failed", topic)

    def publish_on_commit(self, session: Session, topic: str, payload: str) -> None:
        """Announce a change when `session` commits: NOTIFY other processes (PostgreSQL delivers it
        at commit) and, after commit, tell this process's listeners. Nothing if it rolls back."""
        changes = session.info.setdefault("overture_changes", set())
        if (topic, payload) in changes:  # once per transaction is enough
            return
        message = f"{topic}:{payload}"
        if dialects.has_notify(session):
            dialects.notify(session, PG_CHANNEL, message)
        else:  # SQLite: the other processes' relays read it once this transaction commits
            session.execute(CHANGE_LOG.insert().values(message=message, created_at=datetime.now(UTC)))
        changes.add((topic, payload))

    def start_listening(self, engine: sa.Engine) -> Callable[[], None]:
        """Relay other processes' NOTIFYs on this engine's database to local listeners, in one
        background thread per engine however many callers ask (the API and an embedded runtime
        share it). Returns the function that releases it."""
        with self._lock:
            count, stopper = self._relays.get(id(engine), (0, None))
            if stopper is None:
                stopper = self._start_relay(engine)
            self._relays[id(engine)] = (count + 1, stopper)

        def release() -> None:
            with self._lock:
                count, current = self._relays.pop(id(engine), (0, None))
                if count > 1:
                    self._relays[id(engine)] = (count - 1, current)
                    return
            if current is not None:
                current()

        return release

    def _start_relay(self, engine: sa.Engine) -> Callable[[], None]:
        stop = threading.Event()
        wake_r, wake_w = os.pipe()  # lets stop() interrupt the select at once
        target: Callable[..., None]
        if dialects.has_notify(engine):
            target, args = self._listen, (engine, stop, wake_r)
        else:
            target, args = self._poll, (engine, stop, _last_change(engine))
        thread = threading.Thread(target=target, args=args, name="overture-notify", daemon=True)
        thread.start()

        def stopper() -> None:
            stop.set()
            os.write(wake_w, b"x")
            thread.join(timeout=5)
            os.close(wake_r)
            os.close(wake_w)

        return stopper

    def _listen(self, engine: sa.Engine, stop: threading.Event, wake: int) -> None:
        while not stop.is_set():
            try:
                raw = engine.raw_connection()
                try:
                    driver: Any = raw.driver_connection
                    driver.autocommit = True
                    driver.execute(f"LISTEN {PG_CHANNEL}")
                    while not stop.is_set():
                        readable, _, _ = select.select([driver, wake], [], [], 5.0)
                        if driver not in readable:
                            continue
                        for note in driver.notifies(timeout=0):
                            topic, _, payload = note.payload.partition(":")
                            self.deliver(topic, payload)
                finally:
                    raw.invalidate()  # never hand a LISTENing connection back to the pool
            except Exception:
                if stop.is_set():
                    return
                log.warning("change listener lost its connection; reconnecting", exc_info=True)
                stop.wait(1.0)

    def _poll(self, engine: sa.Engine, stop: threading.Event, last: int) -> None:
        """SQLite: deliver the change log's new rows (this process's own too: a cache dropped twice
        only compiles once more), and now and then delete the old ones."""
        pruned_at = 0.0
        while not stop.wait(SQLITE_POLL_SECONDS):
            try:
                with engine.connect() as conn:
                    rows = conn.execute(
                        sa.select(CHANGE_LOG.c.id, CHANGE_LOG.c.message)
                        .where(CHANGE_LOG.c.id > last)
                        .order_by(CHANGE_LOG.c.id)
                    ).all()
                for row_id, message in rows:
                    last = row_id
                    topic, _, payload = message.partition(":")
                    self.deliver(topic, payload)
                if time.monotonic() - pruned_at > CHANGE_LOG_KEEP.total_seconds() / 10:
                    pruned_at = time.monotonic()
                    with engine.begin() as conn:
                        cutoff = datetime.now(UTC) - CHANGE_LOG_KEEP
                        conn.execute(CHANGE_LOG.delete().where(CHANGE_LOG.c.created_at < cutoff))
            except Exception:
                log.warning("reading the change log failed; retrying", exc_info=True)


def _last_change(engine: sa.Engine) -> int:
    """Where this process starts reading the change log: what came before is already in its state."""
    try:
        with engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.coalesce(sa.func.max(CHANGE_LOG.c.id), 0))) or 0)
    except sa.exc.OperationalError:  # not migrated yet: everything logged later is new
        return 0


bus = ChangeBus()


@event.listens_for(Session, "after_commit")
def _deliver_after_commit(session: Session) -> None:
    changes = session.info.pop("overture_changes", None)
    for topic, payload in sorted(changes or ()):
        bus.deliver(topic, payload)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop("overture_changes", None)
