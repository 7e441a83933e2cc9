"""Where SQL differs between SQLite and PostgreSQL, both versions side by side (CONVENTIONS 7).

Callers ask this module instead of branching on `dialect.name` themselves. (The profile data source,
which may also be DuckDB, keeps its differences in `overture.data.source`.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

__all__ = [
    "dialect_name",
    "driver_datetime",
    "driver_insert_sql",
    "greatest",
    "has_notify",
    "insert",
    "is_postgres",
    "is_sqlite",
    "notify",
    "rowcount",
    "seconds_between",
    "skip_locked",
]

Bind = sa.Engine | sa.Connection | Session
Q = TypeVar("Q", bound=sa.Select[Any])


def dialect_name(bind: Bind) -> str:
    if isinstance(bind, Session):
        return bind.get_bind().dialect.name
    return bind.dialect.name


def is_sqlite(bind: Bind) -> bool:
    return dialect_name(bind) == "sqlite"


def is_postgres(bind: Bind) -> bool:
    return dialect_name(bind) == "postgresql"


def insert(bind: Bind, table: Any) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_nothing/do_update` on both."""
    return postgresql.insert(table) if is_postgres(bind) else sqlite.insert(table)


def rowcount(result: sa.Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE (session.execute types it as a plain Result)."""
    return int(result.rowcount)  # type: ignore[attr-defined]


def skip_locked(query: Q, bind: Bind) -> Q:
    """Lock the rows a claim picks so that concurrent claimers take disjoint rows.

    - PostgreSQL: `FOR UPDATE SKIP LOCKED` (rows another transaction holds are passed over).
    - SQLite: unchanged; a writing transaction holds the database-wide lock from `BEGIN IMMEDIATE`
      (`overture.db.engine.transaction`), which already serializes claims."""
    return query.with_for_update(skip_locked=True) if is_postgres(bind) else query


def has_notify(bind: Bind) -> bool:
    """Whether the database relays notifications between processes (PostgreSQL LISTEN/NOTIFY;
    SQLite has nothing of the kind: processes sharing a SQLite file only see in-process events)."""
    return is_postgres(bind)


def notify(session: Session, channel: str, message: str) -> None:
    """Send `message` on `channel` to other processes when `session` commits.

    - PostgreSQL: `pg_notify`, delivered at commit (dropped on rollback).
    - SQLite: nothing (see `has_notify`)."""
    if is_postgres(session):
        session.execute(sa.select(sa.func.pg_notify(channel, message)))


def driver_insert_sql(
    bind: Bind,
    table: str,
    columns: Sequence[str],
    *,
    json_columns: Sequence[str] = (),
    constants: Mapping[str, int | bool] | None = None,
    on_conflict_do_nothing: str | None = None,
    rows: int = 1,
) -> str:
    """INSERT text for the driver's own `cursor.executemany` (bulk paths where SQLAlchemy's per-row
    bind processing would cost more than the insert): one placeholder per column of `columns`,
    then `constants` written as literals; `rows` VALUES tuples (one multi-row statement, its
    parameters row after row).

    - PostgreSQL (psycopg): `%s` placeholders, `%s::jsonb` for `json_columns`, booleans `true/false`.
    - SQLite: `?` placeholders (JSON is text), booleans `1/0` (how SQLAlchemy stores them)."""
    postgres = is_postgres(bind)
    json = set(json_columns)
    values = [("%s::jsonb" if c in json else "%s") if postgres else "?" for c in columns]
    names = list(columns)
    for name, value in (constants or {}).items():
        names.append(name)
        if isinstance(value, bool):
            values.append(("true" if value else "false") if postgres else str(int(value)))
        else:
            values.append(str(int(value)))
    row = f"({', '.join(values)})"
    sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES {', '.join([row] * rows)}"
    if on_conflict_do_nothing:
        sql += f" ON CONFLICT ({on_conflict_do_nothing}) DO NOTHING"
    return sql


def driver_datetime(bind: Bind, value: datetime) -> Any:
    """An aware datetime as `driver_insert_sql` rows carry it.

    - PostgreSQL: the datetime itself (psycopg writes timestamptz).
    - SQLite: the text SQLAlchemy's DateTime stores (naive UTC, microseconds), so ORM reads parse it."""
    if is_postgres(bind):
        return value
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def seconds_between(bind: Bind, start: Any, end: Any) -> Any:
    """`end - start` in seconds, as a float SQL expression (instants stored as UTC timestamps)."""
    if is_postgres(bind):
        return sa.func.extract("epoch", end - start)
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0


def greatest(bind: Bind, *values: Any) -> Any:
    """The largest of `values`, as a SQL expression.

    - PostgreSQL: `greatest(...)`.
    - SQLite: the scalar `max(...)` (with two or more arguments it is not the aggregate)."""
    return sa.func.greatest(*values) if is_postgres(bind) else sa.func.max(*values)
