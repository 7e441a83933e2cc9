"""HTTP: the outbox ledger of a workspace, for people (`GET /api/v1/workspaces/{id}/deliveries`):
what was sent, what is owed, what failed and why. Reading needs `destinations:read`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from overture.auth.deps import DbSession, check_workspace_path, require
from overture.auth.service import Caller
from overture.runtime import deliveries

router = APIRouter(
    prefix="/api/v1/workspaces/{id}", tags=["deliveries"], dependencies=[Depends(check_workspace_path)]
)
Reader = Annotated[Caller, Depends(require("destinations:read"))]
State = Literal["pending", "sending", "sent", "failed", "unknown"]


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    destination_id: str
    idempotency_key: str
    source_kind: str
    source_id: str | None
    status: str
    attempts: int
    possible_duplicate: bool
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryRead]
    #: Pass back as `cursor` for the next (older) page; null on the last one.
    next_cursor: int | None


@router.get("/deliveries", response_model=DeliveryPage)
def list_deliveries(
    id: str,
    caller: Reader,
    db: DbSession,
    status: State | None = None,
    destination_id: str | None = None,
    source_kind: Annotated[str | None, Query(description="e.g. journey_run, experience_export")] = None,
    source_id: Annotated[str | None, Query(description="the run (or object) that caused them")] = None,
    possible_duplicate: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=deliveries.MAX_LIST)] = 100,
    cursor: Annotated[int | None, Query(ge=1, description="next_cursor of the previous page")] = None,
) -> DeliveryPage:
    """Outbox messages, newest first: state, attempts, last error, possible duplicate."""
    rows = deliveries.list_messages(
        db,
        status=status,
        possible_duplicate=possible_duplicate,
        destination_id=destination_id,
        source_kind=source_kind,
        source_id=source_id,
        before_id=cursor,
        limit=limit,
    )
    return DeliveryPage(
        deliveries=[DeliveryRead.model_validate(r) for r in rows],
        next_cursor=rows[-1].id if len(rows) == limit else None,
    )
