"""The data plane on a PostgreSQL data source (any SQLAlchemy URL, not only the embedded DuckDB):
models, records, events, segments, import and demo against a throwaway database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from overture.api.app import create_app
from overture.config import Settings
from overture.data.demo import load_demo
from overture.data.loader import import_file
from overture.data.source import get_source
from overture.db import migrate
from overture.db.context import AppContext
from overture.errors import Invalid
from tests.conftest import WorkspaceFixture, create_workspace, throwaway_pg_database
from tests.data.helpers import base, create_customers, create_model, numbered_customers

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppContext]:
    """App state in SQLite, profile data in a fresh PostgreSQL database of its own."""
    with throwaway_pg_database("overture_data") as data_url:
        home = tmp_path_factory.mktemp("pg-source")
        settings = Settings(
            home=home, database_url=f"sqlite:///{home / 'overture.db'}", data_url=data_url, run_workers=False
        )
        ctx = AppContext.from_settings(settings)
        migrate.upgrade(settings.resolved_database_url, ctx.engine)
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture(scope="module")
def pg_client(pg_ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(pg_ctx, run_migrations=False)) as c:
        yield c


@pytest.fixture
def ws(pg_ctx: AppContext) -> WorkspaceFixture:
    return create_workspace(pg_ctx)


def test_pg_source__managed_model_records_and_segment(
    pg_client: TestClient, pg_ctx: AppContext, ws: WorkspaceFixture
) -> None:
    assert get_source(pg_ctx).is_postgres
    model = create_customers(pg_client, ws, numbered_customers(120))
    assert {c["name"]: c["type"] for c in model["columns"]}["signup_at"] == "timestamp"
    url = f"{base(ws)}/models/{model['id']}/records"
    r = pg_client.post(
        url, headers=ws.headers, json={"records": [{"customer_id": "c00001", "plan": "vip", "nps": 9}]}
    )
    assert r.json() == {"upserted": 1, "inserted": 0, "updated": 1, "columns_added": ["nps"]}
    got = pg_client.get(f"{url}/c00001", headers=ws.headers).json()
    assert (got["plan"], got["ltv"], got["nps"], got["signup_at"]) == ("vip", 1.0, 9, "2025-02-01T00:00:00Z")

    seg = pg_client.post(
        f"{base(ws)}/segments",
        headers=ws.headers,
        json={
            "name": "pro",
            "model_id": model["id"],
            "filter": {"field": "plan", "operator": "is", "value": "pro"},
        },
    ).json()
    reach = pg_client.post(f"{base(ws)}/segments/{seg['id']}/evaluate", headers=ws.headers).json()["reach"]
    assert (reach["status"], reach["evaluated_count"]) == ("ok", 39)
    members: list[Any] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = pg_client.get(
            f"{base(ws)}/segments/{seg['id']}/members", headers=ws.headers, params=params
        ).json()
        members += page["members"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(members) == len(set(members)) == 39 and members == sorted(members)


def test_pg_source__events_and_behavioural_preview(pg_client: TestClient, ws: WorkspaceFixture) -> None:
    model = create_customers(pg_client, ws, numbered_customers(5))
    events = [
        {"entity_id": "c00001", "event": "purchase", "properties": {"revenue": 5}},
        {"entity_id": "c00002", "event": "purchase", "properties": {"revenue": 50, "tags": ["a"]}},
    ]
    assert pg_client.post(
        f"{base(ws)}/events", headers=ws.public_headers, json={"events": events}
    ).json() == {"accepted": 2, "duplicates": 0}
    flt = {"event": "purchase", "where": {"field": "revenue", "operator": "gte", "value": 10}}
    r = pg_client.post(
        f"{base(ws)}/segments/preview", headers=ws.headers, json={"model_id": model["id"], "filter": flt}
    )
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 1


def test_pg_source__table_and_sql_models(
    pg_client: TestClient, pg_ctx: AppContext, ws: WorkspaceFixture
) -> None:
    with get_source(pg_ctx).begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS crm_accounts")
        conn.exec_driver_sql("CREATE TABLE crm_accounts (account_id integer, tier text, mrr numeric(10,2))")
        conn.exec_driver_sql("INSERT INTO crm_accounts VALUES (1, 'gold', 10.5), (2, 'silver', 3)")
    table = create_model(pg_client, ws, name="accounts", primary_key="account_id", table="crm_accounts")
    assert [(c["name"], c["type"]) for c in table["columns"]] == [
        ("account_id", "integer"), ("tier", "string"), ("mrr", "number"),
    ]  # fmt: skip
    sql = create_model(
        pg_client, ws, name="gold", primary_key="account_id",
        sql="SELECT account_id, mrr * 12 AS arr, '10:30'::text AS t FROM crm_accounts WHERE tier = 'gold'",
    )  # fmt: skip
    assert [c["type"] for c in sql["columns"]] == ["integer", "number", "string"]
    r = pg_client.post(
        f"{base(ws)}/segments/preview",
        headers=ws.headers,
        json={"model_id": sql["id"], "filter": {"field": "arr", "operator": "gt", "value": 100}},
    )
    assert r.json()["count"] == 1
    # A SQL model runs READ ONLY: it cannot write even if it tries.
    r = pg_client.post(
        f"{base(ws)}/models",
        headers=ws.headers,
        json={"name": "evil", "primary_key": "x", "sql": "SELECT 1 AS x; DELETE FROM crm_accounts"},
    )
    assert r.status_code == 422
    with get_source(pg_ctx).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM crm_accounts").scalar_one() == 2


def test_pg_source__import_and_demo(pg_ctx: AppContext, ws: WorkspaceFixture, tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("id,plan,ltv,signup\n1,free,3.5,2024-01-01T00:00:00Z\n2,,,\n")
    first = import_file(pg_ctx, ws.id, csv, "people", "id")
    assert (first.inserted, first.created) == (2, True)
    csv.write_text("id,plan\n2,pro\n3,free\n")
    again = import_file(pg_ctx, ws.id, csv, "people")
    assert (again.inserted, again.updated) == (1, 1)
    with get_source(pg_ctx).connect() as conn:
        rows = conn.exec_driver_sql(f'SELECT id, plan, ltv FROM "{first.table}" ORDER BY id').all()
    assert [tuple(r) for r in rows] == [(1, "free", 3.5), (2, "pro", None), (3, "free", None)]

    demo = load_demo(pg_ctx, ws.id, rows=500)
    assert demo.customers_added == 500 and demo.events_added > 500
    assert load_demo(pg_ctx, ws.id, rows=500).customers_added == 0


def test_pg_source__json_no_store_holds__422_naming_the_place_never_a_retry(
    pg_client: TestClient, pg_ctx: AppContext, ws: WorkspaceFixture, tmp_path: Path
) -> None:
    # A lone surrogate in a record was a 409 "concurrent write ... retry": a request that can never succeed.
    model = create_customers(pg_client, ws, [])
    r = pg_client.post(
        f"{base(ws)}/models/{model['id']}/records",
        headers={**ws.headers, "Content-Type": "application/json"},
        content=b'{"records": [{"customer_id": "a", "plan": "\\ud800"}]}',
    )
    assert r.status_code == 422 and r.json()["field"] == "records[0].plan", r.text
    # A file import checks nested cells the same way (a Parquet DECIMAL(38) inside a struct).
    parquet = tmp_path / "people.parquet"
    duckdb.connect().execute(
        "COPY (SELECT 'a' AS id, {'n': 1::DECIMAL(38,0)} AS doc "
        f"UNION ALL SELECT 'b', {{'n': 100000000000000000000::DECIMAL(38,0)}}) TO '{parquet}'"
    )
    with pytest.raises(Invalid, match=r"row 2, column 'doc': n: integers must fit in 64 bits"):
        import_file(pg_ctx, ws.id, parquet, "people_json", "id")
