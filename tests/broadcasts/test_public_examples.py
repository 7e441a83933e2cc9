"""The seed's three example responses, reproduced field for field by a campaign built through the
authoring API (ids are generated, so the test maps each generated id to the document's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from overture.broadcasts.models import Execution
from overture.clock import FrozenClock
from tests.broadcasts.conftest import Api, Receiver, customers, source_sql

SUMMARY = {
    "success": True,
    "data": {
        "campaignId": "4130bada-9264-465f-bc0c-a26bebcfcc81",
        "name": "Spring Re-engagement Direct Mail",
        "campaignType": "broadcast",
        "channel": "direct_mail",
        "authoringStatus": "draft",
        "createdAt": "2026-04-25T10:00:00.000Z",
        "updatedAt": "2026-04-25T10:30:00.000Z",
        "schedule": {
            "kind": "digital_send",
            "mode": "at",
            "sendAt": "2026-05-01T09:00:00.000Z",
            "timezone": "America/New_York",
            "scheduled": True,
        },
        "audience": {
            "included": [
                {
                    "id": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
                    "name": None,
                    "type": "segment",
                    "memberCount": None,
                }
            ],
            "excluded": [],
            "reach": {
                "status": "ok",
                "evaluatedCount": 18432,
                "evaluatedAt": "2026-04-25T10:20:00.000Z",
                "isStale": False,
            },
        },
        "content": {
            "template": {
                "id": "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb",
                "name": "Spring DM v3",
                "status": "published",
                "channel": "direct_mail",
            },
            "proofStatus": "unavailable",
        },
        "preflight": {"status": "not_evaluated", "checks": []},
        "latestExecution": {"status": "not_scheduled", "lastExecutionAt": None, "counts": None},
        "links": {"self": "/public/v1/campaigns/4130bada-9264-465f-bc0c-a26bebcfcc81/summary"},
    },
}
COUNTS = {
    "scheduled": 17491,
    "hydrated": 17491,
    "composed": 17485,
    "injected": 17485,
    "sent": 17480,
    "failed": 5,
}
STATUS = {
    "success": True,
    "data": {
        "campaignId": "4130bada-9264-465f-bc0c-a26bebcfcc81",
        "name": "Spring Re-engagement Direct Mail",
        "authoringStatus": "published",
        "schedule": {
            "scheduleId": "44444444-4444-4444-4444-444444444444",
            "sendAt": "2026-05-01T09:00:00.000Z",
            "timezone": "America/New_York",
            "active": True,
        },
        "execution": {
            "state": "completed",
            "touchpointId": 123,
            "manifestId": "33333333-3333-3333-3333-333333333333",
            "channel": "direct_mail",
            "lastExecution": {
                "executionId": "55555555-5555-5555-5555-555555555555",
                "startedAt": "2026-05-01T09:00:05.000Z",
                "completedAt": "2026-05-01T09:47:22.000Z",
                "status": "completed",
                "counts": COUNTS,
            },
        },
    },
}
METRICS = {"success": True, "data": {"campaignId": "4130bada-9264-465f-bc0c-a26bebcfcc81", "counts": COUNTS}}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def normalized(value: Any, ids: dict[Any, Any]) -> Any:
    """`value` with every generated id replaced by the document's."""
    if isinstance(value, dict):
        return {k: normalized(ids.get(v, v) if k == "touchpointId" else v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v, ids) for v in value]
    if isinstance(value, str):
        for generated, document in ids.items():
            if isinstance(generated, str):
                value = value.replace(generated, document)
    return value


def test_public_examples__built_through_the_authoring_api(
    api: Api, receiver: Receiver, frozen_clock: FrozenClock
) -> None:
    # Given 18,432 customers; 6 have no postal address; the print vendor refuses 5 addresses
    table = customers(api.ctx, 18432)
    source_sql(
        api.ctx,
        f"UPDATE {table} SET postal_address = NULL WHERE customer_id IN (SELECT customer_id "
        f"FROM {table} ORDER BY customer_id LIMIT 6)",
    )
    source_sql(
        api.ctx,
        f"UPDATE {table} SET postal_address = 'REJECT ' || postal_address WHERE customer_id IN "
        f"(SELECT customer_id FROM {table} ORDER BY customer_id DESC LIMIT 5)",
    )
    receiver.rule = lambda r: (422, {}, b"undeliverable") if b"REJECT" in r.body else (200, {}, b"ok")
    frozen_clock.set(at("2026-04-25T09:00:00Z"))
    model = api.model(table)
    segment = api.segment(model, name="Lapsed customers")
    template = api.template("direct_mail", name="Spring DM v3", body="Dear {{ first_name }}, spring is here.")
    vendor = api.destination("webhook", {"url": receiver.url + "/letters"})

    # When the campaign is drafted at 10:00, its reach counted at 10:20 and its schedule set at 10:30
    frozen_clock.set(at("2026-04-25T10:00:00Z"))
    b = api.broadcast(
        name="Spring Re-engagement Direct Mail",
        channel="direct_mail",
        templateId=template,
        destinationId=vendor,
        audience={"included": [segment], "excluded": []},
    )
    frozen_clock.set(at("2026-04-25T10:20:00Z"))
    api.post(f"/broadcasts/{b['id']}/reach")
    frozen_clock.set(at("2026-04-25T10:30:00Z"))
    api.patch(
        f"/broadcasts/{b['id']}",
        {"schedule": {"sendAt": "2026-05-01T09:00:00.000Z", "timezone": "America/New_York"}},
    )
    ids: dict[Any, Any] = {
        b["id"]: "4130bada-9264-465f-bc0c-a26bebcfcc81",
        segment: "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
        template: "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb",
    }
    # Then the summary is the document's first example
    summary = api.public(b["id"], "summary")
    assert summary.status_code == 200
    assert normalized(summary.json(), ids) == SUMMARY

    # When 941 customers leave before the send, it passes preflight, is published, and runs at 09:00:05
    source_sql(
        api.ctx,
        f"DELETE FROM {table} WHERE customer_id IN (SELECT customer_id FROM {table} "
        f"ORDER BY customer_id LIMIT 941 OFFSET 100)",
    )
    frozen_clock.set(at("2026-04-30T12:00:00Z"))
    checked = api.post(f"/broadcasts/{b['id']}/preflight")
    assert checked["preflight"]["status"] == "passed", checked["preflight"]
    api.post(f"/broadcasts/{b['id']}/publish")
    frozen_clock.set(at("2026-05-01T09:00:05Z"))
    assert api.tick() == 1
    api.drain()
    api.dispatch()
    frozen_clock.set(at("2026-05-01T09:47:22Z"))
    api.drain()
    with api.ctx.transaction() as session:
        execution = session.scalars(sa.select(Execution).where(Execution.broadcast_id == b["id"])).one()
        ids.update(
            {
                execution.id: "55555555-5555-5555-5555-555555555555",
                execution.manifest_id: "33333333-3333-3333-3333-333333333333",
                execution.touchpoint_id: 123,
            }
        )
    status = api.public(b["id"], "status").json()
    ids[status["data"]["schedule"]["scheduleId"]] = "44444444-4444-4444-4444-444444444444"
    # Then the status and the metrics are the document's second and third examples
    assert isinstance(status["data"]["execution"]["touchpointId"], int)
    assert normalized(status, ids) == STATUS
    metrics = api.public(b["id"], "metrics")
    assert normalized(metrics.json(), ids) == METRICS
    assert metrics.headers["X-Overture-Execution-Id"] == execution.id
    # and the vendor got each letter once, the 5 refused ones included
    assert len(receiver.requests) == 17485
    assert len({r.headers["idempotency-key"] for r in receiver.requests}) == 17485
