"""Batch test helpers: customers in the data source, a model and a segment over them, and API calls."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from overture.data.source import get_source
from overture.db.context import AppContext
from overture.runtime import jobs
from tests.conftest import WorkspaceFixture
from tests.delivery.conftest import S3Server, s3_server  # noqa: F401  (the moto S3 server fixture)

CUSTOMERS_SQL = """
CREATE TABLE {table} AS
SELECT
    'c' || lpad(CAST(i AS VARCHAR), 5, '0') AS customer_id,
    (['free', 'pro', 'enterprise'])[1 + i % 3] AS plan,
    (['US', 'DE', 'FR', 'BR'])[1 + i % 4] AS country,
    CAST(i % 100 AS DOUBLE) AS ltv,
    CAST((i * 37) % 100 AS DOUBLE) / 100.0 AS churn_score,
    i % 10 AS sessions,
    i % 2 = 0 AS vip
FROM range({n}) t(i)
"""


def create_customers(ctx: AppContext, n: int) -> str:
    table = f"bcust_{uuid.uuid4().hex[:10]}"
    with get_source(ctx).begin() as conn:
        conn.exec_driver_sql(CUSTOMERS_SQL.format(table=table, n=int(n)))
    return table


@dataclass
class Api:
    client: TestClient
    ctx: AppContext
    ws: WorkspaceFixture

    @property
    def base(self) -> str:
        return f"/api/v1/workspaces/{self.ws.id}"

    def post(self, path: str, body: Any = None, expect: int | None = 201) -> Any:
        r = self.client.post(self.base + path, headers=self.ws.headers, json=body)
        if expect is not None:
            assert r.status_code == expect, r.text
        return r.json() if expect is not None else r

    def patch(self, path: str, body: Any, expect: int | None = 200) -> Any:
        r = self.client.patch(self.base + path, headers=self.ws.headers, json=body)
        if expect is not None:
            assert r.status_code == expect, r.text
        return r.json() if expect is not None else r

    def get(self, path: str, expect: int | None = 200, **params: Any) -> Any:
        r = self.client.get(self.base + path, headers=self.ws.headers, params=params)
        if expect is not None:
            assert r.status_code == expect, r.text
        return r.json() if expect is not None else r

    def delete(self, path: str, expect: int = 204) -> Any:
        r = self.client.delete(self.base + path, headers=self.ws.headers)
        assert r.status_code == expect, r.text
        return r

    # -- building blocks
    def model(self, table: str) -> str:
        body = {"name": f"m-{table}", "primary_key": "customer_id", "table": table}
        return str(self.post("/models", body)["id"])

    def segment(self, model_id: str, filter: Any = None) -> str:
        body = {"name": f"s-{uuid.uuid4().hex[:6]}", "model_id": model_id, "filter": filter}
        return str(self.post("/segments", body)["id"])

    def channel(self, name: str = "file", mode: str = "file", destination_id: str | None = None) -> str:
        body = {"name": name, "deliveryMode": mode, "destinationId": destination_id}
        return str(self.post("/batch-channels", body)["id"])

    def offer(self, name: str, **fields: Any) -> str:
        return str(self.post("/offers", {"name": name, **fields})["id"])

    def flow(self, model_id: str, **fields: Any) -> str:
        return str(self.post("/decision-flows", {"name": "flow", "modelId": model_id, **fields})["id"])

    def campaign(self, flow_id: str, segment_id: str, **fields: Any) -> dict[str, Any]:
        body = {"name": "campaign", "decisionFlowId": flow_id, "segmentId": segment_id, **fields}
        return dict(self.post("/batch-campaigns", body))

    def run(self, campaign_id: str) -> dict[str, Any]:
        """Run Now, then let the runtime execute it; returns the finished run."""
        run = self.post(f"/batch-campaigns/{campaign_id}/runs")
        assert run["status"] == "pending"
        jobs.drain(self.ctx)
        return dict(self.get(f"/batch-campaigns/{campaign_id}/runs/{run['id']}"))

    def file(self, campaign_id: str, run_id: str) -> bytes:
        r = self.client.get(
            f"{self.base}/batch-campaigns/{campaign_id}/runs/{run_id}/file", headers=self.ws.headers
        )
        assert r.status_code == 200, r.text
        return r.content

    def customers(self, campaign_id: str, run_id: str, **params: Any) -> list[dict[str, Any]]:
        """Every page of per-customer results."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            page = self.get(f"/batch-campaigns/{campaign_id}/runs/{run_id}/customers", **query)
            out += page["customers"]
            cursor = page["nextCursor"]
            if not cursor:
                return out


@pytest.fixture
def api(client: TestClient, ctx: AppContext, workspace: WorkspaceFixture) -> Iterator[Api]:
    yield Api(client, ctx, workspace)


@dataclass
class World:
    """20 customers, a model and an everyone segment, one file channel."""

    model_id: str
    segment_id: str
    channel_id: str
    table: str


@pytest.fixture
def world(api: Api) -> World:
    table = create_customers(api.ctx, 20)
    model_id = api.model(table)
    return World(model_id, api.segment(model_id), api.channel(), table)
