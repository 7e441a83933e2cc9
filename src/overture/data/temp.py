"""Temporary tables in a data source: created under a fresh name, dropped when the block ends.

Set-based work stages rows in a temporary table (a records batch before its UPDATE ... FROM, a
journey pass's moves before they are applied). One context manager creates the table — from a
column list, or shaped like a query's result — and drops it however the block ends, so no code path
leaves one behind on a pooled connection."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

__all__ = ["temporary_table"]


@contextlib.contextmanager
def temporary_table(
    conn: sa.Connection,
    prefix: str,
    columns: Sequence[sa.Column[Any]] = (),
    *,
    like: sa.Select[Any] | None = None,
) -> Iterator[sa.Table]:
    """A temporary table named `<prefix>_<random>` on `conn`, with `columns` (their types and
    nullability), or, with `like`, the columns and types of that query's result (`CREATE TEMPORARY
    TABLE ... AS <like> WHERE false`: no row is copied). Dropped at the end of the block; when the
    block fails, a drop that fails too (the transaction is aborted) does not hide the first error."""
    if bool(columns) == (like is not None):
        raise ValueError("give the columns or a query to copy them from, not both")
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    quoted = conn.dialect.identifier_preparer.quote(name)
    if like is not None:
        query = like.where(sa.false()).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {quoted} AS {query}")
        table = sa.Table(name, sa.MetaData(), *[sa.Column(c.name, c.type) for c in like.selected_columns])
    else:
        copies = [sa.Column(c.name, c.type, nullable=c.nullable) for c in columns]
        table = sa.Table(name, sa.MetaData(), *copies, prefixes=["TEMPORARY"])
        table.create(conn)
    drop = f"DROP TABLE IF EXISTS {quoted}"
    try:
        yield table
    except BaseException:
        with contextlib.suppress(sa.exc.DBAPIError):
            conn.exec_driver_sql(drop)
        raise
    conn.exec_driver_sql(drop)
