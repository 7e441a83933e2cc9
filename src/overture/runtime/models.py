"""Runtime tables: the job queue, the schedules that feed it, and the outbox ledger (their status
machines: `overture.runtime.states`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from overture.db.base import Base, UTCDateTime, WorkspaceScoped, new_id
from overture.runtime.states import JobStatus as JobStatus  # re-exported: status values of the columns
from overture.runtime.states import OutboxStatus as OutboxStatus

# Integer ids on the hot ledger (a SQLite INTEGER PRIMARY KEY is the rowid; BIGSERIAL on PostgreSQL).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_due", "status", "run_at"),
        sa.Index("ix_jobs_lease", "status", "locked_until"),
        sa.Index("ix_jobs_finished", "status", "finished_at"),  # retention's range scan
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(nullable=False, default=dict)
    workspace_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), index=True, nullable=True
    )
    #: With a unique key, enqueueing the same work twice returns the first job (a UNIQUE constraint).
    unique_key: Mapped[str | None] = mapped_column(sa.String(300), unique=True, nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default=JobStatus.QUEUED)
    #: Number of claims so far; the fencing token a worker presents to finish the job.
    attempt: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    max_attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=5)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    locked_by: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ScheduleRow(WorkspaceScoped, Base):
    """A recurring (or one-shot) trigger owned by a surface object, e.g. owner "journey:<uuid>"."""

    __tablename__ = "schedules"
    __table_args__ = (sa.Index("ix_schedules_due", "enabled", "next_fire_at"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(sa.String(200), unique=True, nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(nullable=False)
    job_kind: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(nullable=False, default=dict)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class OutboxMessage(WorkspaceScoped, Base):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        sa.Index("ix_outbox_messages_due", "status", "next_attempt_at"),
        sa.Index("ix_outbox_messages_source", "source_kind", "source_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    destination_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    #: Stable key derived from what caused the message (run, member, step); sent to the provider.
    idempotency_key: Mapped[str] = mapped_column(sa.String(300), unique=True, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(nullable=False)
    source_kind: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    source_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default=OutboxStatus.PENDING)
    #: Send attempts so far; also the fencing token for recording an attempt's outcome.
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    #: Claims lost because the dispatcher died mid-send; they don't use up the retry budget.
    crashes: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    possible_duplicate: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class OutboxPause(Base):
    """A destination that answered `Retry-After`: no dispatcher, in any process, sends to it before
    `paused_until`."""

    __tablename__ = "outbox_pauses"

    destination_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    paused_until: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
