"""Change notifications reach other processes' listeners on PostgreSQL, and stop promptly."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from overture.db.notify import PG_CHANNEL, bus

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


def test_listener__sqlite__no_thread() -> None:
    engine = sa.create_engine("sqlite://")
    before = set(threading.enumerate())
    stop = bus.start_listening(engine)
    try:
        started = set(threading.enumerate()) - before
        assert not [t for t in started if t.name == "overture-notify"], started
    finally:
        stop()
        stop()  # a no-op, safe to call twice
        engine.dispose()


def test_publish_on_commit__sqlite__delivered_in_process_after_commit_only() -> None:
    engine = sa.create_engine("sqlite://")
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
    finally:
        engine.dispose()
