"""Read side of the outbox ledger for people: messages by state, recent counts, failing destinations.

(The dispatcher in `outbox.py` writes the ledger; this module only reads it, in the session's
workspace, so a dashboard or a report never touches the table itself.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

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
    limit: int = 100,
) -> list[OutboxMessage]:
    """The workspace's newest messages, optionally of one state or only the possible duplicates."""
    query = sa.select(OutboxMessage).where(OutboxMessage.workspace_id == session.workspace_id)
    if status is not None:
        query = query.where(OutboxMessage.status == status)
    if possible_duplicate is not None:
        query = query.where(OutboxMessage.possible_duplicate.is_(possible_duplicate))
    query = query.order_by(OutboxMessage.id.desc()).limit(max(1, min(limit, MAX_LIST)))
    return list(session.scalars(query))
