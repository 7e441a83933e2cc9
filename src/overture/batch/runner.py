"""Executing one run: pending -> running -> completed | completed_with_errors | failed.

Steps (each safe to redo, so a resumed attempt starts over and ends with the same bytes):
1. start: the run becomes `running`; the campaign, flow, segment, offers and channels are snapshotted;
2. decide: the results table is built in the data source (`engine.build_results`);
3. write: the file is written by the engine to a scratch file, then placed under its final name by
   the file destination (atomic rename) — a reader never sees a half file under that name;
4. upload (destination s3): through the S3 file destination of the campaign's file channel; a
   failure makes the run `completed_with_errors` with the error stored, the file stays downloadable;
5. finish: results and file facts commit together with the job's completion.

A worker killed at any point leaves the run `running` with its job's lease running out: another
worker resumes it from step 1. If that was the last attempt, the run is failed with a clear error
(the job is dead; `service_campaigns._reap_lost` fails such a run). Nothing is `completed` before
its file is complete."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from overture.batch import engine, output
from overture.batch.engine import OfferPlan, RunPlan, Summary
from overture.batch.models import BatchCampaign, BatchChannel, BatchRun, DecisionFlow, Offer
from overture.batch.schemas import (
    CategoryCount,
    ChannelCount,
    OfferCount,
    RunFile,
    RunResults,
    Skipped,
)
from overture.batch.schemas import Summary as SummaryOut
from overture.batch.service_campaigns import (
    campaign_channels,
    download_url,
    local_file,
    render_s3_path,
    s3_channel,
)
from overture.batch.states import RUN, RunStatus
from overture.data import service as data
from overture.data.source import SourceError, get_source
from overture.db.context import AppContext
from overture.db.session import Session
from overture.delivery.adapters.base import Target
from overture.delivery.adapters.file import write_file
from overture.errors import Invalid, NotFound, OvertureError
from overture.runtime.jobs import JobCancelled, JobContext, JobInterrupted, LeaseLost
from overture.segments.models import Segment

log = logging.getLogger(__name__)

#: Per-customer results are kept for a campaign's newest runs; older runs keep summary and file.
KEEP_RESULTS = 20

__all__ = ["execute_run"]


class _Failed(Exception):
    """The run cannot succeed until someone changes the campaign or its data."""


def execute_run(ctx: AppContext, job: JobContext) -> None:
    run_id = str(job.payload["run_id"])
    failure: str | None = None
    with job.transaction() as session:
        run = session.get(BatchRun, run_id)
        if run is None or RUN.states(run.status) in RUN.terminal:
            return
        if run.status == RunStatus.PENDING:
            RUN.move(run, RunStatus.RUNNING)
            run.started_at = session.now()
        run.step, run.error = "deciding", None
        try:
            plan, context = _snapshot(session, run)
        except (Invalid, NotFound) as exc:
            plan, context, failure = None, None, exc.message
    if failure is not None or plan is None or context is None:
        _fail(job, run_id, failure or "the campaign cannot run")
        return
    try:
        _execute(ctx, job, plan, context)
    except (LeaseLost, JobInterrupted):
        raise  # another worker owns the run now, or this one stops: the run resumes elsewhere
    except JobCancelled:
        _fail(job, run_id, "cancelled")
    except (Invalid, NotFound, SourceError) as exc:
        _fail(job, run_id, exc.message)
    except Exception as exc:
        message = exc.message if isinstance(exc, OvertureError) else f"{type(exc).__name__}: {exc}"
        if job.attempt >= job.max_attempts:
            _fail(job, run_id, message)
            return
        log.warning("batch run %s attempt %s failed, will retry: %s", run_id, job.attempt, message)
        raise


def _fail(job: JobContext, run_id: str, error: str) -> None:
    log.warning("batch run %s failed: %s", run_id, error)
    with job.transaction(complete=True) as session:
        run = session.get(BatchRun, run_id)
        if run is None or RUN.states(run.status) in RUN.terminal:
            return
        RUN.move(run, RunStatus.FAILED)
        run.error = error[:4000]
        run.completed_at = session.now()
        run.step = None


class _Context:
    """What the run needs besides the plan: the file's place and the upload's target."""

    def __init__(
        self,
        run: BatchRun,
        campaign: BatchCampaign,
        directory: Path,
        name: str,
        s3: Target | None,
        s3_error: str | None,
    ) -> None:
        self.run_id = run.id
        self.workspace_id = run.workspace_id
        self.campaign_id = campaign.id
        self.download_url = download_url(run)
        self.directory = directory
        self.name = name
        self.s3 = s3
        self.s3_error = s3_error
        self.fmt = str(campaign.file_output.get("format", "csv"))


def _run_date(campaign: BatchCampaign, run: BatchRun) -> str:
    zone = campaign.schedule.get("scheduleTimezone") or "UTC"
    return run.fire_time.astimezone(ZoneInfo(zone)).date().isoformat()


def _snapshot(session: Session, run: BatchRun) -> tuple[RunPlan, _Context]:
    campaign = session.get(BatchCampaign, run.campaign_id)
    if campaign is None:
        raise NotFound("the run's campaign was deleted")
    flow = session.get(DecisionFlow, campaign.decision_flow_id)
    segment = session.get(Segment, campaign.segment_id)
    if flow is None or segment is None:
        raise NotFound("the campaign's decision flow or segment no longer exists")
    model = data.get_model(session, flow.model_id)
    at = run.fire_time
    query = sa.select(Offer).where(Offer.status == "active")
    if flow.offer_ids:
        query = query.where(Offer.id.in_(flow.offer_ids))
    channels = campaign_channels(session, list(campaign.channel_ids))
    offers: list[OfferPlan] = []
    for offer in sorted(session.scalars(query), key=lambda o: o.id):
        if (offer.start_date and offer.start_date > at) or (offer.end_date and offer.end_date < at):
            continue
        channel = _channel_of(offer, channels)
        if isinstance(channel, bool):
            continue  # none of the offer's channels takes part in this campaign
        offers.append(_offer_plan(len(offers), offer, channel))
    volume = campaign.volume_constraints
    out = campaign.file_output
    plan = RunPlan(
        workspace_id=run.workspace_id,
        run_id=run.id,
        model=model,
        segment_filter=segment.filter,
        flow_eligibility=flow.eligibility,
        ranking=flow.ranking,
        per_customer=flow.max_offers_per_customer,
        one_per_category=flow.one_offer_per_category,
        max_total=volume.get("maxTotalPerRun"),
        max_per_offer=volume.get("maxPerOffer"),
        max_per_channel=volume.get("maxPerChannel"),
        allocation=str(volume.get("allocation") or "greedy"),
        offers=tuple(offers),
        columns=tuple(out.get("columns") or ()),
        format=str(out.get("format", "csv")),
    )
    directory, name = local_file(session, run, plan.format)
    s3, s3_error = None, None
    if out.get("destination") == "s3":
        found = s3_channel(session, channels)
        if found is None:
            s3_error = "S3 upload skipped: no file channel of the campaign names an S3 file destination"
        else:
            _, destination = found
            url = render_s3_path(
                str(out["s3Path"]), campaign_id=campaign.id, run_date=_run_date(campaign, run), run_id=run.id
            )
            config = {**destination.config, "url": url.rstrip("/")}
            s3 = Target(destination.id, destination.workspace_id, destination.name, "file", config)
    return plan, _Context(run, campaign, directory, name, s3, s3_error)


def _channel_of(offer: Offer, channels: list[BatchChannel]) -> BatchChannel | bool | None:
    """The campaign channel an offer goes out on: the first of its own channels the campaign has (an
    offer without channels: the campaign's first). False when the campaign has none of them."""
    if not offer.channels:
        return channels[0] if channels else None
    by_id = {c.id: c for c in channels}
    for cid in offer.channels:
        if cid in by_id:
            return by_id[cid]
    return False


def _offer_plan(idx: int, offer: Offer, channel: BatchChannel | None) -> OfferPlan:
    creatives = list(offer.creatives or [])
    creative = next((c for c in creatives if channel and c.get("channelId") == channel.id), None)
    creative = creative or next((c for c in creatives if not c.get("channelId")), None)
    return OfferPlan(
        idx=idx,
        id=offer.id,
        name=offer.name,
        category=offer.category,
        priority=offer.priority,
        channel_id=channel.id if channel else None,
        channel_name=channel.name if channel else None,
        creative=str(creative["name"]) if creative else None,
        eligibility=offer.eligibility,
        propensity=dict(offer.propensity),
    )


def _step(job: JobContext, run_id: str, step: str) -> None:
    with job.transaction() as session:
        session.execute(sa.update(BatchRun).where(BatchRun.id == run_id).values(step=step))


def _execute(ctx: AppContext, job: JobContext, plan: RunPlan, context: _Context) -> None:
    started = time.perf_counter()
    source = get_source(ctx)
    with ctx.transaction(write=False, workspace_id=plan.workspace_id) as tx:
        compiled = engine.Compiled(tx, plan)
    greedy_value = engine.build_results(source, plan, compiled)
    job.check()
    summary = engine.summarize(source, plan)
    _step(job, context.run_id, "writing")
    scratch_dir = ctx.settings.home / "tmp"
    scratch_dir.mkdir(parents=True, exist_ok=True)
    scratch = scratch_dir / f"batch-{context.run_id}.{context.fmt}.part"
    try:
        output.write_output(source, plan, scratch)
        local = Target(
            id="batch-downloads",
            workspace_id=context.workspace_id,
            name="batch downloads",
            type="file",
            config={"url": str(context.directory)},
        )
        path = Path(write_file(ctx, local, str(scratch), context.name))
    finally:
        scratch.unlink(missing_ok=True)
    digest, size = _digest(path)
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    job.check()
    file: dict[str, Any] = RunFile(
        format=plan.format,
        rows=summary.rows,
        bytes=size,
        sha256=digest,
        path=f"batch/{context.campaign_id}/{context.name}",
        download_url=context.download_url,
    ).model_dump(by_alias=True)
    error = context.s3_error
    if context.s3 is not None:
        _step(job, context.run_id, "uploading")
        try:
            file["path"] = write_file(ctx, context.s3, str(path), context.name)
        except OvertureError as exc:
            error = f"S3 upload failed: {exc.message}"
        except Exception as exc:  # storage errors (bucket missing, S3 down): the file stays downloadable
            error = f"S3 upload failed: {type(exc).__name__}: {exc}"
    results = _results(plan, summary, elapsed_ms, greedy_value)
    with job.transaction(complete=True) as session:
        run = session.get(BatchRun, context.run_id)
        if run is None:
            return
        RUN.move(run, RunStatus.COMPLETED_WITH_ERRORS if error else RunStatus.COMPLETED)
        run.results = results
        run.file = file
        run.error = error
        run.step = None
        run.completed_at = session.now()
    _prune(ctx, context)


def _prune(ctx: AppContext, context: _Context) -> None:
    """Drop the per-customer tables of the runs just past the newest KEEP_RESULTS of the campaign."""
    with ctx.transaction(write=False, workspace_id=context.workspace_id) as session:
        old = session.scalars(
            sa.select(BatchRun.id)
            .where(BatchRun.campaign_id == context.campaign_id)
            .order_by(BatchRun.created_at.desc(), BatchRun.id.desc())
            .offset(KEEP_RESULTS)
            .limit(5)
        ).all()
    if old:
        source = get_source(ctx)
        with source.begin() as conn:
            for run_id in old:
                engine.drop_results(conn, engine.results_table(context.workspace_id, run_id))


def _digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _results(
    plan: RunPlan, summary: Summary, elapsed_ms: float, greedy_value: float | None
) -> dict[str, Any]:
    by_offer = sorted(
        (
            OfferCount(offer_id=o.id, offer_name=o.name, count=summary.by_offer.get(o.idx, 0))
            for o in plan.offers
        ),
        key=lambda c: (-c.count, c.offer_name, c.offer_id),
    )
    channels: dict[str | None, list[Any]] = {}
    categories: dict[str | None, int] = {}
    for o in plan.offers:
        n = summary.by_offer.get(o.idx, 0)
        entry = channels.setdefault(o.channel_id, [o.channel_name, 0])
        entry[1] += n
        categories[o.category] = categories.get(o.category, 0) + n
    by_channel = sorted(
        (ChannelCount(channel_id=cid, channel_name=v[0], count=v[1]) for cid, v in channels.items()),
        key=lambda c: (-c.count, c.channel_name or "", c.channel_id or ""),
    )
    by_category = sorted(
        (CategoryCount(category=cat, count=n) for cat, n in categories.items()),
        key=lambda c: (-c.count, c.category or ""),
    )
    skipped = summary.skipped
    value = round(summary.value, 6)
    results = RunResults(
        total_customers=summary.total,
        processed=summary.processed,
        recommended=summary.recommended,
        avg_latency_ms=round(elapsed_ms / summary.total, 6) if summary.total else 0.0,
        summary=SummaryOut(
            by_offer=by_offer,
            by_channel=by_channel,
            by_category=by_category,
            skipped=Skipped(
                max_total_per_run=skipped["maxTotalPerRun"],
                max_per_offer=skipped["maxPerOffer"],
                max_per_channel=skipped["maxPerChannel"],
                not_eligible=skipped["notEligible"],
            ),
        ),
        allocation="optimal" if plan.allocation == "optimal" else "greedy",
        value=value,
        greedy_value=None if greedy_value is None else round(greedy_value, 6),
        gap=None if greedy_value is None else round(value - greedy_value, 6),
    )
    return results.model_dump(by_alias=True)
