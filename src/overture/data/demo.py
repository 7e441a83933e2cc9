"""`overture demo`: a deterministic demo data set (customers and their events) loaded into a managed
model through the same set-based transfer as `overture import` (`overture.data.loader`).

Public functions (stable):
    load_demo(ctx, workspace_id, rows=100_000, progress=None) -> DemoResult
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from overture.core.encode import to_json
from overture.data.events import EVENT_COLUMNS
from overture.data.loader import Progress, create_table, duck_reader, noop, transfer
from overture.data.service import ensure_managed_model, get_model_by_name
from overture.data.source import EVENTS_TABLE, Column, DataSource, TableRef, get_source
from overture.db.context import AppContext
from overture.errors import Invalid

__all__ = ["DEMO_MODEL", "DemoResult", "load_demo"]

DEMO_MODEL = "customers"


@dataclass
class DemoResult:
    model_id: str
    table: str
    customers_added: int
    events_added: int
    customers_total: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- demo ----------------------------------------------------------------------------------------------
_COUNTRIES = [
    ("US", "America/New_York"), ("US", "America/Chicago"), ("US", "America/Los_Angeles"),
    ("US", "America/Denver"), ("GB", "Europe/London"), ("DE", "Europe/Berlin"), ("FR", "Europe/Paris"),
    ("IN", "Asia/Kolkata"), ("BR", "America/Sao_Paulo"), ("JP", "Asia/Tokyo"), ("CA", "America/Toronto"),
    ("AU", "Australia/Sydney"), ("ES", "Europe/Madrid"), ("MX", "America/Mexico_City"),
    ("NL", "Europe/Amsterdam"), ("US", "America/New_York"),
]  # fmt: skip


def _list_literal(values: Sequence[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


# Every value derives from hash(i, '<salt>'): fixed per customer index, so re-running is idempotent and
# the data is the same on every machine with the same DuckDB version. Times count back from :now.
DEMO_CUSTOMERS_SQL = f"""
SELECT
  printf('cus_%07d', i) AS customer_id,
  CASE WHEN hp < 60 THEN 'free' WHEN hp < 80 THEN 'basic' WHEN hp < 95 THEN 'pro' ELSE 'enterprise' END
    AS plan,
  CASE WHEN hpl < 45 THEN 'ios' WHEN hpl < 85 THEN 'android' ELSE 'web' END AS platform,
  {_list_literal([c for c, _ in _COUNTRIES])}[CAST(1 + hc AS BIGINT)] AS country,
  CAST(CASE WHEN hp < 60 THEN (CASE WHEN hv % 10 = 0 THEN (hv % 500) / 100.0 ELSE 0 END)
            WHEN hp < 80 THEN 5 + (hv % 5000) / 100.0
            WHEN hp < 95 THEN 20 + (hv % 20000) / 100.0
            ELSE 200 + (hv % 200000) / 100.0 END AS DOUBLE) AS ltv,
  CAST(floor(pow((hs % 1000) / 1000.0, 2) * 300) AS INTEGER) AS session_count,
  CAST(:now AS TIMESTAMPTZ) - to_seconds(CAST(hsig % 63072000 AS BIGINT)) AS signup_at,
  CASE WHEN he % 100 < 3 THEN NULL ELSE 'user' || i || '@example.com' END AS email,
  {_list_literal([t for _, t in _COUNTRIES])}[CAST(1 + hc AS BIGINT)] AS timezone,
  CASE WHEN hp < 60 THEN 'free' WHEN hst % 100 < 75 THEN 'active' WHEN hst % 100 < 85 THEN 'trialing'
       WHEN hst % 100 < 95 THEN 'cancelled' ELSE 'past_due' END AS subscription_status
FROM (
  SELECT i, hash(i, 'plan') % 100 AS hp, hash(i, 'platform') % 100 AS hpl,
         hash(i, 'country') % {len(_COUNTRIES)} AS hc, hash(i, 'ltv') AS hv, hash(i, 'sessions') AS hs,
         hash(i, 'signup') AS hsig, hash(i, 'email') AS he, hash(i, 'status') AS hst
  FROM range(:start, :stop) t(i)
)
"""

DEMO_EVENTS_SQL = """
WITH c AS (
  SELECT i, printf('cus_%07d', i) AS customer_id, hash(i, 'plan') % 100 AS hp
  FROM range(:start, :stop) t(i)
),
opens AS (SELECT customer_id, i, unnest(range(CAST(1 + hash(i, 'opens') % 8 AS BIGINT))) AS k FROM c),
views AS (SELECT customer_id, i, unnest(range(CAST(hash(i, 'views') % 4 AS BIGINT))) AS k FROM c),
buys AS (
  SELECT customer_id, i, unnest(range(CAST(1 + hash(i, 'buys') % 3 AS BIGINT))) AS k FROM c WHERE hp >= 60
),
purchases AS (
  SELECT customer_id,
         CAST(:now AS TIMESTAMPTZ) - to_seconds(CAST(hash(i, k, 'buy_ts') % 7776000 AS BIGINT)) AS ts,
         round(0.99 + (hash(i, k, 'revenue') % 5000) / 100.0, 2) AS revenue,
         ['monthly', 'annual', 'lifetime'][CAST(1 + hash(i, k, 'sku') % 3 AS BIGINT)] AS product_id
  FROM buys
)
SELECT customer_id AS entity_id, 'app_open' AS event,
       CAST(:now AS TIMESTAMPTZ) - to_seconds(CAST(hash(i, k, 'open_ts') % 7776000 AS BIGINT)) AS timestamp,
       CAST('{}' AS JSON) AS properties
FROM opens
UNION ALL
SELECT customer_id, 'paywall_view',
       CAST(:now AS TIMESTAMPTZ) - to_seconds(CAST(hash(i, k, 'view_ts') % 7776000 AS BIGINT)),
       CAST(json_object(
         'placement', ['onboarding', 'settings', 'feature_gate'][CAST(1 + hash(i, k, 'pl') % 3 AS BIGINT)],
         'paywall_id', 'pw_' || (hash(i, k, 'pw') % 3)) AS JSON)
FROM views
UNION ALL
SELECT customer_id, 'purchase', ts, CAST(json_object('product_id', product_id, 'revenue', revenue) AS JSON)
FROM purchases
UNION ALL
SELECT customer_id, 'transaction_complete', ts + INTERVAL 5 SECOND,
       CAST(json_object('product_id', product_id, 'revenue', revenue, 'currency', 'USD') AS JSON)
FROM purchases
"""

DEMO_COLUMNS = [
    Column("customer_id", "VARCHAR", "string"),
    Column("plan", "VARCHAR", "string"),
    Column("platform", "VARCHAR", "string"),
    Column("country", "VARCHAR", "string"),
    Column("ltv", "DOUBLE", "number"),
    Column("session_count", "INTEGER", "integer"),
    Column("signup_at", "TIMESTAMP WITH TIME ZONE", "timestamp"),
    Column("email", "VARCHAR", "string"),
    Column("timezone", "VARCHAR", "string"),
    Column("subscription_status", "VARCHAR", "string"),
]


def load_demo(
    ctx: AppContext, workspace_id: str, rows: int = 100_000, *, progress: Progress | None = None
) -> DemoResult:
    """Load `rows` synthetic customers (model `customers`) and their events into the workspace.
    Idempotent: customers are numbered, and only indexes not loaded yet are added (with their events),
    so a second run adds nothing and a larger `rows` tops up."""
    if not 1 <= rows <= 50_000_000:
        raise Invalid("rows: must be between 1 and 50,000,000", field="rows")
    progress = progress or noop
    source = get_source(ctx)
    source.ensure_events_table()  # before the load's transaction, whose snapshot must see it
    now = ctx.clock.now()
    with ctx.transaction(workspace_id=workspace_id) as session:
        model = get_model_by_name(session, DEMO_MODEL)
        if model is not None and (not model.managed or model.primary_key != "customer_id"):
            raise Invalid(f"model: a model named '{DEMO_MODEL}' exists and is not the demo's", field="model")
        model, _ = ensure_managed_model(session, DEMO_MODEL, "customer_id")
        ref = TableRef(model.table_name or "")
        with source.begin() as conn:
            if source.table_columns(conn, ref) is None:
                create_table(conn, ref, DEMO_COLUMNS, "customer_id")
            t = ref.table(["customer_id"])
            top = conn.execute(
                sa.select(sa.func.max(t.c.customer_id)).where(t.c.customer_id.like("cus\\_%", escape="\\"))
            ).scalar_one()
            start = int(top[4:]) + 1 if isinstance(top, str) and top[4:].isdigit() else 0
            added = events = 0
            if start < rows:
                params = {"start": start, "stop": rows, "now": now.isoformat()}
                ins, _, _ = transfer(
                    source, conn, ref, DEMO_COLUMNS, "customer_id", DEMO_CUSTOMERS_SQL, params, progress, ctx
                )
                added = ins
                progress("events", 0, None)
                events = _load_events(ctx, source, conn, workspace_id, params, now)
                progress("events", events, events)
            total = int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
        return DemoResult(
            model_id=model.id,
            table=str(ref),
            customers_added=added,
            events_added=events,
            customers_total=total,
        )


def _load_events(
    ctx: AppContext,
    source: DataSource,
    conn: sa.Connection,
    workspace_id: str,
    params: dict[str, Any],
    now: datetime,
) -> int:
    meta = {"ws": workspace_id, "received": now.isoformat()}
    if source.is_duckdb:
        result = conn.execute(
            sa.text(
                f"INSERT INTO {EVENTS_TABLE} "
                "(workspace_id, entity_id, event, timestamp, properties, received_at) "
                f"SELECT :ws, entity_id, event, timestamp, properties, CAST(:received AS TIMESTAMPTZ) "
                f"FROM ({DEMO_EVENTS_SQL})"
            ),
            {**params, **meta},
        )
        return int(result.rowcount)
    count = 0
    with duck_reader(ctx) as duck:
        result = duck.execute(sa.text(DEMO_EVENTS_SQL), params)
        while True:
            batch = result.fetchmany(20_000)
            if not batch:
                break
            rows = [
                {
                    "workspace_id": workspace_id,
                    "entity_id": r[0],
                    "event": r[1],
                    "timestamp": to_json(r[2]),
                    "properties": json.loads(r[3]) if isinstance(r[3], str) else r[3],
                    "received_at": meta["received"],
                }
                for r in batch
            ]
            source.insert_rows(conn, TableRef(EVENTS_TABLE), EVENT_COLUMNS, rows)
            count += len(rows)
    return count
