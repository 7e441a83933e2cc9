"""SMTP destinations: one templated email per message over a pooled, egress-checked connection."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING, Any

import orjson

from overture.delivery.adapters.base import Adapter, Target, parse_config
from overture.delivery.egress import EgressError, EgressGuard, EgressRefused, guard_for
from overture.delivery.messages import Message, Outcome
from overture.delivery.schemas import SmtpConfig
from overture.delivery.templates import EmailTemplate, lookup

if TYPE_CHECKING:
    from overture.db.context import AppContext

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "X-Overture-Idempotency-Key"
POSSIBLE_DUPLICATE_HEADER = "X-Overture-Possible-Duplicate"
IDLE_SECONDS = 30.0  # servers commonly drop idle sessions after about a minute
MAX_IDLE_PER_KEY = 4


class _PinnedSMTP(smtplib.SMTP):
    """smtplib connects by name; this connects to the guard-checked address (the name is kept for
    STARTTLS certificate checks, which use `self._host`)."""

    guard: EgressGuard

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self.guard.connect_tcp(host, port, timeout, self.source_address)


class _PinnedSMTPSSL(smtplib.SMTP_SSL):
    guard: EgressGuard

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = self.guard.connect_tcp(host, port, timeout, self.source_address)
        return self.context.wrap_socket(sock, server_hostname=self._host)  # type: ignore[attr-defined]


class _Skip(Exception):
    """A message that cannot become an email (no recipient...): failed, the batch goes on."""


class SmtpPool:
    """Idle SMTP sessions per destination config, reused across batches (a session costs a TCP and
    often a TLS handshake plus AUTH: far more than sending one message)."""

    def __init__(self) -> None:
        self._idle: dict[str, list[tuple[smtplib.SMTP, float]]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, cfg: SmtpConfig, guard: EgressGuard) -> tuple[smtplib.SMTP, bool]:
        """A session and whether it was reused (a reused one may have been dropped by the server)."""
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                conn, since = idle.pop()
                if now - since < IDLE_SECONDS:
                    return conn, True
                _quietly_close(conn)
        return self._connect(cfg, guard), False

    def release(self, key: str, conn: smtplib.SMTP) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < MAX_IDLE_PER_KEY:
                idle.append((conn, time.monotonic()))
                return
        _quietly_close(conn)

    def _connect(self, cfg: SmtpConfig, guard: EgressGuard) -> smtplib.SMTP:
        helo = socket.gethostname() or "overture"  # not getfqdn(): that can block on reverse DNS
        conn: smtplib.SMTP
        if cfg.ssl:
            conn = _PinnedSMTPSSL(local_hostname=helo, timeout=cfg.timeout_seconds, context=_tls())
        else:
            conn = _PinnedSMTP(local_hostname=helo, timeout=cfg.timeout_seconds)
        conn.guard = guard
        try:
            conn.connect(cfg.host, cfg.port)
            conn.ehlo()
            if cfg.starttls:
                conn.starttls(context=_tls())
                conn.ehlo()
            if cfg.username is not None:
                conn.login(cfg.username, cfg.password or "")
        except BaseException:
            _quietly_close(conn)
            raise
        return conn

    def close(self) -> None:
        with self._lock:
            sessions = [conn for idle in self._idle.values() for conn, _ in idle]
            self._idle.clear()
        for conn in sessions:
            _quietly_close(conn)


def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except Exception:
        with contextlib.suppress(Exception):
            conn.close()


def pool_for(ctx: AppContext) -> SmtpPool:
    def build(c: AppContext) -> SmtpPool:
        pool = SmtpPool()
        c.closers.append(pool.close)
        return pool

    pool: SmtpPool = ctx.service("delivery.smtp.pool", build)
    return pool


def message_id(key: str, sender: str) -> str:
    """A Message-ID derived from the idempotency key: a resend carries the same id, so mail systems
    that deduplicate on Message-ID (and humans reading headers) see one message."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "overture.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}.overture@{domain}>"


def _one_line(value: str) -> str:
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def build_email(ctx: AppContext, cfg: SmtpConfig, message: Message) -> tuple[EmailMessage, str]:
    raw = lookup(message.payload, cfg.to_field)
    if not isinstance(raw, str) or not raw.strip():
        raise _Skip(f"payload field '{cfg.to_field}' holds no recipient address")
    _display, address = parseaddr(raw)
    if "@" not in address or any(c in raw for c in "\r\n,;") or address.count("@") != 1:
        raise _Skip(f"payload field '{cfg.to_field}' is not a single email address")
    email = EmailMessage()
    email["From"] = cfg.from_
    email["To"] = raw.strip()
    # A payload may carry its message already rendered (a broadcast's Liquid template): `content`
    # with `subject`, `text` and optionally `html`. Otherwise the destination's templates apply.
    content = message.payload.get("content")
    rendered = isinstance(content, dict) and isinstance(content.get("subject"), str)
    content = content if isinstance(content, dict) else {}
    subject = str(content["subject"]) if rendered else EmailTemplate(cfg.subject).render(message.payload)
    email["Subject"] = _one_line(subject)
    email["Date"] = format_datetime(ctx.clock.now())
    email["Message-ID"] = message_id(message.idempotency_key, cfg.from_)
    email[IDEMPOTENCY_HEADER] = _one_line(message.idempotency_key)
    if message.possible_duplicate:
        email[POSSIBLE_DUPLICATE_HEADER] = "true"
    if rendered:
        email.set_content(str(content.get("text") or ""))
        if isinstance(content.get("html"), str):
            email.add_alternative(content["html"], subtype="html")
    else:
        email.set_content(EmailTemplate(cfg.body).render(message.payload))
    return email, address


def _code_outcome(key: str, code: int, detail: Any) -> Outcome:
    text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    error = f"SMTP {code}: {text}"
    return Outcome.failed(key, error) if 500 <= code < 600 else Outcome.retry(key, error)


class SmtpAdapter(Adapter):
    type = "smtp"
    config_model = SmtpConfig

    def check_egress(self, ctx: AppContext, config: dict[str, Any]) -> None:
        try:
            guard_for(ctx).check_host(config["host"], int(config["port"]))
        except EgressError as exc:
            raise type(exc)(f"config.host: {exc.message}", field="config.host") from None

    def test_payload(self, target: Target, now_iso: str) -> dict[str, Any]:
        return {"type": "overture.test", "destination_id": target.id, "sent_at": now_iso}

    def send_batch(self, ctx: AppContext, target: Target, messages: Sequence[Message]) -> list[Outcome]:
        """Messages go out in order over one session. A refused recipient or message fails (5xx) or
        retries (4xx) alone; a lost connection is re-opened once, and if that fails too, the rest of
        the batch is left to retry."""
        if not messages:
            return []
        try:
            cfg = parse_config(SmtpConfig, target.config)
        except Exception as exc:
            return [Outcome.failed(m.idempotency_key, f"invalid destination config: {exc}") for m in messages]
        guard = guard_for(ctx)
        try:  # checked per batch too: a pooled session may predate a policy or DNS change
            guard.check_host(cfg.host, cfg.port)
        except EgressError as exc:
            return self._rest(messages, self._connection_error(exc), isinstance(exc, EgressRefused))
        pool = pool_for(ctx)
        pool_key = (
            target.id
            + ":"
            + hashlib.sha256(orjson.dumps(target.config, option=orjson.OPT_SORT_KEYS)).hexdigest()
        )
        outcomes: list[Outcome] = []
        conn: smtplib.SMTP | None = None
        reused = False
        try:
            for index, message in enumerate(messages):
                key = message.idempotency_key
                try:
                    email, rcpt = build_email(ctx, cfg, message)
                except _Skip as exc:
                    outcomes.append(Outcome.failed(key, str(exc)))
                    continue
                except Exception as exc:
                    outcomes.append(
                        Outcome.failed(key, f"cannot build the email: {type(exc).__name__}: {exc}")
                    )
                    continue
                while True:
                    if conn is None:
                        try:
                            conn, reused = pool.acquire(pool_key, cfg, guard)
                        except EgressError as exc:
                            permanent = isinstance(exc, EgressRefused)
                            outcomes.extend(
                                self._rest(messages[index:], self._connection_error(exc), permanent)
                            )
                            return outcomes
                        except (smtplib.SMTPException, OSError) as exc:  # refused, TLS, AUTH, HELO
                            outcomes.extend(self._rest(messages[index:], self._connection_error(exc), False))
                            return outcomes
                    try:
                        conn.send_message(email, to_addrs=[rcpt])
                        outcomes.append(Outcome.sent(key))
                    except smtplib.SMTPRecipientsRefused as exc:
                        code, detail = exc.recipients.get(rcpt, (550, b"recipient refused"))
                        outcomes.append(_code_outcome(key, code, detail))
                    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                        outcomes.append(_code_outcome(key, exc.smtp_code, exc.smtp_error))
                    except smtplib.SMTPNotSupportedError as exc:  # e.g. SMTPUTF8 address, no support
                        outcomes.append(Outcome.failed(key, f"server cannot take this message: {exc}"))
                    except (smtplib.SMTPServerDisconnected, OSError) as exc:
                        conn = self._drop(conn)
                        if reused and not isinstance(exc, smtplib.SMTPResponseException):
                            reused = False  # a pooled session the server had dropped: one fresh try
                            continue
                        outcomes.extend(self._rest(messages[index:], self._connection_error(exc), False))
                        return outcomes
                    break
        except Exception as exc:  # a bug must not lose the batch: everything not yet done retries
            log.exception("smtp batch failed unexpectedly (destination %s)", target.id)
            outcomes.extend(
                Outcome.retry(m.idempotency_key, f"unexpected error: {exc}")
                for m in messages[len(outcomes) :]
            )
            conn = self._drop(conn)
        finally:
            if conn is not None:
                pool.release(pool_key, conn)
        return outcomes

    @staticmethod
    def _drop(conn: smtplib.SMTP | None) -> None:
        if conn is not None:
            _quietly_close(conn)

    @staticmethod
    def _connection_error(exc: BaseException) -> str:
        if isinstance(exc, EgressError):
            return f"egress refused: {exc.message}" if isinstance(exc, EgressRefused) else exc.message
        return f"SMTP session failed: {type(exc).__name__}: {exc}"

    @staticmethod
    def _rest(rest: Sequence[Message], error: str, permanent: bool) -> list[Outcome]:
        if permanent:
            return [Outcome.failed(m.idempotency_key, error) for m in rest]
        return [Outcome.retry(m.idempotency_key, error) for m in rest]
