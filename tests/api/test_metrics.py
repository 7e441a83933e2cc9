"""`GET /metrics` in the Prometheus format, request ids, JSON logs (issue #14, item 8)."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from overture.db.base import new_id
from overture.db.context import AppContext
from overture.runtime.models import Job
from tests.cli.helpers import OVERTURE, clean_env, serving
from tests.conftest import WorkspaceFixture


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics__requests_by_route_decisions_jobs_outbox_and_runs(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    before = _samples(client.get("/metrics").text)
    route = "/api/v1/workspaces/{id}/segments"
    for _ in range(3):
        assert (
            client.get(f"/api/v1/workspaces/{workspace.id}/segments", headers=workspace.headers).status_code
            == 200
        )
    r = client.post(
        f"/api/v1/projects/{workspace.id}/register",
        headers=workspace.public_headers,
        json={"placement": "nowhere", "user_id": "u1"},
    )
    assert r.json()["result"] == "placement_not_found"
    now = ctx.clock.now()
    kind = f"metricstest.run{new_id()[:6]}"
    with ctx.transaction() as session:
        for seconds, status in ((0.3, "succeeded"), (7.0, "succeeded"), (2.0, "dead")):
            session.add(
                Job(
                    kind=kind,
                    payload={},
                    status=status,
                    attempt=1,
                    run_at=now,
                    created_at=now,
                    started_at=now,
                    finished_at=now + timedelta(seconds=seconds),
                )
            )
        session.add(
            Job(kind=kind, payload={}, status="queued", run_at=now - timedelta(seconds=90), created_at=now)
        )
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = _samples(r.text)
    labels = {"method": "GET", "route": route, "status": "200"}
    assert (
        _value(after, "overture_http_requests_total", **labels)
        - _value(before, "overture_http_requests_total", **labels)
        == 3
    )
    assert _value(after, "overture_http_request_duration_seconds_count", method="GET", route=route) >= 3
    assert _value(after, "overture_decisions_total", surface="paywalls", result="placement_not_found") >= 1
    assert _value(after, "overture_jobs", kind=kind, status="queued") == 1
    assert _value(after, "overture_jobs_oldest_due_age_seconds", kind=kind) >= 89
    run = {"surface": "metricstest", "kind": kind}
    assert _value(after, "overture_run_duration_seconds_count", **run, status="succeeded") == 2
    assert _value(after, "overture_run_duration_seconds_bucket", **run, status="succeeded", le="0.5") == 1
    assert _value(after, "overture_run_duration_seconds_bucket", **run, status="succeeded", le="10.0") == 2
    assert _value(after, "overture_run_duration_seconds_count", **run, status="dead") == 1
    assert abs(_value(after, "overture_run_duration_seconds_sum", **run, status="succeeded") - 7.3) < 0.01
    assert (
        any(name == "overture_outbox_messages" for name, _ in after) or "overture_outbox_messages" in r.text
    )
    with ctx.transaction() as session:
        session.execute(sa.delete(Job).where(Job.kind == kind))


def test_request_id__given_or_made__answered_back(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"]
    assert made != "bad id\n" and len(made) == 32


@pytest.mark.slow
def test_two_worker_processes__metrics_add_up_and_logs_are_json(tmp_path: Path) -> None:
    """`overture serve --workers 2` (prometheus-client multiprocess mode): requests answered by
    either process are all counted on any scrape; with OVERTURE_LOG_FORMAT=json every line of the
    log is a JSON object, request lines carrying their request id."""
    env = clean_env(OVERTURE_HOME=str(tmp_path), OVERTURE_RUN_WORKERS="false", OVERTURE_LOG_FORMAT="json")
    assert subprocess.run([OVERTURE, "migrate"], env=env, capture_output=True).returncode == 0
    with serving(tmp_path, "--workers", "2", env=env) as base:
        for i in range(60):  # a new connection each: the kernel spreads them over both processes
            httpx.get(f"{base}/healthz", headers={"X-Request-ID": f"req-{i}", "Connection": "close"})
        # One scrape, answered by one process, counts the requests both answered.
        scraped = _samples(httpx.get(f"{base}/metrics").text)
        total = _value(scraped, "overture_http_requests_total", method="GET", route="/healthz", status="200")
        assert total >= 61, total
    lines = [line for line in (tmp_path / "serve.log").read_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert any(r.get("request_id") == "req-5" for r in records), lines[-5:]
