"""HTTP: /api/v1/workspaces/{id}/destinations (scopes destinations:read / destinations:write)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends

from overture.auth.deps import DbSession, check_workspace_path, get_ctx, require
from overture.db.context import AppContext
from overture.delivery import service
from overture.delivery.schemas import (
    DestinationCreate,
    DestinationRead,
    DestinationTest,
    DestinationUpdate,
    TestOutcome,
)

router = APIRouter(
    prefix="/api/v1/workspaces/{id}/destinations",
    tags=["destinations"],
    dependencies=[Depends(check_workspace_path)],
)
Ctx = Annotated[AppContext, Depends(get_ctx)]
READ = [Depends(require("destinations:read"))]
WRITE = [Depends(require("destinations:write"))]


@router.post("", status_code=201, response_model=DestinationRead, dependencies=WRITE)
def create_destination(id: str, body: DestinationCreate, db: DbSession) -> object:
    """Create a destination. The config is validated for its type and its target checked against
    the egress rules (422 naming the field, e.g. `config.url`)."""
    return service.to_read(service.create_destination(db, body))


@router.get("", response_model=list[DestinationRead], dependencies=READ)
def list_destinations(id: str, db: DbSession) -> object:
    return [service.to_read(row) for row in service.list_destinations(db)]


@router.get("/{destination_id}", response_model=DestinationRead, dependencies=READ)
def get_destination(id: str, destination_id: str, db: DbSession) -> object:
    return service.to_read(service.get_destination(db, destination_id))


@router.patch("/{destination_id}", response_model=DestinationRead, dependencies=WRITE)
def update_destination(id: str, destination_id: str, body: DestinationUpdate, db: DbSession) -> object:
    """Change name, enabled or config. Config keys merge into the stored config; secrets not sent
    (or sent back as '********') are kept."""
    return service.to_read(service.update_destination(db, destination_id, body))


@router.delete("/{destination_id}", status_code=204, dependencies=WRITE)
def delete_destination(id: str, destination_id: str, db: DbSession) -> None:
    service.delete_destination(db, destination_id)


@router.post("/{destination_id}/test", response_model=TestOutcome, dependencies=WRITE)
def test_destination(
    id: str, destination_id: str, ctx: Ctx, body: Annotated[DestinationTest | None, Body()] = None
) -> object:
    """Send one test message through the real adapter and return its outcome (`sent`, `retry` or
    `failed` with the error). An unreachable or refused target is an outcome, not an HTTP error."""
    outcome = service.test_destination(ctx, id, destination_id, body.payload if body else None)
    return TestOutcome(
        idempotency_key=outcome.idempotency_key,
        status=outcome.status,
        error=outcome.error,
        retry_after=outcome.retry_after,
    )
