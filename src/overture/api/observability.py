"""What operators watch: `GET /metrics` (Prometheus), a request id on every request and log line,
and optional JSON logs (OVERTURE_LOG_FORMAT=json)."""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from overture.db.context import AppContext
from overture.db.dialects import seconds_between
from overture.metrics import HTTP_LATENCY, HTTP_REQUESTS
from overture.runtime.models import Job, JobStatus, OutboxMessage

REQUEST_ID_HEADER = "x-request-id"
access = logging.getLogger("overture.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("overture_request_id", default=None)
#: Run durations, seconds: from a tenth of a second to an hour.
RUN_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class RequestMiddleware:
    """Pure ASGI (no per-request task or body copy: the decision path pays ~2 µs for it): gives each
    request an id (the caller's `X-Request-ID` when it is a sane token, else a new one), answers it
    back in `X-Request-ID`, and records latency and status by route template (never by raw path,
    whose ids would explode the label set)."""

    def __init__(self, app: ASGIApp, access_log: bool = False) -> None:
        self.app = app
        # With JSON logs the access line is written here, where the request id is known.
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            elapsed = time.perf_counter() - started
            HTTP_LATENCY.labels(method=method, route=template).observe(elapsed)
            HTTP_REQUESTS.labels(method=method, route=template, status=str(status)).inc()
            if self.access_log:
                access.info('"%s %s" %d %.1f ms', method, scope.get("path", ""), status, elapsed * 1000.0)
            request_id.reset(token)


class DatabaseCollector(Collector):
    """Gauges and histograms read from the application database at scrape time: the same answer
    from every API process, and covering the work of `overture worker` processes too."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Any]:
        now = self.ctx.clock.now()
        with self.ctx.engine.connect() as conn:
            jobs = GaugeMetricFamily("overture_jobs", "Jobs by kind and state.", labels=["kind", "status"])
            for kind, status, count in conn.execute(
                sa.select(Job.kind, Job.status, sa.func.count()).group_by(Job.kind, Job.status)
            ):
                jobs.add_metric([kind, status], count)
            yield jobs

            age = GaugeMetricFamily(
                "overture_jobs_oldest_due_age_seconds",
                "Seconds the oldest due, queued job of each kind has been waiting (0: none waiting).",
                labels=["kind"],
            )
            due = sa.select(Job.kind, sa.func.min(Job.run_at)).where(
                Job.status == JobStatus.QUEUED, Job.run_at <= now
            )
            for kind, oldest in conn.execute(due.group_by(Job.kind)):
                age.add_metric([kind], max(0.0, (now - _utc(oldest)).total_seconds()))
            yield age

            outbox = GaugeMetricFamily(
                "overture_outbox_messages", "Outbox messages by state.", labels=["status"]
            )
            for status, count in conn.execute(
                sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status)
            ):
                outbox.add_metric([status], count)
            yield outbox

            yield self._run_durations(conn)

    def _run_durations(self, conn: sa.Connection) -> HistogramMetricFamily:
        """Finished jobs (a journey run, a batch run, a broadcast send...) by surface (the part of
        the job kind before the dot), kind and outcome: one grouped query, buckets summed in SQL."""
        seconds = seconds_between(conn, Job.started_at, Job.finished_at)
        buckets = [sa.func.sum(sa.case((seconds <= b, 1), else_=0)) for b in RUN_BUCKETS]
        rows = conn.execute(
            sa.select(Job.kind, Job.status, sa.func.count(), sa.func.sum(seconds), *buckets)
            .where(Job.finished_at.is_not(None), Job.started_at.is_not(None))
            .where(Job.status.in_([JobStatus.SUCCEEDED, JobStatus.DEAD]))
            .group_by(Job.kind, Job.status)
        )
        family = HistogramMetricFamily(
            "overture_run_duration_seconds",
            "Duration of finished runs (jobs), by surface, job kind and outcome.",
            labels=["surface", "kind", "status"],
        )
        for kind, status, count, total, *counts in rows:
            cumulative = [(str(b), int(c or 0)) for b, c in zip(RUN_BUCKETS, counts, strict=True)]
            labels = [kind.split(".", 1)[0], kind, status]
            family.add_metric(labels, [*cumulative, ("+Inf", int(count))], float(total or 0.0))
        return family


def _utc(value: Any) -> Any:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def install(app: FastAPI, ctx: AppContext) -> None:
    """The middleware and `GET /metrics` on `app`."""
    app.add_middleware(RequestMiddleware, access_log=ctx.settings.log_format == "json")
    database = DatabaseCollector(ctx)

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
    )
    def metrics() -> Response:
        """Prometheus metrics of this server (and, with PROMETHEUS_MULTIPROC_DIR, of every process
        sharing that directory): request latency by route, decisions, jobs, outbox, run durations."""
        registry = CollectorRegistry()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            output = generate_latest(registry)
        else:
            output = generate_latest(REGISTRY)
        output += generate_latest(_single(database))
        return Response(output, media_type=CONTENT_TYPE_LATEST)


def _single(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


# -- logs ------------------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request id when there is one,
    and the exception text."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            body["request_id"] = rid
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


JsonFormatter.converter = time.gmtime


def log_config(log_format: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the server and workers: the HTTP server's loggers (uvicorn
    or granian) and Overture's, as text or as JSON lines."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "_granian": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "overture": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }
