"""Broadcast tables: templates and their proofs, broadcasts, executions and their recipient rows.

An execution's counts are derived from its recipient rows (one per recipient of the frozen
manifest: how far along the pipeline it got and how it ended) and kept in counter columns on the
execution, updated in the same transaction as the rows, so `/status` reads one row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from overture.campaigns import register_campaign_type
from overture.db.base import Base, JSONType, Timestamped, UTCDateTime, WorkspaceScoped, new_id

# Integer ids on the hot recipient table (a SQLite INTEGER PRIMARY KEY is the rowid).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Pipeline stages a recipient row reaches, in order (stored as these integers).
SCHEDULED, HYDRATED, COMPOSED, INJECTED = 0, 1, 2, 3
#: The pipeline's counters, in order (the public API shows these six).
COUNTS = ("scheduled", "hydrated", "composed", "injected", "sent", "failed")
#: Counters the authoring API shows besides them.
EXTRA_COUNTS = ("dropped", "cancelled", "retried")


class Template(WorkspaceScoped, Timestamped, Base):
    __tablename__ = "broadcast_templates"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    channel: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    subject: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    body: Mapped[str] = mapped_column(sa.Text, nullable=False)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="draft")


class Proof(WorkspaceScoped, Base):
    """A proof of a template sent to a few addresses through a real destination."""

    __tablename__ = "broadcast_proofs"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    template_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("broadcast_templates.id", ondelete="CASCADE"), index=True, nullable=False
    )
    destination_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    recipients: Mapped[list[str]] = mapped_column(JSONType, nullable=False)
    sample_customer_id: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Broadcast(WorkspaceScoped, Timestamped, Base):
    __tablename__ = "broadcasts"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    channel: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    template_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("broadcast_templates.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    destination_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    #: The profile column holding each recipient's address (email, phone, push token, postal address).
    address_field: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    #: {"included": [segment ids], "excluded": [segment ids]}
    audience: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    #: The entity model every audience segment is over (set when the audience is bound).
    model_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    reach_status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="idle")
    reach_count: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    reach_evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The audience definition (ids and segment versions) the last successful evaluation counted.
    reach_signature: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    reach_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    #: The schedule as given, normalized (sendAt | batchDate | localTime..., timezone, timezoneSource).
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    #: False after `unschedule`: the schedule is kept but will not fire.
    scheduled: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    authoring_status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="draft")
    preflight_status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="not_evaluated")
    preflight_checks: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False, default=list)
    preflight_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_by: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)


class Execution(WorkspaceScoped, Base):
    """One send of a broadcast. `phase` is the resumable progress marker of the pipeline."""

    __tablename__ = "broadcast_executions"
    __table_args__ = (
        sa.UniqueConstraint("broadcast_id", "trigger_key"),
        sa.UniqueConstraint("workspace_id", "touchpoint_id"),
        sa.Index("ix_broadcast_executions_broadcast_started", "broadcast_id", "started_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    broadcast_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("broadcasts.id", ondelete="CASCADE"), nullable=False
    )
    #: What started it: the schedule slot, or "send-now:<uuid>".
    trigger_key: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    touchpoint_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    manifest_id: Mapped[str] = mapped_column(sa.String(36), nullable=False, default=new_id)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="running")
    phase: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="created")
    #: Everything the run needs, frozen when it starts (channel, template, destination, schedule).
    plan: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reconcile_round: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    scheduled: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    hydrated: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    composed: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    injected: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    sent: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    dropped: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    cancelled: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    retried: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    #: Recipients released at the workspace default because their zone was missing or invalid.
    zone_fallbacks: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)


class Recipient(Base):
    """One recipient of one execution's manifest. `stage` is how far it got (SCHEDULED..INJECTED);
    `outcome` is null while it is still on its way, else dropped | cancelled | sent | failed."""

    __tablename__ = "broadcast_recipients"
    __table_args__ = (
        sa.UniqueConstraint("execution_id", "entity_id"),
        sa.Index("ix_broadcast_recipients_progress", "execution_id", "stage", "outcome"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("broadcast_executions.id", ondelete="CASCADE"), nullable=False
    )
    entity_id: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    stage: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    outcome: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    reason: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    #: The profile fields the template and the address need (JSON values).
    fields: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    #: The rendered message while it waits for a file write (direct mail to a file destination).
    content: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    outbox_key: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    attempt: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    release_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class TouchpointCounter(WorkspaceScoped, Base):
    """The last touchpoint id handed out in a workspace (touchpoint ids are per-workspace integers)."""

    __tablename__ = "broadcast_touchpoints"
    __table_args__ = (sa.PrimaryKeyConstraint("workspace_id"),)

    last_value: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)


register_campaign_type(Broadcast, "broadcast")
