"""Broadcasts: an email broadcast to 1,000,000 recipients of a 2,000,000-profile model (one excluded
segment), a Liquid template with 3 fields, on the embedded default (SQLite + DuckDB) and optionally on
PostgreSQL (application database), each figure beside a baseline measured in the same run.

    .venv/bin/python bench/broadcasts.py [--profiles N] [--deliver N] [--postgres URL]

Prints:
- scheduled -> injected: the execution's run job (manifest frozen set-based in the data source,
  profile fields joined, every message rendered and owed in the outbox ledger), in seconds
  (targets: <= 10 s embedded, <= 30 s PostgreSQL);
- composition rate (messages/s on one core) beside a bare python-liquid render loop over the same
  rows and template parts (target >= 80%);
- delivery rate of the dispatcher over `--deliver` of those messages to a local SMTP sink (aiosmtpd)
  beside a bare smtplib loop sending the same messages on one connection, and to a local webhook
  receiver beside a bare httpx loop (target >= 80% each);
- `/public/v1/campaigns/{id}/status` p50 over HTTP (in-process ASGI client) while the dispatcher
  sends (target <= 5 ms).
"""

from __future__ import annotations

import argparse
import json
import smtplib
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi.testclient import TestClient

from overture.api.app import create_app
from overture.auth import service as auth_service
from overture.broadcasts import execution as pipeline
from overture.broadcasts import service as broadcasts
from overture.broadcasts import tasks as _tasks  # noqa: F401  (registers the job handlers)
from overture.broadcasts.compose import compiled_of
from overture.broadcasts.models import Execution
from overture.broadcasts.schemas import BroadcastCreate, TemplateCreate
from overture.config import Settings
from overture.data import service as data_service
from overture.data.schemas import ModelCreate
from overture.data.source import get_source
from overture.db import migrate
from overture.db.context import AppContext
from overture.delivery import service as destinations
from overture.delivery.schemas import DestinationCreate
from overture.runtime import jobs, outbox
from overture.runtime.models import OutboxMessage, OutboxStatus
from overture.segments import service as segments
from overture.segments.schemas import SegmentCreate

TABLE = "bench_bc_customers"
HTML = """<html><head><style>p { color: #333; } .cta { font-weight: bold; }</style></head><body>
<p>Hi {{ first_name }}, spring news from {{ city }}!</p><p class="cta">Your plan: {{ plan }}</p>
<a href="https://example.com/unsubscribe?c={{ customer_id }}">Unsubscribe</a></body></html>"""


def fill(ctx: AppContext, n: int) -> None:
    with get_source(ctx).begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
        conn.exec_driver_sql(
            f"""CREATE TABLE {TABLE} AS SELECT
                'c' || lpad(CAST(i AS VARCHAR), 7, '0') AS customer_id,
                'First' || CAST(i AS VARCHAR) AS first_name,
                (['Berlin', 'Paris', 'Lyon', 'Austin'])[1 + i % 4] AS city,
                (['free', 'pro', 'team'])[1 + i % 3] AS plan,
                CAST(i % 4 AS INTEGER) AS cohort,
                'user' || CAST(i AS VARCHAR) || '@example.com' AS email
            FROM range({n}) t(i)"""
        )


@contextmanager
def context(database_url: str | None) -> Iterator[AppContext]:
    with tempfile.TemporaryDirectory(prefix="overture-bench-") as home:
        settings = Settings(
            home=Path(home), database_url=database_url, run_workers=False, egress_allow=["127.0.0.1/32"]
        )
        ctx = AppContext.from_settings(settings)
        migrate.upgrade(settings.resolved_database_url, ctx.engine)
        try:
            yield ctx
        finally:
            ctx.close()


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: Any) -> None:
        pass


def http_sink() -> tuple[str, ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/hook", server


def smtp_sink() -> tuple[int, Any]:
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    return port, controller


def setup(ctx: AppContext, profiles: int, destination: dict[str, Any]) -> tuple[str, str]:
    with ctx.transaction() as session:
        ws, _, _ = auth_service.bootstrap_workspace(session, "bench")
    with ctx.transaction(workspace_id=ws.id) as session:
        model = data_service.create_model(
            session, ModelCreate(name="c", primary_key="customer_id", table=TABLE)
        )
        included = segments.create_segment(
            session,
            SegmentCreate(
                name="in", model_id=model.id, filter={"field": "cohort", "operator": "lt", "value": 3}
            ),
        )
        excluded = segments.create_segment(
            session,
            SegmentCreate(
                name="out", model_id=model.id, filter={"field": "cohort", "operator": "is", "value": 2}
            ),
        )
        template = broadcasts.create_template(
            session,
            TemplateCreate(
                name="t", channel="email", subject="Hi {{ first_name }}", body=HTML, status="published"
            ),
        )
        dest = destinations.create_destination(session, DestinationCreate.model_validate(destination))
        b = broadcasts.create_broadcast(
            session,
            BroadcastCreate.model_validate(
                {
                    "name": "bench",
                    "channel": "email",
                    "templateId": template.id,
                    "destinationId": dest.id,
                    "audience": {"included": [included.id], "excluded": [excluded.id]},
                }
            ),
            None,
        )
        broadcast_id = b.id
    broadcasts.evaluate_reach(ctx, ws.id, broadcast_id)
    return ws.id, broadcast_id


def run_send(ctx: AppContext, workspace_id: str, broadcast_id: str) -> tuple[float, float, float, Execution]:
    """(scheduled -> injected seconds, compose+inject seconds, seconds inside composition, the
    execution)."""
    with ctx.transaction(workspace_id=workspace_id) as session:
        execution_id = broadcasts.send_now(session, broadcast_id).id
    marks: dict[str, float] = {"compose": 0.0}
    real_snapshot, real_compose = pipeline.snapshot, pipeline.compose

    def timed_snapshot(*args: Any) -> None:
        real_snapshot(*args)
        marks["snapshot"] = time.perf_counter()

    def timed_compose(*args: Any) -> Any:
        t = time.perf_counter()
        try:
            return real_compose(*args)
        finally:
            marks["compose"] += time.perf_counter() - t

    pipeline.snapshot, pipeline.compose = timed_snapshot, timed_compose  # type: ignore[assignment]
    started = time.perf_counter()
    try:
        jobs.drain(ctx, kinds=[pipeline.RUN_JOB], raise_errors=True)
    finally:
        pipeline.snapshot, pipeline.compose = real_snapshot, real_compose  # type: ignore[assignment]
    elapsed = time.perf_counter() - started
    with ctx.transaction(workspace_id=workspace_id) as session:
        execution = session.get(Execution, execution_id)
        assert execution is not None
        session.expunge(execution)
    return elapsed, elapsed - (marks["snapshot"] - started), marks["compose"], execution


def bare_render_rate(ctx: AppContext, execution: Execution, rows: int) -> float:
    """Messages/s of a bare loop rendering the same template parts over the same profile rows."""
    compiled = compiled_of(execution.plan)
    with ctx.transaction() as session:
        fields = [
            r[0]
            for r in session.execute(
                sa.text("SELECT fields FROM broadcast_recipients WHERE execution_id = :e LIMIT :n"),
                {"e": execution.id, "n": rows},
            )
        ]
    fields = [json.loads(f) if isinstance(f, str) else f for f in fields]
    templates = list(compiled.parts.values())
    started = time.perf_counter()
    for f in fields:
        for template in templates:
            template.render(**f)
    return len(fields) / (time.perf_counter() - started)


def dispatch_rate(ctx: AppContext, n: int) -> float:
    started = time.perf_counter()
    done = 0
    while done < n:
        got = outbox.dispatch_once(ctx, limit=min(2000, n - done))
        if not got:
            break
        done += got
    return done / (time.perf_counter() - started)


def sample_payloads(ctx: AppContext, execution_id: str, n: int) -> list[dict[str, Any]]:
    with ctx.transaction() as session:
        return [
            r[0]
            for r in session.execute(
                sa.select(OutboxMessage.payload)
                .where(OutboxMessage.source_id == execution_id, OutboxMessage.status == OutboxStatus.SENT)
                .limit(n)
            )
        ]


def bare_smtp_rate(port: int, payloads: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for p in payloads:
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "news@example.com", p["email"], p["content"]["subject"]
            msg.set_content(p["content"]["text"])
            msg.add_alternative(p["content"]["html"], subtype="html")
            conn.send_message(msg)
    return len(payloads) / (time.perf_counter() - started)


def bare_httpx_rate(url: str, payloads: list[dict[str, Any]]) -> float:
    from concurrent.futures import ThreadPoolExecutor

    with httpx.Client() as client, ThreadPoolExecutor(16) as pool:
        started = time.perf_counter()
        list(
            pool.map(
                lambda p: client.post(url, json=p, headers={"Idempotency-Key": str(uuid.uuid4())}), payloads
            )
        )
        return len(payloads) / (time.perf_counter() - started)


def status_p50(ctx: AppContext, workspace_id: str, broadcast_id: str, seconds: float) -> float:
    with ctx.transaction() as session:
        _, secret = auth_service.create_key(session, workspace_id, name="bi", scopes=["campaigns:read"])
    client = TestClient(create_app(ctx, run_migrations=False))
    timings = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        r = client.get(
            f"/public/v1/campaigns/{broadcast_id}/status", headers={"Authorization": f"Bearer {secret}"}
        )
        timings.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
    return statistics.median(timings) * 1000


def bench(label: str, database_url: str | None, profiles: int, deliver: int) -> None:
    smtp_port, smtp_controller = smtp_sink()
    hook_url, hook_server = http_sink()
    try:
        for kind, destination in (
            (
                "smtp",
                {
                    "name": "sink",
                    "type": "smtp",
                    "config": {
                        "host": "127.0.0.1",
                        "port": smtp_port,
                        "from": "news@example.com",
                        "subject": "x",
                        "body": "x",
                    },
                },
            ),
            ("webhook", {"name": "hook", "type": "webhook", "config": {"url": hook_url}}),
        ):
            # The full-size send once (to SMTP); the webhook comparison needs only `deliver` messages.
            size = profiles if kind == "smtp" else min(profiles, 2 * deliver)
            with context(database_url) as ctx:
                fill(ctx, size)
                workspace_id, broadcast_id = setup(ctx, size, destination)
                elapsed, pipeline_seconds, compose_seconds, execution = run_send(
                    ctx, workspace_id, broadcast_id
                )
                n = execution.injected
                if kind == "smtp":
                    head = f"[{label}] {n:,} recipients of {size:,} profiles"
                    print(
                        f"{head}: scheduled -> injected {elapsed:.1f} s (snapshot and hydration "
                        f"{elapsed - pipeline_seconds:.1f} s, compose + inject {pipeline_seconds:.1f} s)"
                    )
                    rate = n / compose_seconds
                    bare = bare_render_rate(ctx, execution, min(n, 100_000))
                    print(
                        f"[{label}] composition {rate:,.0f} msg/s per core vs bare python-liquid loop "
                        f"{bare:,.0f} msg/s: {rate / bare:.0%}; with the ledger writes "
                        f"{n / pipeline_seconds:,.0f} msg/s ({n / pipeline_seconds / bare:.0%})"
                    )
                # Delivery rate alone, then /status p50 while the dispatcher keeps sending.
                rate = dispatch_rate(ctx, deliver)
                p50: list[float] = []
                watcher = threading.Thread(
                    target=lambda out=p50, ws=workspace_id, bid=broadcast_id, c=ctx: out.append(
                        status_p50(c, ws, bid, 5.0)
                    ),
                    daemon=True,
                )
                watcher.start()
                while watcher.is_alive() and outbox.dispatch_once(ctx, limit=500):
                    pass
                watcher.join()
                payloads = sample_payloads(ctx, execution.id, min(deliver, 5000))
                bare = (
                    bare_smtp_rate(smtp_port, payloads)
                    if kind == "smtp"
                    else bare_httpx_rate(hook_url, payloads)
                )
                print(
                    f"[{label}] delivery to a local {kind} sink: {rate:,.0f} msg/s vs bare "
                    f"{'smtplib' if kind == 'smtp' else 'httpx'} loop {bare:,.0f} msg/s: {rate / bare:.0%}"
                )
                print(f"[{label}] /status p50 under the {kind} send: {p50[0]:.2f} ms")
    finally:
        smtp_controller.stop()
        hook_server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=2_000_000)
    parser.add_argument("--deliver", type=int, default=20_000, help="messages delivered per destination")
    parser.add_argument(
        "--postgres", default=None, help="a PostgreSQL server URL (a throwaway database is made)"
    )
    args = parser.parse_args()
    bench("embedded", None, args.profiles, args.deliver)
    if args.postgres:
        with throwaway_database(args.postgres) as url:
            bench("postgresql", url, args.profiles, args.deliver)


@contextmanager
def throwaway_database(server_url: str) -> Iterator[str]:
    name = f"overture_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
