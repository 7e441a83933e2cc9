"""The `campaigns` table and the ORM hooks that keep it in step with each surface's own table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, mapped_column

from overture.clock import utcnow
from overture.db.base import Base, UTCDateTime, WorkspaceScoped
from overture.db.session import now_of

__all__ = ["CAMPAIGN_TYPES", "CampaignEntry", "register_campaign_type", "unregister"]

#: Every type a campaign-like object may have (one per surface that owns such objects).
CAMPAIGN_TYPES = ("broadcast", "batch_campaign", "journey", "paywall_campaign", "experience_group")


class CampaignEntry(WorkspaceScoped, Base):
    """One campaign-like object: its id (unique across all surfaces) and which surface owns it."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


_table: sa.Table = CampaignEntry.__table__  # type: ignore[assignment]
_registered: dict[type[Any], str] = {}


def register_campaign_type(model: type[Any], campaign_type: str) -> None:
    """Register every row of `model` (a WorkspaceScoped table with an `id`) as a campaign of
    `campaign_type`: its insert adds the registry row and its ORM delete removes it, in the same
    flush and transaction. Rows removed by a bulk DELETE or a cascade in SQL are not seen by ORM
    hooks; such code must call `unregister` itself (the surfaces delete campaigns one by one)."""
    if campaign_type not in CAMPAIGN_TYPES:
        raise ValueError(f"unknown campaign type {campaign_type!r}; add it to CAMPAIGN_TYPES")
    if _registered.get(model, campaign_type) != campaign_type:
        raise ValueError(f"{model.__name__} is already registered as {_registered[model]!r}")
    if model in _registered:
        return
    _registered[model] = campaign_type

    @event.listens_for(model, "after_insert")
    def _add(_mapper: Any, connection: sa.Connection, target: Any) -> None:
        session = sa.orm.object_session(target)
        now = now_of(session) if session is not None else utcnow()
        connection.execute(
            sa.insert(_table).values(
                id=target.id, workspace_id=target.workspace_id, type=campaign_type, created_at=now
            )
        )

    @event.listens_for(model, "after_delete")
    def _remove(_mapper: Any, connection: sa.Connection, target: Any) -> None:
        connection.execute(sa.delete(_table).where(_table.c.id == target.id))


def unregister(connection: sa.Connection, ids: list[str]) -> None:
    """Remove registry rows of campaigns deleted around the ORM (bulk DELETE)."""
    if ids:
        connection.execute(sa.delete(_table).where(_table.c.id.in_(ids)))
