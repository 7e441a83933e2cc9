"""HTTP: segments, their reach, members and previews (`/api/v1/workspaces/{id}/segments`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from overture.auth.deps import DbSession, check_workspace_path, get_ctx, require
from overture.auth.service import Caller
from overture.db.context import AppContext
from overture.segments import service
from overture.segments.schemas import (
    MembersPage,
    PreviewIn,
    PreviewRead,
    SegmentCreate,
    SegmentRead,
    SegmentUpdate,
)

router = APIRouter(
    prefix="/api/v1/workspaces/{id}/segments",
    tags=["segments"],
    dependencies=[Depends(check_workspace_path)],
)
SegmentsRead = Annotated[Caller, Depends(require("segments:read"))]
SegmentsWrite = Annotated[Caller, Depends(require("segments:write"))]
Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.post("", status_code=201, response_model=SegmentRead)
def create_segment(id: str, body: SegmentCreate, caller: SegmentsWrite, db: DbSession) -> object:
    """Save a filter over a model; the filter is checked against the model's columns (422 names the path)."""
    return service.segment_read(service.create_segment(db, body))


@router.get("", response_model=list[SegmentRead])
def list_segments(id: str, caller: SegmentsRead, db: DbSession) -> object:
    return [service.segment_read(s) for s in service.list_segments(db)]


@router.post("/preview", response_model=PreviewRead)
def preview(id: str, body: PreviewIn, caller: SegmentsRead, ctx: Ctx) -> object:
    """Count the members of an unsaved `{model_id, filter}`."""
    # A read transaction (the POST would otherwise take the write lock while the count runs).
    with ctx.transaction(write=False, workspace_id=caller.workspace_id) as db:
        return service.preview(db, body)


@router.get("/{segment_id}", response_model=SegmentRead)
def get_segment(id: str, segment_id: str, caller: SegmentsRead, db: DbSession) -> object:
    return service.segment_read(service.get_segment(db, segment_id))


@router.patch("/{segment_id}", response_model=SegmentRead)
def update_segment(
    id: str, segment_id: str, body: SegmentUpdate, caller: SegmentsWrite, db: DbSession
) -> object:
    """Change name, model or filter; a new model or filter makes the last reach stale."""
    return service.segment_read(service.update_segment(db, segment_id, body))


@router.delete("/{segment_id}", status_code=204)
def delete_segment(id: str, segment_id: str, caller: SegmentsWrite, db: DbSession) -> Response:
    service.delete_segment(db, segment_id)
    return Response(status_code=204)


@router.post("/{segment_id}/evaluate", response_model=SegmentRead)
def evaluate(id: str, segment_id: str, caller: SegmentsWrite, ctx: Ctx) -> object:
    """Evaluate reach now (idle/ok/failed -> pending -> ok | failed). A failure answers 200 with
    `reach.status = "failed"` and `reach.error`; the prior count is kept. 409 while pending."""
    # No request transaction: pending must commit (and be visible) before the count runs.
    return service.segment_read(service.evaluate_segment(ctx, caller.workspace_id, segment_id))


@router.get("/{segment_id}/members", response_model=MembersPage)
def members(
    id: str,
    segment_id: str,
    caller: SegmentsRead,
    db: DbSession,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> object:
    """A page of member keys in primary key order; follow `next_cursor` until it is null."""
    return service.members_page(db, segment_id, limit=limit, cursor=cursor)
