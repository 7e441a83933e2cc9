"""Webhook destinations end to end against a real local HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from fastapi.testclient import TestClient

from overture.clock import FrozenClock
from overture.db.context import AppContext
from overture.delivery import Destination, Message, send_batch
from overture.delivery.adapters.webhook import parse_retry_after
from overture.delivery.service import get_destination
from tests.conftest import WorkspaceFixture
from tests.delivery.conftest import Received, Receiver, create_destination, dest_url, free_port

SECRET = "whsec_0123456789abcdef"


def verify_signature(secret: str, header: str, body: bytes, now: int, tolerance: int = 300) -> bool:
    """The verification recipe from docs/destinations.md, verbatim."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(now - timestamp) <= tolerance


def _row(ctx: AppContext, did: str) -> Destination:
    with ctx.transaction(write=False) as session:
        return get_destination(session, did)


def _webhook(
    ctx: AppContext, client: TestClient, ws: WorkspaceFixture, url: str, **config: object
) -> Destination:
    d = create_destination(client, ws, "webhook", {"url": url, **config})
    return _row(ctx, d["id"])


def test_send__signed_payload__receiver_verifies_signature_and_idempotency_key(
    ctx: AppContext,
    client: TestClient,
    workspace: WorkspaceFixture,
    receiver: Receiver,
    frozen_clock: FrozenClock,
) -> None:
    dest = _webhook(
        ctx, client, workspace, receiver.url + "/hook", secret=SECRET, headers={"X-Team": "growth"}
    )
    payload = {"user_id": "u1", "event": "welcome", "n": 3, "nested": {"a": [1, 2]}}

    outcomes = send_batch(ctx, dest, [Message("run1:u1:step2", payload)])

    assert [o.status for o in outcomes] == ["sent"]
    (req,) = receiver.requests
    assert req.method == "POST" and req.path == "/hook"
    assert json.loads(req.body) == payload
    assert req.headers["content-type"] == "application/json"
    assert req.headers["idempotency-key"] == "run1:u1:step2"
    assert req.headers["x-team"] == "growth"
    assert "x-overture-possible-duplicate" not in req.headers
    now = int(frozen_clock.now().timestamp())
    assert req.headers["x-overture-signature"].startswith(f"t={now},v1=")
    assert verify_signature(SECRET, req.headers["x-overture-signature"], req.body, now)
    assert not verify_signature("wrong-secret", req.headers["x-overture-signature"], req.body, now)
    assert not verify_signature(SECRET, req.headers["x-overture-signature"], req.body + b" ", now)


def test_send__no_secret__no_signature_header(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    dest = _webhook(ctx, client, workspace, receiver.url)
    assert send_batch(ctx, dest, [Message("k", {})])[0].status == "sent"
    assert "x-overture-signature" not in receiver.requests[0].headers


def test_send__possible_duplicate__flag_header(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    dest = _webhook(ctx, client, workspace, receiver.url)
    send_batch(ctx, dest, [Message("k", {"a": 1}, possible_duplicate=True, attempt=3)])
    (req,) = receiver.requests
    assert req.headers["x-overture-possible-duplicate"] == "true"
    assert req.headers["x-overture-attempt"] == "3"
    assert req.headers["idempotency-key"] == "k"


@pytest.mark.parametrize(
    ("status", "headers", "expected", "retry_after"),
    [
        (200, {}, "sent", None),
        (202, {}, "sent", None),
        (204, {}, "sent", None),
        (429, {"Retry-After": "120"}, "retry", 120.0),
        (429, {}, "retry", None),
        (503, {"Retry-After": "7"}, "retry", 7.0),
        (500, {}, "retry", None),
        (502, {}, "retry", None),
        (408, {}, "retry", None),
        (400, {}, "failed", None),
        (401, {}, "failed", None),
        (404, {}, "failed", None),
        (410, {}, "failed", None),
        (422, {}, "failed", None),
        (302, {"Location": "/elsewhere"}, "failed", None),
    ],
)
def test_send__receiver_status__classified(
    ctx: AppContext,
    client: TestClient,
    workspace: WorkspaceFixture,
    receiver: Receiver,
    status: int,
    headers: dict[str, str],
    expected: str,
    retry_after: float | None,
) -> None:
    receiver.rule = lambda _req: (status, headers, b"reason from receiver")
    dest = _webhook(ctx, client, workspace, receiver.url + "/hook")
    (outcome,) = send_batch(ctx, dest, [Message("k1", {"x": 1})])
    assert outcome.idempotency_key == "k1"
    assert outcome.status == expected
    assert outcome.retry_after == retry_after
    if expected != "sent":
        assert outcome.error and str(status) in outcome.error
    assert len(receiver.requests) == 1  # a 302 on POST is not followed


def test_send__429_with_http_date_retry_after__seconds_from_clock(
    ctx: AppContext,
    client: TestClient,
    workspace: WorkspaceFixture,
    receiver: Receiver,
    frozen_clock: FrozenClock,
) -> None:
    when = frozen_clock.now() + timedelta(seconds=90)
    receiver.rule = lambda _req: (429, {"Retry-After": format_datetime(when, usegmt=True)}, b"")
    dest = _webhook(ctx, client, workspace, receiver.url)
    (outcome,) = send_batch(ctx, dest, [Message("k", {})])
    assert outcome.status == "retry" and outcome.retry_after == pytest.approx(90.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("30", 30.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("garbage", None),
        ("", None),
        ("999999999", 86400.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_parse_retry_after__forms(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, datetime(2026, 1, 1, tzinfo=UTC)) == expected


def test_send__connection_refused__retry(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    dest = _webhook(ctx, client, workspace, f"http://127.0.0.1:{free_port()}/hook")
    outcomes = send_batch(ctx, dest, [Message("a", {}), Message("b", {})])
    assert [(o.idempotency_key, o.status) for o in outcomes] == [("a", "retry"), ("b", "retry")]
    assert all("ConnectError" in (o.error or "") for o in outcomes)


def test_send__receiver_too_slow__retry_after_timeout(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    def slow(_req: Received) -> tuple[int, dict[str, str], bytes]:
        time.sleep(1.0)
        return 200, {}, b""

    receiver.rule = slow
    dest = _webhook(ctx, client, workspace, receiver.url, timeout_seconds=0.2)
    (outcome,) = send_batch(ctx, dest, [Message("k", {})])
    assert outcome.status == "retry" and "timeout" in (outcome.error or "").lower()


def test_send__mixed_batch__one_outcome_per_message_in_order(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    # Given a receiver that answers each message with the status its payload asks for
    receiver.rule = lambda req: (json.loads(req.body)["status"], {}, b"")
    statuses = [200, 500, 400, 429, 200] * 20
    messages = [Message(f"m{i}", {"status": s, "i": i}) for i, s in enumerate(statuses)]
    dest = _webhook(ctx, client, workspace, receiver.url)
    # When sent as one batch (concurrently)
    outcomes = send_batch(ctx, dest, messages)
    # Then each outcome belongs to its message, in order, and one bad message blocks none
    expected = {200: "sent", 500: "retry", 400: "failed", 429: "retry"}
    assert [o.idempotency_key for o in outcomes] == [m.idempotency_key for m in messages]
    assert [o.status for o in outcomes] == [expected[s] for s in statuses]
    assert sorted(r.headers["idempotency-key"] for r in receiver.requests) == sorted(
        m.idempotency_key for m in messages
    )


def test_send__batches__reuse_keep_alive_connections(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    dest = _webhook(ctx, client, workspace, receiver.url)
    for batch in range(5):
        outcomes = send_batch(ctx, dest, [Message(f"b{batch}-{i}", {}) for i in range(40)])
        assert {o.status for o in outcomes} == {"sent"}
    assert len(receiver.requests) == 200
    # 200 requests over at most one connection per concurrent sender, not one connection each
    assert len({r.peer_port for r in receiver.requests}) <= 16


def test_send__unserializable_payload__failed_alone(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    dest = _webhook(ctx, client, workspace, receiver.url)
    outcomes = send_batch(ctx, dest, [Message("ok", {"a": 1}), Message("bad", {"a": object()})])
    assert [o.status for o in outcomes] == ["sent", "failed"]


def test_send__disabled_destination__retry_later_nothing_sent(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    d = create_destination(client, workspace, "webhook", {"url": receiver.url})
    client.patch(dest_url(workspace, f"/{d['id']}"), headers=workspace.headers, json={"enabled": False})
    (outcome,) = send_batch(ctx, _row(ctx, d["id"]), [Message("k", {})])
    assert outcome.status == "retry" and outcome.retry_after == 60.0
    assert receiver.requests == []


def test_send__deleted_destination__failed(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    d = create_destination(client, workspace, "webhook", {"url": receiver.url})
    row = _row(ctx, d["id"])
    client.delete(dest_url(workspace, f"/{d['id']}"), headers=workspace.headers)
    with ctx.transaction(write=False) as session:
        row = session.get(Destination, d["id"])
        assert row is not None
    (outcome,) = send_batch(ctx, row, [Message("k", {})])
    assert outcome.status == "failed"
    assert receiver.requests == []


def test_test_endpoint__webhook__sends_and_reports(
    client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    d = create_destination(client, workspace, "webhook", {"url": receiver.url, "secret": SECRET})
    r = client.post(dest_url(workspace, f"/{d['id']}/test"), headers=workspace.headers)
    assert r.status_code == 200 and r.json()["status"] == "sent"
    body = json.loads(receiver.requests[0].body)
    assert body["type"] == "overture.test" and body["destination_id"] == d["id"]
    assert receiver.requests[0].headers["idempotency-key"] == r.json()["idempotency_key"]
    r = client.post(
        dest_url(workspace, f"/{d['id']}/test"), headers=workspace.headers, json={"payload": {"custom": True}}
    )
    assert json.loads(receiver.requests[1].body) == {"custom": True}


def test_test_endpoint__bad_target__outcome_not_500(
    client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    receiver.rule = lambda _req: (404, {}, b"no such hook")
    d = create_destination(client, workspace, "webhook", {"url": receiver.url})
    r = client.post(dest_url(workspace, f"/{d['id']}/test"), headers=workspace.headers)
    assert r.status_code == 200
    assert (
        r.json()["status"] == "failed" and "404" in r.json()["error"] and "no such hook" in r.json()["error"]
    )
    dead = create_destination(client, workspace, "webhook", {"url": f"http://127.0.0.1:{free_port()}/"})
    r = client.post(dest_url(workspace, f"/{dead['id']}/test"), headers=workspace.headers)
    assert r.status_code == 200 and r.json()["status"] == "retry"


def test_send__huge_error_body__bounded_read_and_short_error(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    receiver.rule = lambda _req: (400, {}, b"x" * 2_000_000)
    dest = _webhook(ctx, client, workspace, receiver.url)
    (outcome,) = send_batch(ctx, dest, [Message("k", {})])
    assert outcome.status == "failed" and len(outcome.error or "") < 300
