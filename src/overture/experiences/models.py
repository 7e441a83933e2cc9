"""Experience orchestration tables (seed 000): groups (campaigns and their stages), experiences,
prioritization records, templates, provider credentials and the event-id ledger.

Soft delete is a `deleted_at` stamp: the seed's `deleted=true` lists and reads still find the row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from overture.campaigns import register_campaign_type
from overture.db.base import Base, JSONType, Timestamped, WorkspaceScoped, new_id

__all__ = [
    "ACCOUNT_PRIORITY",
    "Experience",
    "ExperienceGroup",
    "Prioritization",
    "ProviderAuth",
    "Template",
]

#: The slug of the one prioritization record that orders a workspace's campaigns.
ACCOUNT_PRIORITY = "account_priority"


class ExperienceGroup(WorkspaceScoped, Timestamped, Base):
    """A campaign (top level, owns the primary audience `segment_id`) or a stage of one."""

    __tablename__ = "experience_groups"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    kind: Mapped[str] = mapped_column("class", sa.String(16), nullable=False)
    parent_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("experience_groups.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    #: RESTRICT: a segment a campaign targets cannot be deleted under it.
    segment_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("segments.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    description: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    goal: Mapped[Any] = mapped_column(JSONType, nullable=True)
    #: A stage's position in its campaign (ascending).
    position: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Experience(WorkspaceScoped, Timestamped, Base):
    """One message or action, delivered through its vehicle; generated segments once published."""

    __tablename__ = "experiences"
    __table_args__ = (
        # Imports are idempotent by (provider, externalId).
        sa.UniqueConstraint("workspace_id", "provider_slug", "external_id"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    parent_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("experience_groups.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    #: Position among the stage's experiences (ascending).
    position: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    template_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("experience_templates.id", ondelete="SET NULL"), nullable=True
    )
    provider_id: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    provider_slug: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    provider_channel: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    tactic: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    aggression: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    external_id: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    detail: Mapped[Any] = mapped_column(JSONType, nullable=True)
    detail_override: Mapped[Any] = mapped_column(JSONType, nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="draft")
    start_date: Mapped[datetime | None] = mapped_column(nullable=True)
    end_date: Mapped[datetime | None] = mapped_column(nullable=True)
    fixed_segment_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("segments.id", ondelete="SET NULL"), nullable=True
    )
    target_segment_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("segments.id", ondelete="SET NULL"), nullable=True
    )
    decision_segment_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("segments.id", ondelete="SET NULL"), nullable=True
    )
    #: Bumped on every publish; names the export message so a re-publish exports again, a retry not.
    publish_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Prioritization(WorkspaceScoped, Timestamped, Base):
    """Weighted entries ordering a group's children (a campaign's stages, a stage's experiences), or,
    with slug `account_priority`, the workspace's campaigns. Higher weight = higher priority."""

    __tablename__ = "experience_prioritizations"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "group_id"),
        sa.UniqueConstraint("workspace_id", "slug"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    group_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("experience_groups.id", ondelete="CASCADE"), nullable=True
    )
    slug: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    #: [{"id": <child id>, "weight": <number>}], in the order given.
    entries: Mapped[Any] = mapped_column(JSONType, nullable=False, default=list)


class Template(WorkspaceScoped, Timestamped, Base):
    """Reusable vehicle defaults an experience created with `templateId` starts from."""

    __tablename__ = "experience_templates"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    #: The vehicle fields the template sets (camelCase keys, as the API speaks them).
    vehicle: Mapped[Any] = mapped_column(JSONType, nullable=False, default=dict)


class ProviderAuth(WorkspaceScoped, Timestamped, Base):
    """A credential for an external provider (`auth_id`): where its feed is, and the webhook
    destination (holding the bearer token as a write-only secret) exports go through."""

    __tablename__ = "experience_provider_auths"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    provider_slug: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    url: Mapped[str] = mapped_column(sa.String(2048), nullable=False)
    #: No foreign key: destinations are only ever soft-deleted, and a key into the delivery branch
    #: would tie this migration branch to it (Alembic mis-orders two cross-branch dependencies).
    destination_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)


register_campaign_type(ExperienceGroup, "experience_group")  # the campaign registry (overture.campaigns)
