"""Outbox dispatcher: outcomes per message, Retry-After, crash recovery, fencing; then the real
webhook destination against a local receiver."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from overture.clock import FrozenClock
from overture.db.context import AppContext
from overture.delivery.messages import Message, Outcome
from overture.delivery.models import Destination
from overture.runtime import outbox
from overture.runtime.models import OutboxMessage, OutboxStatus
from overture.runtime.outbox import OutboxItem, dispatch_once, enqueue
from tests.conftest import WorkspaceFixture
from tests.runtime.receiver import ReceiverProcess


class FakeSender:
    """Answers per message from a script keyed by idempotency key; records what it was given."""

    def __init__(self) -> None:
        self.script: dict[str, list[Outcome]] = {}
        self.seen: list[Message] = []
        self.raise_for: set[str] = set()

    def __call__(self, ctx: AppContext, destination: Any, messages: Sequence[Message]) -> list[Outcome]:
        self.seen.extend(messages)
        if any(m.idempotency_key in self.raise_for for m in messages):
            raise RuntimeError("adapter bug")
        out = []
        for m in messages:
            queue = self.script.get(m.idempotency_key)
            out.append(queue.pop(0) if queue else Outcome.sent(m.idempotency_key))
        return out


def _settle(ctx: AppContext) -> None:
    """Tests share a database: messages another test (of any module) left owed are settled, so a
    `dispatch_once` here sends this test's messages only."""
    with ctx.transaction() as session:
        session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.status.not_in(OutboxStatus.TERMINAL))
            .values(status=OutboxStatus.FAILED, last_error="test cleanup")
        )
    ctx.services.pop("runtime.outbox.pauses", None)


@pytest.fixture(autouse=True)
def _isolated(ctx: AppContext, frozen_clock: FrozenClock) -> Iterator[None]:
    _settle(ctx)
    yield
    _settle(ctx)


def _destination(ctx: AppContext, ws: str, url: str = "http://127.0.0.1:9/none") -> str:
    with ctx.transaction() as session:
        dest = Destination(
            workspace_id=ws, name=f"d-{uuid.uuid4().hex[:8]}", type="webhook", config={"url": url}
        )
        session.add(dest)
        session.flush()
        return dest.id


def _owe(ctx: AppContext, ws: str, dest: str, n: int, payload: dict[str, Any] | None = None) -> list[str]:
    prefix = uuid.uuid4().hex[:8]
    keys = [f"{prefix}:{i}" for i in range(n)]
    with ctx.transaction() as session:
        enqueue(
            session,
            [OutboxItem(ws, dest, k, payload or {"i": i}, "test", prefix) for i, k in enumerate(keys)],
        )
    return keys


def _rows(ctx: AppContext, keys: list[str]) -> dict[str, OutboxMessage]:
    with ctx.transaction(write=False) as session:
        rows = session.scalars(sa.select(OutboxMessage).where(OutboxMessage.idempotency_key.in_(keys))).all()
    return {r.idempotency_key: r for r in rows}


def test_dispatch__all_accepted__sent_with_keys(ctx: AppContext, workspace: WorkspaceFixture) -> None:
    sender = FakeSender()
    keys = _owe(ctx, workspace.id, _destination(ctx, workspace.id), 250)
    assert dispatch_once(ctx, sender=sender, batch_size=100) == 250
    assert sorted(m.idempotency_key for m in sender.seen) == sorted(keys)
    assert all(not m.possible_duplicate and m.attempt == 1 for m in sender.seen)
    rows = _rows(ctx, keys)
    assert {r.status for r in rows.values()} == {OutboxStatus.SENT}
    assert all(r.sent_at is not None and r.locked_until is None for r in rows.values())
    assert dispatch_once(ctx, sender=sender) == 0


def test_dispatch__one_permanent_failure__others_sent(ctx: AppContext, workspace: WorkspaceFixture) -> None:
    sender = FakeSender()
    keys = _owe(ctx, workspace.id, _destination(ctx, workspace.id), 5)
    sender.script[keys[2]] = [Outcome.failed(keys[2], "HTTP 400: bad address")]
    dispatch_once(ctx, sender=sender)
    rows = _rows(ctx, keys)
    assert rows[keys[2]].status == OutboxStatus.FAILED and "HTTP 400" in (rows[keys[2]].last_error or "")
    assert [rows[k].status for k in keys if k != keys[2]] == [OutboxStatus.SENT] * 4


def test_dispatch__retryable__backoff_then_sent(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture
) -> None:
    sender = FakeSender()
    keys = _owe(ctx, workspace.id, _destination(ctx, workspace.id), 2)
    sender.script[keys[0]] = [Outcome.retry(keys[0], "HTTP 503")]
    dispatch_once(ctx, sender=sender)
    row = _rows(ctx, keys)[keys[0]]
    assert row.status == OutboxStatus.PENDING and row.attempts == 1 and row.last_error == "HTTP 503"
    wait = (row.next_attempt_at - frozen_clock.now()).total_seconds()
    assert 2.5 <= wait <= 5.0
    assert dispatch_once(ctx, sender=sender) == 0  # not due yet
    frozen_clock.advance(seconds=5)
    assert dispatch_once(ctx, sender=sender) == 1
    row = _rows(ctx, keys)[keys[0]]
    assert row.status == OutboxStatus.SENT and row.attempts == 2 and sender.seen[-1].attempt == 2


def test_dispatch__retry_after__honoured_and_destination_paused(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture
) -> None:
    slow, other = _destination(ctx, workspace.id), _destination(ctx, workspace.id)
    keys = _owe(ctx, workspace.id, slow, 30)
    other_keys = _owe(ctx, workspace.id, other, 3)

    class RateLimited(FakeSender):
        """The slow destination answers 429 Retry-After: 120 to the first message it sees."""

        limited: str | None = None

        def __call__(self, ctx: AppContext, destination: Any, messages: Sequence[Message]) -> list[Outcome]:
            if destination.id == slow and self.limited is None:
                self.limited = messages[0].idempotency_key
                self.script[self.limited] = [Outcome.retry(self.limited, "HTTP 429", retry_after=120)]
            return super().__call__(ctx, destination, messages)

    sender = RateLimited()
    dispatch_once(ctx, sender=sender, batch_size=10)
    assert sender.limited is not None
    rows = _rows(ctx, keys + other_keys)
    assert rows[sender.limited].next_attempt_at == frozen_clock.now() + timedelta(seconds=120)
    assert all(rows[k].status == OutboxStatus.SENT for k in other_keys)
    # Only the batch that met the 429 went out; the rest went back unsent, without using an attempt.
    rest = [rows[k] for k in keys if k != sender.limited]
    held = [r for r in rest if r.status == OutboxStatus.PENDING]
    assert all(r.status == OutboxStatus.SENT for r in rest if r not in held)
    assert len(held) >= 20 and all(r.attempts == 0 for r in held)
    frozen_clock.advance(seconds=60)
    assert dispatch_once(ctx, sender=sender) == 0
    frozen_clock.advance(seconds=61)
    assert dispatch_once(ctx, sender=sender) == len(held) + 1
    assert {r.status for r in _rows(ctx, keys).values()} == {OutboxStatus.SENT}


@pytest.mark.parametrize(
    ("error", "flagged"),
    [
        ("timeout: ReadTimeout", True),
        ("network error: RemoteProtocolError: Server disconnected without sending a response.", True),
        ("timeout: ConnectTimeout", False),
        ("network error: ConnectError: [Errno 111] Connection refused", False),
        ("HTTP 503: busy", False),
    ],
)
def test_dispatch__response_lost__resend_flagged_possible_duplicate(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture, error: str, flagged: bool
) -> None:
    sender = FakeSender()
    [key] = _owe(ctx, workspace.id, _destination(ctx, workspace.id), 1)
    sender.script[key] = [Outcome.retry(key, error)]
    dispatch_once(ctx, sender=sender)
    frozen_clock.advance(minutes=1)
    dispatch_once(ctx, sender=sender)
    assert [m.possible_duplicate for m in sender.seen] == [False, flagged]
    assert _rows(ctx, [key])[key].status == OutboxStatus.SENT


def test_dispatch__retries_exhausted__failed_with_error(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture
) -> None:
    sender = FakeSender()
    [key] = _owe(ctx, workspace.id, _destination(ctx, workspace.id), 1)
    sender.script[key] = [Outcome.retry(key, "HTTP 500")] * outbox.MAX_ATTEMPTS
    for _ in range(outbox.MAX_ATTEMPTS):
        assert dispatch_once(ctx, sender=sender) == 1
        frozen_clock.advance(hours=2)
    row = _rows(ctx, [key])[key]
    assert row.status == OutboxStatus.FAILED and row.attempts == outbox.MAX_ATTEMPTS
    assert "gave up after 12 attempts: HTTP 500" in (row.last_error or "")


def test_dispatch__sender_raises__batch_retried_not_stranded(
    ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    sender = FakeSender()
    keys = _owe(ctx, workspace.id, _destination(ctx, workspace.id), 3)
    sender.raise_for.add(keys[1])
    dispatch_once(ctx, sender=sender)
    assert {r.status for r in _rows(ctx, keys).values()} == {OutboxStatus.PENDING}


def test_dispatch__unknown_destination__failed(ctx: AppContext, workspace: WorkspaceFixture) -> None:
    keys = _owe(ctx, workspace.id, str(uuid.uuid4()), 2)
    dispatch_once(ctx, sender=FakeSender())
    rows = _rows(ctx, keys)
    assert {r.status for r in rows.values()} == {OutboxStatus.FAILED}
    assert rows[keys[0]].last_error == "destination not found"


def test_crash_while_sending__unknown__resent_flagged_possible_duplicate(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture
) -> None:
    # Given a dispatcher that claimed messages and died before recording (claim, no record),
    keys = _owe(ctx, workspace.id, _destination(ctx, workspace.id), 4)
    claimed = outbox._claim(ctx, 500, outbox.LEASE)
    assert {c.idempotency_key for c in claimed} >= set(keys)
    assert {r.status for r in _rows(ctx, keys).values()} == {OutboxStatus.SENDING}
    sender = FakeSender()
    # While the claim is live nobody else sends them.
    assert dispatch_once(ctx, sender=sender) == 0
    # When the lease expires they become unknown and are resent flagged possible_duplicate.
    frozen_clock.advance(outbox.LEASE + timedelta(seconds=1))
    assert outbox.recover_lost(ctx) >= 4
    assert {r.status for r in _rows(ctx, keys).values()} == {OutboxStatus.UNKNOWN}
    dispatch_once(ctx, sender=sender)
    assert {m.idempotency_key for m in sender.seen} == set(keys)
    assert all(m.possible_duplicate and m.attempt == 2 for m in sender.seen)
    rows = _rows(ctx, keys)
    assert all(r.status == OutboxStatus.SENT and r.possible_duplicate for r in rows.values())
    # The dead dispatcher's late outcome (attempt 1) cannot overwrite the ledger.
    stale = [c for c in claimed if c.idempotency_key in keys]
    outbox._record(ctx, stale, [Outcome.failed(c.idempotency_key, "stale") for c in stale])
    assert {r.status for r in _rows(ctx, keys).values()} == {OutboxStatus.SENT}


# -- the real webhook destination ------------------------------------------------------------------


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    proc = ReceiverProcess(tmp_path / "received.log")
    yield proc
    proc.stop()


def test_webhook_end_to_end__statuses_per_message(
    ctx: AppContext, frozen_clock: FrozenClock, workspace: WorkspaceFixture, receiver: ReceiverProcess
) -> None:
    dest = _destination(ctx, workspace.id, receiver.url)
    ok = _owe(ctx, workspace.id, dest, 50)
    [bad] = _owe(ctx, workspace.id, dest, 1, {"_status": 400})
    [flaky] = _owe(ctx, workspace.id, dest, 1, {"_status": 503, "_times": 1})
    [limited] = _owe(ctx, workspace.id, dest, 1, {"_status": 429, "_times": 1, "_retry_after": 30})
    dispatch_once(ctx)
    rows = _rows(ctx, [*ok, bad, flaky, limited])
    assert all(rows[k].status == OutboxStatus.SENT for k in ok)
    assert rows[bad].status == OutboxStatus.FAILED and "400" in (rows[bad].last_error or "")
    assert rows[flaky].status == OutboxStatus.PENDING
    assert rows[limited].next_attempt_at == frozen_clock.now() + timedelta(seconds=30)
    frozen_clock.advance(seconds=31)
    dispatch_once(ctx)
    rows = _rows(ctx, [flaky, limited])
    assert rows[flaky].status == OutboxStatus.SENT and rows[limited].status == OutboxStatus.SENT
    received = receiver.records()
    assert sorted(k for k, _, s in received if s == 200) == sorted([*ok, flaky, limited])
    assert all(not dup for _, dup, _ in received)
