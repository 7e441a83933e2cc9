"""Paywall campaign tables: configuration (paywalls, campaigns, placements, audiences, experiments,
variants) and the decision path's records (frequency-cap counters, exposures, conversions).

The three record tables carry no foreign keys to configuration on purpose: the decision path writes
them from a configuration snapshot that may be a moment old, and a write for an audience deleted in
that moment must not fail the user's request. The service deletes them with their owner instead."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from overture.campaigns import register_campaign_type
from overture.db.base import Base, JSONType, Timestamped, WorkspaceScoped, new_id

#: The seed's built-in lifecycle placements; a `standard` placement must be one of these.
STANDARD_PLACEMENTS = (
    "app_install",
    "app_launch",
    "session_start",
    "deepLink_open",
    "transaction_fail",
    "transaction_abandon",
    "survey_response",
    "paywall_decline",
)
#: The variant id recorded for users an experiment holds out.
HOLDOUT = "holdout"

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only


def _id(prefix: str) -> Any:
    return lambda: new_id(prefix)


def _paywall_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["workspace_id", "paywall_id"], ["paywalls.workspace_id", "paywalls.id"])


class Paywall(WorkspaceScoped, Timestamped, Base):
    """A paywall the SDK renders: an id (client-chosen, like the seed's `pw_original`) and a config."""

    __tablename__ = "paywalls"

    # Ids are unique per workspace, so two workspaces may both own a `pw_original`.
    workspace_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True, default=_id("pw"))
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(nullable=False, default=dict)


class Campaign(WorkspaceScoped, Timestamped, Base):
    __tablename__ = "paywall_campaigns"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=_id("camp"))
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="active")


class Placement(WorkspaceScoped, Timestamped, Base):
    __tablename__ = "paywall_placements"
    __table_args__ = (
        # `claim` is the name while the campaign is not archived, else NULL (NULLs never collide):
        # the database itself keeps a placement name in at most one live campaign per workspace.
        sa.UniqueConstraint("workspace_id", "claim"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=_id("pl"))
    campaign_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("paywall_campaigns.id", ondelete="CASCADE"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    type: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="custom")
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="active")
    claim: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)


class Audience(WorkspaceScoped, Timestamped, Base):
    __tablename__ = "paywall_audiences"
    __table_args__ = (_paywall_fk(),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=_id("aud"))
    campaign_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("paywall_campaigns.id", ondelete="CASCADE"), index=True, nullable=False
    )
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    #: Evaluation order within the campaign, 0 first.
    position: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    #: The filters exactly as given (flat rule list or canonical tree), validated before storing.
    filters: Mapped[Any] = mapped_column(JSONType, nullable=False)
    entitlement_check: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    frequency_cap: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    paywall_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class Experiment(WorkspaceScoped, Timestamped, Base):
    __tablename__ = "paywall_experiments"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=_id("exp"))
    audience_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("paywall_audiences.id", ondelete="CASCADE"), unique=True, nullable=False
    )
    confidence_threshold: Mapped[float] = mapped_column(sa.Float, nullable=False, default=0.95)
    auto_promote: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="running")
    #: Smallest-arm exposure count at which auto-promotion looks next (doubles after each look).
    next_look: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    #: The variant that led at the previous look; promoted if it leads again at the next one.
    leader_variant_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    promoted_variant_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    promoted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: The figures the promotion was decided on (per-variant counts, chances, threshold).
    promotion: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)


class Variant(WorkspaceScoped, Base):
    __tablename__ = "paywall_variants"
    __table_args__ = (_paywall_fk(),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=_id("var"))
    experiment_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("paywall_experiments.id", ondelete="CASCADE"), index=True, nullable=False
    )
    position: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    paywall_id: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    traffic_percentage: Mapped[float] = mapped_column(sa.Float, nullable=False)


class CapCounter(WorkspaceScoped, Base):
    """How often an audience's paywall was shown to a user in one cap period
    (`session:<id>`, `day:<YYYY-MM-DD>` or `total`). Incremented atomically by the decision path."""

    __tablename__ = "paywall_cap_counters"

    audience_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    period: Mapped[str] = mapped_column(sa.String(300), primary_key=True)
    count: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(nullable=False)


class Exposure(WorkspaceScoped, Base):
    """A user was shown a variant (or held out) of an experiment: one row per user per variant."""

    __tablename__ = "paywall_exposures"
    __table_args__ = (sa.Index("ix_paywall_exposures_workspace_user", "workspace_id", "user_id"),)

    experiment_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    variant_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    exposed_at: Mapped[datetime] = mapped_column(nullable=False)


class Conversion(WorkspaceScoped, Base):
    """A `transaction_complete` event of an exposed user, attributed to the variant they saw."""

    __tablename__ = "paywall_conversions"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(sa.String(36), index=True, nullable=False)
    variant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    user_id: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    revenue: Mapped[float] = mapped_column(sa.Float, nullable=False, default=0.0)
    occurred_at: Mapped[datetime] = mapped_column(nullable=False)


register_campaign_type(Campaign, "paywall_campaign")  # the campaign registry (overture.campaigns)
