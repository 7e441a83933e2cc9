"""Retention: the runtime deletes what can no longer matter, a bounded batch per statement.

Each table with history registers a `Rule`: which rows have expired, given now and the settings.
`sweep` deletes them `OVERTURE_RETENTION_BATCH` rows per short transaction
(`DELETE ... WHERE key IN (SELECT key ... WHERE expired LIMIT n)`; on PostgreSQL the inner select
skips rows other transactions hold, so concurrent sweepers never wait on each other or on a worker).
A rule whose condition has an index behind it takes the newest expired rows off an index range scan;
a rule without one (`walk=True`) walks the primary key in pages instead, so no page reads the
table from the start again.

The runtime's own rules are here; surfaces register theirs in their `tasks.py` (the runtime cannot
import them). docs/operations.md "Retention" lists every rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from overture.config import Settings
from overture.data.models import EventId
from overture.db import dialects
from overture.db.context import AppContext
from overture.db.dialects import rowcount
from overture.runtime.models import Job, OutboxMessage, OutboxPause
from overture.runtime.states import JOB, OUTBOX

log = logging.getLogger(__name__)

__all__ = ["Rule", "register", "rules", "sweep"]

#: Statements one rule may run in one sweep; the rest waits for the next sweep (bounded work).
MAX_BATCHES_PER_SWEEP = 100

#: (now, settings) -> the condition of expired rows, or None when the rule keeps everything.
Expired = Callable[[datetime, Settings], sa.ColumnElement[bool] | None]


@dataclass(frozen=True)
class Rule:
    name: str
    table: sa.Table
    expired: Expired
    #: No index serves `expired`: walk the primary key in pages rather than scan per batch.
    walk: bool = False


_rules: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    """Add (or replace, by name) a retention rule; every sweep applies it."""
    _rules[rule.name] = rule
    return rule


def rules() -> list[Rule]:
    return list(_rules.values())


def older_than(days: int, now: datetime) -> datetime | None:
    """The cutoff of a `..._DAYS` setting; None for 0 (keep forever)."""
    return now - timedelta(days=days) if days > 0 else None


def sweep(ctx: AppContext, *, batch: int | None = None) -> dict[str, int]:
    """Apply every rule once: rows deleted per rule (bounded by MAX_BATCHES_PER_SWEEP batches each)."""
    size = batch or ctx.settings.retention_batch
    deleted: dict[str, int] = {}
    for rule in rules():
        try:
            deleted[rule.name] = (_walk if rule.walk else _drain)(ctx, rule, size)
        except Exception:  # one rule's failure must not stop the others (or the runtime)
            log.exception("retention: rule %s failed", rule.name)
            deleted[rule.name] = 0
    if any(deleted.values()):
        log.info("retention: deleted %s", ", ".join(f"{n}={c}" for n, c in deleted.items() if c))
    return deleted


def _key(table: sa.Table) -> Sequence[sa.Column[Any]]:
    return list(table.primary_key.columns)


def _drain(ctx: AppContext, rule: Rule, size: int) -> int:
    """DELETE bounded batches of expired rows until a batch comes back short."""
    total = 0
    key = _key(rule.table)
    for _ in range(MAX_BATCHES_PER_SWEEP):
        with ctx.transaction() as session:
            where = rule.expired(ctx.clock.now(), ctx.settings)
            if where is None:
                return total
            # A materialized CTE is evaluated once; as a plain IN subquery PostgreSQL may re-run it
            # per row and (skipping locked rows) pick more than `size` (see job_runs.claim_batch).
            chosen = dialects.skip_locked(sa.select(*key).where(where).limit(size), session)
            picked = chosen.cte("expired").prefix_with("MATERIALIZED")
            target = key[0] if len(key) == 1 else sa.tuple_(*key)
            # Rows counted off RETURNING: pysqlite reports no rowcount for a statement led by WITH.
            deleted = sa.delete(rule.table).where(target.in_(sa.select(*picked.c))).returning(key[0])
            n = len(session.execute(deleted).all())
        total += n
        if n < size:
            break
    return total


def _walk(ctx: AppContext, rule: Rule, size: int) -> int:
    """Walk the primary key in pages of `size` rows, deleting the expired rows of each page. The
    walk resumes where the last sweep stopped and starts over after the end."""
    key = _key(rule.table)
    cursors: dict[str, tuple[Any, ...] | None] = ctx.service("runtime.retention.cursors", lambda _c: {})
    total = 0
    for _ in range(MAX_BATCHES_PER_SWEEP):
        start = cursors.get(rule.name)
        with ctx.transaction() as session:
            where = rule.expired(ctx.clock.now(), ctx.settings)
            if where is None:
                return total
            row = sa.tuple_(*key)
            after = row > sa.tuple_(*(sa.literal(v) for v in start)) if start is not None else sa.true()
            # The page's last key: the size-th key after the cursor (None: the page reaches the end).
            end = session.execute(
                sa.select(*key).where(after).order_by(*key).offset(size - 1).limit(1)
            ).first()
            in_page = sa.and_(after, row <= sa.tuple_(*(sa.literal(v) for v in end))) if end else after
            total += rowcount(session.execute(sa.delete(rule.table).where(in_page, where)))
        cursors[rule.name] = tuple(end) if end else None
        if end is None:
            break
    return total


# -- the runtime's own rules ----------------------------------------------------------------------

_jobs: sa.Table = Job.__table__  # type: ignore[assignment]
_outbox: sa.Table = OutboxMessage.__table__  # type: ignore[assignment]
_pauses: sa.Table = OutboxPause.__table__  # type: ignore[assignment]
_event_ids: sa.Table = EventId.__table__  # type: ignore[assignment]


def _finished_jobs(now: datetime, settings: Settings) -> sa.ColumnElement[bool] | None:
    # Queued, running (leased) and retrying jobs are never terminal; slot jobs of the scheduler
    # (`schedule:<owner>:<slot>`) go with the rest: a schedule never returns to a past slot.
    cutoff = older_than(settings.retention_jobs_days, now)
    if cutoff is None:
        return None
    return sa.and_(_jobs.c.status.in_(sorted(JOB.terminal)), _jobs.c.finished_at < cutoff)


def _settled_messages(now: datetime, settings: Settings) -> sa.ColumnElement[bool] | None:
    # Only `sent` and `failed` are final: pending, sending (in flight) and unknown (maybe
    # delivered) messages stay whatever their age. Created, last due (a delayed send) and sent
    # before the cutoff. Ids grow with creation, so "created before the cutoff" is an id range
    # (ending at the first message created since), read off the primary key: the ledger is the
    # hottest table and gets no index for this.
    cutoff = older_than(settings.retention_outbox_days, now)
    if cutoff is None:
        return None
    other = _outbox.alias("other")  # an alias: never correlated with the rows being deleted
    first_recent = sa.select(other.c.id).where(other.c.created_at >= cutoff).order_by(other.c.id).limit(1)
    past_end = sa.select(sa.func.max(other.c.id) + 1)
    boundary = sa.func.coalesce(first_recent.scalar_subquery(), past_end.scalar_subquery())
    return sa.and_(
        _outbox.c.id < boundary,
        _outbox.c.status.in_(sorted(OUTBOX.terminal)),
        _outbox.c.created_at < cutoff,
        _outbox.c.next_attempt_at < cutoff,
        sa.or_(_outbox.c.sent_at.is_(None), _outbox.c.sent_at < cutoff),
    )


def _past_pauses(now: datetime, settings: Settings) -> sa.ColumnElement[bool]:
    return _pauses.c.paused_until < now - timedelta(days=1)


def _old_event_ids(now: datetime, settings: Settings) -> sa.ColumnElement[bool] | None:
    # The idempotency window of the events endpoints: a batch retried within it is stored once; an
    # id older than it is forgotten (the events themselves stay in the data source).
    cutoff = older_than(settings.retention_event_ids_days, now)
    return None if cutoff is None else _event_ids.c.created_at < cutoff


register(Rule("jobs", _jobs, _finished_jobs))
register(Rule("outbox_messages", _outbox, _settled_messages))
register(Rule("outbox_pauses", _pauses, _past_pauses))
register(Rule("event_ids", _event_ids, _old_event_ids))
