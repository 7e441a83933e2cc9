"""Change notifications reach other processes' listeners (PostgreSQL NOTIFY, SQLite's change_log
relay), and their threads stop promptly."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from overture.db.notify import CHANGE_LOG, PG_CHANNEL, SQLITE_POLL_SECONDS, bus

PG_URL = os.environ.get("OVERTURE_TEST_POSTGRES_URL")


@pytest.mark.skipif(not PG_URL, reason="OVERTURE_TEST_POSTGRES_URL not set")
def test_listener__notify_from_another_connection__delivered_locally() -> None:
    engine = sa.create_engine(PG_URL or "")
    received: list[str] = []
    bus.subscribe("test-topic", received.append)
    stop = bus.start_listening(engine)
    try:
        deadline = time.monotonic() + 10
        # Another connection (as another process would) notifies until the listener is up and hears it.
        while not received and time.monotonic() < deadline:
            with engine.begin() as conn:
                conn.execute(sa.select(sa.func.pg_notify(PG_CHANNEL, "test-topic:ws-1")))
            time.sleep(0.1)
        assert "ws-1" in received
    finally:
        started = time.monotonic()
        stop()
        assert time.monotonic() - started < 1.0
        engine.dispose()


def test_relay__sqlite__another_engines_change_delivered__thread_stops(tmp_path: Path) -> None:
    """Processes sharing a SQLite file hear each other through the change_log table (two engines on
    one file stand for two processes); releasing the relay stops its thread."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    listening, writing = sa.create_engine(url), sa.create_engine(url)
    CHANGE_LOG.metadata.create_all(listening)
    topic = f"test-{uuid.uuid4().hex[:8]}"
    received: list[str] = []
    bus.subscribe(topic, received.append)
    stop = bus.start_listening(listening)
    relay = [t for t in threading.enumerate() if t.name == "overture-notify"]
    try:
        assert relay, "no relay thread on SQLite"
        with Session(writing) as session:
            bus.publish_on_commit(session, topic, "ws-other")
            session.commit()
        received.clear()  # this process's own delivery after commit; the relay's comes next
        deadline = time.monotonic() + 2 + SQLITE_POLL_SECONDS
        while "ws-other" not in received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received == ["ws-other"]
    finally:
        stop()
        stop()  # a no-op, safe to call twice
        assert not any(t.is_alive() for t in relay)
        listening.dispose()
        writing.dispose()


def test_publish_on_commit__sqlite__delivered_in_process_after_commit_only() -> None:
    engine = sa.create_engine("sqlite://")
    CHANGE_LOG.metadata.create_all(engine)
    topic = f"test-{uuid.uuid4().hex[:8]}"
    received: list[str] = []
    bus.subscribe(topic, received.append)
    try:
        with Session(engine) as session:
            session.execute(sa.text("SELECT 1"))  # a unit of work that did something, as a writer has
            bus.publish_on_commit(session, topic, "ws-rolled-back")
            session.rollback()
            assert received == []
            session.execute(sa.text("SELECT 1"))
            bus.publish_on_commit(session, topic, "ws-2")
            bus.publish_on_commit(session, topic, "ws-1")
            bus.publish_on_commit(session, topic, "ws-1")  # one notification per (topic, payload)
            assert received == []  # nothing before the commit
            session.commit()
        assert received == ["ws-1", "ws-2"]
        # Other processes read the same two (and not the rolled-back one) from the change log.
        with engine.connect() as conn:
            logged = sorted(conn.scalars(sa.select(CHANGE_LOG.c.message)))
        assert logged == [f"{topic}:ws-1", f"{topic}:ws-2"]
    finally:
        engine.dispose()
