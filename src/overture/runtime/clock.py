"""Which AppContext (and so which clock) a session's engine belongs to.

Services receive only a Session, yet enqueueing a job or saving a schedule needs "now" from the
context's injectable clock (tests freeze it). Contexts register here when the app, a worker or a
runtime entry point first sees them; an unregistered engine falls back to the system clock."""

from __future__ import annotations

import threading
import weakref
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from overture.clock import utcnow
from overture.db.context import AppContext

#: "As soon as possible": due under any clock, real or frozen, and ahead of everything scheduled.
ASAP = datetime(1970, 1, 1, tzinfo=UTC)

_contexts: weakref.WeakKeyDictionary[sa.Engine, AppContext] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def register(ctx: AppContext) -> AppContext:
    with _lock:
        _contexts[ctx.engine] = ctx
    return ctx


def now_for(session: Session) -> datetime:
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, sa.Connection) else bind
    with _lock:
        ctx = _contexts.get(engine)
    return ctx.clock.now() if ctx is not None else utcnow()
