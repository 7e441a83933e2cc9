"""broadcasts: templates, proofs, broadcasts, executions and their recipient rows; a workspace
default timezone that may be unset (a broadcast then falls back to UTC and says so)

Revision ID: broadcasts
Revises: foundation
Create Date: 2026-12-01 09:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from overture.db.base import JSONType, UTCDateTime

revision = "broadcasts"
down_revision = "foundation"
branch_labels = None
depends_on = None  # no foreign key leaves this branch but workspaces

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id_workspaces", ondelete="CASCADE"
    )


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.alter_column("timezone", existing_type=sa.String(64), nullable=True)
    op.create_table(
        "broadcast_templates",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_broadcast_templates"),
        _workspace_fk("broadcast_templates"),
    )
    op.create_index("ix_broadcast_templates_workspace_id", "broadcast_templates", ["workspace_id"])
    op.create_table(
        "broadcast_proofs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("template_id", sa.String(36), nullable=False),
        sa.Column("destination_id", sa.String(36), nullable=False),
        sa.Column("recipients", JSONType, nullable=False),
        sa.Column("sample_customer_id", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("approved_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_broadcast_proofs"),
        _workspace_fk("broadcast_proofs"),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["broadcast_templates.id"],
            name="fk_broadcast_proofs_template_id_broadcast_templates",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_broadcast_proofs_workspace_id", "broadcast_proofs", ["workspace_id"])
    op.create_index("ix_broadcast_proofs_template_id", "broadcast_proofs", ["template_id"])
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("template_id", sa.String(36), nullable=True),
        sa.Column("destination_id", sa.String(36), nullable=True),
        sa.Column("address_field", sa.String(200), nullable=False),
        sa.Column("audience", JSONType, nullable=False),
        sa.Column("model_id", sa.String(36), nullable=True),
        sa.Column("reach_status", sa.String(16), nullable=False),
        sa.Column("reach_count", sa.BigInteger(), nullable=True),
        sa.Column("reach_evaluated_at", UTCDateTime(), nullable=True),
        sa.Column("reach_signature", sa.String(64), nullable=True),
        sa.Column("reach_error", sa.Text(), nullable=True),
        sa.Column("schedule", JSONType, nullable=True),
        sa.Column("scheduled", sa.Boolean(), nullable=False),
        sa.Column("authoring_status", sa.String(16), nullable=False),
        sa.Column("preflight_status", sa.String(16), nullable=False),
        sa.Column("preflight_checks", JSONType, nullable=False),
        sa.Column("preflight_at", UTCDateTime(), nullable=True),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_broadcasts"),
        _workspace_fk("broadcasts"),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["broadcast_templates.id"],
            name="fk_broadcasts_template_id_broadcast_templates",
            ondelete="RESTRICT",
        ),
    )
    op.create_index("ix_broadcasts_workspace_id", "broadcasts", ["workspace_id"])
    op.create_index("ix_broadcasts_template_id", "broadcasts", ["template_id"])
    counters = [
        sa.Column(name, sa.BigInteger(), nullable=False)
        for name in (
            "scheduled",
            "hydrated",
            "composed",
            "injected",
            "sent",
            "failed",
            "dropped",
            "cancelled",
            "retried",
            "zone_fallbacks",
        )
    ]
    op.create_table(
        "broadcast_executions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("broadcast_id", sa.String(36), nullable=False),
        sa.Column("trigger_key", sa.String(100), nullable=False),
        sa.Column("touchpoint_id", sa.Integer(), nullable=False),
        sa.Column("manifest_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("plan", JSONType, nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("reconcile_round", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        *counters,
        sa.PrimaryKeyConstraint("id", name="pk_broadcast_executions"),
        _workspace_fk("broadcast_executions"),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name="fk_broadcast_executions_broadcast_id_broadcasts",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "broadcast_id", "trigger_key", name="uq_broadcast_executions_broadcast_id_trigger_key"
        ),
        sa.UniqueConstraint(
            "workspace_id", "touchpoint_id", name="uq_broadcast_executions_workspace_id_touchpoint_id"
        ),
    )
    op.create_index("ix_broadcast_executions_workspace_id", "broadcast_executions", ["workspace_id"])
    op.create_index(
        "ix_broadcast_executions_broadcast_started", "broadcast_executions", ["broadcast_id", "started_at"]
    )
    op.create_table(
        "broadcast_recipients",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("execution_id", sa.String(36), nullable=False),
        sa.Column("entity_id", sa.String(200), nullable=False),
        sa.Column("stage", sa.SmallInteger(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("reason", sa.String(300), nullable=True),
        sa.Column("fields", JSONType, nullable=True),
        sa.Column("content", JSONType, nullable=True),
        sa.Column("outbox_key", sa.String(300), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("release_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_broadcast_recipients"),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["broadcast_executions.id"],
            name="fk_broadcast_recipients_execution_id_broadcast_executions",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "execution_id", "entity_id", name="uq_broadcast_recipients_execution_id_entity_id"
        ),
    )
    op.create_index(
        "ix_broadcast_recipients_progress", "broadcast_recipients", ["execution_id", "stage", "outcome"]
    )
    op.create_table(
        "broadcast_touchpoints",
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("last_value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_broadcast_touchpoints"),
        _workspace_fk("broadcast_touchpoints"),
    )
    op.create_index("ix_broadcast_touchpoints_workspace_id", "broadcast_touchpoints", ["workspace_id"])


def downgrade() -> None:
    for table in (
        "broadcast_touchpoints",
        "broadcast_recipients",
        "broadcast_executions",
        "broadcasts",
        "broadcast_proofs",
        "broadcast_templates",
    ):
        op.drop_table(table)
    with op.batch_alter_table("workspaces") as batch:
        batch.alter_column("timezone", existing_type=sa.String(64), nullable=False)
