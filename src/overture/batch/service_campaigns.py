"""Batch campaigns: CRUD with their schedule, volume constraints, channels and file output; runs
(trigger, list, detail), the per-customer results and the run's file."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from overture.batch import engine
from overture.batch.models import BatchCampaign, BatchChannel, BatchRun, DecisionFlow
from overture.batch.schemas import (
    AVAILABLE_COLUMNS,
    BATCH_MODES,
    CampaignCreate,
    CampaignRead,
    CampaignUpdate,
    CustomersPage,
    FileOutput,
    RunFile,
    RunRead,
    RunResults,
    ScheduleIn,
)
from overture.batch.service import get_flow
from overture.batch.states import CAMPAIGN, OPEN_RUNS, RUN, CampaignStatus, RunStatus, RunTrigger
from overture.core.schedules import ScheduleError, parse_schedule
from overture.data.source import get_source
from overture.db.lookup import get_or_404
from overture.db.session import Session
from overture.delivery.adapters.file import files_root
from overture.delivery.models import Destination
from overture.delivery.schemas import FileConfig
from overture.errors import Conflict, Invalid, NotFound
from overture.runtime import jobs, scheduler
from overture.runtime.models import Job, JobStatus
from overture.segments.models import Segment

__all__ = [
    "RUN_JOB",
    "SCHEDULED_JOB",
    "campaign_read",
    "create_campaign",
    "customers_page",
    "get_campaign",
    "get_run",
    "list_campaigns",
    "list_runs",
    "run_file",
    "run_read",
    "trigger_run",
    "update_campaign",
]

RUN_JOB = "batch.run"
SCHEDULED_JOB = "batch.scheduled"
RUN_ATTEMPTS = 3
LISTED = 1000
S3_PLACEHOLDERS = frozenset({"campaign_id", "run_date", "run_id"})
_SCHEDULE_FIELDS = {
    "time": "scheduleTime",
    "timezone": "scheduleTimezone",
    "day_of_week": "scheduleDayOfWeek",
    "day_of_month": "scheduleDayOfMonth",
}
#: Which fields each schedule type needs (the others are refused).
_NEEDS = {
    "manual": (),
    "daily": ("scheduleTime", "scheduleTimezone"),
    "weekly": ("scheduleDayOfWeek", "scheduleTime", "scheduleTimezone"),
    "monthly": ("scheduleDayOfMonth", "scheduleTime", "scheduleTimezone"),
}


def schedule_owner(campaign_id: str) -> str:
    return f"batch-campaign:{campaign_id}"


# -- reads -----------------------------------------------------------------------------------------
def campaign_read(session: Session, campaign: BatchCampaign) -> CampaignRead:
    row = scheduler.get_schedule(session, schedule_owner(campaign.id))
    next_run = row.next_fire_at if row is not None and row.enabled else None
    return CampaignRead(
        id=campaign.id,
        name=campaign.name,
        decision_flow_id=campaign.decision_flow_id,
        segment_id=campaign.segment_id,
        schedule=dict(campaign.schedule),
        volume_constraints=dict(campaign.volume_constraints),
        channel_ids=list(campaign.channel_ids),
        file_output=dict(campaign.file_output),
        status=campaign.status,
        next_run_at=next_run,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
    )


def get_campaign(session: Session, campaign_id: str, *, lock: bool = False) -> BatchCampaign:
    return get_or_404(session, BatchCampaign, campaign_id, what="batch campaign", lock=lock)


def list_campaigns(session: Session) -> list[BatchCampaign]:
    return list(
        session.scalars(
            sa.select(BatchCampaign).order_by(BatchCampaign.created_at, BatchCampaign.id).limit(LISTED)
        )
    )


# -- checks ----------------------------------------------------------------------------------------
def schedule_spec(schedule: ScheduleIn) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The stored API form and the core spec (None for manual). A field the type needs is required,
    one it does not use is a 422; both name the field (`schedule.scheduleDayOfWeek`)."""
    stored = schedule.model_dump(by_alias=True)
    needs = _NEEDS[schedule.type]
    for name, value in stored.items():
        if name == "type":
            continue
        if name in needs and value is None:
            raise Invalid(
                f"schedule.{name}: is required for a {schedule.type} schedule", field=f"schedule.{name}"
            )
        if name not in needs and value is not None:
            raise Invalid(
                f"schedule.{name}: is not a field of a {schedule.type} schedule", field=f"schedule.{name}"
            )
    if schedule.type == "manual":
        return stored, None
    spec: dict[str, Any] = {"kind": schedule.type}
    for core, api in _SCHEDULE_FIELDS.items():
        if stored[api] is not None:
            spec[core] = stored[api]
    try:
        parse_schedule(spec)
    except ScheduleError as exc:
        api = _SCHEDULE_FIELDS.get(exc.field, exc.field)
        raise Invalid(f"schedule.{api}: {exc.message}", field=f"schedule.{api}")
    return stored, spec


def campaign_channels(session: Session, channel_ids: list[str]) -> list[BatchChannel]:
    """The campaign's channels: those listed (each must exist and take part in batch runs), or every
    batch-compatible channel of the workspace when none is listed."""
    if not channel_ids:
        return list(
            session.scalars(
                sa.select(BatchChannel)
                .where(BatchChannel.delivery_mode.in_(BATCH_MODES))
                .order_by(BatchChannel.created_at, BatchChannel.id)
            )
        )
    found = {
        c.id: c for c in session.scalars(sa.select(BatchChannel).where(BatchChannel.id.in_(channel_ids)))
    }
    for i, cid in enumerate(channel_ids):
        field = f"channelIds[{i}]"
        channel = found.get(cid)
        if channel is None:
            raise Invalid(f"{field}: batch channel '{cid}' not found", field=field)
        if channel.delivery_mode not in BATCH_MODES:
            raise Invalid(
                f"{field}: channel '{channel.name}' is an {channel.delivery_mode} channel; only file, "
                "integration and manual channels take part in batch campaigns",
                field=field,
            )
        if channel_ids.index(cid) != i:
            raise Invalid(f"{field}: batch channel '{cid}' is listed twice", field=field)
    return [found[c] for c in channel_ids]


def s3_channel(session: Session, channels: list[BatchChannel]) -> tuple[BatchChannel, Destination] | None:
    """The first file channel whose destination is an S3 file destination (the upload's credentials)."""
    for channel in channels:
        if channel.delivery_mode != "file" or channel.destination_id is None:
            continue
        destination = session.get(Destination, channel.destination_id)
        if destination is None or destination.deleted_at is not None or destination.type != "file":
            continue
        if str((destination.config or {}).get("url", "")).lower().startswith("s3://"):
            return channel, destination
    return None


def render_s3_path(template: str, *, campaign_id: str, run_date: str, run_id: str) -> str:
    return template.format(campaign_id=campaign_id, run_date=run_date, run_id=run_id)


def _check_s3_path(template: str) -> None:
    field = "fileOutput.s3Path"
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise Invalid(f"{field}: {exc}", field=field)
    unknown = sorted(names - S3_PLACEHOLDERS)
    if unknown:
        raise Invalid(
            f"{field}: unknown placeholder {{{unknown[0]}}} (use {{campaign_id}}, {{run_date}}, {{run_id}})",
            field=field,
        )
    url = render_s3_path(template, campaign_id="c", run_date="2026-01-01", run_id="r")
    if not url.lower().startswith("s3://") or len(url) <= 5:
        raise Invalid(f"{field}: must be an s3://bucket/prefix/ template", field=field)
    try:
        FileConfig(url=url)
    except ValueError as exc:
        message = str(exc).splitlines()[-2].strip() if "\n" in str(exc) else str(exc)
        raise Invalid(f"{field}: {message}", field=field)


def file_output(body: FileOutput) -> dict[str, Any]:
    """The stored file output: columns checked, personalization appended when it is included."""
    columns = list(body.columns)
    for i, column in enumerate(columns):
        field = f"fileOutput.columns[{i}]"
        if column not in AVAILABLE_COLUMNS:
            raise Invalid(
                f"{field}: unknown column '{column}' (available: {', '.join(AVAILABLE_COLUMNS)})", field=field
            )
        if columns.index(column) != i:
            raise Invalid(f"{field}: column '{column}' is listed twice", field=field)
    if "personalization" in columns and not body.include_personalization:
        raise Invalid(
            "fileOutput.columns: 'personalization' needs fileOutput.includePersonalization: true",
            field="fileOutput.columns",
        )
    if body.include_personalization and "personalization" not in columns:
        columns.append("personalization")
    if body.destination == "s3":
        if not body.s3_path:
            raise Invalid("fileOutput.s3Path: is required when destination is s3", field="fileOutput.s3Path")
        _check_s3_path(body.s3_path)
    elif body.s3_path:
        _check_s3_path(body.s3_path)
    return {**body.model_dump(by_alias=True), "columns": columns}


def _check_campaign(session: Session, campaign: BatchCampaign) -> None:
    try:
        flow = get_flow(session, campaign.decision_flow_id)
    except NotFound:
        raise Invalid(
            f"decisionFlowId: decision flow '{campaign.decision_flow_id}' not found", field="decisionFlowId"
        )
    segment = session.get(Segment, campaign.segment_id)
    if segment is None or segment.workspace_id != session.workspace_id:
        raise Invalid(f"segmentId: segment '{campaign.segment_id}' not found", field="segmentId")
    if segment.model_id != flow.model_id:
        raise Invalid(
            "segmentId: the segment is over another model than the decision flow "
            f"({segment.model_id} vs {flow.model_id})",
            field="segmentId",
        )
    channels = campaign_channels(session, list(campaign.channel_ids))
    if campaign.file_output.get("destination") == "s3" and s3_channel(session, channels) is None:
        raise Invalid(
            "fileOutput.destination: s3 needs a file channel among the campaign's channels whose "
            "destinationId names an S3 file destination (its credentials and endpoint are used)",
            field="fileOutput.destination",
        )


def _sync_schedule(session: Session, campaign: BatchCampaign) -> None:
    """Only active campaigns run on schedule; the scheduler keeps the next slot (`nextRunAt`)."""
    owner = schedule_owner(campaign.id)
    _, spec = schedule_spec(ScheduleIn.model_validate(campaign.schedule))
    if spec is None:
        scheduler.remove_schedule(session, owner)
        return
    scheduler.set_schedule(
        session,
        workspace_id=campaign.workspace_id,
        owner=owner,
        spec=spec,
        job_kind=SCHEDULED_JOB,
        payload={"campaign_id": campaign.id},
        enabled=campaign.status == CampaignStatus.ACTIVE,
    )


# -- campaigns -------------------------------------------------------------------------------------
def create_campaign(session: Session, body: CampaignCreate, created_by: str | None = None) -> BatchCampaign:
    schedule, _ = schedule_spec(body.schedule)
    campaign = BatchCampaign(
        name=body.name,
        decision_flow_id=body.decision_flow_id,
        segment_id=body.segment_id,
        schedule=schedule,
        volume_constraints=body.volume_constraints.model_dump(by_alias=True),
        channel_ids=list(body.channel_ids),
        file_output=file_output(body.file_output),
        status=body.status,
        created_by=created_by,
    )
    _check_campaign(session, campaign)
    session.add(campaign)
    session.flush()
    _sync_schedule(session, campaign)
    return campaign


def update_campaign(session: Session, campaign_id: str, body: CampaignUpdate) -> BatchCampaign:
    campaign = get_campaign(session, campaign_id, lock=True)
    changes = body.model_fields_set - {"status"}
    if campaign.status == CampaignStatus.ARCHIVED and changes:
        raise Conflict("campaign is archived; it is kept for history and cannot change")
    if body.name is not None:
        campaign.name = body.name
    if body.decision_flow_id is not None:
        campaign.decision_flow_id = body.decision_flow_id
    if body.segment_id is not None:
        campaign.segment_id = body.segment_id
    if body.schedule is not None:
        campaign.schedule, _ = schedule_spec(body.schedule)
    if body.volume_constraints is not None:
        campaign.volume_constraints = body.volume_constraints.model_dump(by_alias=True)
    if body.channel_ids is not None:
        campaign.channel_ids = list(body.channel_ids)
    if body.file_output is not None:
        campaign.file_output = file_output(body.file_output)
    _check_campaign(session, campaign)
    if body.status is not None:
        CAMPAIGN.move(campaign, body.status)
    session.flush()
    _sync_schedule(session, campaign)
    return campaign


# -- runs ------------------------------------------------------------------------------------------
def _job_key(run_id: str) -> str:
    return f"batch-run:{run_id}"


def trigger_run(
    session: Session, campaign_id: str, trigger: RunTrigger = RunTrigger.MANUAL, fire_time: Any = None
) -> BatchRun:
    """A `pending` run and the job that executes it (committed together)."""
    campaign = get_campaign(session, campaign_id)
    if campaign.status == CampaignStatus.ARCHIVED:
        raise Conflict(
            "campaign is archived; archived campaigns do not run", details={"status": campaign.status}
        )
    now = session.now()
    run = BatchRun(
        campaign_id=campaign.id,
        status=RunStatus.PENDING,
        trigger=trigger,
        fire_time=fire_time or now,
        created_at=now,
    )
    session.add(run)
    session.flush()
    jobs.enqueue_job(
        session,
        RUN_JOB,
        {"run_id": run.id},
        workspace_id=campaign.workspace_id,
        unique_key=_job_key(run.id),
        max_attempts=RUN_ATTEMPTS,
    )
    return run


def _reap_lost(session: Session, runs: list[BatchRun]) -> None:
    """An open run whose job is over (its worker died on the last attempt, or the job was cancelled)
    is failed with a clear error: it is never left looking as if it might still finish."""
    open_runs = [r for r in runs if r.status in OPEN_RUNS]
    if not open_runs:
        return
    keys = {_job_key(r.id): r for r in open_runs}
    finished = session.execute(
        sa.select(Job.unique_key, Job.last_error).where(
            Job.unique_key.in_(list(keys)), Job.status.in_(JobStatus.FINISHED)
        )
    ).all()
    for key, last_error in finished:
        run = keys[str(key)]
        RUN.move(run, RunStatus.FAILED)
        run.error = run.error or f"the worker executing this run was lost ({last_error or 'no outcome'})"
        run.completed_at = session.now()
    if finished:
        session.flush()


def list_runs(session: Session, campaign_id: str, limit: int = 50) -> list[BatchRun]:
    get_campaign(session, campaign_id)
    runs = list(
        session.scalars(
            sa.select(BatchRun)
            .where(BatchRun.campaign_id == campaign_id)
            .order_by(BatchRun.created_at.desc(), BatchRun.id.desc())
            .limit(limit)
        )
    )
    _reap_lost(session, runs)
    return runs


def get_run(session: Session, campaign_id: str, run_id: str) -> BatchRun:
    get_campaign(session, campaign_id)
    run = get_or_404(session, BatchRun, run_id, what="run", campaign_id=campaign_id)
    _reap_lost(session, [run])
    return run


def download_url(run: BatchRun) -> str:
    return f"/api/v1/workspaces/{run.workspace_id}/batch-campaigns/{run.campaign_id}/runs/{run.id}/file"


def run_read(run: BatchRun) -> RunRead:
    return RunRead(
        id=run.id,
        campaign_id=run.campaign_id,
        status=RunStatus(run.status).value,
        trigger=run.trigger,
        created_at=run.created_at,
        started_at=run.started_at,
        completed_at=run.completed_at,
        error=run.error,
        step=run.step,
        results=RunResults.model_validate(run.results) if run.results else None,
        file=RunFile.model_validate(run.file) if run.file else None,
    )


def local_file(session: Session, run: BatchRun, fmt: str) -> tuple[Path, str]:
    """Where a run's downloadable file lives (its directory and its name)."""
    directory = files_root(session.ctx) / "batch" / run.workspace_id / run.campaign_id
    return directory, f"{run.id}.{fmt}"


def run_file(session: Session, campaign_id: str, run_id: str) -> tuple[Path, str, str]:
    """(path, media type, file name) of a finished run's file; 404 while it has none."""
    run = get_run(session, campaign_id, run_id)
    if not run.file:
        raise NotFound(f"run has no file (it is {run.status})")
    fmt = str(run.file["format"])
    directory, name = local_file(session, run, fmt)
    path = directory / name
    if not path.exists():
        raise NotFound("the run's file is no longer on this server")
    return path, "application/json" if fmt == "json" else "text/csv", name


def customers_page(
    session: Session, campaign_id: str, run_id: str, *, status: str | None, cursor: str | None, limit: int
) -> CustomersPage:
    run = get_run(session, campaign_id, run_id)
    if run.status not in (RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS):
        raise Conflict(f"run is {run.status}; per-customer results exist once it completed")
    source = get_source(session.ctx)
    return engine.customers_page(
        source,
        engine.results_table(run.workspace_id, run.id),
        status=status,
        cursor=cursor,
        limit=limit,
    )


def flows_using(session: Session, flow: DecisionFlow) -> list[BatchCampaign]:
    return list(session.scalars(sa.select(BatchCampaign).where(BatchCampaign.decision_flow_id == flow.id)))
