"""Journey runs: one whole run over 1,000,000 members through entry -> filter -> split -> wait, on the
embedded default (DuckDB) and on PostgreSQL, beside a per-member loop that issues one SQL statement per
member and transition (what tools that run a workflow per user do) on 5,000 members of the same table,
all in one transaction (so the loop pays no commit per member: the kindest baseline).

    .venv/bin/python bench/journeys.py [--members N] [--loop-members N] [--postgres URL | --no-postgres]

The run is Overture's own (`overture.journeys.runner.execute_run`, the code a worker executes): it
creates the member tables, evaluates exit and entry criteria, moves members through every tile and
records every move in the member history, all set-based inside the data source. The loop does the same
four transitions (enter; filter on the profile; split by the md5 bucket; arrive on the wait) for one
member at a time, without writing history (which flatters it). PostgreSQL runs in a throwaway database
created and dropped here (default server: postgresql+psycopg://postgres@127.0.0.1:5432/postgres).
Targets (DESIGN.md section 7): a whole 1M-member run <= 10 s embedded and <= 30 s on PostgreSQL, and
>= 50x the members/s of the per-member loop on the same database.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from overture.auth import service as auth_service
from overture.clock import FrozenClock
from overture.config import Settings
from overture.data import service as data_service
from overture.data.schemas import ModelCreate
from overture.data.source import get_source
from overture.db import migrate
from overture.db.context import AppContext
from overture.journeys import runner
from overture.journeys import service as journeys
from overture.journeys.lifecycle import Action, RunTrigger
from overture.journeys.models import Journey
from overture.journeys.schemas import JourneyCreate

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TABLE = "bench_customers"
CRITERIA = {"field": "plan", "operator": "in", "value": ["pro", "enterprise"]}
TILES: list[dict[str, Any]] = [
    {"id": "entry", "type": "entry"},
    {"id": "paying", "type": "filter", "config": {"criteria": CRITERIA}},
    {
        "id": "ab",
        "type": "split",
        "config": {"variants": [{"name": "A", "percentage": 50}, {"name": "B", "percentage": 50}]},
    },
    {"id": "wait", "type": "wait", "config": {"duration": 3, "unit": "days"}},
    {"id": "free", "type": "exit"},
]
EDGES = [
    {"from": "entry", "to": "paying"},
    {"from": "paying", "to": "ab", "branch": "match"},
    {"from": "paying", "to": "free", "branch": "no_match"},
    {"from": "ab", "to": "wait", "branch": "A"},
    {"from": "ab", "to": "wait", "branch": "B"},
]


def fill_sql(dialect: str, n: int) -> str:
    """1M demo-style customers generated inside the database (never through Python)."""
    if dialect == "duckdb":
        return f"""
            CREATE TABLE {TABLE} AS SELECT
                'c' || lpad(CAST(i AS VARCHAR), 7, '0') AS customer_id,
                (['free', 'pro', 'enterprise'])[1 + i % 3] AS plan,
                (['ios', 'android', 'web'])[1 + (i // 3) % 3] AS platform,
                CAST(i % 500 AS DOUBLE) AS ltv,
                'user' || CAST(i AS VARCHAR) || '@example.com' AS email
            FROM range({n}) t(i);
            CREATE UNIQUE INDEX {TABLE}_pk ON {TABLE} (customer_id)"""
    return f"""
        CREATE TABLE {TABLE} AS SELECT
            'c' || lpad(i::text, 7, '0') AS customer_id,
            (ARRAY['free', 'pro', 'enterprise'])[1 + mod(i, 3)] AS plan,
            (ARRAY['ios', 'android', 'web'])[1 + mod(i / 3, 3)] AS platform,
            mod(i, 500)::double precision AS ltv,
            'user' || i::text || '@example.com' AS email
        FROM generate_series(0, {n - 1}) AS t(i);
        ALTER TABLE {TABLE} ADD PRIMARY KEY (customer_id);
        ANALYZE {TABLE};"""


@contextmanager
def context(data_url: str) -> Iterator[AppContext]:
    with tempfile.TemporaryDirectory(prefix="overture-bench-") as home:
        settings = Settings(home=Path(home), data_url=data_url, run_workers=False)
        ctx = AppContext.from_settings(settings)
        migrate.upgrade(settings.resolved_database_url, ctx.engine)
        try:
            yield ctx
        finally:
            ctx.close()


def one_run(ctx: AppContext, members: int) -> tuple[float, dict[str, Any], str]:
    """Seconds for one whole run of a fresh journey over `members` profiles, its counts, and the
    journey id (for a later run)."""
    source = get_source(ctx)
    with source.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
        for statement in fill_sql(source.dialect, members).split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    with ctx.transaction() as session:
        ws, _, _ = auth_service.bootstrap_workspace(session, "bench")
        workspace_id = ws.id
    with ctx.transaction(workspace_id=workspace_id) as session:
        model = data_service.create_model(
            session, ModelCreate(name="customers", primary_key="customer_id", table=TABLE)
        )
        body = JourneyCreate.model_validate(
            {"name": "bench", "parent_model_id": model.id, "tiles": TILES, "edges": EDGES}
        )
        journey = journeys.create_journey(session, None, body)
        journeys.change_status(session, journey.id, Action.ACTIVATE)
        run, _ = journeys.trigger_run(session, journey.id, RunTrigger.MANUAL)
        run_id, journey_id = run.id, journey.id
    elapsed, counts = timed_run(ctx, workspace_id, journey_id, run_id)
    return elapsed, counts, journey_id


def timed_run(
    ctx: AppContext, workspace_id: str, journey_id: str, run_id: str
) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    status = runner.execute_run(ctx, run_id)
    elapsed = time.perf_counter() - started
    with ctx.transaction(write=False, workspace_id=workspace_id) as session:
        counts = journeys.get_run(session, journey_id, run_id).counts
    if status != "completed":
        raise SystemExit(f"run ended {status}")
    return elapsed, counts


def later_run(ctx: AppContext, journey_id: str) -> tuple[float, dict[str, Any]]:
    """Three days later: every waiting member's wait is over (an UPDATE-heavy run)."""
    ctx.clock = FrozenClock(datetime.now(UTC) + timedelta(days=3, minutes=1))
    with ctx.transaction() as session:
        workspace_id = session.scalar(sa.select(Journey.workspace_id).where(Journey.id == journey_id))
    assert workspace_id is not None
    with ctx.transaction(workspace_id=workspace_id) as session:
        run, _ = journeys.trigger_run(session, journey_id, RunTrigger.MANUAL)
        run_id = run.id
    return timed_run(ctx, workspace_id, journey_id, run_id)


def per_member_loop(ctx: AppContext, members: int) -> float:
    """Seconds for the same four transitions issued one statement per member (on the first
    `members` profiles of the same table), as a per-user workflow engine does."""
    source = get_source(ctx)
    journey = uuid.uuid4().hex
    table = f"bench_loop_{journey[:12]}"
    with source.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {table} (member_id VARCHAR PRIMARY KEY, tile_id VARCHAR, status VARCHAR, "
            "variant VARCHAR, entered_at TIMESTAMP, wait_until TIMESTAMP)"
        )
        ids = [
            r[0] for r in conn.exec_driver_sql(f"SELECT customer_id FROM {TABLE} ORDER BY 1 LIMIT {members}")
        ]
    enter = sa.text(
        f"INSERT INTO {table} (member_id, tile_id, status, entered_at) "
        "VALUES (:m, 'paying', 'active', CURRENT_TIMESTAMP)"
    )
    filter_move = sa.text(
        f"UPDATE {table} SET tile_id = CASE WHEN (SELECT plan FROM {TABLE} WHERE customer_id = :m) "
        "IN ('pro', 'enterprise') THEN 'ab' ELSE 'free' END WHERE member_id = :m"
    )
    split_move = sa.text(
        f"UPDATE {table} SET tile_id = 'wait', variant = :v WHERE member_id = :m AND tile_id = 'ab'"
    )
    wait_arrive = sa.text(
        f"UPDATE {table} SET wait_until = CURRENT_TIMESTAMP + INTERVAL '3 days' "
        "WHERE member_id = :m AND tile_id = 'wait'"
    )
    started = time.perf_counter()
    with source.engine.begin() as conn:  # one transaction for all: the loop pays no commit per member
        for member in ids:
            conn.execute(enter, {"m": member})
            conn.execute(filter_move, {"m": member})
            bucket = int(hashlib.md5(f"{journey}:ab:{member}".encode()).hexdigest()[:8], 16) % 10_000
            conn.execute(split_move, {"m": member, "v": "A" if bucket < 5_000 else "B"})
            conn.execute(wait_arrive, {"m": member})
    elapsed = time.perf_counter() - started
    with source.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {table}")
    return elapsed


def bench(label: str, data_url: str, members: int, loop_members: int, budget: float) -> bool:
    with context(data_url) as ctx:
        seconds, counts, journey_id = one_run(ctx, members)
        later_seconds, later_counts = later_run(ctx, journey_id)
        loop_seconds = per_member_loop(ctx, loop_members)
    rate = members / seconds
    loop_rate = loop_members / loop_seconds
    ratio = rate / loop_rate
    ok = seconds <= budget and ratio >= 50
    print(
        f"{label:<10} run {members:>9,} members {seconds:7.2f} s {rate:>12,.0f} members/s | "
        f"per-member loop {loop_members:,} members {loop_seconds:6.2f} s {loop_rate:>9,.0f} members/s | "
        f"ratio {ratio:6.0f}x | budget {budget:.0f} s, 50x: {'ok' if ok else 'MISSED'}"
    )
    print(f"{'':<10} counts {counts}")
    print(f"{'':<10} 3 days later (waits over): {later_seconds:.2f} s, counts {later_counts}")
    return ok


@contextmanager
def throwaway_postgres(server_url: str) -> Iterator[str | None]:
    name = f"overture_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        print(f"postgres   skipped: {str(exc.orig).splitlines()[0]}")
        yield None
        return
    try:
        yield sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--loop-members", type=int, default=5_000)
    parser.add_argument("--postgres", default=DEFAULT_PG, help="server URL (a throwaway database is made)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="overture-bench-data-") as data_dir:
        ok &= bench("duckdb", f"duckdb:///{data_dir}/data.duckdb", args.members, args.loop_members, 10.0)
    if not args.no_postgres:
        with throwaway_postgres(args.postgres) as url:
            if url is not None:
                ok &= bench("postgres", url, args.members, args.loop_members, 30.0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
