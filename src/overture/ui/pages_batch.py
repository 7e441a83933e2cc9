"""Batch decisioning campaigns: list, runs (polled while one is open) with a "Run now" button, the
latest finished run's summary charts by offer and by channel, and its file download."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from overture.batch import service as batch
from overture.batch import service_campaigns as campaigns
from overture.batch.states import OPEN_RUNS
from overture.db.session import Session
from overture.ui.charts import bar_chart
from overture.ui.web import Ctx, Poster, User, render, unit

router = APIRouter()
NAV = [("Batch", "/batch", "campaigns:read")]


@router.get("/batch", response_class=HTMLResponse)
def list_page(request: Request, ctx: Ctx, user: User) -> HTMLResponse:
    user.caller.require("campaigns:read")
    with unit(ctx, user) as session:
        rows = [campaigns.campaign_read(session, c) for c in campaigns.list_campaigns(session)]
        flows = {f.id: f.name for f in batch.list_flows(session)}
    return render(request, "batch.html", campaigns=rows, flows=flows)


def _runs_view(session: Session, campaign_id: str) -> dict[str, Any]:
    campaign = campaigns.campaign_read(session, campaigns.get_campaign(session, campaign_id))
    runs = [campaigns.run_read(r) for r in campaigns.list_runs(session, campaign_id, 20)]
    latest = next((r for r in runs if r.results is not None), None)
    charts = {}
    if latest is not None and latest.results is not None:
        summary = latest.results.summary
        charts["offer"] = bar_chart([(o.offer_name, o.count) for o in summary.by_offer])
        charts["channel"] = bar_chart(
            [(c.channel_name or "(no channel)", c.count) for c in summary.by_channel]
        )
    return {
        "campaign": campaign,
        "runs": runs,
        "latest": latest,
        "charts": charts,
        "polling": any(r.status in OPEN_RUNS for r in runs),
    }


@router.get("/batch/{campaign_id}", response_class=HTMLResponse)
def campaign_page(request: Request, ctx: Ctx, user: User, campaign_id: str) -> HTMLResponse:
    user.caller.require("campaigns:read")
    with unit(ctx, user) as session:
        view = _runs_view(session, campaign_id)
    return render(request, "batch_campaign.html", **view)


@router.get("/batch/{campaign_id}/live", response_class=HTMLResponse)
def live(request: Request, ctx: Ctx, user: User, campaign_id: str) -> HTMLResponse:
    user.caller.require("campaigns:read")
    with unit(ctx, user) as session:
        view = _runs_view(session, campaign_id)
    return render(request, "_batch_runs.html", **view)


@router.post("/batch/{campaign_id}/run", response_class=HTMLResponse)
def run_now(request: Request, ctx: Ctx, user: Poster, campaign_id: str) -> HTMLResponse:
    user.caller.require("campaigns:write")
    with unit(ctx, user, write=True) as session:
        campaigns.trigger_run(session, campaign_id)
    with unit(ctx, user) as session:
        view = _runs_view(session, campaign_id)
    return render(request, "_batch_runs.html", **view)


@router.get("/batch/{campaign_id}/runs/{run_id}/file")
def run_file(ctx: Ctx, user: User, campaign_id: str, run_id: str) -> FileResponse:
    user.caller.require("campaigns:read")
    with unit(ctx, user) as session:
        path, media_type, name = campaigns.run_file(session, campaign_id, run_id)
    return FileResponse(path, media_type=media_type, filename=name)
