"""paywalls: paywall campaigns, placements, audiences, experiments, caps, exposures, conversions

Revision ID: paywalls
Revises: foundation
Create Date: 2026-11-23 04:32:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from overture.db.base import JSONType, UTCDateTime

revision = "paywalls"
down_revision = "foundation"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id_workspaces", ondelete="CASCADE"
    )


def _paywall_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id", "paywall_id"],
        ["paywalls.workspace_id", "paywalls.id"],
        name=f"fk_{table}_workspace_id_paywalls",
    )


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "paywalls",
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("config", JSONType, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("workspace_id", "id", name="pk_paywalls"),
        _workspace_fk("paywalls"),
    )
    op.create_table(
        "paywall_campaigns",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_paywall_campaigns"),
        _workspace_fk("paywall_campaigns"),
    )
    op.create_index("ix_paywall_campaigns_workspace_id", "paywall_campaigns", ["workspace_id"])
    op.create_table(
        "paywall_placements",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("campaign_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claim", sa.String(100), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_paywall_placements"),
        _workspace_fk("paywall_placements"),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["paywall_campaigns.id"],
            name="fk_paywall_placements_campaign_id_paywall_campaigns",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("workspace_id", "claim", name="uq_paywall_placements_workspace_id_claim"),
    )
    op.create_index("ix_paywall_placements_workspace_id", "paywall_placements", ["workspace_id"])
    op.create_index("ix_paywall_placements_campaign_id", "paywall_placements", ["campaign_id"])
    op.create_table(
        "paywall_audiences",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("campaign_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("filters", JSONType, nullable=False),
        sa.Column("entitlement_check", sa.String(200), nullable=True),
        sa.Column("frequency_cap", sa.String(40), nullable=True),
        sa.Column("paywall_id", sa.String(64), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_paywall_audiences"),
        _workspace_fk("paywall_audiences"),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["paywall_campaigns.id"],
            name="fk_paywall_audiences_campaign_id_paywall_campaigns",
            ondelete="CASCADE",
        ),
        _paywall_fk("paywall_audiences"),
    )
    op.create_index("ix_paywall_audiences_workspace_id", "paywall_audiences", ["workspace_id"])
    op.create_index("ix_paywall_audiences_campaign_id", "paywall_audiences", ["campaign_id"])
    op.create_table(
        "paywall_experiments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("audience_id", sa.String(36), nullable=False),
        sa.Column("confidence_threshold", sa.Float(), nullable=False),
        sa.Column("auto_promote", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("next_look", sa.Integer(), nullable=False),
        sa.Column("leader_variant_id", sa.String(36), nullable=True),
        sa.Column("promoted_variant_id", sa.String(36), nullable=True),
        sa.Column("promoted_at", UTCDateTime(), nullable=True),
        sa.Column("promotion", JSONType, nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_paywall_experiments"),
        _workspace_fk("paywall_experiments"),
        sa.ForeignKeyConstraint(
            ["audience_id"],
            ["paywall_audiences.id"],
            name="fk_paywall_experiments_audience_id_paywall_audiences",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("audience_id", name="uq_paywall_experiments_audience_id"),
    )
    op.create_index("ix_paywall_experiments_workspace_id", "paywall_experiments", ["workspace_id"])
    op.create_table(
        "paywall_variants",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("experiment_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("paywall_id", sa.String(64), nullable=False),
        sa.Column("traffic_percentage", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_paywall_variants"),
        _workspace_fk("paywall_variants"),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["paywall_experiments.id"],
            name="fk_paywall_variants_experiment_id_paywall_experiments",
            ondelete="CASCADE",
        ),
        _paywall_fk("paywall_variants"),
    )
    op.create_index("ix_paywall_variants_workspace_id", "paywall_variants", ["workspace_id"])
    op.create_index("ix_paywall_variants_experiment_id", "paywall_variants", ["experiment_id"])
    op.create_table(
        "paywall_cap_counters",
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("audience_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("period", sa.String(300), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("audience_id", "user_id", "period", name="pk_paywall_cap_counters"),
        _workspace_fk("paywall_cap_counters"),
    )
    op.create_index("ix_paywall_cap_counters_workspace_id", "paywall_cap_counters", ["workspace_id"])
    op.create_table(
        "paywall_exposures",
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("experiment_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("variant_id", sa.String(36), nullable=False),
        sa.Column("exposed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("experiment_id", "user_id", "variant_id", name="pk_paywall_exposures"),
        _workspace_fk("paywall_exposures"),
    )
    op.create_index("ix_paywall_exposures_workspace_id", "paywall_exposures", ["workspace_id"])
    op.create_index("ix_paywall_exposures_workspace_user", "paywall_exposures", ["workspace_id", "user_id"])
    op.create_table(
        "paywall_conversions",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("experiment_id", sa.String(36), nullable=False),
        sa.Column("variant_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("revenue", sa.Float(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_paywall_conversions"),
        _workspace_fk("paywall_conversions"),
    )
    op.create_index("ix_paywall_conversions_workspace_id", "paywall_conversions", ["workspace_id"])
    op.create_index("ix_paywall_conversions_experiment_id", "paywall_conversions", ["experiment_id"])


def downgrade() -> None:
    for table in (
        "paywall_conversions",
        "paywall_exposures",
        "paywall_cap_counters",
        "paywall_variants",
        "paywall_experiments",
        "paywall_audiences",
        "paywall_placements",
        "paywall_campaigns",
        "paywalls",
    ):
        op.drop_table(table)
