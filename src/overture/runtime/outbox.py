"""Transactional outbox: messages owed to destinations, written with the state change that causes
them, then sent by a dispatcher that records every outcome in the ledger.

Ledger states (column `status`)::

    pending ──claim──> sending ──sent──> sent                      (terminal)
       ^                  │ ├──failed (4xx, bad config, out of attempts)──> failed   (terminal)
       │                  │ └──retry (429, 5xx, network; Retry-After honoured)──> pending
       │                  └──claim lease expired (dispatcher died)──> unknown
       └──────────── unknown is claimed again and resent with possible_duplicate = true

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from overture.runtime.clock import ASAP, now_for
from overture.runtime.models import OutboxMessage, OutboxStatus

__all__ = ["OutboxItem", "enqueue", "idempotency_key"]

#: Rows per INSERT statement when enqueueing (multi-row VALUES; both dialects).
ENQUEUE_CHUNK = 2000


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


def idempotency_key(*parts: object) -> str:
    """A stable key from what identifies a message, e.g. ("journey", run_id, member_id, step_id).
    Readable when short; hashed (sha256) when the parts would exceed the column."""
    raw = ":".join(str(p) for p in parts)
    if len(raw) <= 200:
        return raw
    return f"{str(parts[0])[:40]}:{hashlib.sha256(raw.encode()).hexdigest()}"


def enqueue(session: Session, items: Iterable[OutboxItem]) -> int:
    """Insert messages in the CALLER's transaction (they exist only if it commits), set-based in
    multi-row statements. A message whose idempotency key is already in the ledger is skipped
    (ON CONFLICT DO NOTHING), so re-running a step never owes a message twice. Returns the number
    of rows inserted."""
    now = now_for(session)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(OutboxMessage).on_conflict_do_nothing(index_elements=["idempotency_key"])
    inserted = 0
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(
            {
                "workspace_id": item.workspace_id,
                "destination_id": item.destination_id,
                "idempotency_key": item.idempotency_key,
                "payload": item.payload,
                "source_kind": item.source_kind,
                "source_id": item.source_id,
                "status": OutboxStatus.PENDING,
                "attempts": 0,
                "possible_duplicate": False,
                "next_attempt_at": ASAP,
                "created_at": now,
            }
        )
        if len(chunk) >= ENQUEUE_CHUNK:
            inserted += _insert_chunk(session, stmt, chunk)
            chunk = []
    if chunk:
        inserted += _insert_chunk(session, stmt, chunk)
    if inserted:
        session.info["overture_outbox_enqueued"] = True
    return inserted


def _insert_chunk(session: Session, stmt: Any, rows: list[dict[str, Any]]) -> int:
    # RETURNING over executemany ("insertmanyvalues") counts exactly the rows that went in.
    result = session.execute(stmt.returning(OutboxMessage.id), rows)
    return len(result.all())
