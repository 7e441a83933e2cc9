"""Journeys: list with lifecycle buttons, the canvas (tiles at their positions, member counts from
stats, validation errors on the tiles they name), runs (polled while one is open), a member's path."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from overture.core.filters import OPERATORS
from overture.data import service as data
from overture.db.session import Session
from overture.errors import Invalid, NotFound
from overture.journeys import service as journeys
from overture.journeys.lifecycle import (
    ACTION_TARGETS,
    JOURNEY,
    RUNNABLE,
    Action,
    JourneyStatus,
    RunStatus,
    RunTrigger,
)
from overture.journeys.schemas import JourneyCreate
from overture.ui.charts import journey_canvas
from overture.ui.pages_segments import editor_fields
from overture.ui.web import PREFIX, Ctx, Poster, User, form_values, json_field, parse_body, render, unit

router = APIRouter()
NAV = [("Journeys", "/journeys", "journeys:read")]
OPEN_RUN = (RunStatus.PENDING, RunStatus.RUNNING)
LIFECYCLE = (Action.ACTIVATE, Action.PAUSE, Action.RESUME, Action.DRAIN)
#: What "New journey" starts from: enter, wait a day, leave (edit freely before saving).
STARTER_TILES = [
    {"id": "entry", "type": "entry", "name": "Enter", "position": {"x": 0, "y": 0}},
    {
        "id": "wait",
        "type": "wait",
        "name": "Wait a day",
        "config": {"duration": 1, "unit": "days"},
        "position": {"x": 0, "y": 130},
    },
    {"id": "done", "type": "exit", "name": "Done", "position": {"x": 0, "y": 260}},
]
STARTER_EDGES = [{"from": "entry", "to": "wait"}, {"from": "wait", "to": "done"}]


def actions_for(status: str) -> list[str]:
    """The lifecycle buttons the transition table allows from `status` (plus trigger when runnable)."""
    try:
        current = JourneyStatus(status)
    except ValueError:
        return []
    allowed = [a.value for a in LIFECYCLE if JOURNEY.table.get((current, ACTION_TARGETS[a])) == a]
    if status in RUNNABLE:
        allowed.append("trigger")
    return allowed


@router.get("/journeys", response_class=HTMLResponse)
def list_page(request: Request, ctx: Ctx, user: User) -> HTMLResponse:
    user.caller.require("journeys:read")
    with unit(ctx, user) as session:
        items = journeys.list_journeys(session)
    rows = [(j, actions_for(j.status)) for j in items]
    return render(request, "journeys.html", rows=rows)


@router.get("/journeys/new", response_class=HTMLResponse)
def new_page(request: Request, ctx: Ctx, user: User) -> HTMLResponse:
    user.caller.require("journeys:write")
    with unit(ctx, user) as session:
        models = data.list_models(session)
        fields_json = editor_fields(session, models[0].id if models else None)
    return render(
        request,
        "journey_new.html",
        models=models,
        fields_json=fields_json,
        operators_json=json.dumps(list(OPERATORS)),
        tiles_json=json.dumps(STARTER_TILES, indent=1),
        edges_json=json.dumps(STARTER_EDGES, indent=1),
    )


@router.post("/journeys")
async def create(request: Request, ctx: Ctx, user: Poster) -> Response:
    user.caller.require("journeys:write")
    values = await form_values(request)
    body = parse_body(
        JourneyCreate,
        {
            "name": values.get("name", ""),
            "description": values.get("description", ""),
            "parent_model_id": values.get("parent_model_id", ""),
            "entry_criteria": json_field(values.get("entry_criteria"), "entry_criteria"),
            "exit_criteria": json_field(values.get("exit_criteria"), "exit_criteria"),
            "tiles": json_field(values.get("tiles"), "tiles", empty=[]),
            "edges": json_field(values.get("edges"), "edges", empty=[]),
            "schedule": values.get("schedule") or None,
        },
    )
    with unit(ctx, user, write=True) as session:
        journey = journeys.create_journey(session, user.caller.key_id, body)
    url = f"{PREFIX}/journeys/{journey.id}"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _live(session: Session, user: Any, journey_id: str) -> dict[str, Any]:
    journey = journeys.get_journey(session, journey_id)
    runs = journeys.list_runs(session, journey_id)
    problems = journeys.validation_errors(session, journey)
    counts: dict[str, dict[str, int]] = {}
    total = None
    if user.can("analytics:read"):
        stats = journeys.stats(session, journey_id)
        counts = {tile_id: c.model_dump() for tile_id, c in stats.tiles.items()}
        total = stats.total
    return {
        "journey": journey,
        "runs": runs,
        "polling": any(r.status in OPEN_RUN for r in runs),
        "canvas": journey_canvas(journey.tiles, journey.edges, counts, problems),
        "problems": problems,
        "total": total,
        "actions": actions_for(journey.status),
        "show_counts": user.can("analytics:read"),
    }


@router.get("/journeys/{journey_id}", response_class=HTMLResponse)
def detail(request: Request, ctx: Ctx, user: User, journey_id: str) -> HTMLResponse:
    user.caller.require("journeys:read")
    with unit(ctx, user) as session:
        view = _live(session, user, journey_id)
    return render(request, "journey.html", **view)


@router.get("/journeys/{journey_id}/live", response_class=HTMLResponse)
def live(request: Request, ctx: Ctx, user: User, journey_id: str) -> HTMLResponse:
    """The canvas, counts and runs (htmx polls this every 2 s while a run is open)."""
    user.caller.require("journeys:read")
    with unit(ctx, user) as session:
        view = _live(session, user, journey_id)
    return render(request, "_journey_live.html", **view)


@router.post("/journeys/{journey_id}/{action}", response_class=HTMLResponse)
def lifecycle(request: Request, ctx: Ctx, user: Poster, journey_id: str, action: str) -> HTMLResponse:
    """activate / pause / resume / drain / trigger, through the journeys service (which owns the
    transition table, validation on activation, and one open run per journey)."""
    user.caller.require("journeys:write")
    with unit(ctx, user, write=True) as session:
        if action == "trigger":
            journeys.trigger_run(session, journey_id, RunTrigger.MANUAL)
        else:
            try:
                chosen = Action(action)
            except ValueError:
                chosen = None
            if chosen not in LIFECYCLE:
                raise NotFound(f"no journey action '{action}'")
            journeys.change_status(session, journey_id, chosen)
    with unit(ctx, user) as session:
        view = _live(session, user, journey_id)
    return render(request, "_journey_live.html", **view)


@router.get("/journeys/{journey_id}/member", response_class=HTMLResponse)
def member(request: Request, ctx: Ctx, user: User, journey_id: str, member_id: str = "") -> HTMLResponse:
    user.caller.require("journeys:read")
    if not member_id.strip():
        raise Invalid("type a member id", field="member_id")
    with unit(ctx, user) as session:
        path = journeys.member_path(session, journey_id, member_id.strip()[:200])
    return render(request, "_member_path.html", member=path)
