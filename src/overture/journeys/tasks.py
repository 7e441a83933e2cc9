"""Work the runtime executes for journeys: runs (manual or scheduled) and dropping member tables."""

from __future__ import annotations

import logging

from overture.data.source import get_source
from overture.db.context import AppContext
from overture.journeys import runner, service
from overture.journeys.lifecycle import RUNNABLE, RunTrigger
from overture.journeys.members.tables import MemberStore
from overture.journeys.models import Journey
from overture.runtime.jobs import JobContext, job_handler

log = logging.getLogger(__name__)


@job_handler(service.RUN_JOB)
def run_journey(ctx: AppContext, job: JobContext) -> None:
    """Execute (or, after a crash, resume) one run. Failures that retrying can fix propagate so the
    job retries; on the last attempt, or when a human must act, the run is failed instead."""
    runner.execute_run(
        ctx,
        str(job.payload["run_id"]),
        check=job.check,
        last_attempt=job.attempt >= job.max_attempts,
    )


@job_handler(service.SCHEDULED_JOB)
def scheduled_run(ctx: AppContext, job: JobContext) -> None:
    """A schedule slot fired: start a run unless one is open or the journey no longer runs."""
    journey_id = str(job.payload["journey_id"])
    with job.transaction() as session:
        journey = session.get(Journey, journey_id)
        if journey is None or journey.status not in RUNNABLE:
            log.info("schedule fired for journey %s, which does not run now; skipped", journey_id)
            return
        service.trigger_run(session, journey_id, RunTrigger.SCHEDULE)


@job_handler(service.DROP_TABLES_JOB)
def drop_member_tables(ctx: AppContext, job: JobContext) -> None:
    """A deleted journey's member state goes with it (after the delete committed)."""
    store = MemberStore(get_source(ctx), str(job.payload["workspace_id"]), str(job.payload["journey_id"]))
    with store.source.begin() as conn:
        store.drop(conn)
