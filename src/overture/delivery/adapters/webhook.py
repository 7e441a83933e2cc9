"""Webhook destinations: one JSON POST per message through the egress guard's pooled client."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from overture import __version__
from overture.delivery.adapters.base import Adapter, Target, parse_config
from overture.delivery.egress import EgressError, EgressRefused, HostUnresolved, TooManyRedirects, guard_for
from overture.delivery.messages import Message, Outcome
from overture.delivery.schemas import WebhookConfig

if TYPE_CHECKING:
    from overture.db.context import AppContext

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Overture-Signature"
POSSIBLE_DUPLICATE_HEADER = "X-Overture-Possible-Duplicate"
ATTEMPT_HEADER = "X-Overture-Attempt"
#: Concurrent requests per process. Enough to hide round-trip latency; small enough not to flood a
#: receiver (the dispatcher's batches bound how much is in flight at once anyway).
CONCURRENCY = 16
MAX_RETRY_AFTER = 86_400.0
RETRYABLE_STATUS = frozenset({408, 425, 429})


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def executor_for(ctx: AppContext) -> ThreadPoolExecutor:
    def build(c: AppContext) -> ThreadPoolExecutor:
        pool = ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="overture-webhook")
        c.closers.append(lambda: pool.shutdown(wait=False, cancel_futures=True))
        return pool

    pool: ThreadPoolExecutor = ctx.service("delivery.webhook.executor", build)
    return pool


class WebhookAdapter(Adapter):
    type = "webhook"
    config_model = WebhookConfig

    def check_egress(self, ctx: AppContext, config: dict[str, Any]) -> None:
        try:
            guard_for(ctx).check_url(config["url"])
        except EgressError as exc:
            raise type(exc)(f"config.url: {exc.message}", field="config.url") from None

    def send_batch(self, ctx: AppContext, target: Target, messages: Sequence[Message]) -> list[Outcome]:
        if not messages:
            return []
        try:
            cfg = parse_config(WebhookConfig, target.config)
        except Exception as exc:
            return [Outcome.failed(m.idempotency_key, f"invalid destination config: {exc}") for m in messages]
        guard = guard_for(ctx)
        try:
            guard.check_url(cfg.url)  # cached DNS: a refusal costs no socket and names the reason
        except EgressRefused as exc:
            return [Outcome.failed(m.idempotency_key, f"egress refused: {exc.message}") for m in messages]
        except HostUnresolved as exc:
            return [Outcome.retry(m.idempotency_key, exc.message) for m in messages]
        if len(messages) == 1:
            return [self._send_one(ctx, cfg, messages[0])]
        return list(executor_for(ctx).map(lambda m: self._send_one(ctx, cfg, m), messages))

    def _send_one(self, ctx: AppContext, cfg: WebhookConfig, message: Message) -> Outcome:
        key = message.idempotency_key
        try:
            return self._post(ctx, cfg, message)
        except EgressRefused as exc:
            return Outcome.failed(key, f"egress refused: {exc.message}")
        except TooManyRedirects as exc:
            return Outcome.failed(key, exc.message)
        except EgressError as exc:  # the host does not resolve right now: may heal
            return Outcome.retry(key, exc.message)
        except httpx.TimeoutException as exc:
            return Outcome.retry(key, f"timeout: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return Outcome.retry(key, f"network error: {type(exc).__name__}: {exc}")
        except Exception as exc:  # never let one message break the batch
            log.exception("webhook send failed unexpectedly (key=%s)", key)
            return Outcome.retry(key, f"unexpected error: {type(exc).__name__}: {exc}")

    def _post(self, ctx: AppContext, cfg: WebhookConfig, message: Message) -> Outcome:
        key = message.idempotency_key
        if not key.isascii() or not key.isprintable() or len(key) > 512:
            return Outcome.failed(key, "idempotency key must be printable ASCII of at most 512 characters")
        try:
            body = orjson.dumps(message.payload, option=orjson.OPT_NON_STR_KEYS)
        except TypeError as exc:
            return Outcome.failed(key, f"payload is not JSON-serializable: {exc}")
        headers = {
            **cfg.headers,
            "Content-Type": "application/json",
            "User-Agent": f"Overture/{__version__}",
            "Idempotency-Key": key,
            ATTEMPT_HEADER: str(message.attempt),
        }
        if message.possible_duplicate:
            headers[POSSIBLE_DUPLICATE_HEADER] = "true"
        if cfg.secret:
            headers[SIGNATURE_HEADER] = sign(cfg.secret, int(ctx.clock.now().timestamp()), body)
        response = guard_for(ctx).request(
            "POST", cfg.url, content=body, headers=headers, timeout=cfg.timeout_seconds
        )
        return classify(key, response, ctx.clock.now())


def classify(key: str, response: httpx.Response, now: datetime) -> Outcome:
    """2xx sent; 408/425/429/5xx retry (honouring Retry-After); any other status failed."""
    status = response.status_code
    if 200 <= status < 300:
        return Outcome.sent(key)
    snippet = response.content[:200].decode("utf-8", "replace").strip()
    error = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if status in RETRYABLE_STATUS or status >= 500:
        return Outcome.retry(key, error, parse_retry_after(response.headers.get("retry-after"), now))
    if 300 <= status < 400:
        return Outcome.failed(
            key,
            f"HTTP {status} redirect not followed: a POST is only re-sent on 307/308; "
            "configure the final URL",
        )
    return Outcome.failed(key, error)
