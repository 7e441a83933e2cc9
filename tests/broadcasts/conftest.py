"""Broadcast test helpers: customers in the data source, and the authoring and public APIs of one
workspace with the runtime steps (scheduler tick, jobs, outbox dispatch) a test drives by hand."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from overture.data.source import get_source
from overture.db.context import AppContext
from overture.runtime import jobs, scheduler
from overture.runtime.models import Job, JobStatus, OutboxMessage, OutboxStatus, ScheduleRow
from overture.runtime.outbox import dispatch_once
from tests.conftest import WorkspaceFixture, create_key
from tests.delivery.conftest import Mailbox, Receiver, receiver, smtp_server  # noqa: F401

CUSTOMERS_SQL = """
CREATE TABLE {table} AS
SELECT
    'c' || lpad(CAST(i AS VARCHAR), 6, '0') AS customer_id,
    'First' || CAST(i AS VARCHAR) AS first_name,
    (['Berlin', 'Paris', 'Lyon'])[1 + i % 3] AS city,
    (['free', 'pro'])[1 + i % 2] AS plan,
    'user' || CAST(i AS VARCHAR) || '@example.com' AS email,
    CAST(i AS VARCHAR) || ' Main Street, Springfield' AS postal_address,
    (['Europe/Berlin', 'America/New_York', 'Asia/Tokyo'])[1 + i % 3] AS timezone
FROM range({n}) t(i)
"""


def customers(ctx: AppContext, n: int) -> str:
    """A fresh customers table of n rows (deterministic values) in the data source."""
    table = f"bc_{uuid.uuid4().hex[:10]}"
    with get_source(ctx).begin() as conn:
        conn.exec_driver_sql(CUSTOMERS_SQL.format(table=table, n=int(n)))
    return table


def source_sql(ctx: AppContext, sql: str) -> None:
    with get_source(ctx).begin() as conn:
        conn.exec_driver_sql(sql)


@dataclass
class Api:
    client: TestClient
    ctx: AppContext
    ws: WorkspaceFixture

    @property
    def base(self) -> str:
        return f"/api/v1/workspaces/{self.ws.id}"

    def call(self, method: str, path: str, expect: int | None = 200, **kwargs: Any) -> Any:
        r = self.client.request(method, self.base + path, headers=self.ws.headers, **kwargs)
        if expect is not None:
            assert r.status_code == expect, r.text
        return r.json() if r.content else None

    def post(self, path: str, body: Any = None, expect: int | None = 200) -> Any:
        return self.call("POST", path, expect, json=body)

    def get(self, path: str, expect: int | None = 200) -> Any:
        return self.call("GET", path, expect)

    def patch(self, path: str, body: Any, expect: int | None = 200) -> Any:
        return self.call("PATCH", path, expect, json=body)

    def public(self, campaign_id: str, what: str, key: str | None = None, **headers: str) -> Any:
        auth = {"Authorization": f"Bearer {key or self.ws.api_key}", **headers}
        return self.client.get(f"/public/v1/campaigns/{campaign_id}/{what}", headers=auth)

    def key(self, *scopes: str) -> str:
        return create_key(self.ctx, self.ws.id, list(scopes))

    # -- building blocks --------------------------------------------------------------------------
    def model(self, table: str) -> str:
        body = {"name": f"m-{table}", "primary_key": "customer_id", "table": table}
        return str(self.post("/models", body, 201)["id"])

    def segment(self, model_id: str, filter: Any = None, name: str = "seg") -> str:
        return str(self.post("/segments", {"name": name, "model_id": model_id, "filter": filter}, 201)["id"])

    def destination(self, type_: str, config: dict[str, Any]) -> str:
        body = {"name": f"{type_}-{uuid.uuid4().hex[:8]}", "type": type_, "config": config}
        return str(self.post("/destinations", body, 201)["id"])

    def smtp(self, port: int) -> str:
        return self.destination(
            "smtp",
            {"host": "127.0.0.1", "port": port, "from": "news@example.com", "subject": "x", "body": "x"},
        )

    def template(self, channel: str = "email", **fields: Any) -> str:
        body = {
            "name": "t",
            "channel": channel,
            "subject": "Hi {{ first_name }}" if channel == "email" else None,
            "body": EMAIL_BODY if channel == "email" else "Hello {{ first_name }} from {{ city }}",
            "status": "published",
            **fields,
        }
        if body["subject"] is None:
            del body["subject"]
        return str(self.post("/templates", body, 201)["id"])

    def broadcast(self, **fields: Any) -> dict[str, Any]:
        return dict(self.post("/broadcasts", {"name": "b", "channel": "email", **fields}, 201))

    # -- runtime ----------------------------------------------------------------------------------
    def drain(self) -> int:
        return jobs.drain(self.ctx, raise_errors=True)

    def dispatch(self) -> int:
        total = 0
        while n := dispatch_once(self.ctx, limit=100_000):
            total += n
        return total

    def tick(self) -> int:
        return scheduler.tick(self.ctx)

    def finish(self, clock: Any = None) -> None:
        """Run jobs and the outbox until the send settles (advancing a frozen clock past reconciles)."""
        for _ in range(80):
            self.drain()
            self.dispatch()
            if clock is not None:
                clock.advance(seconds=3)
            else:
                time.sleep(0.25)
            if not self.drain() and not self._open_jobs():
                return
        raise AssertionError("the send did not settle")

    def _open_jobs(self) -> int:
        with self.ctx.transaction() as session:
            return int(
                session.scalar(
                    sa.select(sa.func.count())
                    .select_from(Job)
                    .where(
                        Job.workspace_id == self.ws.id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])
                    )
                )
                or 0
            )


EMAIL_BODY = """<html><head><style>p { color: #333; } .cta { font-weight: bold; }</style></head>
<body><p>Hi {{ first_name }}, news from {{ city }}!</p>
<p class="cta">Your plan: {{ plan | upcase }}</p>
<a href="https://example.com/unsubscribe?c={{ customer_id }}">Unsubscribe</a></body></html>"""


@pytest.fixture
def api(client: TestClient, ctx: AppContext, workspace: WorkspaceFixture) -> Iterator[Api]:
    yield Api(client, ctx, workspace)
    # Jobs, schedules and the outbox are process-wide: leave nothing of this workspace behind.
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
