"""The event stream: batches of `{entity_id, event, timestamp, properties}` appended to the source's
events table, where behavioural conditions (`{"event": "purchase", "count": {"gte": 2}}`) count them.

Public function for other surfaces (stable):
    record_events(ctx, workspace_id, events: Sequence[EventIn]) -> int
"""

from __future__ import annotations

from collections.abc import Sequence

from overture.data.schemas import MAX_BATCH, EventIn
from overture.data.source import EVENTS_TABLE, Column, TableRef, get_source
from overture.db.context import AppContext
from overture.errors import TooLarge

#: The events table's columns, in insert order (the demo loader writes the same table).
EVENT_COLUMNS = [
    Column("workspace_id", "VARCHAR", "string"),
    Column("entity_id", "VARCHAR", "string"),
    Column("event", "VARCHAR", "string"),
    Column("timestamp", "TIMESTAMP WITH TIME ZONE", "timestamp"),
    Column("properties", "JSON", "json"),
    Column("received_at", "TIMESTAMP WITH TIME ZONE", "timestamp"),
]

__all__ = ["EventIn", "record_events"]


def record_events(ctx: AppContext, workspace_id: str, events: Sequence[EventIn]) -> int:
    """Append `events` (already validated EventIn objects) for `workspace_id` in one set-based insert;
    a missing timestamp is ctx.clock.now(). Returns how many were stored. All or nothing.
    Paywalls send `EventIn(entity_id=user_id, event=..., properties={...})`."""
    if len(events) > MAX_BATCH:
        raise TooLarge(f"events: at most {MAX_BATCH} per request, got {len(events)}", field="events")
    if not events:
        return 0
    source = get_source(ctx)
    source.ensure_events_table()
    now = ctx.clock.now()
    stamp = now.isoformat()
    rows = [
        {
            "workspace_id": workspace_id,
            "entity_id": e.entity_id,
            "event": e.event,
            "timestamp": (e.timestamp or now).isoformat(),
            "properties": e.properties,
            "received_at": stamp,
        }
        for e in events
    ]
    with source.begin() as conn:
        source.insert_rows(conn, TableRef(EVENTS_TABLE), EVENT_COLUMNS, rows)
    return len(rows)
