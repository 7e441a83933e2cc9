"""Outbox enqueue: in the caller's transaction, set-based, duplicates skipped by idempotency key."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from overture.db.context import AppContext
from overture.runtime.models import OutboxMessage, OutboxStatus
from overture.runtime.outbox import OutboxItem, enqueue, idempotency_key
from tests.conftest import WorkspaceFixture


def _items(ws: str, n: int, prefix: str) -> list[OutboxItem]:
    return [
        OutboxItem(ws, "dest-1", f"{prefix}:{i}", {"i": i}, source_kind="test", source_id=prefix)
        for i in range(n)
    ]


def test_enqueue__inserts_pending_rows__returns_count(ctx: AppContext, workspace: WorkspaceFixture) -> None:
    with ctx.transaction() as session:
        assert enqueue(session, _items(workspace.id, 5000, "a")) == 5000
    with ctx.transaction(write=False) as session:
        rows = session.execute(
            sa.select(OutboxMessage.status, sa.func.count())
            .where(OutboxMessage.source_id == "a")
            .group_by(OutboxMessage.status)
        ).all()
    assert rows == [(OutboxStatus.PENDING, 5000)]


def test_enqueue__duplicate_keys__skipped(ctx: AppContext, workspace: WorkspaceFixture) -> None:
    with ctx.transaction() as session:
        assert enqueue(session, _items(workspace.id, 10, "b")) == 10
    with ctx.transaction() as session:
        assert enqueue(session, _items(workspace.id, 15, "b")) == 5


def test_enqueue__caller_rolls_back__nothing_owed(ctx: AppContext, workspace: WorkspaceFixture) -> None:
    with pytest.raises(RuntimeError), ctx.transaction() as session:
        enqueue(session, _items(workspace.id, 3, "c"))
        raise RuntimeError("state change failed")
    with ctx.transaction(write=False) as session:
        assert session.scalar(sa.select(sa.func.count()).where(OutboxMessage.source_id == "c")) == 0


def test_idempotency_key__stable__bounded_length() -> None:
    assert idempotency_key("journey", "r1", "m1", "s1") == "journey:r1:m1:s1"
    long = idempotency_key("journey", "x" * 500)
    assert long == idempotency_key("journey", "x" * 500) and len(long) <= 300
