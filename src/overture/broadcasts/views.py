"""Response shapes of the authoring API, built from rows (reads only)."""

from __future__ import annotations

from overture.broadcasts import audience
from overture.broadcasts.models import COUNTS, EXTRA_COUNTS, Broadcast, Execution, Proof, Recipient, Template
from overture.broadcasts.schemas import (
    Audience,
    BroadcastRead,
    Counts,
    ExecutionRead,
    PreflightRead,
    ProofRead,
    ReachRead,
    RecipientRead,
    TemplateRead,
)
from overture.broadcasts.service import STAGES, latest_execution, proof_status
from overture.db.session import Session


def template_read(session: Session, template: Template) -> TemplateRead:
    return TemplateRead(
        id=template.id,
        name=template.name,
        channel=template.channel,
        subject=template.subject,
        body=template.body,
        status=template.status,
        proof_status=proof_status(session, template.id),
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


def proof_read(proof: Proof) -> ProofRead:
    return ProofRead.model_validate(proof, from_attributes=True)


def execution_read(execution: Execution) -> ExecutionRead:
    counts = {name: int(getattr(execution, name)) for name in (*COUNTS, *EXTRA_COUNTS, "zone_fallbacks")}
    return ExecutionRead(
        id=execution.id,
        broadcast_id=execution.broadcast_id,
        touchpoint_id=execution.touchpoint_id,
        manifest_id=execution.manifest_id,
        status=execution.status,
        phase=execution.phase,
        started_at=execution.started_at,
        completed_at=execution.completed_at,
        counts=Counts(**counts),
        error=execution.error,
    )


def broadcast_read(session: Session, broadcast: Broadcast) -> BroadcastRead:
    latest = latest_execution(session, broadcast.id)
    return BroadcastRead(
        id=broadcast.id,
        name=broadcast.name,
        channel=broadcast.channel,
        template_id=broadcast.template_id,
        destination_id=broadcast.destination_id,
        address_field=broadcast.address_field,
        model_id=broadcast.model_id,
        audience=Audience(**broadcast.audience),
        reach=ReachRead(
            status=broadcast.reach_status,
            evaluated_count=broadcast.reach_count,
            evaluated_at=broadcast.reach_evaluated_at,
            is_stale=audience.is_stale(session, broadcast),
            error=broadcast.reach_error if broadcast.reach_status == "failed" else None,
        ),
        schedule=broadcast.schedule,
        scheduled=broadcast.scheduled,
        authoring_status=broadcast.authoring_status,
        preflight=PreflightRead(
            status=broadcast.preflight_status,
            checks=broadcast.preflight_checks,
            evaluated_at=broadcast.preflight_at,
        ),
        proof_status=proof_status(session, broadcast.template_id),
        latest_execution=execution_read(latest) if latest is not None else None,
        created_at=broadcast.created_at,
        updated_at=broadcast.updated_at,
    )


def recipient_read(row: Recipient) -> RecipientRead:
    return RecipientRead(
        entity_id=row.entity_id,
        stage=STAGES[row.stage],
        outcome=row.outcome,
        reason=row.reason,
        attempt=row.attempt,
    )
