"""The change notice experience writes publish, so candidate caches drop their tables everywhere."""

from __future__ import annotations

from overture.db.notify import bus
from overture.db.session import Session

__all__ = ["TOPIC", "changed"]

#: The change-bus topic candidate caches listen on (payload: workspace id).
TOPIC = "experiences"


def changed(session: Session) -> None:
    """Candidate caches of this workspace drop their tables when this transaction commits (in this
    process at once, in other processes through PostgreSQL NOTIFY)."""
    bus.publish_on_commit(session, TOPIC, session.workspace_id)
