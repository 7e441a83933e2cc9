"""Journeys test helpers: demo-style customers in the data source, a model over them, and API calls."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from overture.data.source import get_source
from overture.db.context import AppContext
from overture.runtime import jobs
from overture.runtime.models import Job, JobStatus, OutboxMessage, OutboxStatus, ScheduleRow
from tests.conftest import WorkspaceFixture
from tests.delivery.conftest import Receiver, receiver  # noqa: F401  (the local webhook receiver fixture)

DEMO_SQL = """
CREATE TABLE {table} AS
SELECT
    'c' || lpad(CAST(i AS VARCHAR), 6, '0') AS customer_id,
    (['free', 'pro', 'enterprise'])[1 + i % 3] AS plan,
    (['ios', 'android', 'web'])[1 + (i // 3) % 3] AS platform,
    (['US', 'DE', 'FR', 'BR'])[1 + i % 4] AS country,
    CAST(i % 500 AS DOUBLE) AS ltv,
    i % 40 AS session_count,
    TIMESTAMP '2025-01-01' + INTERVAL (i % 365) DAY AS signup_at,
    'user' || CAST(i AS VARCHAR) || '@example.com' AS email,
    'Europe/Berlin' AS timezone
FROM range({n}) t(i)
"""


def create_customers_table(ctx: AppContext, n: int) -> str:
    """A fresh `customers`-shaped table of n rows in the data source (deterministic values)."""
    table = f"cust_{uuid.uuid4().hex[:10]}"
    with get_source(ctx).begin() as conn:
        conn.exec_driver_sql(DEMO_SQL.format(table=table, n=int(n)))
    return table


def execute(ctx: AppContext, sql: str, **params: Any) -> None:
    with get_source(ctx).begin() as conn:
        conn.execute(sa.text(sql), params)


@dataclass
class Api:
    """The journeys API of one workspace, plus the runtime calls a test needs."""

    client: TestClient
    ctx: AppContext
    ws: WorkspaceFixture

    @property
    def base(self) -> str:
        return f"/api/v1/workspaces/{self.ws.id}"

    def url(self, suffix: str = "") -> str:
        return f"{self.base}/journeys{suffix}"

    def model(self, table: str, primary_key: str = "customer_id") -> str:
        r = self.client.post(
            f"{self.base}/models",
            headers=self.ws.headers,
            json={"name": f"m-{table}", "primary_key": primary_key, "table": table},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def webhook(self, url: str) -> str:
        r = self.client.post(
            f"{self.base}/destinations",
            headers=self.ws.headers,
            json={"name": f"hook-{uuid.uuid4().hex[:8]}", "type": "webhook", "config": {"url": url}},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def create(self, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        r = self.client.post(self.url(), headers=self.ws.headers, json=body)
        assert r.status_code == expect, r.text
        return dict(r.json())

    def post(self, suffix: str, expect: int | None = 200, **kwargs: Any) -> Any:
        r = self.client.post(self.url(suffix), headers=self.ws.headers, **kwargs)
        if expect is not None:
            assert r.status_code == expect, r.text
        return r

    def get(self, suffix: str, expect: int = 200) -> Any:
        r = self.client.get(self.url(suffix), headers=self.ws.headers)
        assert r.status_code == expect, r.text
        return r.json()

    def activate(self, journey_id: str) -> dict[str, Any]:
        return dict(self.post(f"/{journey_id}/activate").json())

    def trigger(self, journey_id: str) -> dict[str, Any]:
        r = self.post(f"/{journey_id}/trigger", expect=None)
        assert r.status_code in (200, 201), r.text
        return dict(r.json())

    def run(self, journey_id: str) -> dict[str, Any]:
        """Trigger a run and let the runtime execute it (synchronously); returns the finished run."""
        run = self.trigger(journey_id)
        jobs.drain(self.ctx)
        return dict(self.get(f"/{journey_id}/runs/{run['id']}"))

    def stats(self, journey_id: str) -> dict[str, Any]:
        return dict(self.get(f"/{journey_id}/stats"))


@pytest.fixture
def api(client: TestClient, ctx: AppContext, workspace: WorkspaceFixture) -> Iterator[Api]:
    yield Api(client, ctx, workspace)
    # The job queue, the schedules and the outbox are process-wide: leave nothing of this test's
    # workspace for a later test's `drain`, `tick` or `dispatch_once` to pick up.
    with ctx.transaction() as session:
        session.execute(sa.delete(ScheduleRow).where(ScheduleRow.workspace_id == workspace.id))
        session.execute(
            sa.update(Job)
            .where(Job.workspace_id == workspace.id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
            .values(status=JobStatus.CANCELLED)
        )
        session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.workspace_id == workspace.id, OutboxMessage.status != OutboxStatus.SENT)
            .values(status=OutboxStatus.FAILED, last_error="test over")
        )


PRO = {"field": "plan", "operator": "is", "value": "pro"}


def tile(tile_id: str, kind: str, **config: Any) -> dict[str, Any]:
    """A tile as the API takes it; keyword arguments are its config."""
    return {"id": tile_id, "type": kind, **({"config": config} if config else {})}


def sync_tile(tile_id: str, destination_id: str, *fields: str | tuple[str, str]) -> dict[str, Any]:
    """A sync tile mapping each field to itself, or (from, to)."""
    pairs = [f if isinstance(f, tuple) else (f, f) for f in fields]
    mapping = [{"from": source, "to": target} for source, target in pairs]
    return tile(tile_id, "sync", destination_id=destination_id, field_mapping=mapping)


def edge(source: str, target: str, branch: str | None = None) -> dict[str, str]:
    return {"from": source, "to": target, **({"branch": branch} if branch is not None else {})}


def chain(*tiles: dict[str, Any]) -> list[dict[str, str]]:
    """Edges joining tiles one after the other."""
    return [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(tiles)]
