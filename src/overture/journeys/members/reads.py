"""What is read back from a journey's member tables: run counts, stats, one member's memberships
and path."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from overture.data.source import TableRef
from overture.journeys.lifecycle import MemberStatus
from overture.journeys.members.tables import STEP_COUNTS, MemberStore

__all__ = ["active_count", "member", "member_id_kind", "run_counts", "stats", "waiting_on"]

ACTIVE = MemberStatus.ACTIVE.value


def run_counts(store: MemberStore, conn: sa.Connection, run_id: str) -> dict[str, int]:
    st = store.steps
    row = conn.execute(
        sa.select(*[sa.func.coalesce(sa.func.sum(st.c[c]), 0) for c in STEP_COUNTS]).where(
            st.c.run_id == run_id
        )
    ).one()
    return {c: int(v) for c, v in zip(STEP_COUNTS, row, strict=True)}


def active_count(store: MemberStore, conn: sa.Connection) -> int:
    m = store.members
    return int(conn.execute(sa.select(sa.func.count()).where(m.c.status == ACTIVE)).scalar() or 0)


def waiting_on(store: MemberStore, conn: sa.Connection, tile_id: str) -> int:
    m = store.members
    query = sa.select(sa.func.count()).where(m.c.status == ACTIVE, m.c.tile_id == tile_id)
    return int(conn.execute(query).scalar() or 0)


def stats(store: MemberStore, conn: sa.Connection) -> list[tuple[str, str, int]]:
    m = store.members
    rows = conn.execute(
        sa.select(m.c.tile_id, m.c.status, sa.func.count()).group_by(m.c.tile_id, m.c.status)
    ).all()
    return [(str(tile), str(status), int(n)) for tile, status, n in rows]


def member(
    store: MemberStore, conn: sa.Connection, member_id: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Memberships of one member (oldest first) and its history rows joined with their steps."""
    m, p, st = store.members, store.path, store.steps
    memberships = [
        dict(r._mapping)
        for r in conn.execute(sa.select(m).where(m.c.member_id == member_id).order_by(m.c.entry_no))
    ]
    path = [
        dict(r._mapping)
        for r in conn.execute(
            sa.select(p.c.entry_no, p.c.events, p.c.detail, st.c.run_id, st.c.occurred_at, p.c.seq)
            .select_from(p.join(st, st.c.seq == p.c.seq))
            .where(p.c.member_id == member_id)
            .order_by(p.c.seq, p.c.entry_no)
        )
    ]
    return memberships, path


def member_id_kind(store: MemberStore, conn: sa.Connection) -> str:
    for column in store.source.table_columns(conn, TableRef(store.members_name)) or []:
        if column.name == "member_id":
            return column.kind
    return "string"
