"""Real local receivers for delivery tests: an HTTP server, an SMTP server (aiosmtpd) and an S3 server
(moto), all on loopback with random ports, started and stopped by the tests themselves."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from overture.delivery.egress import EgressGuard
from tests.conftest import WorkspaceFixture


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- HTTP ----------------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer_port: int = 0


Rule = Callable[[Received], tuple[int, dict[str, str], bytes]]


@dataclass
class Receiver:
    """Records every request; `rule` decides each response (default 200)."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    rule: Rule = field(default=lambda _r: (200, {}, b"ok"))
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes: without NODELAY, Nagle + delayed ACK
            # would stall every keep-alive response by ~40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            req = Received(self.command, self.path, headers, body, self.client_address[1])
            with receiver.lock:
                receiver.requests.append(req)
            status, headers, payload = receiver.rule(req)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_GET = do_PUT = _handle

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    # The adapter opens up to 16 connections at once; the default backlog (5) would refuse some of
    # them on a loaded machine, and a refused connection is a retry the test did not ask for.
    request_queue_size = 128
    daemon_threads = True


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = _Server(("127.0.0.1", 0), _handler(rec))
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


# -- SMTP ----------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    port: int
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    sessions: int = 0


class _SmtpHandler:
    """Accepts mail; recipients starting with 'reject' get 550, 'defer' get 451."""

    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.box.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("reject"):
            return "550 5.1.1 no such user"
        if address.startswith("defer"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.box.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted"


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox(port=free_port())
    controller = Controller(_SmtpHandler(box), hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


# -- S3 ------------------------------------------------------------------------------------------


@dataclass
class S3Server:
    endpoint: str
    bucket: str

    def storage_options(self) -> dict[str, Any]:
        return {
            "key": "testing",
            "secret": "testing-secret",
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing-secret",
            region_name="us-east-1",
        )

    def object_keys(self) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket)
        return sorted(obj["Key"] for obj in listing.get("Contents", []))

    def read(self, key: str) -> bytes:
        body: bytes = self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = S3Server(f"http://127.0.0.1:{port}", "overture-test")
    s3.client().create_bucket(Bucket=s3.bucket)
    yield s3
    server.stop()


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def strict_egress(ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> EgressGuard:
    """Swap in a guard without the test allowlist: what a production server with no
    OVERTURE_EGRESS_ALLOW does."""
    guard = EgressGuard([])
    monkeypatch.setitem(ctx.services, "delivery.egress", guard)
    return guard


def dest_url(ws: WorkspaceFixture, suffix: str = "") -> str:
    return f"/api/v1/workspaces/{ws.id}/destinations{suffix}"


def create_destination(
    client: TestClient, ws: WorkspaceFixture, type_: str, config: dict[str, Any], name: str | None = None
) -> dict[str, Any]:
    import uuid

    r = client.post(
        dest_url(ws),
        headers=ws.headers,
        json={"name": name or f"{type_}-{uuid.uuid4().hex[:8]}", "type": type_, "config": config},
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body
