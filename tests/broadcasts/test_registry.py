"""The campaign registry: every campaign-like object is registered with its type in the same
transaction that creates it and leaves with it, so the public API tells 409 from 404."""

from __future__ import annotations

import sqlalchemy as sa

from overture.campaigns import CampaignEntry
from tests.broadcasts.conftest import Api


def _registered(api: Api, campaign_id: str) -> str | None:
    with api.ctx.transaction(workspace_id=api.ws.id) as session:
        return session.scalar(sa.select(CampaignEntry.type).where(CampaignEntry.id == campaign_id))


def test_registry__paywall_campaign_and_broadcast__registered_and_removed(api: Api) -> None:
    prefix = f"/api/v1/projects/{api.ws.id}/campaigns"
    r = api.client.post(prefix, headers=api.ws.headers, json={"name": "Onboarding"})
    assert r.status_code == 201, r.text
    campaign_id = r.json()["id"]
    assert _registered(api, campaign_id) == "paywall_campaign"
    assert api.public(campaign_id, "summary").json()["error"]["code"].endswith("TYPE_UNSUPPORTED")
    assert api.client.delete(f"{prefix}/{campaign_id}", headers=api.ws.headers).status_code == 204
    assert _registered(api, campaign_id) is None
    assert api.public(campaign_id, "summary").json()["error"]["code"].endswith("NOT_FOUND")

    b = api.broadcast()
    assert _registered(api, b["id"]) == "broadcast"
    api.call("DELETE", f"/broadcasts/{b['id']}", 204)
    assert _registered(api, b["id"]) is None
    assert api.public(b["id"], "status").status_code == 404


def test_registry__experience_campaign__soft_delete_leaves_the_registry(api: Api) -> None:
    # Given an experience campaign with a stage (registered as experience groups)
    r = api.client.post(
        "/api/experience/group",
        headers=api.ws.headers,
        json={
            "group": {
                "name": "Spring",
                "class": "campaign",
                "stages": [{"name": "Stage 1", "class": "stage"}],
            }
        },
    )
    assert r.status_code == 201, r.text
    campaign = r.json()
    stage_id = campaign["stages"][0]["id"]
    assert _registered(api, campaign["id"]) == _registered(api, stage_id) == "experience_group"
    assert api.public(campaign["id"], "summary").json()["error"]["code"].endswith("TYPE_UNSUPPORTED")
    # When it is (soft) deleted, Then it and its stage leave the registry: the public API says 404
    r = api.client.delete(f"/api/experience/group/{campaign['id']}", headers=api.ws.headers)
    assert r.status_code in (200, 204), r.text
    assert _registered(api, campaign["id"]) is None and _registered(api, stage_id) is None
    assert api.public(campaign["id"], "summary").json()["error"]["code"].endswith("NOT_FOUND")
