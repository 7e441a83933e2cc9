# ruff: noqa: E501  (the curl examples are quoted verbatim)
"""Seed 004's curl examples, verbatim, run against the API: only the host, PROJECT_ID, the key and the
example object ids (camp_abc123, aud_power_users, ...) are replaced by real ones."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.conftest import WorkspaceFixture
from tests.paywalls.conftest import Api

CREATE_CAMPAIGN = """curl -X POST https://agentwallie.com/api/v1/projects/PROJECT_ID/campaigns \\
  -H "Content-Type: application/json" \\
  -H "Authorization: Bearer sk_your_private_key" \\
  -d '{"name": "Onboarding Flow", "status": "active"}'"""

LIST_CAMPAIGNS = """curl https://agentwallie.com/api/v1/projects/PROJECT_ID/campaigns \\
  -H "Authorization: Bearer sk_your_private_key\""""

GET_CAMPAIGN = """curl https://agentwallie.com/api/v1/projects/PROJECT_ID/campaigns/camp_abc123 \\
  -H "Authorization: Bearer sk_your_private_key\""""

UPDATE_CAMPAIGN = """curl -X PUT https://agentwallie.com/api/v1/projects/PROJECT_ID/campaigns/camp_abc123 \\
  -H "Content-Type: application/json" \\
  -H "Authorization: Bearer sk_your_private_key" \\
  -d '{"status": "inactive"}'"""

DELETE_CAMPAIGN = """curl -X DELETE https://agentwallie.com/api/v1/projects/PROJECT_ID/campaigns/camp_abc123 \\
  -H "Authorization: Bearer sk_your_private_key\""""

CREATE_PLACEMENT = """curl -X POST https://agentwallie.com/api/v1/projects/PROJECT_ID/campaigns/camp_abc123/placements \\
  -H "Content-Type: application/json" \\
  -H "Authorization: Bearer sk_your_private_key" \\
  -d '{"name": "feature_gate", "type": "custom"}'"""

LIST_PLACEMENTS = """curl https://agentwallie.com/api/v1/projects/PROJECT_ID/campaigns/camp_abc123/placements \\
  -H "Authorization: Bearer sk_your_private_key\""""

CREATE_AUDIENCE = """curl -X POST https://agentwallie.com/api/v1/projects/PROJECT_ID/campaigns/camp_abc123/audiences \\
  -H "Content-Type: application/json" \\
  -H "Authorization: Bearer sk_your_private_key" \\
  -d '{
    "name": "Power Users on iOS",
    "filters": [
      { "field": "device.platform", "operator": "is", "value": "ios" },
      { "field": "device.session_count", "operator": "gte", "value": 5, "conjunction": "and" },
      { "field": "user.subscription_status", "operator": "is", "value": "free", "conjunction": "and" }
    ],
    "frequency_cap": "once_per_session",
    "experiment": {
      "variants": [
        { "paywall_id": "pw_original", "traffic_percentage": 50 },
        { "paywall_id": "pw_new_design", "traffic_percentage": 50 }
      ],
      "confidence_threshold": 0.95,
      "auto_promote": true
    }
  }'"""

REORDER_AUDIENCES = """curl -X PUT https://agentwallie.com/api/v1/projects/PROJECT_ID/campaigns/camp_abc123/audiences/reorder \\
  -H "Content-Type: application/json" \\
  -H "Authorization: Bearer sk_your_private_key" \\
  -d '{"order": ["aud_power_users", "aud_new_users", "aud_everyone"]}'"""


def curl(client: TestClient, command: str, replacements: dict[str, str]) -> httpx.Response:
    """Run a curl command line (the flags the seed uses: -X, -H, -d) through the test client."""
    for old, new in replacements.items():
        command = command.replace(old, new)
    args = shlex.split(command.replace("\\\n", " "))
    assert args[0] == "curl"
    method, headers, data, url = "GET", {}, None, None
    i = 1
    while i < len(args):
        if args[i] == "-X":
            method, i = args[i + 1], i + 2
        elif args[i] == "-H":
            name, _, value = args[i + 1].partition(":")
            headers[name.strip()] = value.strip()
            i += 2
        elif args[i] == "-d":
            data, i = args[i + 1], i + 2
            if method == "GET":
                method = "POST"
        else:
            url, i = args[i], i + 1
    assert url is not None
    path = re.sub(r"^https://agentwallie\.com", "", url)
    return client.request(method, path, headers=headers, content=data)


def test_seed_curl_examples__as_written__work(
    client: TestClient, workspace: WorkspaceFixture, api: Api
) -> None:
    ids = {"PROJECT_ID": workspace.id, "sk_your_private_key": workspace.api_key}
    # The audience example names two paywalls; they exist in the project.
    api.paywall("pw_original")
    api.paywall("pw_new_design")

    r = curl(client, CREATE_CAMPAIGN, ids)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    assert created["name"] == "Onboarding Flow" and created["status"] == "active"
    assert created["id"].startswith("camp_")
    assert created["project_id"] == workspace.id
    assert created["created_at"].endswith("Z")
    ids["camp_abc123"] = created["id"]

    r = curl(client, LIST_CAMPAIGNS, ids)
    assert r.status_code == 200 and [c["id"] for c in r.json()] == [created["id"]]

    r = curl(client, CREATE_PLACEMENT, ids)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "feature_gate" and r.json()["type"] == "custom"
    r = curl(client, LIST_PLACEMENTS, ids)
    assert r.status_code == 200 and [p["name"] for p in r.json()] == ["feature_gate"]

    r = curl(client, CREATE_AUDIENCE, ids)
    assert r.status_code == 201, r.text
    power = r.json()
    assert power["frequency_cap"] == "once_per_session"
    assert [v["paywall_id"] for v in power["experiment"]["variants"]] == ["pw_original", "pw_new_design"]
    assert power["experiment"]["auto_promote"] is True
    assert power["experiment"]["confidence_threshold"] == 0.95
    new_users = api.audience(ids["camp_abc123"], name="New users", paywall_id="pw_original")
    everyone = api.audience(ids["camp_abc123"], name="Everyone", paywall_id="pw_new_design")
    ids |= {"aud_power_users": power["id"], "aud_new_users": new_users["id"], "aud_everyone": everyone["id"]}

    r = curl(client, REORDER_AUDIENCES, ids)
    assert r.status_code == 200, r.text
    assert [a["id"] for a in r.json()] == [power["id"], new_users["id"], everyone["id"]]

    r = curl(client, GET_CAMPAIGN, ids)
    assert r.status_code == 200
    detail = r.json()
    assert [p["name"] for p in detail["placements"]] == ["feature_gate"]
    assert [a["id"] for a in detail["audiences"]] == [power["id"], new_users["id"], everyone["id"]]

    r = curl(client, UPDATE_CAMPAIGN, ids)
    assert r.status_code == 200 and r.json()["status"] == "inactive"

    r = curl(client, DELETE_CAMPAIGN, ids)
    assert r.status_code == 204
    assert curl(client, GET_CAMPAIGN, ids).status_code == 404


def test_seed_examples__heading_paths_v1__same_api(api_v1: Api) -> None:
    # The seed's headings say /v1/projects/:id/...; both prefixes serve the same resources.
    campaign_id = api_v1.campaign()
    assert api_v1.get(f"campaigns/{campaign_id}").status_code == 200
    body = json.loads(api_v1.get("campaigns").text)
    assert [c["id"] for c in body] == [campaign_id]
