"""Entity models: a table, a SELECT, or an Overture-managed table of one kind of entity in the source."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from overture.db.base import Base, Timestamped, WorkspaceScoped, new_id

#: How a model finds its rows: a user's table/view, a user's SELECT, or a table Overture created.
MODEL_KINDS = ("table", "sql", "managed")


class EntityModel(WorkspaceScoped, Timestamped, Base):
    __tablename__ = "entity_models"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    primary_key: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    #: `name` or `schema.name` for kinds table and managed; None for sql.
    table_name: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    sql: Mapped[str | None] = mapped_column(sa.Text, nullable=True)

    @property
    def managed(self) -> bool:
        return self.kind == "managed"


class EventId(Base):
    """Event ids already stored, per workspace, so a retried batch is stored (and counted) once: one
    claim serves every events endpoint (`overture.data.events.first_seen`)."""

    __tablename__ = "event_ids"
    # Retention deletes ids past the idempotency window (OVERTURE_RETENTION_EVENT_IDS_DAYS) by age.
    __table_args__ = (sa.Index("ix_event_ids_created_at", "created_at"),)

    workspace_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(nullable=False)
