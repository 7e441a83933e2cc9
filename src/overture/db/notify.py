"""Change notifications between processes: caches (API keys, decision tables) subscribe to a
channel and drop what they hold when it fires. In-process always; across processes on PostgreSQL
through LISTEN/NOTIFY, delivered by one background listener thread per engine."""

from __future__ import annotations

import logging
import select
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

PG_CHANNEL = "overture_changes"
Listener = Callable[[str], None]  # receives the payload (usually a workspace id)


class ChangeBus:
    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._lock = threading.Lock()
        self._engine: sa.Engine | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.select(sa.func.pg_notify(PG_CHANNEL, f"{topic}:{payload}")))
        session.info.setdefault("overture_changes", set()).add((topic, payload))

    def start_listening(self, engine: sa.Engine) -> None:
        if engine.dialect.name != "postgresql" or self._thread is not None:
            return
        self._engine = engine
        self._thread = threading.Thread(target=self._listen, name="overture-notify", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _listen(self) -> None:
        assert self._engine is not None
        while not self._stop.is_set():
            try:
                raw = self._engine.raw_connection()
                try:
                    driver: Any = raw.driver_connection
                    driver.autocommit = True
                    driver.execute(f"LISTEN {PG_CHANNEL}")
                    while not self._stop.is_set():
                        if select.select([driver], [], [], 1.0) == ([], [], []):
                            continue
                        for note in driver.notifies(timeout=0):
                            topic, _, payload = note.payload.partition(":")
                            self.deliver(topic, payload)
                finally:
                    raw.close()
            except Exception:
                log.exception("change listener lost its connection; reconnecting")
                self._stop.wait(1.0)


bus = ChangeBus()


@event.listens_for(Session, "after_commit")
def _deliver_after_commit(session: Session) -> None:
    changes = session.info.pop("overture_changes", None)
    for topic, payload in sorted(changes or ()):
        bus.deliver(topic, payload)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop("overture_changes", None)
