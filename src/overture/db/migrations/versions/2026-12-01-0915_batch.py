"""batch: offers, batch channels, decision flows, batch campaigns and their runs (seed 003)

Revision ID: batch
Revises: foundation (depends on segments, which depends on data)
Create Date: 2026-12-01 09:15:00

Per-customer results are not here: they live in the profile data source, one table per run.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from overture.db.base import JSONType, UTCDateTime

revision = "batch"
down_revision = "foundation"
branch_labels = None
depends_on = ("segments",)  # decision flows -> entity_models (data), campaigns -> segments


def _owned(table: str) -> list[Any]:
    """id, workspace_id (cascading with its workspace) and the primary key of a workspace's table."""
    return [
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=f"fk_{table}_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
    ]


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "batch_offers",
        *_owned("batch_offers"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(200), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("channels", JSONType, nullable=False),
        sa.Column("creatives", JSONType, nullable=False),
        sa.Column("eligibility", JSONType, nullable=True),
        sa.Column("propensity", JSONType, nullable=False),
        sa.Column("start_date", UTCDateTime(), nullable=True),
        sa.Column("end_date", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        *_stamps(),
    )
    op.create_index("ix_batch_offers_workspace_id", "batch_offers", ["workspace_id"])
    op.create_table(
        "batch_channels",
        *_owned("batch_channels"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("delivery_mode", sa.String(16), nullable=False),
        # No foreign key: destinations are soft-deleted (ids stay), and a second `depends_on` branch
        # trips Alembic's head bookkeeping; the service checks the id.
        sa.Column("destination_id", sa.String(36), nullable=True),
        *_stamps(),
    )
    op.create_index("ix_batch_channels_workspace_id", "batch_channels", ["workspace_id"])
    op.create_table(
        "decision_flows",
        *_owned("decision_flows"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("model_id", sa.String(36), nullable=False),
        sa.Column("offer_ids", JSONType, nullable=False),
        sa.Column("eligibility", JSONType, nullable=True),
        sa.Column("ranking", sa.String(32), nullable=False),
        sa.Column("max_offers_per_customer", sa.Integer(), nullable=False),
        sa.Column("one_offer_per_category", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["entity_models.id"],
            name="fk_decision_flows_model_id_entity_models",
            ondelete="RESTRICT",
        ),
        *_stamps(),
    )
    op.create_index("ix_decision_flows_workspace_id", "decision_flows", ["workspace_id"])
    op.create_index("ix_decision_flows_model_id", "decision_flows", ["model_id"])
    op.create_table(
        "batch_campaigns",
        *_owned("batch_campaigns"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("decision_flow_id", sa.String(36), nullable=False),
        sa.Column("segment_id", sa.String(36), nullable=False),
        sa.Column("schedule", JSONType, nullable=False),
        sa.Column("volume_constraints", JSONType, nullable=False),
        sa.Column("channel_ids", JSONType, nullable=False),
        sa.Column("file_output", JSONType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.ForeignKeyConstraint(
            ["decision_flow_id"],
            ["decision_flows.id"],
            name="fk_batch_campaigns_decision_flow_id_decision_flows",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["segments.id"],
            name="fk_batch_campaigns_segment_id_segments",
            ondelete="RESTRICT",
        ),
        *_stamps(),
    )
    op.create_index("ix_batch_campaigns_workspace_id", "batch_campaigns", ["workspace_id"])
    op.create_index("ix_batch_campaigns_decision_flow_id", "batch_campaigns", ["decision_flow_id"])
    op.create_index("ix_batch_campaigns_segment_id", "batch_campaigns", ["segment_id"])
    op.create_table(
        "batch_runs",
        *_owned("batch_runs"),
        sa.Column("campaign_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("fire_time", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("results", JSONType, nullable=True),
        sa.Column("file", JSONType, nullable=True),
        sa.Column("step", sa.String(40), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["batch_campaigns.id"],
            name="fk_batch_runs_campaign_id_batch_campaigns",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_batch_runs_workspace_id", "batch_runs", ["workspace_id"])
    op.create_index("ix_batch_runs_campaign_created", "batch_runs", ["campaign_id", "created_at"])


def downgrade() -> None:
    for table in ("batch_runs", "batch_campaigns", "decision_flows", "batch_channels", "batch_offers"):
        op.drop_table(table)
