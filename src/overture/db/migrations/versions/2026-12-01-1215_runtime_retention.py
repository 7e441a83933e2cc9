"""runtime: destination pauses shared by every dispatcher; an index for pruning finished jobs

Revision ID: runtime_retention
Revises: runtime
Create Date: 2026-12-01 12:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from overture.db.base import UTCDateTime

revision = "runtime_retention"
down_revision = "runtime"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_pauses",
        sa.Column("destination_id", sa.String(36), nullable=False),
        sa.Column("paused_until", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("destination_id", name="pk_outbox_pauses"),
    )
    op.create_index("ix_jobs_finished", "jobs", ["status", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_finished", table_name="jobs")
    op.drop_table("outbox_pauses")
