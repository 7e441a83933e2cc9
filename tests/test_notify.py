"""Change notifications reach other processes' listeners on PostgreSQL, and stop promptly."""

from __future__ import annotations

import os
import time

import pytest
import sqlalchemy as sa

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
    stop = bus.start_listening(engine)
    stop()
