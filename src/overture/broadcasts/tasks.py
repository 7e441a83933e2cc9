"""Broadcast jobs: start a scheduled send, run an execution's pipeline, reconcile its outcomes; and the
retention of settled recipient rows."""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa

from overture.broadcasts import execution as pipeline
from overture.broadcasts.models import Execution, Recipient
from overture.broadcasts.service import START_JOB, start_scheduled
from overture.broadcasts.states import ExecutionStatus
from overture.config import Settings
from overture.db.context import AppContext
from overture.runtime import retention
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


def _settled_recipients(now: datetime, settings: Settings) -> sa.ColumnElement[bool] | None:
    """Recipients that were sent, dropped or cancelled, of executions that finished more than
    OVERTURE_RETENTION_RUNS_DAYS ago. The execution keeps its counts; failed recipients stay (what
    `retry-failed` re-sends), and so does every recipient of a running execution."""
    cutoff = retention.older_than(settings.retention_runs_days, now)
    if cutoff is None:
        return None
    executions, recipients = Execution.__table__.c, Recipient.__table__.c
    finished = sa.select(executions.id).where(
        executions.status != ExecutionStatus.RUNNING, executions.completed_at < cutoff
    )
    return sa.and_(
        recipients.execution_id.in_(finished), recipients.outcome.in_(("sent", "dropped", "cancelled"))
    )


retention.register(retention.Rule("broadcast_recipients", Recipient.__table__, _settled_recipients))  # type: ignore[arg-type]
