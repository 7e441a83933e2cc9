"""Work the runtime executes for journeys: runs (manual or scheduled), dropping member tables, and
the retention of finished runs."""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa

from overture.config import Settings
from overture.data.source import get_source
from overture.db.context import AppContext
from overture.journeys import runner, service
from overture.journeys.lifecycle import RUN, RUNNABLE, RunTrigger
from overture.journeys.members.tables import MemberStore
from overture.journeys.models import Journey, JourneyRun
from overture.runtime import retention
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


def _old_runs(now: datetime, settings: Settings) -> sa.ColumnElement[bool] | None:
    """Finished runs older than OVERTURE_RETENTION_RUNS_DAYS, except each journey's last run (its
    `last_run_id`, shown with the journey). A pending or running run is never finished."""
    cutoff = retention.older_than(settings.retention_runs_days, now)
    if cutoff is None:
        return None
    runs, journeys = JourneyRun.__table__.c, Journey.__table__.c
    last = sa.select(journeys.last_run_id).where(journeys.last_run_id.is_not(None))
    return sa.and_(runs.status.in_(sorted(RUN.terminal)), runs.finished_at < cutoff, runs.id.not_in(last))


retention.register(retention.Rule("journey_runs", JourneyRun.__table__, _old_runs))  # type: ignore[arg-type]
