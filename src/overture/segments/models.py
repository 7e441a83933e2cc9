"""Segment table: a named filter tree over an entity model, with its reach (seed 002's status machine)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from overture.db.base import Base, Timestamped, WorkspaceScoped, new_id


class Segment(WorkspaceScoped, Timestamped, Base):
    __tablename__ = "segments"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    #: RESTRICT: a model in use cannot be deleted under its segments.
    model_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("entity_models.id", ondelete="RESTRICT"), index=True, nullable=False
    )
    filter: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    #: Bumped whenever `filter` or `model_id` changes; reach is stale when it ran on another version.
    definition_version: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    reach_status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="idle")
    evaluated_count: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    evaluated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: The definition_version the last successful evaluation counted.
    evaluated_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    #: The definition_version the evaluation in progress (or last attempted) counts.
    evaluating_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    evaluation_started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    #: Made and kept current by a surface (experiences' fixed/target/decision segments): read-only here.
    generated: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    #: Soft-deleted (generated segments go with their experience); hidden from lists and lookups.
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)

    @property
    def is_stale(self) -> bool:
        return self.evaluated_version is not None and self.evaluated_version != self.definition_version
