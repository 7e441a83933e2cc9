"""SMTP destinations against a real local SMTP server (aiosmtpd on loopback, random port)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from overture.delivery import Destination, Message, send_batch
from overture.delivery.egress import EgressGuard
from overture.delivery.service import get_destination
from tests.conftest import WorkspaceFixture
from tests.delivery.conftest import Mailbox, create_destination, dest_url, free_port


def _config(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "from": "Overture <news@example.com>",
        "subject": "Hi ${first_name}, your $plan plan",
        "body": "Hello $first_name,\nyou have ${stats.points} points. Price: $$5.\nMissing: [$nope]\n",
        **extra,
    }


def _smtp(ctx: AppContext, client: TestClient, ws: WorkspaceFixture, port: int, **extra: Any) -> Destination:
    d = create_destination(client, ws, "smtp", _config(port, **extra))
    with ctx.transaction(write=False) as session:
        return get_destination(session, d["id"])


def test_send__templated_email__received_with_headers(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, smtp_server: Mailbox
) -> None:
    dest = _smtp(ctx, client, workspace, smtp_server.port)
    payload = {"email": "ann@example.org", "first_name": "Ann", "plan": "pro", "stats": {"points": 42}}

    outcomes = send_batch(ctx, dest, [Message("run-1:ann:step-3", payload, possible_duplicate=True)])

    assert [o.status for o in outcomes] == ["sent"], outcomes
    ((mail_from, rcpts, email),) = smtp_server.messages
    assert mail_from == "news@example.com" and rcpts == ["ann@example.org"]
    assert email["Subject"] == "Hi Ann, your pro plan"
    assert email["To"] == "ann@example.org"
    assert (
        email.get_content().replace("\r\n", "\n")
        == "Hello Ann,\nyou have 42 points. Price: $5.\nMissing: []\n"
    )
    assert email["X-Overture-Idempotency-Key"] == "run-1:ann:step-3"
    assert email["X-Overture-Possible-Duplicate"] == "true"
    digest = hashlib.sha256(b"run-1:ann:step-3").hexdigest()[:32]
    assert email["Message-ID"] == f"<{digest}.overture@example.com>"


def test_send__template_cannot_execute_code(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, smtp_server: Mailbox
) -> None:
    dest = _smtp(
        ctx, client, workspace, smtp_server.port, subject="{{7*7}} {0.__class__} $first_name", body="${email}"
    )
    send_batch(ctx, dest, [Message("k", {"email": "a@example.org", "first_name": "{{ 7*7 }}"})])
    ((_, _, email),) = smtp_server.messages
    assert email["Subject"] == "{{7*7}} {0.__class__} {{ 7*7 }}"


def test_send__custom_to_field_and_header_injection_in_subject__single_line(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, smtp_server: Mailbox
) -> None:
    dest = _smtp(
        ctx, client, workspace, smtp_server.port, to_field="contact.address", subject="Hi $first_name"
    )
    payload = {"contact": {"address": "bob@example.org"}, "first_name": "Bob\r\nBcc: victim@example.org"}
    assert send_batch(ctx, dest, [Message("k", payload)])[0].status == "sent"
    ((_, rcpts, email),) = smtp_server.messages
    assert rcpts == ["bob@example.org"]
    assert email["Bcc"] is None
    assert email["Subject"] == "Hi Bob Bcc: victim@example.org"


def test_send__batch_with_bad_recipients__each_message_its_own_outcome(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, smtp_server: Mailbox
) -> None:
    dest = _smtp(ctx, client, workspace, smtp_server.port)
    messages = [
        Message("ok-1", {"email": "a@example.org", "first_name": "A"}),
        Message("no-email", {"first_name": "B"}),
        Message("rejected", {"email": "reject@example.org"}),
        Message("deferred", {"email": "defer@example.org"}),
        Message("two", {"email": "a@example.org, b@example.org"}),
        Message("ok-2", {"email": "c@example.org"}),
    ]
    outcomes = send_batch(ctx, dest, messages)
    assert [(o.idempotency_key, o.status) for o in outcomes] == [
        ("ok-1", "sent"),
        ("no-email", "failed"),
        ("rejected", "failed"),
        ("deferred", "retry"),
        ("two", "failed"),
        ("ok-2", "sent"),
    ]
    assert "550" in (outcomes[2].error or "") and "451" in (outcomes[3].error or "")
    assert [rcpts for _, rcpts, _ in smtp_server.messages] == [["a@example.org"], ["c@example.org"]]


def test_send__several_batches__reuse_one_session(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, smtp_server: Mailbox
) -> None:
    dest = _smtp(ctx, client, workspace, smtp_server.port)
    for b in range(3):
        outcomes = send_batch(
            ctx, dest, [Message(f"{b}-{i}", {"email": f"u{i}@example.org"}) for i in range(5)]
        )
        assert {o.status for o in outcomes} == {"sent"}
    assert len(smtp_server.messages) == 15
    assert smtp_server.sessions == 1


def test_send__server_down__retry_all(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    dest = _smtp(ctx, client, workspace, free_port())
    outcomes = send_batch(
        ctx, dest, [Message("a", {"email": "a@example.org"}), Message("b", {"email": "b@example.org"})]
    )
    assert [o.status for o in outcomes] == ["retry", "retry"]


def test_send__pooled_session_dropped_by_server__reconnects(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, smtp_server: Mailbox
) -> None:
    dest = _smtp(ctx, client, workspace, smtp_server.port)
    assert send_batch(ctx, dest, [Message("a", {"email": "a@example.org"})])[0].status == "sent"
    # Given the server dropped the idle pooled session
    from overture.delivery.adapters.smtp import pool_for

    pool = pool_for(ctx)
    for idle in pool._idle.values():
        for conn, _ in idle:
            assert conn.sock is not None
            conn.sock.close()
    # Then the next batch reconnects and delivers
    assert send_batch(ctx, dest, [Message("b", {"email": "b@example.org"})])[0].status == "sent"
    assert len(smtp_server.messages) == 2


def test_save__smtp_host_forbidden_without_allowlist__422(
    client: TestClient, workspace: WorkspaceFixture, strict_egress: EgressGuard
) -> None:
    for host in ("127.0.0.1", "localhost", "0x7f000001", "[::ffff:127.0.0.1]", "10.0.0.1"):
        r = client.post(
            dest_url(workspace),
            headers=workspace.headers,
            json={"name": "m", "type": "smtp", "config": _config(25, host=host)},
        )
        assert r.status_code == 422, (host, r.text)
        assert r.json()["field"] == "config.host"


def test_send_and_test__allowlist_removed__failed_nothing_delivered(
    ctx: AppContext,
    client: TestClient,
    workspace: WorkspaceFixture,
    smtp_server: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dest = _smtp(ctx, client, workspace, smtp_server.port)
    monkeypatch.setitem(ctx.services, "delivery.egress", EgressGuard([]))
    (outcome,) = send_batch(ctx, dest, [Message("k", {"email": "a@example.org"})])
    assert outcome.status == "failed" and "egress refused" in (outcome.error or "")
    r = client.post(
        dest_url(workspace, f"/{dest.id}/test"),
        headers=workspace.headers,
        json={"payload": {"email": "a@example.org"}},
    )
    assert r.status_code == 200 and r.json()["status"] == "failed"
    assert smtp_server.messages == []


def test_test_endpoint__smtp__delivers_to_payload_recipient(
    client: TestClient, workspace: WorkspaceFixture, smtp_server: Mailbox
) -> None:
    d = create_destination(client, workspace, "smtp", _config(smtp_server.port))
    r = client.post(
        dest_url(workspace, f"/{d['id']}/test"),
        headers=workspace.headers,
        json={"payload": {"email": "me@example.org", "first_name": "Me", "plan": "trial"}},
    )
    assert r.status_code == 200 and r.json()["status"] == "sent", r.json()
    ((_, rcpts, email),) = smtp_server.messages
    assert rcpts == ["me@example.org"] and email["Subject"] == "Hi Me, your trial plan"
    # Without a payload there is no recipient: a failed outcome that says why, not a 500
    r = client.post(dest_url(workspace, f"/{d['id']}/test"), headers=workspace.headers)
    assert r.status_code == 200 and r.json()["status"] == "failed" and "email" in r.json()["error"]


def test_send__login_over_plain_connection_refused_by_server__retry(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, smtp_server: Mailbox
) -> None:
    # aiosmtpd offers no AUTH without TLS: the session fails, and the messages wait for a fix
    dest = _smtp(ctx, client, workspace, smtp_server.port, username="u", password="p")
    (outcome,) = send_batch(ctx, dest, [Message("k", {"email": "a@example.org"})])
    assert outcome.status == "retry" and "SMTP" in (outcome.error or "")
    assert smtp_server.messages == []


def test_template__values_render_as_the_one_encoder_writes_them() -> None:
    from overture.core.encode import to_text
    from overture.delivery.templates import EmailTemplate

    payload = {"ok": True, "n": 1.5, "none": None, "tags": ["a", "é"], "user": {"plan": {"tier": 2}}}
    text = EmailTemplate("$ok|$n|$none|$tags|${user.plan}|${user.missing}").render(payload)
    assert text == "|".join([to_text(True), to_text(1.5), "", to_text(["a", "é"]), to_text({"tier": 2}), ""])
    assert text == 'true|1.5||["a","é"]|{"tier":2}|'
