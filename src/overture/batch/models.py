"""Batch decisioning tables (seed 003): offers, batch channels, decision flows, campaigns and runs.

Per-customer results of a run live in the profile data source beside the profiles they were computed
from (one table per run, see `overture.batch.engine`); the application database keeps the summary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from overture.campaigns import register_campaign_type
from overture.db.base import Base, JSONType, Timestamped, UTCDateTime, WorkspaceScoped, new_id


class Offer(WorkspaceScoped, Timestamped, Base):
    __tablename__ = "batch_offers"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    category: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    priority: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    channels: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    creatives: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False, default=list)
    eligibility: Mapped[Any] = mapped_column(JSONType, nullable=True)
    propensity: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    start_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="active")


class BatchChannel(WorkspaceScoped, Timestamped, Base):
    __tablename__ = "batch_channels"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    delivery_mode: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    #: A file destination (local or S3) the channel's files go to (checked by the service; destinations
    #: are soft-deleted, so an id stays meaningful).
    destination_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)


class DecisionFlow(WorkspaceScoped, Timestamped, Base):
    __tablename__ = "decision_flows"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    #: RESTRICT: a model in use cannot be deleted under its flows.
    model_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("entity_models.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    offer_ids: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    eligibility: Mapped[Any] = mapped_column(JSONType, nullable=True)
    ranking: Mapped[str] = mapped_column(sa.String(32), nullable=False, default="priority")
    max_offers_per_customer: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    one_offer_per_category: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)


class BatchCampaign(WorkspaceScoped, Timestamped, Base):
    __tablename__ = "batch_campaigns"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    decision_flow_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("decision_flows.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    segment_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("segments.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    #: The API form ({type, scheduleTime, scheduleTimezone, scheduleDayOfWeek, scheduleDayOfMonth}).
    schedule: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    volume_constraints: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    channel_ids: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    file_output: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="draft")
    created_by: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)


class BatchRun(WorkspaceScoped, Base):
    __tablename__ = "batch_runs"
    __table_args__ = (sa.Index("ix_batch_runs_campaign_created", "campaign_id", "created_at"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    campaign_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("batch_campaigns.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[str] = mapped_column(sa.String(24), nullable=False, default="pending")
    trigger: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    #: The schedule slot a scheduled run is for (its {run_date}); a manual run's is its creation.
    fire_time: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    file: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    #: Where the run is (for readers and for a resumed attempt): scoring, writing, uploading...
    step: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)


register_campaign_type(BatchCampaign, "batch_campaign")  # the campaign registry (overture.campaigns)
