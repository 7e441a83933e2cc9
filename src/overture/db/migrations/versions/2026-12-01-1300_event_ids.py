"""event_ids: one table of event ids already stored, for every events endpoint (it was experiences' own)

Revision ID: event_ids
Revises: data (depends on experiences, whose experience_event_ids rows move here)
Create Date: 2026-12-01 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from overture.db.base import UTCDateTime

revision = "event_ids"
down_revision = "data"
branch_labels = None
depends_on = ("experiences",)


def _create(table: str) -> None:
    op.create_table(
        table,
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "event_id", name=f"pk_{table}"),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=f"fk_{table}_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
    )


def _move(source: str, target: str) -> None:
    op.execute(
        f"INSERT INTO {target} (workspace_id, event_id, created_at) "
        f"SELECT workspace_id, event_id, created_at FROM {source}"
    )
    op.drop_table(source)


def upgrade() -> None:
    _create("event_ids")
    _move("experience_event_ids", "event_ids")


def downgrade() -> None:
    _create("experience_event_ids")
    _move("event_ids", "experience_event_ids")
