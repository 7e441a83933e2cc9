"""The event stream: batches of `{entity_id, event, timestamp, properties}` appended to the source's
events table, where behavioural conditions (`{"event": "purchase", "count": {"gte": 2}}`) count them.

Public functions for other surfaces (stable):
    record_events(ctx, workspace_id, events: Sequence[EventIn]) -> int
    event_ids(given, batch_id) -> list[str | None]      an id per event (given, or batch id + index)
    first_seen(session, ids) -> list[bool]              which events of a batch to store

Idempotency: every events endpoint takes an `event_id` per event (and a `batch_id`, from which an
event without one gets `<batch_id>:<index>`). `first_seen` claims the ids in the application
database in the caller's transaction (`INSERT ... ON CONFLICT DO NOTHING RETURNING`, unique on
workspace + id): an id seen before, in an earlier batch or earlier in this one, is not stored again
and the endpoint reports it under `duplicates`. A concurrent batch with the same ids waits on the
first one's uncommitted claims (PostgreSQL) or on the write lock (SQLite), then sees them, so the
same batch sent three times at once is stored, and counted, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from overture.data.models import EventId
from overture.data.schemas import MAX_BATCH, EventIn
from overture.data.source import EVENTS_TABLE, Column, TableRef, get_source
from overture.db import dialects
from overture.db.context import AppContext
from overture.db.session import Session
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

__all__ = ["EventIn", "event_ids", "first_seen", "record_events"]
_CHUNK = 500


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


def event_ids(given: Sequence[str | None], batch_id: str | None) -> list[str | None]:
    """Each event's id: its own, else `<batch_id>:<index in the batch>` when the batch has an id."""
    if batch_id is None:
        return list(given)
    return [own if own is not None else f"{batch_id}:{i}" for i, own in enumerate(given)]


def first_seen(session: Session, ids: Sequence[str | None]) -> list[bool]:
    """For each event of a batch, whether to store it: always without an id; with one, only the
    first time this workspace sees it. The ids are claimed in `session`'s transaction."""
    claimed: set[str] = set()
    unique = sorted({i for i in ids if i is not None})  # sorted: concurrent batches lock in one order
    table: Any = EventId.__table__
    now = session.now()
    for start in range(0, len(unique), _CHUNK):
        rows = [
            {"workspace_id": session.workspace_id, "event_id": i, "created_at": now}
            for i in unique[start : start + _CHUNK]
        ]
        stmt = (
            dialects.insert(session, table)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["workspace_id", "event_id"])
            .returning(table.c.event_id)
        )
        claimed.update(session.scalars(stmt))
    keep = []
    for i in ids:
        if i is None:
            keep.append(True)
        else:
            keep.append(i in claimed)
            claimed.discard(i)  # a second copy in the same batch is a duplicate
    return keep
