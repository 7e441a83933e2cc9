"""experiences: groups, experiences, prioritizations, templates, provider credentials, event ids

Revision ID: experiences
Revises: foundation (depends on segments)
Create Date: 2026-12-01 09:10:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from overture.db.base import UTCDateTime

revision = "experiences"
down_revision = "foundation"
branch_labels = None
depends_on = ("segments",)  # FKs to segments.id (destination ids are soft references: see models)

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _common(table: str) -> list[Any]:
    return [
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=f"fk_{table}_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "experience_groups",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("class", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(36), nullable=True),
        sa.Column("segment_id", sa.String(36), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("goal", JSON, nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        *_common("experience_groups"),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["experience_groups.id"],
            name="fk_experience_groups_parent_id_experience_groups",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["segments.id"],
            name="fk_experience_groups_segment_id_segments",
            ondelete="RESTRICT",
        ),
    )
    for column in ("workspace_id", "parent_id", "segment_id"):
        op.create_index(f"ix_experience_groups_{column}", "experience_groups", [column])

    op.create_table(
        "experience_templates",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("vehicle", JSON, nullable=False),
        *_common("experience_templates"),
    )
    op.create_index("ix_experience_templates_workspace_id", "experience_templates", ["workspace_id"])

    op.create_table(
        "experiences",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("parent_id", sa.String(36), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.String(36), nullable=True),
        sa.Column("provider_id", sa.String(200), nullable=True),
        sa.Column("provider_slug", sa.String(100), nullable=True),
        sa.Column("provider_channel", sa.String(100), nullable=True),
        sa.Column("tactic", sa.String(32), nullable=True),
        sa.Column("aggression", sa.Float(), nullable=True),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("detail", JSON, nullable=True),
        sa.Column("detail_override", JSON, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_date", UTCDateTime(), nullable=True),
        sa.Column("end_date", UTCDateTime(), nullable=True),
        sa.Column("fixed_segment_id", sa.String(36), nullable=True),
        sa.Column("target_segment_id", sa.String(36), nullable=True),
        sa.Column("decision_segment_id", sa.String(36), nullable=True),
        sa.Column("publish_count", sa.Integer(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        *_common("experiences"),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["experience_groups.id"],
            name="fk_experiences_parent_id_experience_groups",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["experience_templates.id"],
            name="fk_experiences_template_id_experience_templates",
            ondelete="SET NULL",
        ),
        *[
            sa.ForeignKeyConstraint(
                [f"{kind}_segment_id"],
                ["segments.id"],
                name=f"fk_experiences_{kind}_segment_id_segments",
                ondelete="SET NULL",
            )
            for kind in ("fixed", "target", "decision")
        ],
        sa.UniqueConstraint(
            "workspace_id",
            "provider_slug",
            "external_id",
            name="uq_experiences_workspace_id_provider_slug_external_id",
        ),
    )
    op.create_index("ix_experiences_workspace_id", "experiences", ["workspace_id"])
    op.create_index("ix_experiences_parent_id", "experiences", ["parent_id"])

    op.create_table(
        "experience_prioritizations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("group_id", sa.String(36), nullable=True),
        sa.Column("slug", sa.String(64), nullable=True),
        sa.Column("entries", JSON, nullable=False),
        *_common("experience_prioritizations"),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["experience_groups.id"],
            name="fk_experience_prioritizations_group_id_experience_groups",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "workspace_id", "group_id", name="uq_experience_prioritizations_workspace_id_group_id"
        ),
        sa.UniqueConstraint("workspace_id", "slug", name="uq_experience_prioritizations_workspace_id_slug"),
    )
    op.create_index(
        "ix_experience_prioritizations_workspace_id", "experience_prioritizations", ["workspace_id"]
    )

    op.create_table(
        "experience_provider_auths",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("provider_slug", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("destination_id", sa.String(36), nullable=False),
        *_common("experience_provider_auths"),
    )
    op.create_index(
        "ix_experience_provider_auths_workspace_id", "experience_provider_auths", ["workspace_id"]
    )

    op.create_table(
        "experience_event_ids",
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "event_id", name="pk_experience_event_ids"),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_experience_event_ids_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    for table in (
        "experience_event_ids",
        "experience_provider_auths",
        "experience_prioritizations",
        "experiences",
        "experience_templates",
        "experience_groups",
    ):
        op.drop_table(table)
