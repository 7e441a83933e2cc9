"""Work the runtime executes for experiences: exports to external providers (through the outbox)
and the reach of generated segments."""

from __future__ import annotations

import logging

from overture.db.context import AppContext
from overture.experiences import providers
from overture.experiences.models import Experience, ProviderAuth
from overture.experiences.publishing import EVALUATE_JOB, EXPORT_JOB
from overture.runtime.jobs import JobContext, job_handler
from overture.runtime.outbox import OutboxItem, enqueue, idempotency_key
from overture.segments import service as segments
from overture.segments.models import Segment

log = logging.getLogger(__name__)


@job_handler(EXPORT_JOB)
def export_experience(ctx: AppContext, job: JobContext) -> None:
    """Owe the provider one message for this publish (its idempotency key names the publish, so a
    retried job owes nothing twice); the outbox sends it through the credential's destination."""
    experience_id, publish = str(job.payload["experience_id"]), int(job.payload["publish"])
    with job.transaction(complete=True) as session:
        e = session.get(Experience, experience_id)
        if e is None or e.deleted_at is not None or not providers.is_external(e.provider_slug):
            log.info("export of experience %s skipped: gone or no longer external", experience_id)
            return
        auth = session.get(ProviderAuth, e.provider_id) if e.provider_id else None
        if auth is None:
            log.warning("export of experience %s skipped: its credential is gone", experience_id)
            return
        provider = providers.PROVIDERS[str(e.provider_slug)]
        enqueue(
            session,
            [
                OutboxItem(
                    workspace_id=e.workspace_id,
                    destination_id=auth.destination_id,
                    idempotency_key=idempotency_key("experience-export", e.id, publish),
                    payload=provider.export(e),
                    source_kind="experience_export",
                    source_id=e.id,
                )
            ],
        )


@job_handler(EVALUATE_JOB)
def evaluate_segments(ctx: AppContext, job: JobContext) -> None:
    """Count the reach of generated segments (each its own evaluation; a gone one is skipped)."""
    workspace_id = job.workspace_id
    assert workspace_id is not None
    for segment_id in job.payload.get("segment_ids", []):
        with ctx.transaction(write=False, workspace_id=workspace_id) as session:
            segment = session.get(Segment, segment_id)
            if segment is None or segment.deleted_at is not None or segment.reach_status == "pending":
                continue
        segments.evaluate_segment(ctx, workspace_id, segment_id)
