"""A pass: who must leave, then every member that can move walked through the DAG — set-based.

A pass moves every member that can move in one transaction: it builds a temporary work table with
one SELECT that walks the DAG level by level (a CASE per level of the topological order, each level a
fenced subquery so no engine inlines the previous level twice), then applies it with one UPDATE, one
INSERT of new members and one INSERT of history. Tile ids are restricted to ``[A-Za-z0-9_.-]`` so the
event lists parse unambiguously."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from overture.data.temp import temporary_table
from overture.errors import Invalid
from overture.journeys.lifecycle import MemberStatus
from overture.journeys.members.tables import (
    BUCKETS,
    MemberStore,
    Relation,
    Spec,
    Step,
    columns,
    key_type,
    may_become,
    sql_str,
)

__all__ = ["LEAVER_COLUMNS", "WORK_COLUMNS", "Layout", "bucket", "exit_members", "walk"]

ACTIVE, COMPLETED, EXITED = MemberStatus.ACTIVE.value, MemberStatus.COMPLETED.value, MemberStatus.EXITED.value
#: PostgreSQL functions take at most 100 arguments: event lists are joined in chunks.
_CONCAT_CHUNK = 90


#: Members an exit step removes, and why (a temporary table per step).
LEAVER_COLUMNS: Spec = (
    ("member_id", None, True),
    ("entry_no", sa.Integer, True),
    ("tile_id", sa.String, True),
    ("reason", sa.String, True),
)
#: A pass's result per member that moved or entered: where it ends, how, and its events (a
#: temporary table per pass).
WORK_COLUMNS: Spec = (
    ("member_id", None, True),
    ("entry_no", sa.Integer, True),
    ("is_new", sa.Integer, True),
    ("tile_id", sa.String, True),
    ("status", sa.String, True),
    ("reason", sa.String, True),
    ("wait_until", sa.DateTime, True),
    ("moves", sa.Integer, True),
    ("done", sa.Integer, True),
    ("events", sa.String, True),
)


@dataclass
class Layout:
    """What a pass needs to know of the DAG: levels of the topological order, each tile's type and
    successors, and the criteria/deadline of the tiles that have them."""

    levels: list[list[str]]
    types: dict[str, str]
    #: (target, branch) per tile, in edge order.
    outs: dict[str, list[tuple[str, str | None]]]
    #: Compiled filter criteria (over the relation) per filter tile.
    criteria: dict[str, sa.ColumnElement[bool]] = field(default_factory=dict)
    #: (variant, cumulative upper bucket) per split tile.
    splits: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    #: Wait deadline of a member arriving now, per wait tile.
    deadlines: dict[str, datetime] = field(default_factory=dict)

    def holding(self) -> list[str]:
        """Tiles whose members a pass never moves: syncs (the outbox step moves them)."""
        return [t for t, kind in self.types.items() if kind == "sync"]


def _int(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.case((condition, 1), else_=0)


def exit_members(
    store: MemberStore,
    conn: sa.Connection,
    step: Step,
    relation: Relation,
    tile_ids: Sequence[str],
    exit_criteria: sa.ColumnElement[bool] | None,
) -> int:
    """Remove the members that must leave: on a tile the definition no longer has (tile_removed),
    without a profile row (profile_missing), matching the exit criteria (exit_criteria). One LEFT
    JOIN against the profiles finds them all (an EXISTS under an OR would be a subquery per member
    on PostgreSQL); history and members change together."""
    m = store.members
    whens: list[tuple[sa.ColumnElement[bool], str]] = [
        (m.c.tile_id.not_in(list(tile_ids)), "tile_removed"),
        (relation.key.is_(None), "profile_missing"),
    ]
    if exit_criteria is not None:
        whens.append((sa.func.coalesce(exit_criteria, sa.false()), "exit_criteria"))
    reason = sa.case(*[(cond, sql_str(label)) for cond, label in whens], else_=sa.null())
    with temporary_table(conn, "jx", columns(LEAVER_COLUMNS, key_type(relation))) as leavers:
        conn.execute(
            sa.insert(leavers).from_select(
                ["member_id", "entry_no", "tile_id", "reason"],
                sa.select(m.c.member_id, m.c.entry_no, m.c.tile_id, reason)
                .select_from(m.outerjoin(relation.rows, relation.key == m.c.member_id))
                .where(may_become(m.c.status, MemberStatus.EXITED), sa.or_(*(cond for cond, _ in whens))),
            )
        )
        count = int(conn.execute(sa.select(sa.func.count()).select_from(leavers)).scalar() or 0)
        if count:
            store.append_history(
                conn,
                step,
                sa.select(
                    leavers.c.member_id,
                    leavers.c.entry_no,
                    sql_str("exited:") + leavers.c.tile_id,
                    leavers.c.reason,
                ),
            )
            conn.execute(
                sa.update(m)
                .where(m.c.member_id == leavers.c.member_id, m.c.entry_no == leavers.c.entry_no)
                .values(status=EXITED, reason=leavers.c.reason, wait_until=None, updated_at=step.now)
            )
        store.record_step(conn, step, {"exited": count})
    return count


def _movers(
    store: MemberStore, relation: Relation, layout: Layout, now: datetime, entry: _Entry | None
) -> sa.CTE:
    """Level 0: every member that can move now (standing anywhere but on a sync tile or an
    unfinished wait), plus the new entrants, each with its filter criteria already evaluated."""
    m = store.members
    crit = [
        (sa.func.coalesce(expr, sa.false())).label(f"c_{i}")
        for i, expr in enumerate(layout.criteria.values())
    ]
    existing = (
        sa.select(
            m.c.member_id.label("member_id"),
            m.c.entry_no.label("entry_no"),
            sa.literal(0, sa.Integer()).label("is_new"),
            m.c.tile_id.label("t0"),
            *crit,
        )
        .select_from(m.join(relation.rows, relation.key == m.c.member_id))
        .where(
            may_become(m.c.status, MemberStatus.COMPLETED),
            sa.or_(m.c.wait_until.is_(None), m.c.wait_until <= now),
        )
    )
    holding = layout.holding()
    if holding:
        existing = existing.where(m.c.tile_id.not_in(holding))
    if entry is None:
        return existing.cte("s0")
    return sa.union_all(existing, entry.select(store, relation, crit)).cte("s0")


def walk(
    store: MemberStore,
    conn: sa.Connection,
    step: Step,
    relation: Relation,
    layout: Layout,
    *,
    entry_tile: str | None = None,
    entry_criteria: sa.ColumnElement[bool] | None = None,
    exit_criteria: sa.ColumnElement[bool] | None = None,
    reentry: str = "never",
) -> dict[str, int]:
    """One pass: move every member that can move as far as it goes (to a wait not yet over, a
    sync, or the end), admitting new entrants at `entry_tile` when given. Returns the counts."""
    entry = _Entry(entry_tile, entry_criteria, exit_criteria, reentry) if entry_tile is not None else None
    s = _movers(store, relation, layout, step.now, entry)
    index = {tile: i for i, tile in enumerate(layout.criteria)}
    tiles_by_level: list[list[str]] = [[t for t in level if _moves(layout, t)] for level in layout.levels]
    hops = ["t0"]  # the tile column after each level: t0 where a member starts, t1, t2...
    for level in tiles_by_level:
        if not level:
            continue
        prev = s.c[hops[-1]]
        whens = [(prev == tile, _next(store, layout, tile, s, index)) for tile in level]
        name = f"t{len(hops)}"
        s = (
            sa.select(*s.c, sa.case(*whens, else_=prev).label(name))
            .offset(sa.literal_column("0"))  # an optimization fence: keeps each level computed once
            .cte(f"s{len(hops)}")
        )
        hops.append(name)
    final = s.c[hops[-1]]
    t0 = s.c.t0
    exits = [t for t, kind in layout.types.items() if kind == "exit"]
    dead_instant = [
        t for t, kind in layout.types.items() if not layout.outs[t] and kind in ("entry", "filter", "split")
    ]
    dead_waits = [t for t, kind in layout.types.items() if not layout.outs[t] and kind == "wait"]
    done_conditions: list[sa.ColumnElement[bool]] = []
    if exits or dead_instant:
        done_conditions.append(final.in_(exits + dead_instant))
    if dead_waits:
        done_conditions.append(sa.and_(final.in_(dead_waits), final == t0))
    done = _int(sa.or_(*done_conditions)) if done_conditions else sa.literal(0, sa.Integer())
    reasons: list[tuple[sa.ColumnElement[bool], sa.ColumnElement[str]]] = []
    if exits:
        reasons.append((final.in_(exits), sql_str("exit_tile")))
    reasons.append((done == 1, sql_str("end_of_path")))
    reason = sa.case(*reasons, else_=sa.null())
    deadlines = [(final == t, sa.literal(d, sa.DateTime())) for t, d in layout.deadlines.items()]
    wait_until: sa.ColumnElement[Any] = (
        sa.case((sa.or_(done == 1, final == t0), sa.null()), *deadlines, else_=sa.null())
        if deadlines
        else sa.cast(sa.null(), sa.DateTime())
    )
    moves = sum(
        (_int(s.c[b] != s.c[a]) for a, b in itertools.pairwise(hops)),
        start=sa.literal(0, sa.Integer()),
    )
    tokens: list[sa.ColumnElement[Any]] = [
        sa.case((s.c.is_new == 1, sql_str("entered:") + t0), else_=sa.null())
    ]
    tokens += [
        sa.case((s.c[b] != s.c[a], sql_str("arrived:") + s.c[b]), else_=sa.null())
        for a, b in itertools.pairwise(hops)
    ]
    tokens.append(sa.case((done == 1, sql_str("completed:") + final), else_=sa.null()))
    work_rows = sa.select(
        s.c.member_id,
        s.c.entry_no,
        s.c.is_new,
        final,
        sa.case((done == 1, sql_str(COMPLETED)), else_=sql_str(ACTIVE)),
        reason,
        wait_until,
        moves,
        done,
        _join_tokens(tokens),
    ).where(sa.or_(s.c.is_new == 1, done == 1, final != t0))

    with temporary_table(conn, "jw", columns(WORK_COLUMNS, key_type(relation))) as work:
        conn.execute(sa.insert(work).from_select(list(work.c.keys()), work_rows))
        if store.source.is_postgres:
            # A fresh temporary table has no statistics: without them the apply joins badly.
            conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.quote(work.name)}")
        totals = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(work.c.is_new), 0),
                sa.func.coalesce(sa.func.sum(work.c.moves), 0),
                sa.func.coalesce(sa.func.sum(work.c.done), 0),
            )
        ).one()
        counts = {"entered": int(totals[1]), "advanced": int(totals[2]), "completed": int(totals[3])}
        if int(totals[0]):
            _apply(store, conn, step, work)
        store.record_step(conn, step, counts)
    return counts


def _apply(store: MemberStore, conn: sa.Connection, step: Step, work: sa.Table) -> None:
    """Write a pass's work table: moved members updated, new members inserted, history appended."""
    m = store.members
    conn.execute(
        sa.update(m)
        .where(m.c.member_id == work.c.member_id, m.c.entry_no == work.c.entry_no, work.c.is_new == 0)
        .values(
            tile_id=work.c.tile_id,
            status=work.c.status,
            reason=work.c.reason,
            wait_until=work.c.wait_until,
            updated_at=step.now,
        )
    )
    conn.execute(
        sa.insert(m).from_select(
            list(m.c.keys()),
            sa.select(
                work.c.member_id,
                work.c.entry_no,
                work.c.status,
                work.c.tile_id,
                work.c.wait_until,
                work.c.reason,
                sa.literal(step.now, sa.DateTime()),
            ).where(work.c.is_new == 1),
        )
    )
    store.append_history(
        conn, step, sa.select(work.c.member_id, work.c.entry_no, work.c.events, work.c.reason)
    )


def _moves(layout: Layout, tile: str) -> bool:
    """Whether members on `tile` can leave it during a pass (syncs, exits, dead ends cannot)."""
    kind = layout.types[tile]
    return kind in ("entry", "filter", "split", "wait") and bool(layout.outs[tile])


def _next(
    store: MemberStore, layout: Layout, tile: str, s: sa.CTE, index: Mapping[str, int]
) -> sa.ColumnElement[Any]:
    """Where a member on `tile` goes next in this pass."""
    kind = layout.types[tile]
    outs = layout.outs[tile]
    if kind == "filter":
        by_branch = {branch: target for target, branch in outs}
        return sa.case(
            (s.c[f"c_{index[tile]}"], sql_str(by_branch["match"])), else_=sql_str(by_branch["no_match"])
        )
    if kind == "split":
        by_branch = {branch: target for target, branch in outs}
        member_bucket = bucket(store, s.c.member_id, tile)
        variants = layout.splits[tile]
        whens = [(member_bucket < upper, sql_str(by_branch[name])) for name, upper in variants[:-1]]
        last = sql_str(by_branch[variants[-1][0]])
        return sa.case(*whens, else_=last) if whens else last
    if kind == "wait":
        # Only a member that started the pass here (its wait is over) goes on; one that arrived
        # during the pass starts waiting.
        return sa.case((s.c.t0 == tile, sql_str(outs[0][0])), else_=sql_str(tile))
    return sql_str(outs[0][0])


def bucket(store: MemberStore, member: sa.ColumnElement[Any], tile_id: str) -> sa.ColumnElement[int]:
    """A member's split bucket in [0, 10000), computed inside the source from md5 of
    "journey:tile:member" (first 32 bits), identical on DuckDB and PostgreSQL and to `bucket_of`."""
    key = sql_str(f"{store.journey_id}:{tile_id}:") + sa.cast(member, sa.String())
    head = sa.func.substr(sa.func.md5(key), 1, 8)
    if store.source.is_postgres:
        number: sa.ColumnElement[Any] = sa.cast(
            sa.cast(sql_str("x") + head, postgresql.BIT(32)), sa.BigInteger()
        )
    elif store.source.is_duckdb:
        number = sa.cast(sql_str("0x") + head, sa.BigInteger())
    else:
        raise Invalid(
            f"split tiles need a DuckDB or PostgreSQL data source (this one is {store.source.dialect})"
        )
    return number % BUCKETS


@dataclass(frozen=True)
class _Entry:
    """Who enters in a pass: profiles matching the entry criteria and not the exit criteria, never
    entered before, or (reentry after_exit) not in the journey right now."""

    tile: str
    criteria: sa.ColumnElement[bool] | None
    exit_criteria: sa.ColumnElement[bool] | None
    reentry: str

    def select(
        self, store: MemberStore, relation: Relation, crit: Sequence[sa.ColumnElement[Any]]
    ) -> sa.Select[Any]:
        m = store.members
        conditions: list[sa.ColumnElement[bool]] = []
        if self.criteria is not None:
            conditions.append(self.criteria)
        if self.exit_criteria is not None:
            conditions.append(sa.not_(self.exit_criteria))
        head: list[Any] = [relation.key]
        tail: list[Any] = [sa.literal(1, sa.Integer()), sql_str(self.tile), *crit]
        if self.reentry != "after_exit":
            # Never entered: a plain anti-join (no aggregate over the members).
            entered = sa.exists(sa.select(sa.literal(1)).select_from(m).where(m.c.member_id == relation.key))
            return sa.select(*head, sa.literal(1, sa.Integer()), *tail).where(*conditions, ~entered)
        previous = (
            sa.select(
                m.c.member_id.label("member_id"),
                sa.func.max(m.c.entry_no).label("entries"),
                sa.func.max(_int(m.c.status == ACTIVE)).label("inside"),
            )
            .group_by(m.c.member_id)
            .subquery("prev")
        )
        conditions.append(sa.or_(previous.c.member_id.is_(None), previous.c.inside == 0))
        return (
            sa.select(*head, sa.func.coalesce(previous.c.entries, 0) + 1, *tail)
            .select_from(relation.rows.outerjoin(previous, previous.c.member_id == relation.key))
            .where(*conditions)
        )


def _join_tokens(tokens: Sequence[sa.ColumnElement[Any]]) -> sa.ColumnElement[str]:
    """concat_ws(' ', ...) skipping NULLs; nested in chunks below PostgreSQL's 100-argument limit."""
    if len(tokens) <= _CONCAT_CHUNK:
        return sa.func.concat_ws(" ", *tokens)
    chunks = [
        sa.func.nullif(sa.func.concat_ws(" ", *tokens[i : i + _CONCAT_CHUNK]), "")
        for i in range(0, len(tokens), _CONCAT_CHUNK)
    ]
    return _join_tokens(chunks)
