"""The public campaign API's contract: envelopes, scopes and every error code, the execution
states, zero metrics for a campaign that never ran, and a summary that leaks nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from overture.broadcasts.models import Execution
from overture.clock import FrozenClock
from tests.broadcasts.conftest import Api, Receiver, customers
from tests.conftest import create_workspace

CODES = {
    401: "JOURNEY_API.AUTH.UNAUTHENTICATED",
    403: "JOURNEY_API.AUTH.INSUFFICIENT_SCOPE",
    404: "JOURNEY_API.PUBLIC.CAMPAIGNS.NOT_FOUND",
    409: "JOURNEY_API.PUBLIC.CAMPAIGNS.TYPE_UNSUPPORTED",
    500: "JOURNEY_API.PUBLIC.CAMPAIGNS.STATUS_INCONSISTENT",
}


def _error(response: object, status: int) -> None:
    r = response
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["success"] is False and body["error"]["code"] == CODES[status]
    assert set(body["error"]) == {"code", "message"} and body["error"]["message"]


def _sent_broadcast(api: Api, receiver: Receiver, clock: FrozenClock) -> dict[str, object]:
    model = api.model(customers(api.ctx, 20))
    template = api.template("sms", body="Hi {{ first_name }}")
    b = api.broadcast(
        channel="sms",
        templateId=template,
        destinationId=api.destination("webhook", {"url": receiver.url + "/sms"}),
        audience={"included": [api.segment(model)]},
        addressField="email",
    )
    api.post(f"/broadcasts/{b['id']}/reach")
    api.post(f"/broadcasts/{b['id']}/send-now", expect=202)
    api.finish(clock)
    return b


def test_public_api__scopes_and_auth(api: Api) -> None:
    b = api.broadcast()
    for what in ("summary", "status", "metrics"):
        _error(api.client.get(f"/public/v1/campaigns/{b['id']}/{what}"), 401)
        _error(api.public(b["id"], what, key="sk_not_a_real_key"), 401)
    campaigns_only, analytics_only = api.key("campaigns:read"), api.key("analytics:read")
    assert api.public(b["id"], "summary", key=campaigns_only).status_code == 200
    assert api.public(b["id"], "status", key=campaigns_only).status_code == 200
    _error(api.public(b["id"], "metrics", key=campaigns_only), 403)
    assert api.public(b["id"], "metrics", key=analytics_only).status_code == 200
    _error(api.public(b["id"], "summary", key=analytics_only), 403)
    _error(api.public(b["id"], "status", key=analytics_only), 403)
    _error(api.public(b["id"], "status", key=api.ws.public_key), 403)


def test_public_api__not_found_and_other_workspace_and_other_type(api: Api) -> None:
    b = api.broadcast()
    other = create_workspace(api.ctx, "other")
    for what in ("summary", "status", "metrics"):
        _error(api.public("00000000-0000-0000-0000-000000000000", what), 404)
        _error(api.public(b["id"], what, key=other.api_key), 404)
    # A journey exists in the registry: 409, not 404
    model = api.model(customers(api.ctx, 3))
    journey = api.post(
        "/journeys",
        {
            "name": "j",
            "parent_model_id": model,
            "tiles": [{"id": "in", "type": "entry"}, {"id": "out", "type": "exit"}],
            "edges": [{"from": "in", "to": "out"}],
        },
        201,
    )
    for what in ("summary", "status", "metrics"):
        _error(api.public(journey["id"], what), 409)


def test_public_api__status_inconsistent__each_contradiction(
    api: Api, receiver: Receiver, frozen_clock: FrozenClock
) -> None:
    b = _sent_broadcast(api, receiver, frozen_clock)
    assert api.public(b["id"], "status").status_code == 200
    corruptions = [
        {"hydrated": 21},  # larger than scheduled
        {"composed": 25},
        {"injected": 30},
        {"sent": 20, "failed": 5},  # sent + failed > injected
        {"completed_at": None},  # completed without completedAt
        {"sent": -1},
    ]
    for values in corruptions:
        with api.ctx.transaction() as session:
            original = session.scalars(sa.select(Execution).where(Execution.broadcast_id == b["id"])).one()
            saved = {k: getattr(original, k) for k in values}
            session.execute(sa.update(Execution).where(Execution.id == original.id).values(**values))
        for what in ("summary", "status", "metrics"):
            _error(api.public(b["id"], what), 500)
        with api.ctx.transaction() as session:
            session.execute(sa.update(Execution).where(Execution.id == original.id).values(**saved))
        assert api.public(b["id"], "status").status_code == 200


def test_status__states_from_not_scheduled_to_completed(
    api: Api, receiver: Receiver, frozen_clock: FrozenClock
) -> None:
    frozen_clock.set(datetime(2026, 3, 1, tzinfo=UTC))
    model = api.model(customers(api.ctx, 10))
    b = api.broadcast(
        channel="sms",
        templateId=api.template("sms", body="Hi {{ first_name }}"),
        destinationId=api.destination("webhook", {"url": receiver.url + "/sms"}),
        audience={"included": [api.segment(model)]},
        addressField="email",
        schedule={"sendAt": "2026-03-02T09:00:00Z"},
    )
    status = api.public(b["id"], "status").json()["data"]
    assert "schedule" not in status and status["execution"]["state"] == "not_scheduled"
    assert status["execution"]["lastExecution"] is None
    metrics = api.public(b["id"], "metrics")
    assert metrics.json()["data"]["counts"] == dict.fromkeys(
        ("scheduled", "hydrated", "composed", "injected", "sent", "failed"), 0
    )
    assert "X-Overture-Execution-Id" not in metrics.headers
    # publish needs a passed preflight
    r = api.post(f"/broadcasts/{b['id']}/publish", expect=409)
    assert "never run" in r["detail"]
    failed = api.post(f"/broadcasts/{b['id']}/preflight")
    assert failed["preflight"]["status"] == "failed"  # reach never evaluated
    assert "has failed" in api.post(f"/broadcasts/{b['id']}/publish", expect=409)["detail"]
    api.post(f"/broadcasts/{b['id']}/reach")
    assert api.post(f"/broadcasts/{b['id']}/preflight")["preflight"]["status"] == "passed"
    api.post(f"/broadcasts/{b['id']}/publish")
    status = api.public(b["id"], "status").json()["data"]
    assert status["execution"]["state"] == "scheduled" and status["schedule"]["active"] is True
    assert status["schedule"]["sendAt"] == "2026-03-02T09:00:00.000Z"
    frozen_clock.set(datetime(2026, 3, 2, 9, 0, 1, tzinfo=UTC))
    assert api.public(b["id"], "status").json()["data"]["execution"]["state"] == "pending_or_overdue"
    assert api.tick() == 1
    api.drain()
    assert api.public(b["id"], "status").json()["data"]["execution"]["state"] == "running"
    api.finish(frozen_clock)
    done = api.public(b["id"], "status").json()["data"]["execution"]
    assert done["state"] == "completed" and done["lastExecution"]["counts"]["sent"] == 10
    summary = api.public(b["id"], "summary").json()["data"]
    assert (
        summary["latestExecution"]["status"] == "completed"
        and summary["latestExecution"]["counts"]["sent"] == 10
    )


def test_summary__redacted__tenant_headers_and_sample_data_never_come_back(
    api: Api, receiver: Receiver, frozen_clock: FrozenClock
) -> None:
    b = _sent_broadcast(api, receiver, frozen_clock)
    # A proof rendered with a sample customer's record, and a preflight that read sample profiles
    template_id = api.get(f"/broadcasts/{b['id']}")["templateId"]
    api.post(
        f"/templates/{template_id}/proofs",
        {"recipients": ["proof-reader@example.com"], "sampleCustomerId": "c000007"},
        201,
    )
    api.post(f"/broadcasts/{b['id']}/preflight")
    headers = {
        "X-Tenant-ID": "tenant-secret-42",
        "X-Workspace-ID": "ws-secret-43",
        "X-Account": "acct-secret-44",
    }
    r = api.public(b["id"], "summary", **headers)
    assert r.status_code == 200
    text = r.text
    for leaked in (
        "secret-4",
        "First7",
        "user7@example.com",
        "c000007",
        "proof-reader",
        receiver.url,
        "Lapsed",
    ):
        assert leaked not in text, leaked
    assert not any("secret" in v for v in r.headers.values())
    assert all(set(check) == {"id", "status"} for check in r.json()["data"]["preflight"]["checks"])
    assert r.json()["data"]["content"]["proofStatus"] == "sent"
