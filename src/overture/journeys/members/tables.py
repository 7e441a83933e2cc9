"""A journey's three member tables: one column list each (for queries and for the DDL), their names,
creating and dropping them, and the values every statement over them shares."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from overture.data.source import DataSource, TableRef, workspace_prefix
from overture.journeys.lifecycle import MEMBER, MemberStatus

__all__ = [
    "BUCKETS",
    "EVENTS",
    "MEMBER_COLUMNS",
    "PATH_COLUMNS",
    "STEP_COLUMNS",
    "STEP_COUNTS",
    "MemberStore",
    "Relation",
    "Spec",
    "Step",
    "aware",
    "bucket_of",
    "columns",
    "key_type",
    "may_become",
    "naive_utc",
    "parse_events",
    "sql_str",
]

#: Split buckets: basis points of a percentage (two decimals), so variants split 10,000 ways.
BUCKETS = 10_000
EVENTS = ("entered", "arrived", "synced", "completed", "exited")
STEP_COUNTS = ("entered", "advanced", "exited", "completed", "synced")

#: (name, type, nullable); a type of None is the member key's: the profiles' primary key type.
Spec = tuple[tuple[str, type[sa.types.TypeEngine[Any]] | None, bool], ...]

MEMBER_COLUMNS: Spec = (
    ("member_id", None, False),
    ("entry_no", sa.Integer, False),
    ("status", sa.String, False),
    ("tile_id", sa.String, False),
    ("wait_until", sa.DateTime, True),
    ("reason", sa.String, True),
    ("updated_at", sa.DateTime, False),
)
PATH_COLUMNS: Spec = (
    ("member_id", None, False),
    ("entry_no", sa.Integer, False),
    ("seq", sa.BigInteger, False),
    ("events", sa.String, False),
    ("detail", sa.String, True),
)
STEP_COLUMNS: Spec = (
    ("seq", sa.BigInteger, False),
    ("run_id", sa.String, False),
    ("occurred_at", sa.DateTime, False),
    *((name, sa.BigInteger, False) for name in STEP_COUNTS),
)


def columns(spec: Spec, key: sa.types.TypeEngine[Any] | None = None) -> list[sa.Column[Any]]:
    """Fresh columns of `spec`; the member key typed `key` (untyped for queries before the tables
    exist, where the key's type is not known yet)."""
    key = key if key is not None else sa.types.NullType()
    return [sa.Column(name, key if kind is None else kind(), nullable=n) for name, kind, n in spec]


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


def sql_str(value: str) -> sa.ColumnElement[str]:
    return sa.literal(value, sa.String())


def may_become(status: sa.ColumnElement[Any], target: MemberStatus) -> sa.ColumnElement[bool]:
    """Memberships whose status may move to `target` (the MEMBER machine): every set-based move
    selects its rows with this, so no statement can reopen a finished membership."""
    sources = sorted(s.value for s in MEMBER.sources(target))
    return status == sources[0] if len(sources) == 1 else status.in_(sources)


@dataclass(frozen=True)
class Relation:
    """The parent model's rows (a FROM-able relation) and its primary key column on it."""

    rows: sa.FromClause
    key: sa.ColumnElement[Any]

    def column(self, name: str) -> sa.ColumnElement[Any]:
        return self.rows.c[name]


def key_type(relation: Relation) -> sa.types.TypeEngine[Any]:
    """The member key's column type: the profiles' primary key type, so joins need no casts."""
    kind = relation.key.type
    return sa.String() if isinstance(kind, sa.types.NullType) else kind


@dataclass(frozen=True)
class Step:
    """One transaction's identity: its run, its logical instant, and its sequence number."""

    run_id: str
    now: datetime
    seq: int


class MemberStore:
    """The tables of one journey. Functions taking a connection (here, in `passes`, `syncs` and
    `reads`) run inside the caller's source transaction."""

    def __init__(self, source: DataSource, workspace_id: str, journey_id: str) -> None:
        self.source = source
        self.journey_id = journey_id
        hex_id = journey_id.replace("-", "").lower()
        stem = f"{workspace_prefix(workspace_id)}jrn_{hex_id}"
        self.members_name = f"{stem}_members"
        self.path_name = f"{stem}_path"
        self.steps_name = f"{stem}_steps"
        self.members = sa.Table(self.members_name, sa.MetaData(), *columns(MEMBER_COLUMNS))
        self.path = sa.Table(self.path_name, sa.MetaData(), *columns(PATH_COLUMNS))
        self.steps = sa.Table(self.steps_name, sa.MetaData(), *columns(STEP_COLUMNS))
        self._index_stem = f"ix_jrn_{hex_id}"

    def exists(self, conn: sa.Connection) -> bool:
        return self.source.table_columns(conn, TableRef(self.steps_name)) is not None

    def ensure(self, conn: sa.Connection, relation: Relation) -> None:
        """Create the tables on first use, the member key typed as the profiles' primary key.
        (Explicit DDL, not CREATE TABLE AS over NULL constants: DuckDB keeps "always NULL"
        statistics for such columns and then answers aggregates wrongly.)"""
        if self.exists(conn):
            return
        key = key_type(relation)
        metadata = sa.MetaData()
        sa.Table(self.members_name, metadata, *columns(MEMBER_COLUMNS, key))
        path = sa.Table(self.path_name, metadata, *columns(PATH_COLUMNS, key))
        steps = sa.Table(self.steps_name, metadata, *columns(STEP_COLUMNS, key))
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

    def record_step(self, conn: sa.Connection, step: Step, counts: Mapping[str, int]) -> None:
        conn.execute(
            sa.insert(self.steps).values(
                seq=step.seq,
                run_id=step.run_id,
                occurred_at=step.now,
                **{c: int(counts.get(c, 0)) for c in STEP_COUNTS},
            )
        )

    def append_history(self, conn: sa.Connection, step: Step, rows: sa.Select[Any]) -> None:
        """One history row of `step` per row of `rows` (member_id, entry_no, events, detail)."""
        seq = sa.literal(step.seq, sa.BigInteger())
        names = ["member_id", "entry_no", "events", "detail", "seq"]
        conn.execute(sa.insert(self.path).from_select(names, rows.add_columns(seq)))

    def has_profile(self, relation: Relation, *criteria: sa.ColumnElement[bool]) -> sa.Exists:
        query = sa.select(sa.literal(1)).select_from(relation.rows)
        return sa.exists(query.where(relation.key == self.members.c.member_id, *criteria))
