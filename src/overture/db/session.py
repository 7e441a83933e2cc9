"""The one session every service takes: a unit of work that also knows its workspace and its clock.

Services are written `def verb_noun(session: Session, ...)`. Everything a use case needs besides its
arguments comes from the session, so there is one calling convention and one source of "now":

- `session.workspace_id` — the caller's workspace (the session filters every ORM query to it);
- `session.now()` — the AppContext's injectable clock (tests freeze it), the system clock for a
  session made outside any context;
- `session.ctx` — the AppContext, for process-wide services (data sources, decision tables).

Sessions come from `AppContext.transaction()` (workers, CLI) or the `get_session` request
dependency; both commit on success and roll back on error, and services only `flush()`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.orm import Session as _OrmSession

from overture.clock import utcnow
from overture.db.base import Timestamped

if TYPE_CHECKING:
    from overture.db.context import AppContext

__all__ = ["Session", "now_of", "stamp_timestamps"]


class Session(_OrmSession):
    """A SQLAlchemy session bound (optionally) to one workspace, carrying the app's clock."""

    @property
    def ctx(self) -> AppContext:
        ctx = self.info.get("ctx")
        if ctx is None:
            raise RuntimeError("this session was not made by an AppContext")
        return ctx  # type: ignore[no-any-return]

    @property
    def workspace_id(self) -> str:
        workspace_id = self.info.get("workspace_id")
        if workspace_id is None:
            raise RuntimeError("this session is not bound to a workspace")
        return str(workspace_id)

    @property
    def bound_workspace(self) -> str | None:
        """The workspace this session is bound to, or None for a runtime session over all of them."""
        value = self.info.get("workspace_id")
        return None if value is None else str(value)

    def now(self) -> datetime:
        ctx = self.info.get("ctx")
        return ctx.clock.now() if ctx is not None else utcnow()


def now_of(session: _OrmSession) -> datetime:
    """`session.now()` for any ORM session (one made by a bare sessionmaker uses the system clock)."""
    return session.now() if isinstance(session, Session) else utcnow()


@event.listens_for(_OrmSession, "before_flush")
def stamp_timestamps(session: _OrmSession, _ctx: Any, _instances: Any) -> None:
    """`Timestamped` rows take created_at/updated_at from the session's clock, not the system's."""
    now = None
    for obj in session.new:
        if isinstance(obj, Timestamped):
            now = now or now_of(session)
            if getattr(obj, "created_at", None) is None:
                obj.created_at = now
            if getattr(obj, "updated_at", None) is None:
                obj.updated_at = now
    for obj in session.dirty:
        if isinstance(obj, Timestamped) and session.is_modified(obj, include_collections=False):
            now = now or now_of(session)
            obj.updated_at = now
