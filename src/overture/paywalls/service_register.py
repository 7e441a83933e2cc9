"""register(placement): which paywall, if any, this user sees now — the hot path, as one use case.

The workspace's compiled decision table answers from memory (compiled from one read on a cache miss,
off the event loop); what the decision must write (a frequency-cap increment, an exposure) goes to
the recorder's group commit and is awaited, so an answer the SDK receives is a write that is in the
database; a cap found spent at commit turns the answer into the capped one.

Unlike the other services this takes the AppContext and the workspace, not a Session: it opens no
transaction and reads no configuration per request. Its only thread hops are the compilation on a
cache miss and the recorder's commit when the decision writes (see docs/performance.md)."""

from __future__ import annotations

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import SQLAlchemyError

from overture.db.context import AppContext
from overture.errors import Unavailable
from overture.paywalls.schemas import RegisterIn
from overture.paywalls.tables import decision_recorder, decision_tables


async def register(ctx: AppContext, workspace_id: str, body: RegisterIn) -> bytes:
    """The answer's JSON bytes (the shape of `RegisterOut`)."""
    tables = decision_tables(ctx)
    table = tables.get(workspace_id)
    if table is None:
        try:
            table = await run_in_threadpool(tables.load, workspace_id)
        except SQLAlchemyError:
            raise Unavailable("the campaign configuration could not be loaded; try again")
    decision = table.decide(
        body.placement,
        body.user_id,
        session_id=body.session_id,
        user=body.user,
        device=body.device,
        params=body.params,
        entitlements=body.entitlements,
    )
    pending = decision_recorder(ctx).record(workspace_id, decision)
    if pending is None:
        return decision.body
    shown = await pending
    if not shown and decision.capped_body is not None:
        return decision.capped_body
    return decision.body
