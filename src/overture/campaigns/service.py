"""Registry lookups."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from overture.campaigns.models import CampaignEntry

__all__ = ["campaign_type"]


def campaign_type(session: Session, campaign_id: str) -> str | None:
    """The type of campaign `campaign_id` in the session's workspace, or None if there is none
    (another workspace's campaign is None too: a workspace-bound session never sees it)."""
    return session.scalar(sa.select(CampaignEntry.type).where(CampaignEntry.id == campaign_id))
