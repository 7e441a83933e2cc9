"""Journey tables in the application database: definitions and runs. Member state lives in the
profile data source beside the profiles it is joined with (see `overture.journeys.members`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from overture.campaigns import register_campaign_type
from overture.db.base import Base, JSONType, UTCDateTime, WorkspaceScoped, new_id


class Journey(WorkspaceScoped, Base):
    """An orchestration: a DAG of tiles over an entity model, moved along by runs."""

    __tablename__ = "journeys"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    #: An entity model of the workspace. The foreign key makes deleting a model in use a 409; a model
    #: whose table vanishes from the data source is a run failure that puts the journey in `error`.
    parent_model_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("entity_models.id"), index=True, nullable=False
    )
    entry_criteria: Mapped[Any] = mapped_column(JSONType, nullable=False)
    exit_criteria: Mapped[Any] = mapped_column(JSONType, nullable=False)
    tiles: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False)
    edges: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False)
    schedule: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="draft")
    status_error: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    #: The API key that created it (the seed's "account").
    created_by: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    #: Bumped by every update; a run records the version it executed.
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_run_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class JourneyRun(WorkspaceScoped, Base):
    """One evaluation of a journey. At most one pending or running run per journey (a partial
    unique index over `lifecycle.UNFINISHED_RUN`, so two concurrent triggers cannot both start one).
    `status` moves only through `lifecycle.RUN`."""

    __tablename__ = "journey_runs"
    __table_args__ = (
        sa.Index("ix_journey_runs_journey_created", "journey_id", "created_at"),
        sa.Index(
            "uq_journey_runs_open",
            "journey_id",
            unique=True,
            sqlite_where=sa.text("status IN ('pending', 'running')"),
            postgresql_where=sa.text("status IN ('pending', 'running')"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    journey_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("journeys.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="pending")
    trigger: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    #: The definition version the run executes (the journey as it was when the run started).
    journey_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    #: Also the run's logical instant: every step of the run, and a resumed attempt, uses it.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    #: Progress marker for a resumed attempt and for readers: the phase or tile being processed.
    step: Mapped[str | None] = mapped_column(sa.String(120), nullable=True)


register_campaign_type(Journey, "journey")  # the campaign registry (overture.campaigns)
