"""Member state in the profile data source, and the set-based statements a run is made of.

Each journey has three tables beside the profiles they are joined with, so every transition is a
statement inside the source and never a row trip through Python:

* ``<ws prefix>jrn_<journey hex>_members`` — one row per membership (member, entry number): status,
  the tile it stands on, until when it waits, why it left, when it last changed;
* ``…_path`` — the member's history: one row per membership and step, holding the ordered events of
  that step (``entered:tile-1 arrived:tile-2 arrived:tile-3``) — within a step every event happens at
  the step's instant, so one row per member and step loses nothing and writes a quarter of the rows;
* ``…_steps`` — one row per step: its run, its instant, and how many members it entered, moved,
  removed, completed and synced (so run counts are exact, and survive a crash, by construction).

A *pass* moves every member that can move in one transaction: it builds a temporary work table with
one SELECT that walks the DAG level by level (a CASE per level of the topological order, each level a
fenced subquery so no engine inlines the previous level twice), then applies it with one UPDATE, one
INSERT of new members and one INSERT of history. Tile ids are restricted to ``[A-Za-z0-9_.-]`` so the
event lists parse unambiguously. The tables carry the workspace prefix of Overture-managed tables, so
no other workspace can model them.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from overture.data.source import DataSource, TableRef, workspace_prefix
from overture.errors import Invalid

log = logging.getLogger(__name__)

__all__ = [
    "BUCKETS",
    "EVENTS",
    "Layout",
    "MemberStore",
    "Relation",
    "Step",
    "bucket_of",
    "naive_utc",
    "parse_events",
]

#: Split buckets: basis points of a percentage (two decimals), so variants split 10,000 ways.
BUCKETS = 10_000
ACTIVE, COMPLETED, EXITED = "active", "completed", "exited"
EVENTS = ("entered", "arrived", "synced", "completed", "exited")
#: PostgreSQL functions take at most 100 arguments: event lists are joined in chunks.
_CONCAT_CHUNK = 90


def naive_utc(value: datetime) -> datetime:
    """Timestamps in member tables are naive UTC: the same on DuckDB, PostgreSQL and SQLite."""
    return value.astimezone(UTC).replace(tzinfo=None)


def aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def bucket_of(journey_id: str, tile_id: str, member_id: object) -> int:
    """The Python twin of the SQL bucket: first 32 bits of md5("journey:tile:member") mod 10,000."""
    digest = hashlib.md5(f"{journey_id}:{tile_id}:{member_id}".encode(), usedforsecurity=False)
    return int(digest.hexdigest()[:8], 16) % BUCKETS


def parse_events(events: str) -> list[tuple[str, str]]:
    """``"entered:a arrived:b"`` -> ``[("entered", "a"), ("arrived", "b")]``."""
    out: list[tuple[str, str]] = []
    for token in events.split():
        event, _, tile = token.partition(":")
        out.append((event, tile))
    return out


@dataclass(frozen=True)
class Relation:
    """The parent model's rows (a FROM-able relation) and its primary key column on it."""

    rows: sa.FromClause
    key: sa.ColumnElement[Any]

    def column(self, name: str) -> sa.ColumnElement[Any]:
        return self.rows.c[name]


@dataclass(frozen=True)
class Step:
    """One transaction's identity: its run, its logical instant, and its sequence number."""

    run_id: str
    now: datetime
    seq: int


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


def _members_table(name: str) -> sa.TableClause:
    return sa.table(
        name,
        sa.column("member_id"),
        sa.column("entry_no", sa.Integer()),
        sa.column("status", sa.String()),
        sa.column("tile_id", sa.String()),
        sa.column("wait_until", sa.DateTime()),
        sa.column("reason", sa.String()),
        sa.column("updated_at", sa.DateTime()),
    )


def _path_table(name: str) -> sa.TableClause:
    return sa.table(
        name,
        sa.column("member_id"),
        sa.column("entry_no", sa.Integer()),
        sa.column("seq", sa.BigInteger()),
        sa.column("events", sa.String()),
        sa.column("detail", sa.String()),
    )


STEP_COUNTS = ("entered", "advanced", "exited", "completed", "synced")


def _steps_table(name: str) -> sa.TableClause:
    return sa.table(
        name,
        sa.column("seq", sa.BigInteger()),
        sa.column("run_id", sa.String()),
        sa.column("occurred_at", sa.DateTime()),
        *[sa.column(c, sa.BigInteger()) for c in STEP_COUNTS],
    )


def _work_table(name: str) -> sa.TableClause:
    return sa.table(
        name,
        sa.column("member_id"),
        sa.column("entry_no", sa.Integer()),
        sa.column("is_new", sa.Integer()),
        sa.column("tile_id", sa.String()),
        sa.column("status", sa.String()),
        sa.column("reason", sa.String()),
        sa.column("wait_until", sa.DateTime()),
        sa.column("moves", sa.Integer()),
        sa.column("done", sa.Integer()),
        sa.column("events", sa.String()),
    )


def _int(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.case((condition, 1), else_=0)


def _text(value: str) -> sa.ColumnElement[str]:
    return sa.literal(value, sa.String())


class MemberStore:
    """The tables of one journey and every statement over them. Methods taking a connection run
    inside the caller's source transaction."""

    def __init__(self, source: DataSource, workspace_id: str, journey_id: str) -> None:
        self.source = source
        self.journey_id = journey_id
        hex_id = journey_id.replace("-", "").lower()
        stem = f"{workspace_prefix(workspace_id)}jrn_{hex_id}"
        self.members_name = f"{stem}_members"
        self.path_name = f"{stem}_path"
        self.steps_name = f"{stem}_steps"
        self.members = _members_table(self.members_name)
        self.path = _path_table(self.path_name)
        self.steps = _steps_table(self.steps_name)
        self._index_stem = f"ix_jrn_{hex_id}"

    # -- tables ------------------------------------------------------------------------------------
    def exists(self, conn: sa.Connection) -> bool:
        return self.source.table_columns(conn, TableRef(self.steps_name)) is not None

    def ensure(self, conn: sa.Connection, relation: Relation) -> None:
        """Create the tables on first use. `member_id` takes the primary key's own type, so joins with
        the profiles need no casts. (Explicit DDL, not CREATE TABLE AS over NULL constants: DuckDB
        keeps "always NULL" statistics for such columns and then answers aggregates wrongly.)"""
        if self.exists(conn):
            return
        key_type = relation.key.type
        if isinstance(key_type, sa.types.NullType):
            key_type = sa.String()
        metadata = sa.MetaData()
        sa.Table(
            self.members_name,
            metadata,
            sa.Column("member_id", key_type, nullable=False),
            sa.Column("entry_no", sa.Integer(), nullable=False),
            sa.Column("status", sa.String(), nullable=False),
            sa.Column("tile_id", sa.String(), nullable=False),
            sa.Column("wait_until", sa.DateTime()),
            sa.Column("reason", sa.String()),
            sa.Column("updated_at", sa.DateTime(), nullable=False),
        )
        path = sa.Table(
            self.path_name,
            metadata,
            sa.Column("member_id", key_type, nullable=False),
            sa.Column("entry_no", sa.Integer(), nullable=False),
            sa.Column("seq", sa.BigInteger(), nullable=False),
            sa.Column("events", sa.String(), nullable=False),
            sa.Column("detail", sa.String()),
        )
        steps = sa.Table(
            self.steps_name,
            metadata,
            sa.Column("seq", sa.BigInteger(), nullable=False),
            sa.Column("run_id", sa.String(), nullable=False),
            sa.Column("occurred_at", sa.DateTime(), nullable=False),
            *[sa.Column(c, sa.BigInteger(), nullable=False) for c in STEP_COUNTS],
        )
        if not self.source.is_duckdb:
            # The history grows with every run: a row store needs an index for the member lookup.
            # The members table has none on purpose: runs join it by hash, an index would double
            # the cost of every mass move, and a lookup scans it in a fraction of a second.
            sa.Index(f"{self._index_stem}_p", path.c.member_id)
            sa.Index(f"{self._index_stem}_s", steps.c.run_id)
        metadata.create_all(conn)
        if self.source.is_postgres:
            # Room on each page for the row version a move writes: updates stay HOT (no index churn).
            quote = conn.dialect.identifier_preparer.quote
            conn.exec_driver_sql(f"ALTER TABLE {quote(self.members_name)} SET (fillfactor = 70)")

    def drop(self, conn: sa.Connection) -> None:
        quote = conn.dialect.identifier_preparer.quote
        for name in (self.members_name, self.path_name, self.steps_name):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(name)}")

    def last_seq(self, conn: sa.Connection) -> int:
        return int(conn.execute(sa.select(sa.func.max(self.steps.c.seq))).scalar() or 0)

    def _record_step(self, conn: sa.Connection, step: Step, counts: Mapping[str, int]) -> None:
        conn.execute(
            sa.insert(self.steps).values(
                seq=step.seq,
                run_id=step.run_id,
                occurred_at=step.now,
                **{c: int(counts.get(c, 0)) for c in STEP_COUNTS},
            )
        )

    # -- the pass ----------------------------------------------------------------------------------
    def _has_profile(self, relation: Relation, *criteria: sa.ColumnElement[bool]) -> sa.Exists:
        query = sa.select(sa.literal(1)).select_from(relation.rows)
        return sa.exists(query.where(relation.key == self.members.c.member_id, *criteria))

    def exit_members(
        self,
        conn: sa.Connection,
        step: Step,
        relation: Relation,
        tile_ids: Sequence[str],
        exit_criteria: sa.ColumnElement[bool] | None,
    ) -> int:
        """Remove the members that must leave: on a tile the definition no longer has
        (tile_removed), without a profile row (profile_missing), matching the exit criteria
        (exit_criteria). One LEFT JOIN against the profiles finds them all (an EXISTS under an OR
        would be a subquery per member on PostgreSQL); history and members change together."""
        m = self.members
        removed = m.c.tile_id.not_in(list(tile_ids))
        missing = relation.key.is_(None)
        whens: list[tuple[sa.ColumnElement[bool], str]] = [
            (removed, "tile_removed"),
            (missing, "profile_missing"),
        ]
        if exit_criteria is not None:
            whens.append((sa.func.coalesce(exit_criteria, sa.false()), "exit_criteria"))
        reason = sa.case(*[(cond, _text(label)) for cond, label in whens], else_=sa.null())
        name = f"jx_{uuid.uuid4().hex[:16]}"
        leavers = sa.table(
            name,
            sa.column("member_id"),
            sa.column("entry_no", sa.Integer()),
            sa.column("tile_id", sa.String()),
            sa.column("reason", sa.String()),
        )
        key_type = relation.key.type if not isinstance(relation.key.type, sa.types.NullType) else sa.String()
        sa.Table(
            name,
            sa.MetaData(),
            sa.Column("member_id", key_type),
            sa.Column("entry_no", sa.Integer()),
            sa.Column("tile_id", sa.String()),
            sa.Column("reason", sa.String()),
            prefixes=["TEMPORARY"],
        ).create(conn)
        try:
            conn.execute(
                sa.insert(leavers).from_select(
                    ["member_id", "entry_no", "tile_id", "reason"],
                    sa.select(m.c.member_id, m.c.entry_no, m.c.tile_id, reason)
                    .select_from(m.outerjoin(relation.rows, relation.key == m.c.member_id))
                    .where(m.c.status == ACTIVE, sa.or_(*(cond for cond, _ in whens))),
                )
            )
            count = int(conn.execute(sa.select(sa.func.count()).select_from(leavers)).scalar() or 0)
            if count:
                conn.execute(
                    sa.insert(self.path).from_select(
                        ["member_id", "entry_no", "seq", "events", "detail"],
                        sa.select(
                            leavers.c.member_id,
                            leavers.c.entry_no,
                            sa.literal(step.seq, sa.BigInteger()),
                            _text("exited:") + leavers.c.tile_id,
                            leavers.c.reason,
                        ),
                    )
                )
                conn.execute(
                    sa.update(m)
                    .where(m.c.member_id == leavers.c.member_id, m.c.entry_no == leavers.c.entry_no)
                    .values(status=EXITED, reason=leavers.c.reason, wait_until=None, updated_at=step.now)
                )
            self._record_step(conn, step, {"exited": count})
        finally:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {conn.dialect.identifier_preparer.quote(name)}")
        return count

    def _movers(
        self,
        relation: Relation,
        layout: Layout,
        now: datetime,
        entry: _Entry | None,
    ) -> sa.CTE:
        """Level 0: every member that can move now (standing anywhere but on a sync tile or an
        unfinished wait), plus the new entrants, each with its filter criteria already evaluated."""
        m = self.members
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
            .where(m.c.status == ACTIVE, sa.or_(m.c.wait_until.is_(None), m.c.wait_until <= now))
        )
        holding = layout.holding()
        if holding:
            existing = existing.where(m.c.tile_id.not_in(holding))
        if entry is None:
            return existing.cte("s0")
        return sa.union_all(existing, entry.select(self, relation, crit)).cte("s0")

    def walk(
        self,
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
        s = self._movers(relation, layout, step.now, entry)
        index = {tile: i for i, tile in enumerate(layout.criteria)}
        tiles_by_level: list[list[str]] = [
            [t for t in level if self._moves(layout, t)] for level in layout.levels
        ]
        columns = ["t0"]
        for level in tiles_by_level:
            if not level:
                continue
            prev = s.c[columns[-1]]
            whens = [(prev == tile, self._next(layout, tile, s, index)) for tile in level]
            name = f"t{len(columns)}"
            s = (
                sa.select(*s.c, sa.case(*whens, else_=prev).label(name))
                .offset(sa.literal_column("0"))  # an optimization fence: keeps each level computed once
                .cte(f"s{len(columns)}")
            )
            columns.append(name)
        final = s.c[columns[-1]]
        t0 = s.c.t0
        exits = [t for t, kind in layout.types.items() if kind == "exit"]
        dead_instant = [
            t
            for t, kind in layout.types.items()
            if not layout.outs[t] and kind in ("entry", "filter", "split")
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
            reasons.append((final.in_(exits), _text("exit_tile")))
        reasons.append((done == 1, _text("end_of_path")))
        reason = sa.case(*reasons, else_=sa.null())
        deadlines = [(final == t, sa.literal(d, sa.DateTime())) for t, d in layout.deadlines.items()]
        wait_until: sa.ColumnElement[Any] = (
            sa.case((sa.or_(done == 1, final == t0), sa.null()), *deadlines, else_=sa.null())
            if deadlines
            else sa.cast(sa.null(), sa.DateTime())
        )
        moves = sum(
            (_int(s.c[b] != s.c[a]) for a, b in itertools.pairwise(columns)),
            start=sa.literal(0, sa.Integer()),
        )
        tokens: list[sa.ColumnElement[Any]] = [
            sa.case((s.c.is_new == 1, _text("entered:") + t0), else_=sa.null())
        ]
        tokens += [
            sa.case((s.c[b] != s.c[a], _text("arrived:") + s.c[b]), else_=sa.null())
            for a, b in itertools.pairwise(columns)
        ]
        tokens.append(sa.case((done == 1, _text("completed:") + final), else_=sa.null()))
        work_rows = sa.select(
            s.c.member_id,
            s.c.entry_no,
            s.c.is_new,
            final,
            sa.case((done == 1, _text(COMPLETED)), else_=_text(ACTIVE)),
            reason,
            wait_until,
            moves,
            done,
            _join_tokens(tokens),
        ).where(sa.or_(s.c.is_new == 1, done == 1, final != t0))

        work_name = f"jw_{uuid.uuid4().hex[:16]}"
        work = _work_table(work_name)
        self._create_work_table(conn, work_name, relation)
        try:
            conn.execute(sa.insert(work).from_select(list(work.c.keys()), work_rows))
            if self.source.is_postgres:
                # A fresh temporary table has no statistics: without them the apply joins badly.
                conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.quote(work_name)}")
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
                self._apply(conn, step, work)
            self._record_step(conn, step, counts)
        finally:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {conn.dialect.identifier_preparer.quote(work_name)}")
        return counts

    @staticmethod
    def _create_work_table(conn: sa.Connection, name: str, relation: Relation) -> None:
        key_type = relation.key.type
        if isinstance(key_type, sa.types.NullType):
            key_type = sa.String()
        sa.Table(
            name,
            sa.MetaData(),
            sa.Column("member_id", key_type),
            sa.Column("entry_no", sa.Integer()),
            sa.Column("is_new", sa.Integer()),
            sa.Column("tile_id", sa.String()),
            sa.Column("status", sa.String()),
            sa.Column("reason", sa.String()),
            sa.Column("wait_until", sa.DateTime()),
            sa.Column("moves", sa.Integer()),
            sa.Column("done", sa.Integer()),
            sa.Column("events", sa.String()),
            prefixes=["TEMPORARY"],
        ).create(conn)

    def _apply(self, conn: sa.Connection, step: Step, work: sa.TableClause) -> None:
        """Write a pass's work table: moved members updated, new members inserted, history appended."""
        m = self.members
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
        conn.execute(
            sa.insert(self.path).from_select(
                ["member_id", "entry_no", "seq", "events", "detail"],
                sa.select(
                    work.c.member_id,
                    work.c.entry_no,
                    sa.literal(step.seq, sa.BigInteger()),
                    work.c.events,
                    work.c.reason,
                ),
            )
        )

    @staticmethod
    def _moves(layout: Layout, tile: str) -> bool:
        """Whether members on `tile` can leave it during a pass (syncs, exits, dead ends cannot)."""
        kind = layout.types[tile]
        return kind in ("entry", "filter", "split", "wait") and bool(layout.outs[tile])

    def _next(self, layout: Layout, tile: str, s: sa.CTE, index: Mapping[str, int]) -> sa.ColumnElement[Any]:
        """Where a member on `tile` goes next in this pass."""
        kind = layout.types[tile]
        outs = layout.outs[tile]
        if kind == "filter":
            by_branch = {branch: target for target, branch in outs}
            return sa.case(
                (s.c[f"c_{index[tile]}"], _text(by_branch["match"])), else_=_text(by_branch["no_match"])
            )
        if kind == "split":
            by_branch = {branch: target for target, branch in outs}
            bucket = self.bucket(s.c.member_id, tile)
            variants = layout.splits[tile]
            whens = [(bucket < upper, _text(by_branch[name])) for name, upper in variants[:-1]]
            last = _text(by_branch[variants[-1][0]])
            return sa.case(*whens, else_=last) if whens else last
        if kind == "wait":
            # Only a member that started the pass here (its wait is over) goes on; one that arrived
            # during the pass starts waiting.
            return sa.case((s.c.t0 == tile, _text(outs[0][0])), else_=_text(tile))
        return _text(outs[0][0])

    def bucket(self, member: sa.ColumnElement[Any], tile_id: str) -> sa.ColumnElement[int]:
        """A member's split bucket in [0, 10000), computed inside the source from md5 of
        "journey:tile:member" (first 32 bits), identical on DuckDB and PostgreSQL and to `bucket_of`."""
        key = _text(f"{self.journey_id}:{tile_id}:") + sa.cast(member, sa.String())
        head = sa.func.substr(sa.func.md5(key), 1, 8)
        if self.source.is_postgres:
            number: sa.ColumnElement[Any] = sa.cast(
                sa.cast(_text("x") + head, postgresql.BIT(32)), sa.BigInteger()
            )
        elif self.source.is_duckdb:
            number = sa.cast(_text("0x") + head, sa.BigInteger())
        else:
            raise Invalid(
                f"split tiles need a DuckDB or PostgreSQL data source (this one is {self.source.dialect})"
            )
        return number % BUCKETS

    # -- sync batches ------------------------------------------------------------------------------
    def sync_batch(
        self, conn: sa.Connection, relation: Relation, tile_id: str, columns: Sequence[str], *, size: int
    ) -> list[dict[str, Any]]:
        """The first `size` members (in member order) standing on sync tile `tile_id`, with the
        profile columns the sync maps."""
        m = self.members
        selected = [m.c.member_id.label("__member_id"), m.c.entry_no.label("__entry_no")]
        selected += [relation.column(c).label(f"f_{i}") for i, c in enumerate(columns)]
        query = (
            sa.select(*selected)
            .select_from(m.join(relation.rows, relation.key == m.c.member_id))
            .where(m.c.status == ACTIVE, m.c.tile_id == tile_id)
            .order_by(m.c.member_id)
            .limit(size)
        )
        return [dict(r._mapping) for r in conn.execute(query)]

    def pass_sync(
        self,
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
        m = self.members
        batch = sa.and_(
            m.c.status == ACTIVE,
            m.c.tile_id == tile_id,
            m.c.member_id >= low,
            m.c.member_id <= high,
            self._has_profile(relation),
        )
        events = [f"synced:{tile_id}"]
        values: dict[str, Any]
        if target is None:
            events.append(f"completed:{tile_id}")
            reason: str | None = "end_of_path"
            values = {"status": COMPLETED, "reason": reason, "wait_until": None}
        elif target_is_exit:
            events += [f"arrived:{target}", f"completed:{target}"]
            reason = "exit_tile"
            values = {"tile_id": target, "status": COMPLETED, "reason": reason, "wait_until": None}
        else:
            events.append(f"arrived:{target}")
            reason = None
            values = {"tile_id": target, "wait_until": deadline}
        conn.execute(
            sa.insert(self.path).from_select(
                ["member_id", "entry_no", "seq", "events", "detail"],
                sa.select(
                    m.c.member_id,
                    m.c.entry_no,
                    sa.literal(step.seq, sa.BigInteger()),
                    _text(" ".join(events)),
                    sa.literal(reason, sa.String()),
                ).where(batch),
            )
        )
        count = _rowcount(conn.execute(sa.update(m).where(batch).values(updated_at=step.now, **values)))
        completed = count if values.get("status") == COMPLETED else 0
        advanced = count if target is not None else 0
        self._record_step(conn, step, {"synced": count, "advanced": advanced, "completed": completed})
        return count

    # -- reads -------------------------------------------------------------------------------------
    def run_counts(self, conn: sa.Connection, run_id: str) -> dict[str, int]:
        st = self.steps
        row = conn.execute(
            sa.select(*[sa.func.coalesce(sa.func.sum(st.c[c]), 0) for c in STEP_COUNTS]).where(
                st.c.run_id == run_id
            )
        ).one()
        return {c: int(v) for c, v in zip(STEP_COUNTS, row, strict=True)}

    def active_count(self, conn: sa.Connection) -> int:
        m = self.members
        return int(conn.execute(sa.select(sa.func.count()).where(m.c.status == ACTIVE)).scalar() or 0)

    def waiting_on(self, conn: sa.Connection, tile_id: str) -> int:
        m = self.members
        query = sa.select(sa.func.count()).where(m.c.status == ACTIVE, m.c.tile_id == tile_id)
        return int(conn.execute(query).scalar() or 0)

    def stats(self, conn: sa.Connection) -> list[tuple[str, str, int]]:
        m = self.members
        rows = conn.execute(
            sa.select(m.c.tile_id, m.c.status, sa.func.count()).group_by(m.c.tile_id, m.c.status)
        ).all()
        return [(str(tile), str(status), int(n)) for tile, status, n in rows]

    def member(
        self, conn: sa.Connection, member_id: Any
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Memberships of one member (oldest first) and its history rows joined with their steps."""
        m, p, st = self.members, self.path, self.steps
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

    def member_id_kind(self, conn: sa.Connection) -> str:
        for column in self.source.table_columns(conn, TableRef(self.members_name)) or []:
            if column.name == "member_id":
                return column.kind
        return "string"


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
        tail: list[Any] = [sa.literal(1, sa.Integer()), _text(self.tile), *crit]
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


def _rowcount(result: sa.CursorResult[Any]) -> int:
    count = result.rowcount
    return int(count) if count is not None and count >= 0 else 0
