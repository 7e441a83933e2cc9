"""Overview: counts per surface, runs and sends in the last 24 h, failing destinations, stale segments."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from overture.batch import service_campaigns as batch_campaigns
from overture.broadcasts import service as broadcasts
from overture.delivery import service as destinations
from overture.experiences import service as experiences
from overture.journeys import service as journeys
from overture.paywalls import service as paywalls
from overture.runtime import deliveries
from overture.segments import service as segments
from overture.ui.web import Ctx, User, render, unit

router = APIRouter()
NAV = [("Overview", "/", None)]
DAY = timedelta(hours=24)


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, ctx: Ctx, user: User) -> HTMLResponse:
    since = ctx.clock.now() - DAY
    view: dict[str, Any] = {}
    with unit(ctx, user) as session:
        if user.can("segments:read"):
            rows = [segments.segment_read(s) for s in segments.list_segments(session)]
            view["segments"] = rows
            view["stale_segments"] = [
                s for s in rows if s.reach.is_stale or s.reach.status in ("idle", "failed")
            ]
        if user.can("journeys:read"):
            items = journeys.list_journeys(session)
            view["journeys"] = items
            runs = [r for j in items for r in journeys.list_runs(session, j.id) if r.created_at >= since]
            names = {j.id: j.name for j in items}
            view["runs"] = sorted(runs, key=lambda r: r.created_at, reverse=True)
            view["journey_names"] = names
        if user.can("campaigns:read"):
            view["campaigns"] = paywalls.list_campaigns(session)
            view["experience_campaigns"] = experiences.list_groups(
                session, deleted=False, skip_child_groups=True, skip_child_experiences=True
            )
            view["batch_campaigns"] = batch_campaigns.list_campaigns(session)
            view["broadcasts"] = broadcasts.list_broadcasts(session)
        if user.can("destinations:read"):
            dests = destinations.list_destinations(session)
            view["destinations"] = dests
            sends = deliveries.summary(session, since)
            view["sends"] = sends
            names = {d.id: d.name for d in dests}
            view["failing"] = [
                (destination_id, names.get(destination_id, destination_id), count)
                for destination_id, count in sends.failed_by_destination.items()
            ]
    return render(request, "overview.html", **view)
