"""Offers, batch channels, decision flows and campaigns over HTTP: CRUD, camelCase and snake_case,
and every rule that makes a request a 4xx naming its field (and changing nothing)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from tests.batch.conftest import Api, World
from tests.conftest import WorkspaceFixture, create_key


def test_offers__crud_camel_and_snake_case(api: Api, world: World) -> None:
    created = api.post(
        "/offers",
        {
            "name": "Gold",
            "category": "cards",
            "priority": 5,
            "channels": [world.channel_id],
            "creatives": [{"name": "email-a", "channelId": world.channel_id, "content": {"subject": "Hi"}}],
            "eligibility": {"field": "plan", "operator": "is", "value": "pro"},
            "propensity": {"type": "logistic", "intercept": -2, "weights": {"ltv": 0.01}},
            "start_date": "2026-01-01T00:00:00Z",
            "endDate": "2026-12-31",
        },
    )
    assert created["startDate"] == "2026-01-01T00:00:00Z" and created["endDate"].startswith("2026-12-31")
    assert created["status"] == "active" and created["priority"] == 5
    assert created["creatives"][0]["channelId"] == world.channel_id
    oid = created["id"]
    assert api.get(f"/offers/{oid}")["name"] == "Gold"
    assert [o["id"] for o in api.get("/offers")] == [oid]
    updated = api.patch(
        f"/offers/{oid}", {"status": "inactive", "propensity": {"type": "constant", "value": 0.3}}
    )
    assert updated["status"] == "inactive" and updated["propensity"] == {"type": "constant", "value": 0.3}
    api.delete(f"/offers/{oid}")
    api.get(f"/offers/{oid}", expect=404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"priority": "high"}, "priority"),
        ({"status": "on"}, "status"),
        ({"propensity": {"type": "neural"}}, "propensity"),
        ({"propensity": {"type": "constant", "value": 2}}, "propensity.constant.value"),
        ({"channels": ["nope"]}, "channels[0]"),
        ({"eligibility": {"field": "plan", "operator": "resembles", "value": 1}}, "eligibility.operator"),
        ({"startDate": "2026-02-01", "endDate": "2026-01-01"}, "endDate"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_offers__bad_input_is_422_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    r = api.post("/offers", {"name": "x", **body}, expect=None)
    assert r.status_code == 422, r.text
    assert field in r.text
    assert api.get("/offers") == []


def test_channels__modes_and_destination(api: Api, world: World) -> None:
    ch = api.get(f"/batch-channels/{world.channel_id}")
    assert ch["deliveryMode"] == "file" and ch["batchCompatible"] is True
    api_ch = api.post("/batch-channels", {"name": "rt", "delivery_mode": "api"})
    assert api_ch["batchCompatible"] is False
    r = api.post("/batch-channels", {"name": "x", "deliveryMode": "sms"}, expect=None)
    assert r.status_code == 422 and "deliveryMode" in r.text
    r = api.post(
        "/batch-channels", {"name": "x", "deliveryMode": "file", "destinationId": "missing"}, expect=None
    )
    assert r.status_code == 422 and r.json()["field"] == "destinationId"
    hook = api.post(
        "/destinations", {"name": "hook", "type": "webhook", "config": {"url": "http://127.0.0.1:9/x"}}
    )
    r = api.post(
        "/batch-channels", {"name": "x", "deliveryMode": "file", "destinationId": hook["id"]}, expect=None
    )
    assert r.status_code == 422 and "file destination" in r.json()["detail"]
    renamed = api.patch(f"/batch-channels/{api_ch['id']}", {"name": "realtime"})
    assert renamed["name"] == "realtime"


def test_flows__checked_against_the_model(api: Api, world: World) -> None:
    good = api.offer("ok", propensity={"type": "column", "column": "churn_score"})
    flow = api.post(
        "/decision-flows",
        {"name": "f", "model_id": world.model_id, "offer_ids": [good], "ranking": "priority_weighted_score"},
    )
    assert flow["maxOffersPerCustomer"] == 1 and flow["oneOfferPerCategory"] is False
    assert flow["offerIds"] == [good] and flow["ranking"] == "priority_weighted_score"
    bad_column = api.offer("bad", propensity={"type": "logistic", "weights": {"shoe_size": 1}})
    text_column = api.offer("text", propensity={"type": "column", "column": "plan"})
    bad_filter = api.offer("f", eligibility={"field": "shoe_size", "operator": "gt", "value": 1})
    for offer_id, words in (
        (bad_column, "shoe_size"),
        (text_column, "not a number"),
        (bad_filter, "shoe_size"),
    ):
        r = api.post(
            "/decision-flows", {"name": "f", "modelId": world.model_id, "offerIds": [offer_id]}, expect=None
        )
        assert r.status_code == 422 and words in r.json()["detail"], r.text
    for body, field in (
        ({"modelId": "nope"}, "modelId"),
        ({"offerIds": ["nope"]}, "offerIds[0]"),
        ({"ranking": "random"}, "ranking"),
        ({"maxOffersPerCustomer": 0}, "maxOffersPerCustomer"),
        ({"eligibility": {"field": "nope", "operator": "is", "value": 1}}, "eligibility"),
    ):
        r = api.post("/decision-flows", {"name": "f", "modelId": world.model_id, **body}, expect=None)
        assert r.status_code == 422 and field in r.text, r.text
    # An offer used by a flow cannot be deleted, nor changed so that it no longer fits the model.
    api.delete(f"/offers/{good}", expect=409)
    r = api.patch(f"/offers/{good}", {"propensity": {"type": "column", "column": "nope"}}, expect=None)
    assert r.status_code == 422
    api.patch(f"/decision-flows/{flow['id']}", {"maxOffersPerCustomer": 3, "oneOfferPerCategory": True})
    assert api.get(f"/decision-flows/{flow['id']}")["maxOffersPerCustomer"] == 3


def test_campaigns__defaults_and_detail(api: Api, world: World) -> None:
    flow = api.flow(world.model_id)
    c = api.campaign(flow, world.segment_id)
    assert c["status"] == "draft" and c["nextRunAt"] is None
    assert c["schedule"]["type"] == "manual"
    assert c["fileOutput"] == {
        "format": "csv",
        "columns": ["customer_id", "offer_name", "channel", "score", "creative"],
        "includePersonalization": False,
        "destination": "download",
        "s3Path": None,
    }
    assert c["volumeConstraints"]["maxTotalPerRun"] is None and c["channelIds"] == []
    assert api.get(f"/batch-campaigns/{c['id']}")["id"] == c["id"]
    assert [x["id"] for x in api.get("/batch-campaigns")] == [c["id"]]
    snake = api.post(
        "/batch-campaigns",
        {
            "name": "s",
            "decision_flow_id": flow,
            "segment_id": world.segment_id,
            "volume_constraints": {"max_per_offer": 5},
            "file_output": {"include_personalization": True, "format": "json"},
        },
    )
    assert snake["volumeConstraints"]["maxPerOffer"] == 5
    assert snake["fileOutput"]["columns"][-1] == "personalization"
    updated = api.patch(f"/batch-campaigns/{c['id']}", {"name": "renamed", "channelIds": [world.channel_id]})
    assert updated["name"] == "renamed" and updated["channelIds"] == [world.channel_id]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"fileOutput": {"columns": ["customer_id", "personalization"]}}, "fileOutput.columns"),
        ({"fileOutput": {"columns": ["customer_id", "shoe"]}}, "fileOutput.columns[1]"),
        ({"fileOutput": {"format": "xml"}}, "fileOutput.format"),
        ({"fileOutput": {"destination": "s3"}}, "fileOutput.s3Path"),
        ({"fileOutput": {"destination": "s3", "s3Path": "s3://b/{campaign}/"}}, "fileOutput.s3Path"),
        ({"fileOutput": {"destination": "s3", "s3Path": "s3://Bad_Bucket/x/"}}, "fileOutput.s3Path"),
        ({"fileOutput": {"destination": "ftp"}}, "fileOutput.destination"),
        ({"volumeConstraints": {"maxPerOffer": 0}}, "volumeConstraints.maxPerOffer"),
        ({"volumeConstraints": {"maxTotalPerRun": -3}}, "volumeConstraints.maxTotalPerRun"),
        ({"volumeConstraints": {"maxPerChannel": "many"}}, "volumeConstraints.maxPerChannel"),
        ({"schedule": {"type": "hourly"}}, "schedule.type"),
        ({"schedule": {"type": "daily", "scheduleTimezone": "UTC"}}, "schedule.scheduleTime"),
        (
            {"schedule": {"type": "daily", "scheduleTime": "9am", "scheduleTimezone": "UTC"}},
            "schedule.scheduleTime",
        ),
        ({"schedule": {"type": "daily", "scheduleTime": "09:00"}}, "schedule.scheduleTimezone"),
        (
            {"schedule": {"type": "daily", "scheduleTime": "09:00", "scheduleTimezone": "Mars/Base"}},
            "schedule.scheduleTimezone",
        ),
        (
            {
                "schedule": {
                    "type": "daily",
                    "scheduleTime": "09:00",
                    "scheduleTimezone": "UTC",
                    "scheduleDayOfWeek": 1,
                }
            },
            "schedule.scheduleDayOfWeek",
        ),
        (
            {"schedule": {"type": "weekly", "scheduleTime": "09:00", "scheduleTimezone": "UTC"}},
            "schedule.scheduleDayOfWeek",
        ),
        (
            {
                "schedule": {
                    "type": "weekly",
                    "scheduleDayOfWeek": 7,
                    "scheduleTime": "09:00",
                    "scheduleTimezone": "UTC",
                }
            },
            "schedule.scheduleDayOfWeek",
        ),
        (
            {
                "schedule": {
                    "type": "monthly",
                    "scheduleDayOfMonth": 29,
                    "scheduleTime": "09:00",
                    "scheduleTimezone": "UTC",
                }
            },
            "schedule.scheduleDayOfMonth",
        ),
        (
            {
                "schedule": {
                    "type": "monthly",
                    "scheduleDayOfMonth": "first_monday",
                    "scheduleTime": "09:00",
                    "scheduleTimezone": "UTC",
                }
            },
            "schedule.scheduleDayOfMonth",
        ),
        ({"schedule": {"type": "manual", "scheduleTime": "09:00"}}, "schedule.scheduleTime"),
        ({"channelIds": ["nope"]}, "channelIds[0]"),
        ({"decisionFlowId": "nope"}, "decisionFlowId"),
        ({"segmentId": "nope"}, "segmentId"),
        ({"status": "paused"}, "status"),
    ],
)
def test_campaigns__bad_input_is_422_naming_the_field(
    api: Api, world: World, fields: dict[str, Any], field: str
) -> None:
    flow = api.flow(world.model_id)
    body = {"name": "c", "decisionFlowId": flow, "segmentId": world.segment_id, **fields}
    r = api.post("/batch-campaigns", body, expect=None)
    assert r.status_code == 422, r.text
    assert field in r.text, r.text
    assert api.get("/batch-campaigns") == []


def test_campaigns__api_channels_never_take_part(api: Api, world: World) -> None:
    realtime = api.channel("realtime", mode="api")
    manual = api.channel("ops", mode="manual")
    flow = api.flow(world.model_id)
    r = api.post(
        "/batch-campaigns",
        {
            "name": "c",
            "decisionFlowId": flow,
            "segmentId": world.segment_id,
            "channelIds": [manual, realtime],
        },
        expect=None,
    )
    assert r.status_code == 422 and r.json()["field"] == "channelIds[1]" and "api" in r.json()["detail"]
    c = api.campaign(flow, world.segment_id, channelIds=[manual])
    r = api.patch(f"/batch-campaigns/{c['id']}", {"channelIds": [realtime]}, expect=None)
    assert r.status_code == 422
    # A channel a campaign delivers on cannot become an api channel.
    r = api.patch(f"/batch-channels/{manual}", {"deliveryMode": "api"}, expect=None)
    assert r.status_code == 409


def test_campaigns__segment_must_be_over_the_flow_model(api: Api, world: World) -> None:
    from tests.batch.conftest import create_customers

    other_model = api.model(create_customers(api.ctx, 3))
    other_segment = api.segment(other_model)
    flow = api.flow(world.model_id)
    r = api.post(
        "/batch-campaigns", {"name": "c", "decisionFlowId": flow, "segmentId": other_segment}, expect=None
    )
    assert r.status_code == 422 and r.json()["field"] == "segmentId"


def test_scopes_and_isolation(
    client: TestClient, ctx: AppContext, api: Api, world: World, other_workspace: WorkspaceFixture
) -> None:
    flow = api.flow(world.model_id)
    campaign = api.campaign(flow, world.segment_id)
    reader = {"Authorization": f"Bearer {create_key(ctx, api.ws.id, ['campaigns:read'])}"}
    base = f"/api/v1/workspaces/{api.ws.id}"
    assert client.get(f"{base}/batch-campaigns", headers=reader).status_code == 200
    assert client.post(f"{base}/batch-campaigns/{campaign['id']}/runs", headers=reader).status_code == 403
    assert client.post(f"{base}/offers", headers=reader, json={"name": "x"}).status_code == 403
    nobody = {"Authorization": f"Bearer {create_key(ctx, api.ws.id, ['segments:read'])}"}
    assert client.get(f"{base}/offers", headers=nobody).status_code == 403
    other = other_workspace.headers
    other_base = f"/api/v1/workspaces/{other_workspace.id}"
    assert client.get(f"{other_base}/batch-campaigns/{campaign['id']}", headers=other).status_code == 404
    assert client.get(f"{other_base}/decision-flows/{flow}", headers=other).status_code == 404
    assert client.get(f"{base}/batch-campaigns", headers=other).status_code == 404
    r = client.post(
        f"{other_base}/batch-campaigns",
        headers=other,
        json={"name": "steal", "decisionFlowId": flow, "segmentId": world.segment_id},
    )
    assert r.status_code == 422
