"""Read side of the outbox ledger for people: messages by state, recent counts, failing destinations.

(The dispatcher in `outbox.py` writes the ledger; this module only reads it, in the session's
workspace, so a dashboard or a report never touches the table itself.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from overture.db.dialects import rowcount
from overture.db.session import Session
from overture.runtime.models import OutboxMessage, OutboxStatus

STATES = (
    OutboxStatus.PENDING,
    OutboxStatus.SENDING,
    OutboxStatus.UNKNOWN,
    OutboxStatus.SENT,
    OutboxStatus.FAILED,
)
MAX_LIST = 500


@dataclass
class DeliverySummary:
    #: Messages by ledger state (created since `since`).
    by_status: dict[str, int] = field(default_factory=dict)
    #: Failed messages per destination id (created since `since`), most first.
    failed_by_destination: dict[str, int] = field(default_factory=dict)
    possible_duplicates: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


def summary(session: Session, since: datetime) -> DeliverySummary:
    """Counts of the workspace's messages created at or after `since` (one grouped query)."""
    out = DeliverySummary(by_status=dict.fromkeys(STATES, 0))
    rows = session.execute(
        sa.select(
            OutboxMessage.destination_id,
            OutboxMessage.status,
            OutboxMessage.possible_duplicate,
            sa.func.count(),
        )
        .where(OutboxMessage.workspace_id == session.workspace_id, OutboxMessage.created_at >= since)
        .group_by(OutboxMessage.destination_id, OutboxMessage.status, OutboxMessage.possible_duplicate)
    )
    for destination_id, status, duplicate, count in rows:
        out.by_status[status] = out.by_status.get(status, 0) + count
        if duplicate:
            out.possible_duplicates += count
        if status == OutboxStatus.FAILED:
            out.failed_by_destination[destination_id] = (
                out.failed_by_destination.get(destination_id, 0) + count
            )
    out.failed_by_destination = dict(sorted(out.failed_by_destination.items(), key=lambda kv: -kv[1]))
    return out


def list_messages(
    session: Session,
    *,
    status: str | None = None,
    possible_duplicate: bool | None = None,
    destination_id: str | None = None,
    source_kind: str | None = None,
    source_id: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[OutboxMessage]:
    """The workspace's newest messages (newest first), filtered by state, possible duplicates,
    destination and the object that caused them; `before_id` pages on (keyset, by id)."""
    query = sa.select(OutboxMessage).where(OutboxMessage.workspace_id == session.workspace_id)
    if status is not None:
        query = query.where(OutboxMessage.status == status)
    if possible_duplicate is not None:
        query = query.where(OutboxMessage.possible_duplicate.is_(possible_duplicate))
    if destination_id is not None:
        query = query.where(OutboxMessage.destination_id == destination_id)
    if source_kind is not None:
        query = query.where(OutboxMessage.source_kind == source_kind)
    if source_id is not None:
        query = query.where(OutboxMessage.source_id == source_id)
    if before_id is not None:
        query = query.where(OutboxMessage.id < before_id)
    query = query.order_by(OutboxMessage.id.desc()).limit(max(1, min(limit, MAX_LIST)))
    return list(session.scalars(query))


#: Messages not yet handed to a receiver: waiting, or left `unknown` by a dispatcher that died.
OWED = (OutboxStatus.PENDING, OutboxStatus.UNKNOWN)
CANCELLED = "cancelled: "


def cancel_owed(session: Session, *, source_kind: str, source_ids: Any, reason: str) -> int:
    """Give up the messages still owed for these source objects (`source_ids`: ids, or a SELECT of
    them): `failed`, `last_error` "cancelled: <reason>", in the caller's transaction. A message in
    flight (`sending`) finishes its attempt. Returns how many were cancelled."""
    result = session.execute(
        sa.update(OutboxMessage)
        .where(
            OutboxMessage.workspace_id == session.workspace_id,
            OutboxMessage.source_kind == source_kind,
            OutboxMessage.source_id.in_(source_ids),
            OutboxMessage.status.in_(OWED),
        )
        .values(status=OutboxStatus.FAILED, last_error=CANCELLED + reason, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)
