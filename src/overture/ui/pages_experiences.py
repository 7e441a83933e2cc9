"""Orchestrated experiences: the campaign > stage > experience tree, the ranked candidates for a
vehicle and channel, and the decide explainer for one user (a dry run: nothing is recorded)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from overture.core.encode import isoformat_z
from overture.experiences import decisions as experience_decisions
from overture.experiences import service as experiences
from overture.experiences.schemas import DecideBody
from overture.ui.web import Ctx, Poster, User, form_values, json_field, parse_body, render, unit

router = APIRouter()
NAV = [("Experiences", "/experiences", "campaigns:read")]


@router.get("/experiences", response_class=HTMLResponse)
def tree_page(request: Request, ctx: Ctx, user: User) -> HTMLResponse:
    user.caller.require("campaigns:read")
    with unit(ctx, user) as session:
        campaigns = experiences.list_groups(
            session, deleted=False, skip_child_groups=False, skip_child_experiences=False
        )
        orphans = experiences.list_orphans(session, deleted=False)
    return render(request, "experiences.html", campaigns=campaigns, orphans=orphans)


@router.post("/experiences/candidates", response_class=HTMLResponse)
async def candidates(request: Request, ctx: Ctx, user: Poster) -> HTMLResponse:
    """The ranked candidates `GET /api/experience/candidate` answers, from the same cached table."""
    user.caller.require("campaigns:read")
    values = await form_values(request)
    vehicle = (values.get("vehicle") or "").strip()[:200] or None
    channel = (values.get("channel") or "").strip()[:100] or None
    cache = experience_decisions.tables(ctx)
    table = cache.get(user.caller.workspace_id) or cache.load(user.caller.workspace_id)
    view = table.view(ctx, cache.now(), vehicle, channel)
    answer = {"generatedAt": isoformat_z(view.generated_at), "candidates": json.loads(view.body)}
    return render(request, "_candidates.html", answer=answer)


@router.post("/experiences/decide", response_class=HTMLResponse)
async def decide(request: Request, ctx: Ctx, user: Poster) -> HTMLResponse:
    """Who wins for this user and why each other candidate lost; `record` is off (a dry run)."""
    user.caller.require("campaigns:read")
    values = await form_values(request)
    body = parse_body(
        DecideBody,
        {
            "userId": values.get("user_id", ""),
            "vehicle": values.get("vehicle") or None,
            "channel": values.get("channel") or None,
            "context": json_field(values.get("context"), "context"),
            "limit": values.get("limit") or 1,
            "record": False,
        },
    )
    answer = experience_decisions.decide_for(ctx, user.caller.workspace_id, body)
    return render(request, "_decide.html", answer=answer)
