"""The destinations table: where a workspace's messages and files go."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from overture.db.base import Base, Timestamped, WorkspaceScoped, new_id
from overture.db.keyring import EncryptedJSON


class Destination(WorkspaceScoped, Timestamped, Base):
    """A configured target of one type (webhook, smtp, file, log). `config` holds the type's settings
    INCLUDING secrets (provider credentials too), so it is stored encrypted (`EncryptedJSON`); only
    `overture.delivery.redaction.redact` output ever leaves the process.

    Deleting is soft (`deleted_at`): outbox rows and journeys keep referring to the id, and a message
    for a deleted destination fails cleanly instead of breaking a foreign key."""

    __tablename__ = "destinations"
    __table_args__ = (
        sa.Index(
            "uq_destinations_workspace_id_name",
            "workspace_id",
            "name",
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    type: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON(), nullable=False, default=dict)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)
