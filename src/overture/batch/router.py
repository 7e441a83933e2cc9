"""HTTP: offers, batch channels, decision flows, batch campaigns and their runs (seed 003), under
`/api/v1/workspaces/{id}/…`. Scopes: `campaigns:read` and `campaigns:write`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import FileResponse

from overture.auth.deps import DbSession, check_workspace_path, require
from overture.auth.service import Caller
from overture.batch import service
from overture.batch import service_campaigns as campaigns
from overture.batch.schemas import (
    CampaignCreate,
    CampaignRead,
    CampaignUpdate,
    ChannelCreate,
    ChannelRead,
    ChannelUpdate,
    CustomersPage,
    FlowCreate,
    FlowRead,
    FlowUpdate,
    OfferCreate,
    OfferRead,
    OfferUpdate,
    RunRead,
)

router = APIRouter(prefix="/api/v1/workspaces/{id}", dependencies=[Depends(check_workspace_path)])
Read = Annotated[Caller, Depends(require("campaigns:read"))]
Write = Annotated[Caller, Depends(require("campaigns:write"))]
MAX_PAGE = 1000


# -- offers ----------------------------------------------------------------------------------------
@router.post("/offers", status_code=201, response_model=OfferRead, tags=["batch: offers"])
def create_offer(id: str, body: OfferCreate, caller: Write, db: DbSession) -> object:
    """An offer: category, priority, channels, creatives, eligibility (a filter over the flow's model)
    and propensity (constant, a model column, or a logistic over model columns)."""
    return service.offer_read(service.create_offer(db, body))


@router.get("/offers", response_model=list[OfferRead], tags=["batch: offers"])
def list_offers(id: str, caller: Read, db: DbSession) -> object:
    return [service.offer_read(o) for o in service.list_offers(db)]


@router.get("/offers/{offerId}", response_model=OfferRead, tags=["batch: offers"])
def get_offer(id: str, offerId: str, caller: Read, db: DbSession) -> object:
    return service.offer_read(service.get_offer(db, offerId))


@router.patch("/offers/{offerId}", response_model=OfferRead, tags=["batch: offers"])
def update_offer(id: str, offerId: str, body: OfferUpdate, caller: Write, db: DbSession) -> object:
    return service.offer_read(service.update_offer(db, offerId, body))


@router.delete("/offers/{offerId}", status_code=204, tags=["batch: offers"])
def delete_offer(id: str, offerId: str, caller: Write, db: DbSession) -> Response:
    """409 while a decision flow lists the offer."""
    service.delete_offer(db, offerId)
    return Response(status_code=204)


# -- batch channels --------------------------------------------------------------------------------
@router.post("/batch-channels", status_code=201, response_model=ChannelRead, tags=["batch: channels"])
def create_channel(id: str, body: ChannelCreate, caller: Write, db: DbSession) -> object:
    """A delivery channel: file, integration, manual (these take part in batch runs) or api."""
    return service.channel_read(service.create_channel(db, body))


@router.get("/batch-channels", response_model=list[ChannelRead], tags=["batch: channels"])
def list_channels(id: str, caller: Read, db: DbSession) -> object:
    return [service.channel_read(c) for c in service.list_channels(db)]


@router.get("/batch-channels/{channelId}", response_model=ChannelRead, tags=["batch: channels"])
def get_channel(id: str, channelId: str, caller: Read, db: DbSession) -> object:
    return service.channel_read(service.get_channel(db, channelId))


@router.patch("/batch-channels/{channelId}", response_model=ChannelRead, tags=["batch: channels"])
def update_channel(id: str, channelId: str, body: ChannelUpdate, caller: Write, db: DbSession) -> object:
    return service.channel_read(service.update_channel(db, channelId, body))


@router.delete("/batch-channels/{channelId}", status_code=204, tags=["batch: channels"])
def delete_channel(id: str, channelId: str, caller: Write, db: DbSession) -> Response:
    """409 while a campaign or an offer uses the channel."""
    service.delete_channel(db, channelId)
    return Response(status_code=204)


# -- decision flows --------------------------------------------------------------------------------
@router.post("/decision-flows", status_code=201, response_model=FlowRead, tags=["batch: decision flows"])
def create_flow(id: str, body: FlowCreate, caller: Write, db: DbSession) -> object:
    """Which offers, over which model, ranked how, how many per customer."""
    return service.flow_read(service.create_flow(db, body))


@router.get("/decision-flows", response_model=list[FlowRead], tags=["batch: decision flows"])
def list_flows(id: str, caller: Read, db: DbSession) -> object:
    return [service.flow_read(f) for f in service.list_flows(db)]


@router.get("/decision-flows/{flowId}", response_model=FlowRead, tags=["batch: decision flows"])
def get_flow(id: str, flowId: str, caller: Read, db: DbSession) -> object:
    return service.flow_read(service.get_flow(db, flowId))


@router.patch("/decision-flows/{flowId}", response_model=FlowRead, tags=["batch: decision flows"])
def update_flow(id: str, flowId: str, body: FlowUpdate, caller: Write, db: DbSession) -> object:
    return service.flow_read(service.update_flow(db, flowId, body))


@router.delete("/decision-flows/{flowId}", status_code=204, tags=["batch: decision flows"])
def delete_flow(id: str, flowId: str, caller: Write, db: DbSession) -> Response:
    """409 while a batch campaign uses the flow."""
    service.delete_flow(db, flowId)
    return Response(status_code=204)


# -- campaigns -------------------------------------------------------------------------------------
@router.post("/batch-campaigns", status_code=201, response_model=CampaignRead, tags=["batch: campaigns"])
def create_campaign(id: str, body: CampaignCreate, caller: Write, db: DbSession) -> object:
    """Create Campaign: decision flow, segment, schedule, volume constraints, channels, file output."""
    return campaigns.campaign_read(db, campaigns.create_campaign(db, body, caller.key_id))


@router.get("/batch-campaigns", response_model=list[CampaignRead], tags=["batch: campaigns"])
def list_campaigns(id: str, caller: Read, db: DbSession) -> object:
    """List Campaigns."""
    return [campaigns.campaign_read(db, c) for c in campaigns.list_campaigns(db)]


@router.get("/batch-campaigns/{campaignId}", response_model=CampaignRead, tags=["batch: campaigns"])
def get_campaign(id: str, campaignId: str, caller: Read, db: DbSession) -> object:
    """Get Campaign Detail (with `nextRunAt` when it runs on a schedule)."""
    return campaigns.campaign_read(db, campaigns.get_campaign(db, campaignId))


@router.patch("/batch-campaigns/{campaignId}", response_model=CampaignRead, tags=["batch: campaigns"])
def update_campaign(id: str, campaignId: str, body: CampaignUpdate, caller: Write, db: DbSession) -> object:
    """Update Campaign. `status` moves draft -> active | archived, active -> paused | archived,
    paused -> active | archived; any other move is a 409 naming both states."""
    return campaigns.campaign_read(db, campaigns.update_campaign(db, campaignId, body))


@router.post(
    "/batch-campaigns/{campaignId}/runs", status_code=201, response_model=RunRead, tags=["batch: runs"]
)
def trigger_run(id: str, campaignId: str, caller: Write, db: DbSession) -> object:
    """Trigger Run ("Run Now"): a `pending` run a worker picks up."""
    return campaigns.run_read(campaigns.trigger_run(db, campaignId))


@router.get("/batch-campaigns/{campaignId}/runs", response_model=list[RunRead], tags=["batch: runs"])
def list_runs(
    id: str, campaignId: str, caller: Read, db: DbSession, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> object:
    """List Campaign Runs, newest first."""
    return [campaigns.run_read(r) for r in campaigns.list_runs(db, campaignId, limit)]


@router.get("/batch-campaigns/{campaignId}/runs/{runId}", response_model=RunRead, tags=["batch: runs"])
def get_run(id: str, campaignId: str, runId: str, caller: Read, db: DbSession) -> object:
    """A run: status, timings, error, results (overall statistics and summary) and file."""
    return campaigns.run_read(campaigns.get_run(db, campaignId, runId))


@router.get(
    "/batch-campaigns/{campaignId}/runs/{runId}/customers", response_model=CustomersPage, tags=["batch: runs"]
)
def run_customers(
    id: str,
    campaignId: str,
    runId: str,
    caller: Read,
    db: DbSession,
    status: Literal["recommended", "skipped"] | None = None,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> object:
    """Per-customer results in customer order: the offers each received (names resolved), or why it
    received none (`notEligible`, `maxPerOffer`, `maxPerChannel`, `maxTotalPerRun`)."""
    return campaigns.customers_page(db, campaignId, runId, status=status, cursor=cursor, limit=limit)


@router.get("/batch-campaigns/{campaignId}/runs/{runId}/file", tags=["batch: runs"])
def run_file(id: str, campaignId: str, runId: str, caller: Read, db: DbSession) -> FileResponse:
    """The run's file (CSV or JSON), streamed."""
    path, media_type, name = campaigns.run_file(db, campaignId, runId)
    return FileResponse(path, media_type=media_type, filename=name)
