"""HTTP: the broadcast authoring API under /api/v1/workspaces/{id}/ (templates, proofs,
broadcasts, preflight, publish/unschedule/cancel/send-now/retry-failed, executions)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from overture.auth.deps import DbSession, check_workspace_path, get_ctx, require
from overture.auth.service import Caller
from overture.broadcasts import service, views
from overture.broadcasts.schemas import (
    BroadcastCreate,
    BroadcastRead,
    BroadcastUpdate,
    ExecutionRead,
    ProofCreate,
    ProofRead,
    RecipientsPage,
    TemplateCreate,
    TemplateRead,
    TemplateUpdate,
)
from overture.db.context import AppContext

router = APIRouter(
    prefix="/api/v1/workspaces/{id}", tags=["broadcasts"], dependencies=[Depends(check_workspace_path)]
)
Read = Annotated[Caller, Depends(require("campaigns:read"))]
Write = Annotated[Caller, Depends(require("campaigns:write"))]
Ctx = Annotated[AppContext, Depends(get_ctx)]


# -- templates ------------------------------------------------------------------------------------


@router.post("/templates", status_code=201, response_model=TemplateRead)
def create_template(id: str, body: TemplateCreate, caller: Write, db: DbSession) -> object:
    """A Liquid template (a body that does not parse is a 422 naming the line)."""
    return views.template_read(db, service.create_template(db, body))


@router.get("/templates", response_model=list[TemplateRead])
def list_templates(id: str, caller: Read, db: DbSession) -> object:
    return [views.template_read(db, t) for t in service.list_templates(db)]


@router.get("/templates/{templateId}", response_model=TemplateRead)
def get_template(id: str, templateId: str, caller: Read, db: DbSession) -> object:
    return views.template_read(db, service.get_template(db, templateId))


@router.patch("/templates/{templateId}", response_model=TemplateRead)
def update_template(id: str, templateId: str, body: TemplateUpdate, caller: Write, db: DbSession) -> object:
    return views.template_read(db, service.update_template(db, templateId, body))


@router.post("/templates/{templateId}/proofs", status_code=201, response_model=ProofRead)
def send_proof(id: str, templateId: str, body: ProofCreate, caller: Write, db: DbSession) -> object:
    """Send a real proof through the channel's destination now; `status` is `sent` or `failed`."""
    return views.proof_read(service.send_proof(db, templateId, body))


@router.get("/templates/{templateId}/proofs", response_model=list[ProofRead])
def list_proofs(id: str, templateId: str, caller: Read, db: DbSession) -> object:
    return [views.proof_read(p) for p in service.list_proofs(db, templateId)]


@router.post("/templates/{templateId}/proofs/{proofId}/approve", response_model=ProofRead)
def approve_proof(id: str, templateId: str, proofId: str, caller: Write, db: DbSession) -> object:
    return views.proof_read(service.approve_proof(db, templateId, proofId))


# -- broadcasts -----------------------------------------------------------------------------------


@router.post("/broadcasts", status_code=201, response_model=BroadcastRead)
def create_broadcast(id: str, body: BroadcastCreate, caller: Write, db: DbSession) -> object:
    return views.broadcast_read(db, service.create_broadcast(db, body, caller.key_id))


@router.get("/broadcasts", response_model=list[BroadcastRead])
def list_broadcasts(id: str, caller: Read, db: DbSession) -> object:
    return [views.broadcast_read(db, b) for b in service.list_broadcasts(db)]


@router.get("/broadcasts/{broadcastId}", response_model=BroadcastRead)
def get_broadcast(id: str, broadcastId: str, caller: Read, db: DbSession) -> object:
    return views.broadcast_read(db, service.get_broadcast(db, broadcastId))


@router.patch("/broadcasts/{broadcastId}", response_model=BroadcastRead)
def update_broadcast(
    id: str, broadcastId: str, body: BroadcastUpdate, caller: Write, db: DbSession
) -> object:
    """Change a draft (a published broadcast is unscheduled first). Any change resets the preflight."""
    return views.broadcast_read(db, service.update_broadcast(db, broadcastId, body))


@router.delete("/broadcasts/{broadcastId}", status_code=204)
def delete_broadcast(id: str, broadcastId: str, caller: Write, db: DbSession) -> Response:
    service.delete_broadcast(db, broadcastId)
    return Response(status_code=204)


@router.post("/broadcasts/{broadcastId}/reach", response_model=BroadcastRead)
def evaluate_reach(id: str, broadcastId: str, caller: Write, ctx: Ctx) -> object:
    """Count the audience (included minus excluded, deduplicated) now. Reach is `pending` while it
    counts (its own transactions, so readers see it), then `ok` or `failed`."""
    service.evaluate_reach(ctx, caller.workspace_id, broadcastId)
    with ctx.transaction(write=False, workspace_id=caller.workspace_id) as db:
        return views.broadcast_read(db, service.get_broadcast(db, broadcastId))


@router.post("/broadcasts/{broadcastId}/preflight", response_model=BroadcastRead)
def preflight(id: str, broadcastId: str, caller: Write, db: DbSession) -> object:
    """Run and store every check; `preflight.status` is `passed` or `failed`."""
    return views.broadcast_read(db, service.run_preflight(db, broadcastId))


@router.post("/broadcasts/{broadcastId}/publish", response_model=BroadcastRead)
def publish(id: str, broadcastId: str, caller: Write, db: DbSession) -> object:
    """Schedule the send (409 while the preflight has failed or was never run)."""
    return views.broadcast_read(db, service.publish(db, broadcastId))


@router.post("/broadcasts/{broadcastId}/unschedule", response_model=BroadcastRead)
def unschedule(id: str, broadcastId: str, caller: Write, db: DbSession) -> object:
    return views.broadcast_read(db, service.unschedule(db, broadcastId))


@router.post("/broadcasts/{broadcastId}/cancel", response_model=BroadcastRead)
def cancel(id: str, broadcastId: str, caller: Write, db: DbSession) -> object:
    """Stop a running send (unsent messages are cancelled and counted) and drop the schedule."""
    return views.broadcast_read(db, service.cancel(db, broadcastId))


@router.post("/broadcasts/{broadcastId}/archive", response_model=BroadcastRead)
def archive(id: str, broadcastId: str, caller: Write, db: DbSession) -> object:
    return views.broadcast_read(db, service.archive(db, broadcastId))


@router.post("/broadcasts/{broadcastId}/send-now", status_code=202, response_model=ExecutionRead)
def send_now(id: str, broadcastId: str, caller: Write, db: DbSession) -> object:
    """Start an execution now (the preflight runs first, without its schedule check)."""
    return views.execution_read(service.send_now(db, broadcastId))


@router.post("/broadcasts/{broadcastId}/retry-failed", status_code=202, response_model=ExecutionRead)
def retry_failed(id: str, broadcastId: str, caller: Write, db: DbSession) -> object:
    """Re-send only the failed recipients of the last execution, each as a new attempt."""
    return views.execution_read(service.retry_failed(db, broadcastId))


@router.get("/broadcasts/{broadcastId}/executions", response_model=list[ExecutionRead])
def list_executions(id: str, broadcastId: str, caller: Read, db: DbSession) -> object:
    return [views.execution_read(e) for e in service.list_executions(db, broadcastId)]


@router.get("/broadcasts/{broadcastId}/executions/{executionId}", response_model=ExecutionRead)
def get_execution(id: str, broadcastId: str, executionId: str, caller: Read, db: DbSession) -> object:
    return views.execution_read(service.get_execution(db, broadcastId, executionId))


@router.get("/broadcasts/{broadcastId}/executions/{executionId}/recipients", response_model=RecipientsPage)
def list_recipients(
    id: str,
    broadcastId: str,
    executionId: str,
    caller: Read,
    db: DbSession,
    outcome: Annotated[str | None, Query(description="dropped, cancelled, sent, failed or pending")] = None,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> object:
    """An execution's recipients: how far each got and, for those that dropped out, why."""
    rows, cursor = service.list_recipients(
        db, broadcastId, executionId, outcome=outcome, after=after, limit=limit
    )
    return RecipientsPage(
        execution_id=executionId, recipients=[views.recipient_read(r) for r in rows], next_cursor=cursor
    )
