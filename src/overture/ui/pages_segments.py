"""Segments: list with reach and freshness, the filter editor with a live count, a member sample."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from overture.core.filters import OPERATORS
from overture.data import service as data
from overture.db.session import Session
from overture.segments import service as segments
from overture.segments.schemas import PreviewIn, SegmentCreate, SegmentUpdate
from overture.ui.web import PREFIX, Ctx, Poster, User, form_values, json_field, parse_body, render, unit

router = APIRouter()
NAV = [("Segments", "/segments", "segments:read")]
SAMPLE = 20


def editor_fields(session: Session, model_id: str | None) -> str:
    """The model's columns for the editor's field menus (JSON for a data attribute)."""
    if not model_id:
        return "[]"
    model = data.get_model(session, model_id)
    return json.dumps([{"name": c.name, "type": c.kind} for c in data.model_columns(session, model)])


def _editor_view(session: Session, model_id: str | None, filter_value: object) -> dict[str, Any]:
    models = data.list_models(session)
    chosen = model_id or (models[0].id if models else None)
    return {
        "models": models,
        "model_id": chosen,
        "fields_json": editor_fields(session, chosen),
        "operators_json": json.dumps(list(OPERATORS)),
        "filter_json": "" if filter_value in (None, {}, []) else json.dumps(filter_value),
    }


@router.get("/segments", response_class=HTMLResponse)
def list_page(request: Request, ctx: Ctx, user: User) -> HTMLResponse:
    user.caller.require("segments:read")
    with unit(ctx, user) as session:
        rows = [segments.segment_read(s) for s in segments.list_segments(session)]
        models = {m.id: m.name for m in data.list_models(session)}
    return render(request, "segments.html", segments=rows, models=models)


@router.get("/segments/new", response_class=HTMLResponse)
def new_page(request: Request, ctx: Ctx, user: User, model_id: str | None = None) -> HTMLResponse:
    user.caller.require("segments:write")
    with unit(ctx, user) as session:
        view = _editor_view(session, model_id, None)
    return render(request, "segment_edit.html", segment=None, **view)


@router.get("/segments/editor", response_class=HTMLResponse)
def editor_fragment(request: Request, ctx: Ctx, user: User, model_id: str = "") -> HTMLResponse:
    """The editor for another model (its own field list); the filter starts empty."""
    user.caller.require("segments:read")
    with unit(ctx, user) as session:
        view = _editor_view(session, model_id or None, None)
    return render(request, "_filter_editor.html", **view)


@router.post("/segments/preview", response_class=HTMLResponse)
async def preview(request: Request, ctx: Ctx, user: Poster) -> HTMLResponse:
    """The live count of the unsaved filter (the preview service: the same SQL as an evaluation)."""
    user.caller.require("segments:read")
    values = await form_values(request)
    body = parse_body(
        PreviewIn,
        {"model_id": values.get("model_id", ""), "filter": json_field(values.get("filter"), "filter")},
    )
    with unit(ctx, user) as session:
        result = segments.preview(session, body)
    return render(request, "_count.html", count=result.count)


@router.post("/segments")
async def create(request: Request, ctx: Ctx, user: Poster) -> Response:
    user.caller.require("segments:write")
    values = await form_values(request)
    body = parse_body(
        SegmentCreate,
        {
            "name": values.get("name", ""),
            "model_id": values.get("model_id", ""),
            "filter": json_field(values.get("filter"), "filter"),
        },
    )
    with unit(ctx, user, write=True) as session:
        segment = segments.create_segment(session, body)
    return _go(request, f"{PREFIX}/segments/{segment.id}")


def _go(request: Request, url: str) -> Response:
    """After a write: htmx follows HX-Redirect; a plain form post follows the 303."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


@router.get("/segments/{segment_id}", response_class=HTMLResponse)
def detail(request: Request, ctx: Ctx, user: User, segment_id: str) -> HTMLResponse:
    user.caller.require("segments:read")
    with unit(ctx, user) as session:
        segment = segments.segment_read(segments.get_segment(session, segment_id))
        sample = segments.members_page(session, segment_id, limit=SAMPLE, cursor=None)
        view = _editor_view(session, segment.model_id, segment.filter)
    return render(request, "segment_edit.html", segment=segment, sample=sample, **view)


@router.post("/segments/{segment_id}")
async def update(request: Request, ctx: Ctx, user: Poster, segment_id: str) -> Response:
    user.caller.require("segments:write")
    values = await form_values(request)
    body = parse_body(
        SegmentUpdate,
        {
            "name": values.get("name") or None,
            "model_id": values.get("model_id") or None,
            "filter": json_field(values.get("filter"), "filter"),
        },
    )
    with unit(ctx, user, write=True) as session:
        segments.update_segment(session, segment_id, body)
    return _go(request, f"{PREFIX}/segments/{segment_id}")


@router.post("/segments/{segment_id}/evaluate")
def evaluate(request: Request, ctx: Ctx, user: Poster, segment_id: str) -> Response:
    user.caller.require("segments:write")
    segments.evaluate_segment(ctx, user.caller.workspace_id, segment_id)
    return _go(request, f"{PREFIX}/segments/{segment_id}")


@router.post("/segments/{segment_id}/delete")
def delete(request: Request, ctx: Ctx, user: Poster, segment_id: str) -> Response:
    user.caller.require("segments:write")
    with unit(ctx, user, write=True) as session:
        segments.delete_segment(session, segment_id)
    return _go(request, f"{PREFIX}/segments")
