"""The campaign registry: every campaign-like object of every surface, by id, with its type.

A surface registers its model once (`register_campaign_type(Broadcast, "broadcast")` in its
models.py); inserts and deletes of that model then write the registry row in the same flush, so
the registry can never disagree with the surfaces. Public APIs use `campaign_type` to tell "exists
but is another type" (409) from "does not exist" (404)."""

from overture.campaigns.models import CAMPAIGN_TYPES, CampaignEntry, register_campaign_type
from overture.campaigns.service import campaign_type

__all__ = ["CAMPAIGN_TYPES", "CampaignEntry", "campaign_type", "register_campaign_type"]
