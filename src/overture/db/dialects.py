"""Where SQL differs between SQLite and PostgreSQL, both versions side by side (CONVENTIONS 7).

Callers ask this module instead of branching on `dialect.name` themselves."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

__all__ = ["dialect_name", "insert", "is_postgres", "is_sqlite", "rowcount"]

Bind = sa.Engine | sa.Connection | Session


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
