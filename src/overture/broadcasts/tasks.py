"""Broadcast jobs: start a scheduled send, run an execution's pipeline, reconcile its outcomes."""

from __future__ import annotations

import logging

from overture.broadcasts import execution as pipeline
from overture.broadcasts.service import START_JOB, start_scheduled
from overture.db.context import AppContext
from overture.runtime.jobs import JobCancelled, JobContext, JobInterrupted, LeaseLost, job_handler

log = logging.getLogger(__name__)


@job_handler(START_JOB)
def start(ctx: AppContext, job: JobContext) -> None:
    with job.transaction(complete=True) as session:
        start_scheduled(session, str(job.payload["broadcast_id"]), str(job.payload.get("fire_time")))


@job_handler(pipeline.RUN_JOB)
def run(ctx: AppContext, job: JobContext) -> None:
    try:
        pipeline.run(ctx, job)
    except (LeaseLost, JobCancelled, JobInterrupted):
        raise
    except Exception as exc:
        if job.attempt >= job.max_attempts:  # the last try: the execution fails, owed messages still go
            log.exception("broadcast execution %s failed", job.payload.get("execution_id"))
            pipeline.fail(
                ctx, job.workspace_id, str(job.payload["execution_id"]), f"{type(exc).__name__}: {exc}"
            )
        raise


@job_handler(pipeline.RECONCILE_JOB)
def reconcile(ctx: AppContext, job: JobContext) -> None:
    pipeline.reconcile(ctx, job)
