"""Experience events (delivery, impression, conversion) into the event stream, counted once per
`eventId`, and the candidates' metrics: one set-based aggregate over the stream's last 6 hours."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from overture.core.filters import experience_event_name
from overture.data.events import event_ids, first_seen, record_events
from overture.data.schemas import EventIn as StreamEvent
from overture.data.source import get_source
from overture.db.context import AppContext
from overture.db.session import Session
from overture.errors import Invalid
from overture.experiences.models import Experience
from overture.experiences.schemas import EventIn

__all__ = [
    "METRICS_WINDOW",
    "EventsResult",
    "Metrics",
    "as_dict",
    "metrics_since",
    "record",
    "record_deliveries",
]

METRICS_WINDOW = timedelta(hours=6)
_PREFIX = "experience."

EventsResult = dict[str, int]
#: experience id -> (impressions, conversions)
Metrics = dict[str, tuple[int, int]]


def record(session: Session, events: Sequence[EventIn], batch_id: str | None = None) -> EventsResult:
    """Store a batch in the event stream. An `eventId` (or `<batchId>:<index>`) seen before, in an
    earlier batch or earlier in this one, is skipped, so a retried batch counts once
    (`overture.data.events.first_seen`)."""
    if not events:
        return {"accepted": 0, "duplicates": 0}
    known = set(
        session.scalars(
            sa.select(Experience.id).where(Experience.id.in_(sorted({e.experience_id for e in events})))
        )
    )
    for i, e in enumerate(events):
        if e.experience_id not in known:
            raise Invalid(
                f"events[{i}].experienceId: experience '{e.experience_id}' not found",
                field=f"events[{i}].experienceId",
            )
    ids = event_ids([e.event_id for e in events], batch_id)
    keep = first_seen(session, ids)
    stream = [
        StreamEvent(
            entity_id=e.user_id,
            event=experience_event_name(e.type, e.experience_id),
            timestamp=e.timestamp,
            properties={"experienceId": e.experience_id, **({"eventId": i} if i else {})},
        )
        for e, i, new in zip(events, ids, keep, strict=True)
        if new
    ]
    accepted = record_events(session.ctx, session.workspace_id, stream)
    return {"accepted": accepted, "duplicates": len(events) - accepted}


def record_deliveries(ctx: AppContext, workspace_id: str, user_id: str, experience_ids: Sequence[str]) -> int:
    """The winners of a decision were delivered: their decision segments now hold the user."""
    return record_events(
        ctx,
        workspace_id,
        [
            StreamEvent(
                entity_id=user_id,
                event=experience_event_name("delivery", experience_id),
                properties={"experienceId": experience_id},
            )
            for experience_id in experience_ids
        ],
    )


def metrics_since(ctx: AppContext, workspace_id: str, now: datetime) -> Metrics:
    """Impressions and conversions per experience over the last 6 hours: one GROUP BY over the event
    stream, run in the data source (the events' names carry the kind and the experience)."""
    source = get_source(ctx)
    source.ensure_events_table()
    ev = source.events_table()
    since = now - METRICS_WINDOW
    low, high = since, now  # the column holds instants: compared as the filter compiler does
    # Constant prefixes without LIKE wildcards: every engine turns `LIKE 'prefix%'` into a prefix scan.
    kinds = [ev.c.event.like(f"{_PREFIX}{kind}.%") for kind in ("impression", "conversion")]
    query = (
        sa.select(ev.c.event, sa.func.count().label("n"))
        .where(
            ev.c.workspace_id == workspace_id, ev.c.timestamp >= low, ev.c.timestamp <= high, sa.or_(*kinds)
        )
        .group_by(ev.c.event)
    )
    out: dict[str, list[int]] = {}
    with source.connect() as conn:
        for name, count in conn.execute(query):
            _, kind, experience_id = str(name).split(".", 2)
            slot = out.setdefault(experience_id, [0, 0])
            slot[0 if kind == "impression" else 1] += int(count)
    return {k: (v[0], v[1]) for k, v in out.items()}


def as_dict(metrics: tuple[int, int]) -> dict[str, Any]:
    impressions, conversions = metrics
    return {
        "windowHours": int(METRICS_WINDOW.total_seconds() // 3600),
        "impressions": impressions,
        "conversions": conversions,
        "conversionRate": (conversions / impressions) if impressions else 0.0,
    }
