"""Typed helpers the experience tests share: an audience (a customers model and a segment over it),
a campaign with stages and experiences created in one request, publishing."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import WorkspaceFixture
from tests.data.helpers import base, create_customers, numbered_customers

API = "/api/experience"


def audience(client: TestClient, ws: WorkspaceFixture, n: int = 30, flt: Any = None) -> dict[str, Any]:
    """A customers model of `n` numbered customers and a segment over it (default: everyone)."""
    model = create_customers(client, ws, numbered_customers(n))
    r = client.post(
        f"{base(ws)}/segments",
        headers=ws.headers,
        json={"name": "audience", "model_id": model["id"], "filter": flt},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def experience_body(name: str, **vehicle: Any) -> dict[str, Any]:
    return {"name": name, "vehicle": {"providerSlug": "email", "providerChannel": "newsletter", **vehicle}}


def create_campaign(
    client: TestClient,
    ws: WorkspaceFixture,
    segment_id: str | None,
    stages: list[list[str]],
    name: str = "campaign",
) -> dict[str, Any]:
    """A campaign whose stage i holds experiences named stages[i]; returns the created campaign."""
    body = {
        "group": {
            "name": name,
            "class": "campaign",
            "segmentId": segment_id,
            "stages": [
                {
                    "name": f"stage {i + 1}",
                    "class": "stage",
                    "experiences": [experience_body(e) for e in names],
                }
                for i, names in enumerate(stages)
            ],
        }
    }
    r = client.post(f"{API}/group", headers=ws.headers, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def experience_ids(campaign: dict[str, Any]) -> list[list[str]]:
    return [[e["id"] for e in stage["experiences"]] for stage in campaign["stages"]]


def publish(client: TestClient, ws: WorkspaceFixture, experience_id: str, **dates: str) -> dict[str, Any]:
    body: dict[str, Any] = {"state": {"status": "published"}}
    if dates:
        body["dates"] = dates
    r = client.patch(
        f"{API}/{experience_id}?update_state=true", headers=ws.headers, json={"experience": body}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def send_events(client: TestClient, ws: WorkspaceFixture, events: list[dict[str, Any]]) -> dict[str, Any]:
    r = client.post(f"{API}/events", headers=ws.public_headers, json={"events": events})
    assert r.status_code == 200, r.text
    return dict(r.json())


def members(client: TestClient, ws: WorkspaceFixture, segment_id: str) -> set[str]:
    r = client.get(f"{base(ws)}/segments/{segment_id}/members?limit=1000", headers=ws.headers)
    assert r.status_code == 200, r.text
    return set(r.json()["members"])


def decide(client: TestClient, ws: WorkspaceFixture, user_id: str, **extra: Any) -> dict[str, Any]:
    r = client.post(f"{API}/decide", headers=ws.headers, json={"userId": user_id, **extra})
    assert r.status_code == 200, r.text
    return dict(r.json())
