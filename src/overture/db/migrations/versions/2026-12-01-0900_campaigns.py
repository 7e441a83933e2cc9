"""campaigns: the registry of every campaign-like object with its type

Revision ID: campaigns
Revises: foundation
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from overture.db.base import UTCDateTime

revision = "campaigns"
down_revision = "foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_campaigns_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_campaigns_workspace_id", "campaigns", ["workspace_id"])
    # Rows that existed before the registry: from here on the surfaces' ORM hooks keep it in step.
    # A table not created yet (a fresh database migrating branch by branch) has no rows to copy.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for table, kind in (
        ("journeys", "journey"),
        ("paywall_campaigns", "paywall_campaign"),
        ("batch_campaigns", "batch_campaign"),
        ("experience_groups", "experience_group"),
    ):
        if table not in existing:
            continue
        op.execute(
            f"INSERT INTO campaigns (id, workspace_id, type, created_at) "
            f"SELECT id, workspace_id, '{kind}', created_at FROM {table}"
        )


def downgrade() -> None:
    op.drop_table("campaigns")
