"""segments: named filter trees over entity models, with reach

Revision ID: segments
Revises: foundation (depends on data)
Create Date: 2026-11-23 04:34:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from overture.db.base import UTCDateTime

revision = "segments"
down_revision = "foundation"
branch_labels = None
depends_on = ("data",)  # segments.model_id -> entity_models.id


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("model_id", sa.String(36), nullable=False),
        sa.Column("filter", sa.JSON(), nullable=True),
        sa.Column("definition_version", sa.Integer(), nullable=False),
        sa.Column("reach_status", sa.String(16), nullable=False),
        sa.Column("evaluated_count", sa.BigInteger(), nullable=True),
        sa.Column("evaluated_at", UTCDateTime(), nullable=True),
        sa.Column("evaluated_version", sa.Integer(), nullable=True),
        sa.Column("evaluating_version", sa.Integer(), nullable=True),
        sa.Column("evaluation_started_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_segments_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_id"], ["entity_models.id"], name="fk_segments_model_id_entity_models", ondelete="RESTRICT"
        ),
    )
    op.create_index("ix_segments_workspace_id", "segments", ["workspace_id"])
    op.create_index("ix_segments_model_id", "segments", ["model_id"])


def downgrade() -> None:
    op.drop_table("segments")
