"""A profile table and an events table on SQLite, DuckDB and PostgreSQL for the SQL filter tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from overture.core.filters import EVENTS_KEY, EventsTable, Node, Resolver, SqlModel, to_predicate, to_sql

PG_URL = os.environ.get("OVERTURE_TEST_POSTGRES_URL") or None
BACKENDS = ["sqlite", "duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]

metadata = sa.MetaData()
profiles = sa.Table(
    "filter_profiles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("s1", sa.String),
    sa.Column("s2", sa.Text),
    sa.Column("n1", sa.BigInteger),
    sa.Column("n2", sa.Double),  # sa.Float is 32-bit REAL on DuckDB; records hold doubles
    sa.Column("b1", sa.Boolean),
    sa.Column("t1", sa.DateTime),
    sa.Column("t2", sa.DateTime(timezone=True)),
    sa.Column("d1", sa.Date),
    sa.Column("j1", sa.JSON(none_as_null=True)),
)
events = sa.Table(
    "filter_events",
    metadata,
    sa.Column("entity_id", sa.Integer),
    sa.Column("workspace", sa.String),
    sa.Column("event", sa.String),
    sa.Column("ts", sa.DateTime),
    sa.Column("props", sa.JSON(none_as_null=True)),
)
COLUMNS = ("s1", "s2", "n1", "n2", "b1", "t1", "t2", "d1", "j1")
WORKSPACE = "ws_1"
MODEL = SqlModel(
    columns={name: profiles.c[name] for name in COLUMNS},
    entity_key=profiles.c.id,
    events=EventsTable(
        entity_id=events.c.entity_id,
        event=events.c.event,
        timestamp=events.c.ts,
        properties=events.c.props,
        scope=((events.c.workspace, WORKSPACE),),
    ),
)


@contextmanager
def backend_engine(name: str, tmp: Path) -> Iterator[sa.Engine]:
    """An engine with the two tables, on a throwaway database that is dropped afterwards."""
    if name == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp / 'filters.sqlite'}")
    elif name == "duckdb":
        engine = sa.create_engine(f"duckdb:///{tmp / 'filters.duckdb'}")
    else:
        assert PG_URL, "OVERTURE_TEST_POSTGRES_URL not set"
        database = f"overture_filters_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            # A locale-aware default collation ('a' < 'B'), as most installations have: the filters must
            # still order strings by code point, like Python.
            try:
                conn.execute(
                    sa.text(
                        f'CREATE DATABASE "{database}" TEMPLATE template0 '
                        "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
                    )
                )
            except sa.exc.DBAPIError:
                conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
            # Tiny unanalyzed tables make the planner guess high costs for the correlated event
            # subqueries, and JIT-compiling each statement then costs seconds: not what is under test.
            conn.execute(sa.text(f'ALTER DATABASE "{database}" SET jit = off'))
        engine = sa.create_engine(sa.engine.make_url(PG_URL).set(database=database))
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        if name == "postgres":
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            admin.dispose()


def load(
    conn: sa.Connection, rows: Sequence[Mapping[str, Any]], event_rows: Sequence[Mapping[str, Any]]
) -> None:
    conn.execute(events.delete())
    conn.execute(profiles.delete())
    if rows:
        conn.execute(profiles.insert(), [{c: row.get(c) for c in ("id", *COLUMNS)} for row in rows])
    if event_rows:
        conn.execute(
            events.insert(),
            [
                {"workspace": WORKSPACE, **{k: e.get(k) for k in ("entity_id", "event", "ts", "props")}}
                for e in event_rows
            ],
        )


def record(row: Mapping[str, Any], event_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A row as the real-time path sees it: null columns left out, events under "$events"."""
    out = {c: row[c] for c in COLUMNS if row.get(c) is not None}
    out[EVENTS_KEY] = [
        {"event": e["event"], "timestamp": e["ts"], "properties": e["props"]}
        for e in event_rows
        if e["entity_id"] == row["id"]
    ]
    return out


def compare(
    conn: sa.Connection,
    node: Node,
    rows: Sequence[Mapping[str, Any]],
    event_rows: Sequence[Mapping[str, Any]],
    now: datetime,
) -> tuple[list[int], list[int]]:
    """(ids the predicate matches, ids the SQL matches) for `node`; see compare_all."""
    ((expected, got),) = compare_all(conn, [node], rows, event_rows, now)
    return expected, got


def compare_all(
    conn: sa.Connection,
    nodes: Sequence[Node],
    rows: Sequence[Mapping[str, Any]],
    event_rows: Sequence[Mapping[str, Any]],
    now: datetime,
    segments: Resolver | None = None,
) -> list[tuple[list[int], list[int]]]:
    """For each node, (ids the predicate matches, ids the SQL matches), all nodes in one SELECT. Also
    checks that neither the SQL nor its NOT is ever NULL, so a caller's NOT around it means what the
    predicate's `not` means."""
    records = [(row["id"], record(row, event_rows)) for row in rows]
    columns = []
    for i, node in enumerate(nodes):
        expression = to_sql(node, MODEL, now=now, segments=segments)
        columns += [expression.label(f"m{i}"), sa.not_(expression).label(f"n{i}")]
    result = conn.execute(sa.select(profiles.c.id, *columns).order_by(profiles.c.id)).all()
    out = []
    for i, node in enumerate(nodes):
        predicate = to_predicate(node, now=lambda: now, segments=segments)
        expected = sorted(key for key, rec in records if predicate(rec))
        matched, negated = [r[1 + 2 * i] for r in result], [r[2 + 2 * i] for r in result]
        assert None not in matched and None not in negated, f"SQL is NULL for {node}"
        assert all(bool(m) != bool(n) for m, n in zip(matched, negated, strict=True)), (
            f"NOT is no complement: {node}"
        )
        out.append((expected, [r.id for r, m in zip(result, matched, strict=True) if m]))
    return out


NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
