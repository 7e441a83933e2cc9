"""The authoring API: templates (Liquid, 422 naming the line), proofs through a real SMTP server,
schedules and their timezone source, cancel, retry-failed, direct mail to a CSV file, and the
status machines over every pair."""

from __future__ import annotations

import csv
import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from overture.broadcasts.states import (
    AUTHORING,
    EXECUTION,
    PROOF,
    REACH,
    TEMPLATE,
    AuthoringStatus,
    ExecutionStatus,
    ProofStatus,
    ReachStatus,
    TemplateStatus,
)
from overture.clock import FrozenClock
from overture.errors import Conflict
from tests.broadcasts.conftest import Api, Mailbox, Receiver, customers, source_sql


def test_template__liquid_that_does_not_parse__422_naming_the_line(api: Api) -> None:
    r = api.post("/templates", {"name": "t", "channel": "sms", "body": "Hi\nthere {{ name }\n"}, 422)
    assert r["field"] == "body" and "line 2" in r["detail"]
    r = api.post("/templates", {"name": "t", "channel": "sms", "body": "ok\n{{ x | nope }}"}, 422)
    assert "line 2" in r["detail"] and "nope" in r["detail"]
    r = api.post("/templates", {"name": "t", "channel": "email", "body": "<p>x</p>"}, 422)
    assert r["field"] == "subject"
    r = api.post("/templates", {"name": "t", "channel": "fax", "body": "x"}, 422)
    t = api.post("/templates", {"name": "t", "channel": "sms", "body": "Hi {{ first_name }}"}, 201)
    assert t["status"] == "draft" and t["proofStatus"] == "unavailable"
    assert api.patch(f"/templates/{t['id']}", {"status": "published"})["status"] == "published"
    r = api.patch(f"/templates/{t['id']}", {"body": "{% if %}"}, 422)
    assert api.get(f"/templates/{t['id']}")["body"] == "Hi {{ first_name }}"  # nothing changed


def test_proof__sent_through_smtp__then_approved(api: Api, smtp_server: Mailbox) -> None:
    model = api.model(customers(api.ctx, 5))
    template = api.template()
    smtp = api.smtp(smtp_server.port)
    api.broadcast(templateId=template, destinationId=smtp, audience={"included": [api.segment(model)]})
    proof = api.post(
        f"/templates/{template}/proofs",
        {"recipients": ["me@example.com"], "sampleCustomerId": "c000002"},
        201,
    )
    assert proof["status"] == "sent", proof
    (_, rcpts, message) = smtp_server.messages[-1]
    assert rcpts == ["me@example.com"] and message["Subject"] == "Hi First2"
    assert "Lyon" in message.get_body(("html",)).get_content()
    assert api.get(f"/templates/{template}")["proofStatus"] == "sent"
    approved = api.post(f"/templates/{template}/proofs/{proof['id']}/approve")
    assert approved["status"] == "approved" and approved["approvedAt"]
    api.post(f"/templates/{template}/proofs/{proof['id']}/approve", expect=409)
    failed = api.post(f"/templates/{template}/proofs", {"recipients": ["reject@example.com"]}, 201)
    assert failed["status"] == "failed" and "550" in failed["error"]
    api.post(
        f"/templates/{template}/proofs", {"recipients": ["x@example.com"], "sampleCustomerId": "nobody"}, 422
    )


def test_schedule__timezone_source__request_tenant_default_utc_fallback(api: Api) -> None:
    b = api.broadcast(
        channel="direct_mail", schedule={"batchDate": "2026-05-01", "timezone": "America/New_York"}
    )
    assert b["schedule"]["timezoneSource"] == "request"
    summary = api.public(b["id"], "summary").json()["data"]["schedule"]
    assert summary == {
        "kind": "direct_mail_batch",
        "mode": "batch_on_date",
        "batchDate": "2026-05-01",
        "timezone": "America/New_York",
        "timezoneSource": "request",
        "scheduled": True,
    }
    b = api.broadcast(channel="direct_mail", schedule={"batchDate": "2026-05-01"})
    assert (b["schedule"]["timezone"], b["schedule"]["timezoneSource"]) == ("UTC", "utc_fallback")
    ws = api.client.patch(
        f"/api/v1/workspaces/{api.ws.id}", headers=api.ws.headers, json={"timezone": "Europe/Paris"}
    )
    assert ws.status_code == 200 and ws.json()["timezone"] == "Europe/Paris"
    assert (
        api.client.get(f"/api/v1/workspaces/{api.ws.id}", headers=api.ws.headers).json()["timezone"]
        == "Europe/Paris"
    )
    b = api.broadcast(channel="direct_mail", schedule={"batchDate": "2026-05-01"})
    assert (b["schedule"]["timezone"], b["schedule"]["timezoneSource"]) == ("Europe/Paris", "tenant_default")
    assert b["schedule"]["fireAt"] == "2026-04-30T22:00:00Z"  # midnight in Paris
    r = api.client.patch(
        f"/api/v1/workspaces/{api.ws.id}", headers=api.ws.headers, json={"timezone": "Mars/Base"}
    )
    assert r.status_code == 422 and r.json()["field"] == "timezone"
    api.post("/broadcasts", {"name": "b", "channel": "email", "schedule": {"batchDate": "2026-05-01"}}, 422)
    api.post(
        "/broadcasts",
        {
            "name": "b",
            "channel": "email",
            "schedule": {"sendAt": "2026-05-01T09:00:00Z", "timezone": "Nowhere/Else"},
        },
        422,
    )
    api.post("/broadcasts", {"name": "b", "channel": "email", "schedule": {}}, 422)


def test_cancel__running_send_stops__unsent_cancelled_and_counted(
    api: Api, receiver: Receiver, frozen_clock: FrozenClock
) -> None:
    model = api.model(customers(api.ctx, 40))
    b = api.broadcast(
        channel="sms",
        templateId=api.template("sms"),
        destinationId=api.destination("webhook", {"url": receiver.url + "/sms"}),
        audience={"included": [api.segment(model)]},
        addressField="email",
    )
    api.post(f"/broadcasts/{b['id']}/reach")
    execution = api.post(f"/broadcasts/{b['id']}/send-now", expect=202)
    api.drain()  # all 40 owed, none sent yet
    api.post(f"/broadcasts/{b['id']}/cancel")
    api.finish(frozen_clock)
    done = api.get(f"/broadcasts/{b['id']}/executions/{execution['id']}")
    assert done["status"] == "cancelled" and done["completedAt"]
    assert done["counts"]["cancelled"] == 40 and done["counts"]["sent"] == 0 and not receiver.requests
    assert api.public(b["id"], "status").json()["data"]["execution"]["lastExecution"]["status"] == "cancelled"
    api.post(f"/broadcasts/{b['id']}/cancel", expect=409)  # nothing left to cancel


def test_retry_failed__only_failed_recipients__new_attempts_counted(
    api: Api, receiver: Receiver, frozen_clock: FrozenClock
) -> None:
    model = api.model(customers(api.ctx, 30))
    flaky = {"on": True}
    receiver.rule = lambda r: (400, {}, b"no") if flaky["on"] and b"user1" in r.body else (200, {}, b"ok")
    b = api.broadcast(
        channel="push",
        templateId=api.template("push"),
        destinationId=api.destination("webhook", {"url": receiver.url + "/push"}),
        audience={"included": [api.segment(model)]},
        addressField="email",
    )
    api.post(f"/broadcasts/{b['id']}/reach")
    execution = api.post(f"/broadcasts/{b['id']}/send-now", expect=202)
    api.finish(frozen_clock)
    first = api.get(f"/broadcasts/{b['id']}/executions/{execution['id']}")["counts"]
    assert first["failed"] == 11 and first["sent"] == 19  # user1, user10..user19
    flaky["on"] = False
    before = len(receiver.requests)
    retried = api.post(f"/broadcasts/{b['id']}/retry-failed", expect=202)
    assert retried["status"] == "running"
    api.finish(frozen_clock)
    done = api.get(f"/broadcasts/{b['id']}/executions/{execution['id']}")
    assert done["status"] == "completed"
    counts = done["counts"]
    assert (counts["sent"], counts["failed"], counts["retried"], counts["injected"]) == (30, 0, 11, 30)
    again = receiver.requests[before:]
    assert len(again) == 11 and all(b"user1" in r.body for r in again)
    assert all(r.headers["idempotency-key"].startswith(f"bc:{execution['id']}:2:") for r in again)
    api.post(f"/broadcasts/{b['id']}/retry-failed", expect=409)


def test_direct_mail__manifest_csv_through_a_file_destination(api: Api, frozen_clock: FrozenClock) -> None:
    table = customers(api.ctx, 12)
    source_sql(api.ctx, f"UPDATE {table} SET postal_address = '' WHERE customer_id = 'c000004'")
    model = api.model(table)
    folder = f"dm-{api.ws.id[:8]}"
    b = api.broadcast(
        channel="direct_mail",
        templateId=api.template("direct_mail", body="Dear {{ first_name }}"),
        destinationId=api.destination("file", {"url": folder}),
        audience={"included": [api.segment(model)]},
    )
    api.post(f"/broadcasts/{b['id']}/reach")
    execution = api.post(f"/broadcasts/{b['id']}/send-now", expect=202)
    api.finish(frozen_clock)
    done = api.get(f"/broadcasts/{b['id']}/executions/{execution['id']}")
    assert done["status"] == "completed"
    assert done["counts"]["composed"] == done["counts"]["sent"] == done["counts"]["injected"] == 11
    path = (
        Path(api.ctx.settings.home) / "files" / folder / f"broadcast-{b['id']}-{execution['manifestId']}.csv"
    )
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 11 and rows[0]["text"].startswith("Dear First")
    assert "c000004" not in {r["entity_id"] for r in rows}


def test_local_time_send__released_per_recipient_zone(
    api: Api, receiver: Receiver, frozen_clock: FrozenClock
) -> None:
    frozen_clock.set(datetime(2026, 6, 1, tzinfo=UTC))
    table = customers(api.ctx, 9)
    source_sql(api.ctx, f"UPDATE {table} SET timezone = 'Not/AZone' WHERE customer_id = 'c000000'")
    model = api.model(table)
    b = api.broadcast(
        channel="sms",
        templateId=api.template("sms"),
        destinationId=api.destination("webhook", {"url": receiver.url + "/sms"}),
        audience={"included": [api.segment(model)]},
        addressField="email",
        schedule={"localTime": "09:00", "date": "2026-06-02", "timezone": "UTC"},
    )
    api.post(f"/broadcasts/{b['id']}/reach")
    assert api.post(f"/broadcasts/{b['id']}/preflight")["preflight"]["status"] == "passed"
    api.post(f"/broadcasts/{b['id']}/publish")
    frozen_clock.set(datetime(2026, 6, 1, 19, 0, tzinfo=UTC))  # 09:00 at UTC+14
    api.tick()
    api.drain()
    frozen_clock.set(datetime(2026, 6, 2, 0, 30, tzinfo=UTC))  # 09:30 in Tokyo only
    api.dispatch()
    assert len(receiver.requests) == 3  # c000002, c000005, c000008
    frozen_clock.set(datetime(2026, 6, 2, 9, 30, tzinfo=UTC))  # + UTC fallback and Berlin (7:00Z)
    api.dispatch()
    assert len(receiver.requests) == 6
    frozen_clock.set(datetime(2026, 6, 2, 13, 30, tzinfo=UTC))  # + New York
    api.finish(frozen_clock)
    execution = api.get(f"/broadcasts/{b['id']}")["latestExecution"]
    assert execution["counts"]["sent"] == 9 and execution["counts"]["zoneFallbacks"] == 1


STATE_TABLES = [
    (
        TEMPLATE,
        TemplateStatus,
        {("draft", "published"), ("published", "draft")},
    ),
    (
        AUTHORING,
        AuthoringStatus,
        {("draft", "published"), ("published", "draft"), ("draft", "archived"), ("published", "archived")},
    ),
    (
        PROOF,
        ProofStatus,
        {("unavailable", "sent"), ("unavailable", "failed"), ("sent", "approved")},
    ),
    (
        REACH,
        ReachStatus,
        {
            ("idle", "pending"),
            ("ok", "pending"),
            ("failed", "pending"),
            ("pending", "ok"),
            ("pending", "failed"),
            ("ok", "idle"),
            ("failed", "idle"),
            ("pending", "idle"),
        },
    ),
    (
        EXECUTION,
        ExecutionStatus,
        {
            ("running", "completed"),
            ("running", "failed"),
            ("running", "cancelled"),
            ("completed", "running"),
            ("failed", "running"),
        },
    ),
]


@pytest.mark.parametrize(("machine", "states", "allowed"), STATE_TABLES, ids=lambda v: getattr(v, "name", ""))
def test_state_machines__every_pair(machine: object, states: type, allowed: set[tuple[str, str]]) -> None:
    for a, b in itertools.product([s.value for s in states], repeat=2):
        if (a, b) in allowed:
            assert machine.transition(a, b) == b  # type: ignore[attr-defined]
        else:
            with pytest.raises(Conflict) as exc:
                machine.transition(a, b)  # type: ignore[attr-defined]
            assert a in exc.value.message and b in exc.value.message


def test_throttle__max_per_minute__release_times_in_the_ledger(
    api: Api, receiver: Receiver, frozen_clock: FrozenClock
) -> None:
    frozen_clock.set(datetime(2026, 7, 1, 8, 0, tzinfo=UTC))
    model = api.model(customers(api.ctx, 6))
    b = api.broadcast(
        channel="sms",
        templateId=api.template("sms"),
        destinationId=api.destination("webhook", {"url": receiver.url + "/sms"}),
        audience={"included": [api.segment(model)]},
        addressField="email",
        schedule={"sendAt": "2026-07-01T09:00:00Z", "maxPerMinute": 2},
    )
    api.post(f"/broadcasts/{b['id']}/reach")
    api.post(f"/broadcasts/{b['id']}/preflight")
    api.post(f"/broadcasts/{b['id']}/publish")
    frozen_clock.set(datetime(2026, 7, 1, 9, 0, tzinfo=UTC))
    api.tick()
    api.drain()
    api.dispatch()
    assert len(receiver.requests) == 1  # the first leaves at once, then one every 30 s
    frozen_clock.set(datetime(2026, 7, 1, 9, 1, tzinfo=UTC))
    api.dispatch()
    assert len(receiver.requests) == 3
    frozen_clock.set(datetime(2026, 7, 1, 9, 2, 30, tzinfo=UTC))
    api.finish(frozen_clock)
    assert len(receiver.requests) == 6
    assert api.get(f"/broadcasts/{b['id']}")["latestExecution"]["counts"]["sent"] == 6
