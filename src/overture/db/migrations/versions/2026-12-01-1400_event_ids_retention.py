"""event_ids_retention: an index on event_ids.created_at, so retention deletes ids past the
idempotency window off an index range scan

Revision ID: event_ids_retention
Revises: event_ids
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

from alembic import op

revision = "event_ids_retention"
down_revision = "event_ids"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_event_ids_created_at", "event_ids", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_event_ids_created_at", table_name="event_ids")
