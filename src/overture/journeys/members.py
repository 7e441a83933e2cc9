"""Member state in the profile data source, and the set-based statements a run is made of.

Each journey has two tables beside the profiles they are joined with (so every transition is one
statement inside the source, never a row trip through Python):

* ``<ws prefix>jrn_<journey hex>_members`` — one row per membership (member, entry number): status,
  the tile it stands on, when it got there, until when it waits, why it left;
* ``<ws prefix>jrn_<journey hex>_path`` — one row per event of a membership (entered, arrived,
  synced, completed, exited) with the run that caused it: the member's history.

A statement that moves members stamps the rows it touched with a fresh `mark`; the path rows are
then copied from exactly those rows in the same transaction, so the history always matches the
moves, even if profiles change between two statements. The tables carry the workspace prefix of
Overture-managed tables, so no other workspace can model them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from overture.data.source import DataSource, TableRef, workspace_prefix
from overture.errors import Invalid

log = logging.getLogger(__name__)

__all__ = ["BUCKETS", "MemberStore", "Relation", "Step", "bucket_of", "naive_utc"]

#: Split buckets: basis points of a percentage (two decimals), so variants split 10,000 ways.
BUCKETS = 10_000
ACTIVE, COMPLETED, EXITED = "active", "completed", "exited"


def naive_utc(value: datetime) -> datetime:
    """Timestamps in member tables are naive UTC: the same on DuckDB, PostgreSQL and SQLite."""
    return value.astimezone(UTC).replace(tzinfo=None)


def aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def bucket_of(journey_id: str, tile_id: str, member_id: object) -> int:
    """The Python twin of the SQL bucket: first 32 bits of md5("journey:tile:member") mod 10,000."""
    import hashlib

    digest = hashlib.md5(f"{journey_id}:{tile_id}:{member_id}".encode(), usedforsecurity=False)
    return int(digest.hexdigest()[:8], 16) % BUCKETS


@dataclass(frozen=True)
class Relation:
    """The parent model's rows (a FROM-able relation) and its primary key column on it."""

    rows: sa.FromClause
    key: sa.ColumnElement[Any]

    def column(self, name: str) -> sa.ColumnElement[Any]:
        return self.rows.c[name]


@dataclass(frozen=True)
class Step:
    """One statement's identity: the run, its logical instant, and the fresh mark it stamps rows with."""

    run_id: str
    now: datetime
    mark: int


def _members_table(name: str) -> sa.TableClause:
    return sa.table(
        name,
        sa.column("member_id"),
        sa.column("entry_no", sa.Integer()),
        sa.column("status", sa.String()),
        sa.column("tile_id", sa.String()),
        sa.column("entered_at", sa.DateTime()),
        sa.column("tile_at", sa.DateTime()),
        sa.column("wait_until", sa.DateTime()),
        sa.column("finished_at", sa.DateTime()),
        sa.column("reason", sa.String()),
        sa.column("mark", sa.BigInteger()),
    )


def _path_table(name: str) -> sa.TableClause:
    return sa.table(
        name,
        sa.column("member_id"),
        sa.column("entry_no", sa.Integer()),
        sa.column("tile_id", sa.String()),
        sa.column("event", sa.String()),
        sa.column("occurred_at", sa.DateTime()),
        sa.column("run_id", sa.String()),
        sa.column("detail", sa.String()),
        sa.column("seq", sa.BigInteger()),
    )


#: Order of events written by one statement (seq = mark * 4 + this), so a path reads in order.
_EVENT_ORDER = {"exited": 0, "entered": 0, "synced": 1, "arrived": 2, "completed": 3}


class MemberStore:
    """The two tables of one journey and every statement over them. Methods taking a connection run
    inside the caller's source transaction; one step of a run is one transaction."""

    def __init__(self, source: DataSource, workspace_id: str, journey_id: str) -> None:
        self.source = source
        self.journey_id = journey_id
        stem = f"{workspace_prefix(workspace_id)}jrn_{journey_id.replace('-', '').lower()}"
        self.members_name = f"{stem}_members"
        self.path_name = f"{stem}_path"
        self.members = _members_table(self.members_name)
        self.path = _path_table(self.path_name)
        self._index_stem = f"ix_jrn_{journey_id.replace('-', '').lower()}"

    # -- tables ------------------------------------------------------------------------------------
    def exists(self, conn: sa.Connection) -> bool:
        return self.source.table_columns(conn, TableRef(self.path_name)) is not None

    def ensure(self, conn: sa.Connection, relation: Relation) -> None:
        """Create both tables on first use. `member_id` takes the primary key's own type (CREATE TABLE
        AS over zero rows of the model), so joins with the profiles need no casts."""
        if self.exists(conn):
            return
        ts, text, integer, big = sa.DateTime(), sa.String(), sa.Integer(), sa.BigInteger()
        members = sa.select(
            relation.key.label("member_id"),
            sa.cast(sa.null(), integer).label("entry_no"),
            sa.cast(sa.null(), text).label("status"),
            sa.cast(sa.null(), text).label("tile_id"),
            sa.cast(sa.null(), ts).label("entered_at"),
            sa.cast(sa.null(), ts).label("tile_at"),
            sa.cast(sa.null(), ts).label("wait_until"),
            sa.cast(sa.null(), ts).label("finished_at"),
            sa.cast(sa.null(), text).label("reason"),
            sa.cast(sa.null(), big).label("mark"),
        ).where(sa.false())
        path = sa.select(
            self.members.c.member_id,
            self.members.c.entry_no,
            self.members.c.tile_id,
            sa.cast(sa.null(), text).label("event"),
            sa.cast(sa.null(), ts).label("occurred_at"),
            sa.cast(sa.null(), text).label("run_id"),
            sa.cast(sa.null(), text).label("detail"),
            sa.cast(sa.null(), big).label("seq"),
        ).where(sa.false())
        quote = conn.dialect.identifier_preparer.quote
        conn.exec_driver_sql(f"CREATE TABLE {quote(self.members_name)} AS {self._literal(conn, members)}")
        conn.exec_driver_sql(f"CREATE TABLE {quote(self.path_name)} AS {self._literal(conn, path)}")
        if self.source.is_postgres or self.source.is_sqlite:
            # Row stores want indexes for the member lookup; the columnar default scans fast enough.
            conn.exec_driver_sql(
                f"CREATE INDEX {self._index_stem}_m ON {quote(self.members_name)} (member_id, entry_no)"
            )
            conn.exec_driver_sql(f"CREATE INDEX {self._index_stem}_p ON {quote(self.path_name)} (member_id)")
        if self.source.is_postgres:
            # Room on each page for the new row version a move writes (HOT updates: no index churn).
            conn.exec_driver_sql(f"ALTER TABLE {quote(self.members_name)} SET (fillfactor = 60)")

    @staticmethod
    def _literal(conn: sa.Connection, stmt: sa.Select[Any]) -> str:
        return str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))

    def drop(self, conn: sa.Connection) -> None:
        quote = conn.dialect.identifier_preparer.quote
        for name in (self.members_name, self.path_name):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(name)}")

    # -- marks -------------------------------------------------------------------------------------
    def max_mark(self, conn: sa.Connection) -> int:
        value = conn.execute(sa.select(sa.func.max(self.members.c.mark))).scalar()
        return int(value or 0)

    def _record(
        self,
        conn: sa.Connection,
        step: Step,
        event: str,
        *,
        tile: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Copy the rows `step` stamped into the path as `event` (at their tile, or at `tile`)."""
        m = self.members
        rows = sa.select(
            m.c.member_id,
            m.c.entry_no,
            m.c.tile_id if tile is None else sa.literal(tile, sa.String()),
            sa.literal(event, sa.String()),
            sa.literal(step.now, sa.DateTime()),
            sa.literal(step.run_id, sa.String()),
            sa.literal(detail, sa.String()),
            sa.literal(step.mark * 4 + _EVENT_ORDER[event], sa.BigInteger()),
        ).where(m.c.mark == step.mark)
        conn.execute(sa.insert(self.path).from_select(list(self.path.c.keys()), rows))

    # -- conditions --------------------------------------------------------------------------------
    def ready(self, tile_id: str, now: datetime) -> sa.ColumnElement[bool]:
        """Active members standing on `tile_id` that may leave it now (no wait, or the wait is over)."""
        m = self.members
        return sa.and_(
            m.c.status == ACTIVE,
            m.c.tile_id == tile_id,
            sa.or_(m.c.wait_until.is_(None), m.c.wait_until <= now),
        )

    def _has_profile(self, relation: Relation, *criteria: sa.ColumnElement[bool]) -> sa.Exists:
        query = sa.select(sa.literal(1)).select_from(relation.rows)
        return sa.exists(query.where(relation.key == self.members.c.member_id, *criteria))

    # -- phase 1: exits ----------------------------------------------------------------------------
    def exit_removed_tiles(self, conn: sa.Connection, step: Step, tile_ids: Sequence[str]) -> int:
        """Members standing on a tile the definition no longer has leave with reason tile_removed."""
        m = self.members
        return self._exit(conn, step, m.c.tile_id.not_in(list(tile_ids)), "tile_removed")

    def exit_missing_profiles(self, conn: sa.Connection, step: Step, relation: Relation) -> int:
        """Members whose profile row is gone cannot be evaluated any more: they leave (profile_missing)."""
        return self._exit(conn, step, ~self._has_profile(relation), "profile_missing")

    def exit_matching(
        self, conn: sa.Connection, step: Step, relation: Relation, criteria: sa.ColumnElement[bool]
    ) -> int:
        """Members matching the exit criteria leave (status exited, reason exit_criteria)."""
        return self._exit(conn, step, self._has_profile(relation, criteria), "exit_criteria")

    def _exit(self, conn: sa.Connection, step: Step, where: sa.ColumnElement[bool], reason: str) -> int:
        m = self.members
        result = conn.execute(
            sa.update(m)
            .where(m.c.status == ACTIVE, where)
            .values(status=EXITED, reason=reason, finished_at=step.now, wait_until=None, mark=step.mark)
        )
        self._record(conn, step, "exited", detail=reason)
        return _rowcount(result)

    # -- phase 2: entries --------------------------------------------------------------------------
    def enter(
        self,
        conn: sa.Connection,
        step: Step,
        relation: Relation,
        *,
        entry_tile: str,
        criteria: sa.ColumnElement[bool] | None,
        exit_criteria: sa.ColumnElement[bool] | None,
        reentry: str,
    ) -> int:
        """Add every profile matching the entry criteria (and not the exit criteria) that may enter:
        never entered before, or (reentry after_exit) not in the journey right now."""
        m = self.members
        previous = (
            sa.select(
                m.c.member_id.label("member_id"),
                sa.func.max(m.c.entry_no).label("entries"),
                sa.func.max(sa.case((m.c.status == ACTIVE, 1), else_=0)).label("inside"),
            )
            .group_by(m.c.member_id)
            .subquery("prev")
        )
        conditions: list[sa.ColumnElement[bool]] = []
        if criteria is not None:
            conditions.append(criteria)
        if exit_criteria is not None:
            conditions.append(sa.not_(exit_criteria))
        if reentry == "after_exit":
            conditions.append(sa.or_(previous.c.member_id.is_(None), previous.c.inside == 0))
        else:
            conditions.append(previous.c.member_id.is_(None))
        rows = (
            sa.select(
                relation.key,
                sa.func.coalesce(previous.c.entries, 0) + 1,
                sa.literal(ACTIVE, sa.String()),
                sa.literal(entry_tile, sa.String()),
                sa.literal(step.now, sa.DateTime()),
                sa.literal(step.now, sa.DateTime()),
                sa.cast(sa.null(), sa.DateTime()),
                sa.cast(sa.null(), sa.DateTime()),
                sa.cast(sa.null(), sa.String()),
                sa.literal(step.mark, sa.BigInteger()),
            )
            .select_from(relation.rows.outerjoin(previous, previous.c.member_id == relation.key))
            .where(*conditions)
        )
        result = conn.execute(sa.insert(m).from_select(list(m.c.keys()), rows))
        self._record(conn, step, "entered")
        return _rowcount(result)

    # -- phase 3: moves ----------------------------------------------------------------------------
    def _leaving(
        self,
        step: Step,
        tile_id: str,
        relation: Relation | None,
        extra: sa.ColumnElement[bool] | None,
    ) -> sa.Update:
        m = self.members
        stmt = sa.update(m).where(self.ready(tile_id, step.now))
        if relation is not None:
            stmt = stmt.where(relation.key == m.c.member_id)
        if extra is not None:
            stmt = stmt.where(extra)
        return stmt

    def move(
        self,
        conn: sa.Connection,
        step: Step,
        tile_id: str,
        target: sa.ColumnElement[Any] | str,
        wait_until: sa.ColumnElement[Any] | datetime | None,
        *,
        relation: Relation | None = None,
        extra: sa.ColumnElement[bool] | None = None,
        synced: bool = False,
    ) -> int:
        """Move the members ready on `tile_id` to `target` (a tile id, or an expression choosing one
        per member), setting their wait deadline. With `relation`, the statement joins the profiles
        (UPDATE ... FROM), so `target` may read profile columns; `extra` narrows the set (a batch)."""
        target_expr = target if isinstance(target, sa.ColumnElement) else sa.literal(target, sa.String())
        stmt = self._leaving(step, tile_id, relation, extra).values(
            tile_id=target_expr, tile_at=step.now, wait_until=wait_until, mark=step.mark
        )
        result = conn.execute(stmt)
        if synced:
            self._record(conn, step, "synced", tile=tile_id)
        self._record(conn, step, "arrived")
        return _rowcount(result)

    def complete(
        self,
        conn: sa.Connection,
        step: Step,
        tile_id: str,
        reason: str,
        *,
        relation: Relation | None = None,
        extra: sa.ColumnElement[bool] | None = None,
        synced: bool = False,
    ) -> int:
        """The members ready on `tile_id` finish the journey there (status completed)."""
        stmt = self._leaving(step, tile_id, relation, extra).values(
            status=COMPLETED, reason=reason, finished_at=step.now, wait_until=None, mark=step.mark
        )
        result = conn.execute(stmt)
        if synced:
            self._record(conn, step, "synced", tile=tile_id)
        self._record(conn, step, "completed", detail=reason)
        return _rowcount(result)

    def bucket(self, tile_id: str) -> sa.ColumnElement[int]:
        """A member's split bucket in [0, 10000), computed inside the source from md5 of
        "journey:tile:member" (first 32 bits), identical on DuckDB and PostgreSQL and to `bucket_of`."""
        m = self.members
        key = sa.literal(f"{self.journey_id}:{tile_id}:", sa.String()) + sa.cast(m.c.member_id, sa.String())
        head = sa.func.substr(sa.func.md5(key), 1, 8)
        if self.source.is_postgres:
            number: sa.ColumnElement[Any] = sa.cast(
                sa.cast(sa.literal("x", sa.String()) + head, sa.dialects.postgresql.BIT(32)), sa.BigInteger()
            )
        elif self.source.is_duckdb:
            number = sa.cast(sa.literal("0x", sa.String()) + head, sa.BigInteger())
        else:
            raise Invalid(
                f"split tiles need a DuckDB or PostgreSQL data source (this one is {self.source.dialect})"
            )
        return number % BUCKETS

    # -- sync batches ------------------------------------------------------------------------------
    def ready_batches(
        self,
        conn: sa.Connection,
        relation: Relation,
        tile_id: str,
        columns: Sequence[str],
        *,
        now: datetime,
        size: int,
    ) -> Iterator[list[dict[str, Any]]]:
        """Members ready on `tile_id` with the profile columns a sync maps, in member order, `size` at
        a time (keyset pagination: each batch starts after the last member of the previous one)."""
        m = self.members
        selected = [m.c.member_id.label("__member_id"), m.c.entry_no.label("__entry_no")]
        selected += [relation.column(c).label(f"f_{i}") for i, c in enumerate(columns)]
        last: Any = None
        while True:
            query = (
                sa.select(*selected)
                .select_from(m.join(relation.rows, relation.key == m.c.member_id))
                .where(self.ready(tile_id, now))
                .order_by(m.c.member_id)
                .limit(size)
            )
            if last is not None:
                query = query.where(m.c.member_id > last)
            rows = [dict(r._mapping) for r in conn.execute(query)]
            if not rows:
                return
            yield rows
            last = rows[-1]["__member_id"]
            if len(rows) < size:
                return

    def in_range(self, low: Any, high: Any) -> sa.ColumnElement[bool]:
        m = self.members
        return sa.and_(m.c.member_id >= low, m.c.member_id <= high)

    # -- reads -------------------------------------------------------------------------------------
    def run_counts(self, conn: sa.Connection, run_id: str) -> dict[str, int]:
        p = self.path
        rows = conn.execute(
            sa.select(p.c.event, sa.func.count()).where(p.c.run_id == run_id).group_by(p.c.event)
        ).all()
        return {str(event): int(n) for event, n in rows}

    def active_count(self, conn: sa.Connection) -> int:
        m = self.members
        return int(conn.execute(sa.select(sa.func.count()).where(m.c.status == ACTIVE)).scalar() or 0)

    def ready_count(self, conn: sa.Connection, tile_id: str, now: datetime) -> int:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(self.members).where(self.ready(tile_id, now))
            ).scalar()
            or 0
        )

    def stats(self, conn: sa.Connection) -> list[tuple[str, str, int]]:
        m = self.members
        rows = conn.execute(
            sa.select(m.c.tile_id, m.c.status, sa.func.count()).group_by(m.c.tile_id, m.c.status)
        ).all()
        return [(str(tile), str(status), int(n)) for tile, status, n in rows]

    def member(
        self, conn: sa.Connection, member_id: Any
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        m, p = self.members, self.path
        memberships = [
            dict(r._mapping)
            for r in conn.execute(sa.select(m).where(m.c.member_id == member_id).order_by(m.c.entry_no))
        ]
        path = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(p).where(p.c.member_id == member_id).order_by(p.c.entry_no, p.c.seq)
            )
        ]
        return memberships, path

    def member_id_type(self, conn: sa.Connection) -> str:
        columns = self.source.table_columns(conn, TableRef(self.members_name)) or []
        for column in columns:
            if column.name == "member_id":
                return column.kind
        return "string"


def _rowcount(result: sa.CursorResult[Any]) -> int:
    count = result.rowcount
    return int(count) if count is not None and count >= 0 else 0
