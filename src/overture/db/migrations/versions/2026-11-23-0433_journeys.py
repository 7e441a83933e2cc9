"""journeys: orchestration definitions and their runs

Revision ID: journeys
Revises: foundation (depends on data)
Create Date: 2026-11-23 04:33:00

Member state is not here: it lives in the profile data source, created per journey at first run.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from overture.db.base import JSONType, UTCDateTime

revision = "journeys"
down_revision = "foundation"
branch_labels = None
depends_on = ("data",)  # journeys.parent_model_id -> entity_models.id


def upgrade() -> None:
    op.create_table(
        "journeys",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("parent_model_id", sa.String(36), nullable=False),
        sa.Column("entry_criteria", JSONType, nullable=False),
        sa.Column("exit_criteria", JSONType, nullable=False),
        sa.Column("tiles", JSONType, nullable=False),
        sa.Column("edges", JSONType, nullable=False),
        sa.Column("schedule", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_error", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("last_run_id", sa.String(36), nullable=True),
        sa.Column("last_run_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_journeys"),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_journeys_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_model_id"], ["entity_models.id"], name="fk_journeys_parent_model_id_entity_models"
        ),
    )
    op.create_index("ix_journeys_workspace_id", "journeys", ["workspace_id"])
    op.create_index("ix_journeys_parent_model_id", "journeys", ["parent_model_id"])
    op.create_table(
        "journey_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("journey_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("journey_version", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("counts", JSONType, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("step", sa.String(120), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_journey_runs"),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_journey_runs_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["journey_id"], ["journeys.id"], name="fk_journey_runs_journey_id_journeys", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_journey_runs_workspace_id", "journey_runs", ["workspace_id"])
    op.create_index("ix_journey_runs_journey_created", "journey_runs", ["journey_id", "created_at"])
    op.create_index(
        "uq_journey_runs_open",
        "journey_runs",
        ["journey_id"],
        unique=True,
        sqlite_where=sa.text("status IN ('pending', 'running')"),
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )


def downgrade() -> None:
    op.drop_table("journey_runs")
    op.drop_table("journeys")
