"""Work the runtime executes for batch campaigns: runs, and the schedule slots that start them."""

from __future__ import annotations

import logging
from datetime import datetime

from overture.batch import runner
from overture.batch.models import BatchCampaign
from overture.batch.service_campaigns import RUN_JOB, SCHEDULED_JOB, trigger_run
from overture.batch.states import CampaignStatus, RunTrigger
from overture.db.context import AppContext
from overture.runtime.jobs import JobContext, job_handler

log = logging.getLogger(__name__)


@job_handler(RUN_JOB)
def run_campaign(ctx: AppContext, job: JobContext) -> None:
    """Execute (or, after a crash, redo) one run to its outcome."""
    runner.execute_run(ctx, job)


@job_handler(SCHEDULED_JOB)
def scheduled_run(ctx: AppContext, job: JobContext) -> None:
    """A schedule slot fired: a run of the campaign for that slot, if the campaign is still active."""
    campaign_id = str(job.payload["campaign_id"])
    fire_time = datetime.fromisoformat(str(job.payload["fire_time"]).replace("Z", "+00:00"))
    with job.transaction(complete=True) as session:
        campaign = session.get(BatchCampaign, campaign_id)
        if campaign is None or campaign.status != CampaignStatus.ACTIVE:
            log.info("schedule fired for batch campaign %s, which is not active; skipped", campaign_id)
            return
        trigger_run(session, campaign_id, RunTrigger.SCHEDULE, fire_time)
