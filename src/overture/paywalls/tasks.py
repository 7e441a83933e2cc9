"""What the runtime does for paywalls: the retention of frequency-cap counters.

A counter's `period` is `day:<YYYY-MM-DD>` (UTC), `session:<id>` or `total`. A day counter matters
only on its day: it is deleted once that day is two days past (one day of slack for clocks). A
session has no end the server sees, so a session counter is deleted after
OVERTURE_RETENTION_CAP_SESSIONS_DAYS without a change. `total` counters are lifetime caps: kept.
No index serves these conditions (and none is added: the counters are written on the decision
path), so the rule walks the primary key."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from overture.config import Settings
from overture.paywalls.models import CapCounter
from overture.runtime import retention

_counters: sa.Table = CapCounter.__table__  # type: ignore[assignment]


def _expired_counters(now: datetime, settings: Settings) -> sa.ColumnElement[bool]:
    period = _counters.c.period
    oldest_day = "day:" + (now.date() - timedelta(days=1)).isoformat()
    past_days = sa.and_(period.startswith("day:", autoescape=True), period < oldest_day)
    cutoff = retention.older_than(settings.retention_cap_sessions_days, now)
    if cutoff is None:
        return past_days
    idle_sessions = sa.and_(period.startswith("session:", autoescape=True), _counters.c.updated_at < cutoff)
    return sa.or_(past_days, idle_sessions)


retention.register(retention.Rule("paywall_cap_counters", _counters, _expired_counters, walk=True))
