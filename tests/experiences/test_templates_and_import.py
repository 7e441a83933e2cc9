"""Templates (CRUD, `templateId` prefill) and providers: credentials, import from a local HTTP feed
(include_existing, include_ended, idempotent), export of a published external experience through the
runtime and the outbox to the provider."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from overture.runtime.jobs import drain
from overture.runtime.outbox import dispatch_once
from tests.conftest import WorkspaceFixture
from tests.delivery.conftest import Received, Receiver, receiver  # noqa: F401  (a fixture)
from tests.experiences.helpers import API, audience, create_campaign

FEED = {
    "campaigns": [
        {
            "id": "fb-1",
            "name": "Spring sale",
            "channel": "feed",
            "startDate": "2026-01-01T00:00:00Z",
            "detail": {"budget": 10},
        },
        {"id": "fb-2", "name": "Old promo", "channel": "story", "ended": True},
        {"id": "fb-3", "name": "Retargeting", "channel": "feed", "tactic": "target_url"},
    ]
}
TOKEN = "s3cret-token"


def _feed_rule(req: Received) -> tuple[int, dict[str, str], bytes]:
    if req.headers.get("authorization") != f"Bearer {TOKEN}":
        return 401, {}, b"{}"
    if req.method == "POST":
        return 200, {}, b"ok"
    path = req.path.rstrip("/")
    if path == "/feed":
        return 200, {"Content-Type": "application/json"}, json.dumps(FEED).encode()
    for c in FEED["campaigns"]:
        if path == f"/feed/{c['id']}":
            return 200, {"Content-Type": "application/json"}, json.dumps(c).encode()
    return 404, {}, b"{}"


@pytest.fixture
def feed(receiver: Receiver) -> Iterator[Receiver]:  # noqa: F811
    receiver.rule = _feed_rule
    yield receiver


def _auth(client: TestClient, ws: WorkspaceFixture, feed: Receiver) -> dict[str, Any]:
    body = {"auth": {"providerSlug": "http", "name": "ads", "url": f"{feed.url}/feed", "token": TOKEN}}
    r = client.post(f"{API}/auth", headers=ws.headers, json=body)
    assert r.status_code == 201, r.text
    assert TOKEN not in r.text
    return dict(r.json())


def test_templates__crud_and_prefill(client: TestClient, workspace: WorkspaceFixture) -> None:
    body = {
        "template": {
            "name": "banner",
            "vehicle": {
                "providerSlug": "web",
                "providerChannel": "banner",
                "tactic": "present_message",
                "detail": {"color": "red"},
            },
        }
    }
    r = client.post(f"{API}/template", headers=workspace.headers, json=body)
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["vehicle"]["providerChannel"] == "banner" and t["vehicle"]["providerId"] is None
    assert client.get(f"{API}/template/{t['id']}", headers=workspace.headers).json() == t
    assert [x["id"] for x in client.get(f"{API}/template", headers=workspace.headers).json()] == [t["id"]]
    r = client.patch(
        f"{API}/template/{t['id']}",
        headers=workspace.headers,
        json={"template": {"vehicle": {"aggression": 0.5}}},
    )
    assert r.json()["vehicle"]["aggression"] == 0.5 and r.json()["vehicle"]["tactic"] == "present_message"
    # the experience's own fields win over the template's
    body = {"experience": {"name": "e", "templateId": t["id"], "vehicle": {"providerChannel": "popup"}}}
    e = client.post(f"{API}", headers=workspace.headers, json=body).json()
    assert e["templateId"] == t["id"]
    assert e["vehicle"]["providerSlug"] == "web" and e["vehicle"]["providerChannel"] == "popup"
    assert e["vehicle"]["detail"] == {"color": "red"} and e["vehicle"]["aggression"] == 0.5
    assert client.delete(f"{API}/template/{t['id']}", headers=workspace.headers).status_code == 204
    assert client.get(f"{API}/template/{t['id']}", headers=workspace.headers).status_code == 404
    assert client.get(f"{API}/{e['id']}", headers=workspace.headers).json()["templateId"] is None


def test_import__lists_and_imports_idempotently(
    client: TestClient, workspace: WorkspaceFixture, feed: Receiver
) -> None:
    auth = _auth(client, workspace, feed)
    r = client.get(f"{API}/import?auth_id={auth['id']}", headers=workspace.headers)
    assert r.status_code == 422 and r.json()["field"] == "provider_slug"
    r = client.get(f"{API}/import?provider_slug=http", headers=workspace.headers)
    assert r.status_code == 422 and r.json()["field"] == "auth_id"
    q = f"{API}/import?provider_slug=http&auth_id={auth['id']}"
    listed = client.get(q, headers=workspace.headers).json()
    assert [c["externalId"] for c in listed] == ["fb-1", "fb-2", "fb-3"]
    assert [
        c["externalId"] for c in client.get(f"{q}&include_ended=false", headers=workspace.headers).json()
    ] == ["fb-1", "fb-3"]
    r = client.post(
        f"{API}/import",
        headers=workspace.headers,
        json={"providerSlug": "http", "authId": auth["id"], "externalIds": ["fb-1", "fb-3"]},
    )
    assert r.status_code == 200, r.text
    imported = r.json()
    assert [(e["vehicle"]["externalId"], e["state"]["status"], e["parentId"]) for e in imported] == [
        ("fb-1", "draft", None),
        ("fb-3", "draft", None),
    ]
    assert (
        imported[0]["vehicle"]["detail"] == {"budget": 10}
        and imported[1]["vehicle"]["tactic"] == "target_url"
    )
    assert [c["externalId"] for c in client.get(q, headers=workspace.headers).json()] == ["fb-2"]
    again = client.get(f"{q}&include_existing=true", headers=workspace.headers).json()
    assert [(c["externalId"], c["imported"]) for c in again] == [
        ("fb-1", True),
        ("fb-2", False),
        ("fb-3", True),
    ]
    r = client.post(
        f"{API}/import",
        headers=workspace.headers,
        json={"providerSlug": "http", "authId": auth["id"], "externalIds": ["fb-1"]},
    )
    assert [e["id"] for e in r.json()] == [imported[0]["id"]]
    assert len(client.get(f"{API}/orphan", headers=workspace.headers).json()) == 2
    r = client.post(
        f"{API}/import",
        headers=workspace.headers,
        json={"providerSlug": "http", "authId": auth["id"], "externalIds": ["nope"]},
    )
    assert r.status_code == 422 and r.json()["field"] == "externalIds[0]"


def test_auth__loopback_refused_without_allowlist(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    body = {"auth": {"providerSlug": "http", "name": "x", "url": "http://169.254.169.254/feed", "token": "t"}}
    r = client.post(f"{API}/auth", headers=workspace.headers, json=body)
    assert r.status_code == 422 and r.json()["field"] == "auth.url"
    body["auth"]["providerSlug"] = "nope"
    assert client.post(f"{API}/auth", headers=workspace.headers, json=body).status_code == 422


def test_publish_external__export_job__outbox_delivers_to_provider(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, feed: Receiver
) -> None:
    auth = _auth(client, workspace, feed)
    seg = audience(client, workspace, 2)
    campaign = create_campaign(client, workspace, seg["id"], [[]])
    r = client.post(
        f"{API}/import",
        headers=workspace.headers,
        json={"providerSlug": "http", "authId": auth["id"], "externalIds": ["fb-3"]},
    )
    (e,) = r.json()
    stage = campaign["stages"][0]["id"]
    client.patch(
        f"{API}/group/{stage}", headers=workspace.headers, json={"group": {"experiences": [e["id"]]}}
    )
    r = client.patch(
        f"{API}/{e['id']}?update_state=true",
        headers=workspace.headers,
        json={"experience": {"state": {"status": "published"}}},
    )
    assert r.status_code == 200, r.text
    drain(ctx, raise_errors=True)
    drain(ctx, raise_errors=True)  # a second drain owes nothing twice
    dispatch_once(ctx)
    posts = [req for req in feed.requests if req.method == "POST"]
    assert len(posts) == 1
    assert posts[0].path == "/feed/export" and posts[0].headers["authorization"] == f"Bearer {TOKEN}"
    sent = json.loads(posts[0].body)
    assert sent["type"] == "experience.published" and sent["experience"]["externalId"] == "fb-3"
    assert posts[0].headers["idempotency-key"].startswith("experience-export:")
    # an external experience without its credential cannot be published
    other = client.post(
        f"{API}",
        headers=workspace.headers,
        json={"experience": {"name": "x", "parentId": stage, "vehicle": {"providerSlug": "http"}}},
    ).json()
    r = client.patch(
        f"{API}/{other['id']}?update_state=true",
        headers=workspace.headers,
        json={"experience": {"state": {"status": "published"}}},
    )
    assert r.status_code == 422 and r.json()["field"] == "experience.vehicle.providerId"
