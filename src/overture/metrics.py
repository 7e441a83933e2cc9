"""Process metrics any layer may count (Prometheus, through prometheus-client).

Counters live here so a surface can count without importing the API layer. When the server runs
several processes (`overture serve --workers N`, or any pre-fork server), PROMETHEUS_MULTIPROC_DIR
names a directory the processes share and `GET /metrics` adds them up (prometheus-client's
multiprocess mode). What the database already knows (jobs, outbox, run durations) is not counted
here: `overture.api.observability` reads it at scrape time, so `overture worker` processes, which
serve no HTTP, are covered too."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

#: Seconds, from 1 ms to 10 s: a decision is microseconds of work plus the framework's ~0.2 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "overture_http_requests", "HTTP requests answered, by route and status.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "overture_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
DECISIONS = Counter(
    "overture_decisions", "Real-time decisions made, by surface and result.", ["surface", "result"]
)


def count_decision(surface: str, result: str) -> None:
    DECISIONS.labels(surface=surface, result=result).inc()


_RESULT_PREFIX = b'{"result":"'


def count_decision_answer(surface: str, answer: bytes) -> None:
    """Count a decision from its serialized answer (`{"result":"…",…}`), without parsing it."""
    if answer.startswith(_RESULT_PREFIX):
        end = answer.find(b'"', len(_RESULT_PREFIX))
        count_decision(surface, answer[len(_RESULT_PREFIX) : end].decode())
