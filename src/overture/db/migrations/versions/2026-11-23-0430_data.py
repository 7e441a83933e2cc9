"""data: entity models (the profile data itself lives in the data source, not here)

Revision ID: data
Revises: foundation
Create Date: 2026-11-23 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from overture.db.base import UTCDateTime

revision = "data"
down_revision = "foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entity_models",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("primary_key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("table_name", sa.String(200), nullable=True),
        sa.Column("sql", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entity_models"),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_entity_models_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("workspace_id", "name", name="uq_entity_models_workspace_id"),
    )
    op.create_index("ix_entity_models_workspace_id", "entity_models", ["workspace_id"])


def downgrade() -> None:
    op.drop_table("entity_models")
