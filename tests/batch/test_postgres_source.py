"""A batch run whose profile data source is PostgreSQL (the file streamed with `COPY ... TO STDOUT` for
CSV, a server-side cursor for JSON) or another SQLAlchemy engine (SQLite here: rows streamed from a
server-side cursor in chunks): the same decisions, per-customer results paged from the source."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from overture.api.app import create_app
from overture.config import Settings
from overture.data.source import get_source
from overture.db import migrate
from overture.db.context import AppContext
from tests.batch.conftest import Api
from tests.conftest import create_workspace, throwaway_pg_database

SOURCES = [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"]


@pytest.fixture(scope="module", params=SOURCES)
def pg_ctx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppContext]:
    if request.param == "sqlite":
        home = tmp_path_factory.mktemp("sqlite-batch")
        settings = Settings(
            home=home,
            database_url=f"sqlite:///{home / 'o.db'}",
            data_url=f"sqlite:///{home / 'data.db'}",
            run_workers=False,
        )
        ctx = AppContext.from_settings(settings)
        migrate.upgrade(settings.resolved_database_url, ctx.engine)
        yield ctx
        ctx.close()
        return
    with throwaway_pg_database("overture_batch") as data_url:
        home = tmp_path_factory.mktemp("pg-batch")
        settings = Settings(
            home=home, database_url=f"sqlite:///{home / 'o.db'}", data_url=data_url, run_workers=False
        )
        ctx = AppContext.from_settings(settings)
        migrate.upgrade(settings.resolved_database_url, ctx.engine)
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def pg_api(pg_ctx: AppContext) -> Iterator[Api]:
    with TestClient(create_app(pg_ctx, run_migrations=False)) as client:
        yield Api(client, pg_ctx, create_workspace(pg_ctx))


def test_run_on_another_source(pg_api: Api) -> None:
    api = pg_api
    table = f"pgc_{uuid.uuid4().hex[:8]}"
    source = get_source(api.ctx)
    with source.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {table} (customer_id VARCHAR PRIMARY KEY, plan VARCHAR, "
            "ltv DOUBLE PRECISION, vip BOOLEAN)"
        )
        conn.execute(
            sa.text(f"INSERT INTO {table} VALUES (:c, :p, :l, :v)"),
            [
                {"c": f"c{i:04d}", "p": ["free", "pro"][i % 2], "l": float(i % 10), "v": i % 3 == 0}
                for i in range(30)
            ],
        )
    model = api.model(table)
    segment = api.segment(model)
    ch = api.channel("files")
    a = api.offer(
        "A",
        category="x",
        channels=[ch],
        eligibility={"field": "plan", "operator": "is", "value": "pro"},
        propensity={"type": "logistic", "intercept": -1, "weights": {"ltv": 0.3, "vip": 1}},
    )
    b = api.offer("B", category="y", channels=[ch], propensity={"type": "constant", "value": 0.4})
    flow = api.flow(model, offerIds=[a, b], ranking="score", maxOffersPerCustomer=2)
    csv_c = api.campaign(
        flow,
        segment,
        volumeConstraints={"maxPerOffer": 10, "maxTotalPerRun": 18},
        fileOutput={"columns": ["customer_id", "offer_name", "score", "rank"]},
    )
    run = api.run(csv_c["id"])
    assert run["status"] == "completed", run
    rows = list(csv.DictReader(io.StringIO(api.file(csv_c["id"], run["id"]).decode())))
    assert len(rows) == run["file"]["rows"] == 18
    assert sum(1 for r in rows if r["offer_name"] == "A") <= 10
    assert run["results"]["totalCustomers"] == 30
    skipped = api.customers(csv_c["id"], run["id"], status="skipped")
    assert len(skipped) == 30 - run["results"]["recommended"]
    again = api.run(csv_c["id"])
    assert again["file"]["sha256"] == run["file"]["sha256"]
    json_c = api.campaign(
        flow,
        segment,
        fileOutput={
            "format": "json",
            "includePersonalization": True,
            "columns": ["customer_id", "offer_name", "rank"],
        },
    )
    jrun = api.run(json_c["id"])
    assert jrun["status"] == "completed", jrun
    records = json.loads(api.file(json_c["id"], jrun["id"]))
    assert len(records) == jrun["file"]["rows"]
    first_a = next(r for r in records if r["offer_name"] == "A")
    assert set(first_a["personalization"]) == {"plan", "ltv", "vip"}
    optimal = api.campaign(flow, segment, volumeConstraints={"maxPerOffer": 5, "allocation": "optimal"})
    orun = api.run(optimal["id"])
    assert orun["status"] == "completed", orun
    assert orun["results"]["value"] >= orun["results"]["greedyValue"]
