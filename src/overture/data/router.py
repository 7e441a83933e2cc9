"""HTTP: entity models, profile records and events (`/api/v1/workspaces/{id}/...`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from overture.auth.deps import DbSession, check_workspace_path, get_ctx, require
from overture.auth.service import Caller
from overture.data import events as events_service
from overture.data import records as records_service
from overture.data import service
from overture.data.schemas import (
    EventsIn,
    EventsResult,
    ModelCreate,
    ModelRead,
    ModelUpdate,
    RecordsIn,
    RecordsResult,
)
from overture.db.context import AppContext

router = APIRouter(
    prefix="/api/v1/workspaces/{id}", tags=["data"], dependencies=[Depends(check_workspace_path)]
)
ModelsRead = Annotated[Caller, Depends(require("models:read"))]
ModelsWrite = Annotated[Caller, Depends(require("models:write"))]
EventsWrite = Annotated[Caller, Depends(require("events:write"))]
Ctx = Annotated[AppContext, Depends(get_ctx)]


@router.post("/models", status_code=201, response_model=ModelRead)
def create_model(id: str, body: ModelCreate, caller: ModelsWrite, db: DbSession) -> object:
    """Register a table (`table`), a SELECT (`sql`), or neither for a table Overture manages."""
    return service.model_read(db, service.create_model(db, body))


@router.get("/models", response_model=list[ModelRead])
def list_models(id: str, caller: ModelsRead, db: DbSession) -> object:
    return [service.model_read(db, m) for m in service.list_models(db)]


@router.get("/models/{model_id}", response_model=ModelRead)
def get_model(id: str, model_id: str, caller: ModelsRead, db: DbSession) -> object:
    return service.model_read(db, service.get_model(db, model_id))


@router.patch("/models/{model_id}", response_model=ModelRead)
def update_model(id: str, model_id: str, body: ModelUpdate, caller: ModelsWrite, db: DbSession) -> object:
    return service.model_read(db, service.update_model(db, model_id, body))


@router.delete("/models/{model_id}", status_code=204)
def delete_model(id: str, model_id: str, caller: ModelsWrite, db: DbSession) -> Response:
    service.delete_model(db, model_id)
    return Response(status_code=204)


@router.post(
    "/models/{model_id}/records", response_model=RecordsResult, openapi_extra={"x-body-limit": "import"}
)
def upsert_records(id: str, model_id: str, body: RecordsIn, caller: ModelsWrite, ctx: Ctx) -> object:
    """Upsert up to 10,000 records by primary key, all or nothing (413 above that)."""
    # A read transaction only: the write goes to the data source, not the application database.
    with ctx.transaction(write=False, workspace_id=caller.workspace_id) as db:
        return records_service.upsert_records(db, model_id, body.records)


@router.get("/models/{model_id}/records/{key}")
def get_record(id: str, model_id: str, key: str, caller: ModelsRead, db: DbSession) -> dict[str, Any]:
    """One profile by its primary key."""
    return records_service.get_record(db, model_id, key)


@router.post("/events", response_model=EventsResult, openapi_extra={"x-body-limit": "import"})
def record_events(id: str, body: EventsIn, caller: EventsWrite, ctx: Ctx) -> object:
    """Append up to 10,000 events (public keys may call this); an `event_id` seen before is stored
    once (`duplicates`)."""
    ids = events_service.event_ids([e.event_id for e in body.events], body.batch_id)
    if not any(ids):  # nothing to claim: no write to the application database
        return EventsResult(accepted=events_service.record_events(ctx, caller.workspace_id, body.events))
    with ctx.transaction(workspace_id=caller.workspace_id) as db:
        keep = events_service.first_seen(db, ids)
        fresh = [e for e, new in zip(body.events, keep, strict=True) if new]
        accepted = events_service.record_events(ctx, caller.workspace_id, fresh)
    return EventsResult(accepted=accepted, duplicates=len(body.events) - accepted)
