"""Paywalls: campaigns, placements, audiences in evaluation order (reorder up/down), each audience's
experiment chart, and a "try register" box that shows the decision for a typed user (a dry run)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from overture.db.session import Session
from overture.errors import Invalid
from overture.paywalls import service as paywalls
from overture.paywalls import service_experiments as experiments
from overture.paywalls.schemas import RegisterIn
from overture.paywalls.tables import decision_tables
from overture.ui.charts import experiment_chart, history_chart
from overture.ui.web import Ctx, Poster, User, form_values, json_field, parse_body, render, unit

router = APIRouter()
NAV = [("Paywalls", "/paywalls", "campaigns:read")]


@router.get("/paywalls", response_class=HTMLResponse)
def list_page(request: Request, ctx: Ctx, user: User) -> HTMLResponse:
    user.caller.require("campaigns:read")
    with unit(ctx, user) as session:
        campaigns = paywalls.list_campaigns(session)
        placements = {c.id: paywalls.list_placements(session, c.id) for c in campaigns}
        audiences = {c.id: len(paywalls.list_audiences(session, c.id)) for c in campaigns}
        walls = paywalls.list_paywalls(session)
    return render(
        request, "paywalls.html", campaigns=campaigns, placements=placements, audiences=audiences, walls=walls
    )


def _audiences_view(session: Session, user: Any, campaign_id: str) -> dict[str, Any]:
    audiences = paywalls.audience_views(session, paywalls.list_audiences(session, campaign_id))
    names = {p.id: p.name for p in paywalls.list_paywalls(session)}
    charts: dict[str, Any] = {}
    results: dict[str, Any] = {}
    histories: dict[str, Any] = {}
    if user.can("analytics:read"):
        for audience in audiences:
            if audience.experiment is None:
                continue
            result = experiments.experiment_results(session, campaign_id, audience.id)
            labels = {v.variant_id: names.get(v.paywall_id, v.paywall_id) for v in result.variants}
            results[audience.id] = result
            charts[audience.id] = experiment_chart(result.variants, labels)
            history = experiments.experiment_history(session, campaign_id, audience.id)
            histories[audience.id] = history_chart(history, labels, result.confidence_threshold)
    return {
        "campaign_id": campaign_id,
        "audiences": audiences,
        "paywall_names": names,
        "charts": charts,
        "results": results,
        "histories": histories,
    }


@router.get("/paywalls/{campaign_id}", response_class=HTMLResponse)
def campaign_page(request: Request, ctx: Ctx, user: User, campaign_id: str) -> HTMLResponse:
    user.caller.require("campaigns:read")
    with unit(ctx, user) as session:
        campaign = paywalls.get_campaign(session, campaign_id)
        placements = paywalls.list_placements(session, campaign_id)
        view = _audiences_view(session, user, campaign_id)
    return render(
        request,
        "paywall_campaign.html",
        campaign=campaign,
        placements=placements,
        try_placement=placements[0].name if placements else "",
        **view,
    )


@router.post("/paywalls/{campaign_id}/audiences/{audience_id}/move", response_class=HTMLResponse)
async def move(request: Request, ctx: Ctx, user: Poster, campaign_id: str, audience_id: str) -> HTMLResponse:
    """Move one audience up or down; the paywalls service checks and stores the whole new order."""
    user.caller.require("campaigns:write")
    direction = (await form_values(request)).get("direction")
    if direction not in ("up", "down"):
        raise Invalid("direction must be 'up' or 'down'", field="direction")
    with unit(ctx, user, write=True) as session:
        order = [a.id for a in paywalls.list_audiences(session, campaign_id)]
        if audience_id not in order:
            paywalls.get_audience(session, campaign_id, audience_id)  # the service's 404
        at = order.index(audience_id)
        to = at - 1 if direction == "up" else at + 1
        if 0 <= to < len(order):
            order[at], order[to] = order[to], order[at]
            paywalls.reorder_audiences(session, campaign_id, order)
    with unit(ctx, user) as session:
        view = _audiences_view(session, user, campaign_id)
    return render(request, "_audiences.html", **view)


@router.post("/paywalls/try", response_class=HTMLResponse)
async def try_register(request: Request, ctx: Ctx, user: Poster) -> HTMLResponse:
    """The decision register would return for this user, from the same compiled decision table,
    without recording an exposure or spending a frequency cap."""
    user.caller.require("campaigns:read")
    values = await form_values(request)
    body = parse_body(
        RegisterIn,
        {
            "placement": values.get("placement", ""),
            "user_id": values.get("user_id", ""),
            "user": json_field(values.get("user"), "user"),
            "device": json_field(values.get("device"), "device"),
        },
    )
    tables = decision_tables(ctx)
    workspace_id = user.caller.workspace_id
    table = tables.get(workspace_id) or tables.load(workspace_id)
    decision = table.decide(body.placement, body.user_id, user=body.user, device=body.device)
    answer = json.loads(decision.body)
    return render(request, "_decision.html", answer=answer, capped=decision.cap is not None)
