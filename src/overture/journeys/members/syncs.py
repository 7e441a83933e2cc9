"""Members standing on a sync tile: read in batches with the profile columns a sync maps, and moved
on once their messages are committed (the runner writes the outbox in between)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from overture.db.dialects import rowcount
from overture.journeys.lifecycle import MemberStatus
from overture.journeys.members.tables import MemberStore, Relation, Step, may_become, sql_str

__all__ = ["pass_sync", "sync_batch"]


def sync_batch(
    store: MemberStore,
    conn: sa.Connection,
    relation: Relation,
    tile_id: str,
    columns: Sequence[str],
    *,
    size: int,
) -> list[dict[str, Any]]:
    """The first `size` members (in member order) standing on sync tile `tile_id`, with the
    profile columns the sync maps."""
    m = store.members
    selected = [m.c.member_id.label("__member_id"), m.c.entry_no.label("__entry_no")]
    selected += [relation.column(c).label(f"f_{i}") for i, c in enumerate(columns)]
    query = (
        sa.select(*selected)
        .select_from(m.join(relation.rows, relation.key == m.c.member_id))
        .where(m.c.status == MemberStatus.ACTIVE.value, m.c.tile_id == tile_id)
        .order_by(m.c.member_id)
        .limit(size)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def pass_sync(
    store: MemberStore,
    conn: sa.Connection,
    step: Step,
    relation: Relation,
    tile_id: str,
    low: Any,
    high: Any,
    target: str | None,
    *,
    target_is_exit: bool = False,
    deadline: datetime | None = None,
) -> int:
    """Members of a synced batch (members `low`..`high` on `tile_id`, whose messages are
    committed) move to `target` (completing there if it is an exit tile), or complete on the
    sync tile itself when it has no way out."""
    m = store.members
    batch = sa.and_(
        may_become(m.c.status, MemberStatus.COMPLETED),
        m.c.tile_id == tile_id,
        m.c.member_id >= low,
        m.c.member_id <= high,
        store.has_profile(relation),
    )
    events = [f"synced:{tile_id}"]
    done = MemberStatus.COMPLETED.value
    values: dict[str, Any]
    if target is None:
        events.append(f"completed:{tile_id}")
        reason: str | None = "end_of_path"
        values = {"status": done, "reason": reason, "wait_until": None}
    elif target_is_exit:
        events += [f"arrived:{target}", f"completed:{target}"]
        reason = "exit_tile"
        values = {"tile_id": target, "status": done, "reason": reason, "wait_until": None}
    else:
        events.append(f"arrived:{target}")
        reason = None
        values = {"tile_id": target, "wait_until": deadline}
    history = sa.select(
        m.c.member_id, m.c.entry_no, sql_str(" ".join(events)), sa.literal(reason, sa.String())
    )
    store.append_history(conn, step, history.where(batch))
    count = rowcount(conn.execute(sa.update(m).where(batch).values(updated_at=step.now, **values)))
    completed = count if values.get("status") == done else 0
    advanced = count if target is not None else 0
    store.record_step(conn, step, {"synced": count, "advanced": advanced, "completed": completed})
    return count
