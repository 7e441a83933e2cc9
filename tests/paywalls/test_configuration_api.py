"""Campaigns, placements and paywalls through the API: defaults, statuses, the one-live-campaign-per-
placement-name rule, client-chosen paywall ids, 404/409/422 cases, scopes and public keys."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from tests.conftest import WorkspaceFixture, create_key
from tests.paywalls.conftest import Api

# -- campaigns --------------------------------------------------------------------------------------


def test_create_campaign__no_status__defaults_to_active(api: Api) -> None:
    r = api.post("campaigns", {"name": "Onboarding Flow"})
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == "active"
    assert set(body) == {"id", "name", "status", "project_id", "created_at", "updated_at"}
    assert body["created_at"].endswith("Z") and body["updated_at"].endswith("Z")


@pytest.mark.parametrize("status", ["active", "inactive", "archived"])
def test_create_campaign__each_status__stored(api: Api, status: str) -> None:
    r = api.post("campaigns", {"name": "c", "status": status})
    assert r.status_code == 201 and r.json()["status"] == status


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "c", "status": "paused"}, "status"),
        ({"status": "active"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "c", "projectId": "x"}, "projectId"),
    ],
)
def test_create_campaign__bad_body__422_naming_field(api: Api, body: dict[str, str], field: str) -> None:
    r = api.post("campaigns", body)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == field
    assert api.get("campaigns").json() == []


def test_list_campaigns__status_filter(api: Api) -> None:
    a = api.campaign("a")
    b = api.campaign("b", status="inactive")
    assert [c["id"] for c in api.get("campaigns").json()] == [a, b]
    assert [c["id"] for c in api.get("campaigns?status=inactive").json()] == [b]


def test_update_campaign__name_and_status(api: Api) -> None:
    cid = api.campaign()
    r = api.put(f"campaigns/{cid}", {"name": "Renamed", "status": "archived"})
    assert r.status_code == 200
    assert (r.json()["name"], r.json()["status"]) == ("Renamed", "archived")
    assert api.put(f"campaigns/{cid}", {"status": "bogus"}).status_code == 422


def test_campaign__unknown_id__404(api: Api) -> None:
    for response in (
        api.get("campaigns/camp_nope"),
        api.put("campaigns/camp_nope", {"name": "x"}),
        api.delete("campaigns/camp_nope"),
        api.get("campaigns/camp_nope/placements"),
        api.get("campaigns/camp_nope/audiences"),
        api.post("campaigns/camp_nope/placements", {"name": "x"}),
    ):
        assert response.status_code == 404


def test_delete_campaign__removes_its_placements_and_audiences(api: Api) -> None:
    api.paywall("pw_a")
    cid = api.setup(audiences=[{"paywall_id": "pw_a"}])
    assert api.delete(f"campaigns/{cid}").status_code == 204
    assert api.get(f"campaigns/{cid}").status_code == 404
    # The placement name is free again, and the paywall no longer in use.
    other = api.campaign("other")
    api.placement(other, "feature_gate")
    assert api.delete("paywalls/pw_a").status_code == 204


# -- placements -------------------------------------------------------------------------------------


def test_create_placement__defaults_custom_and_active(api: Api) -> None:
    cid = api.campaign()
    body = api.placement(cid, "onboarding_complete")
    assert (body["type"], body["status"], body["campaign_id"]) == ("custom", "active", cid)
    assert body["id"].startswith("pl_")


@pytest.mark.parametrize(
    "name",
    [
        "app_install",
        "app_launch",
        "session_start",
        "deepLink_open",
        "transaction_fail",
        "transaction_abandon",
        "survey_response",
        "paywall_decline",
    ],
)
def test_create_placement__standard_names__accepted(api: Api, name: str) -> None:
    cid = api.campaign()
    assert api.placement(cid, name, type="standard")["type"] == "standard"


def test_create_placement__standard_with_unknown_name__422(api: Api) -> None:
    cid = api.campaign()
    r = api.post(f"campaigns/{cid}/placements", {"name": "feature_gate", "type": "standard"})
    assert r.status_code == 422 and r.json()["field"] == "name"
    r = api.post(f"campaigns/{cid}/placements", {"name": "x", "type": "builtin"})
    assert r.status_code == 422


def test_create_placement__name_in_another_live_campaign__409(api: Api) -> None:
    first = api.campaign("first")
    api.placement(first, "feature_gate")
    second = api.campaign("second", status="inactive")  # inactive still holds its names
    r = api.post(f"campaigns/{second}/placements", {"name": "feature_gate"})
    assert r.status_code == 409 and first in r.json()["detail"]
    assert api.post(f"campaigns/{first}/placements", {"name": "feature_gate"}).status_code == 409
    assert api.get(f"campaigns/{second}/placements").json() == []


def test_placement_name__archived_campaign__frees_it_and_unarchiving_conflicts(api: Api) -> None:
    first = api.campaign("first")
    api.placement(first, "feature_gate")
    assert api.put(f"campaigns/{first}", {"status": "archived"}).status_code == 200
    second = api.campaign("second")
    api.placement(second, "feature_gate")
    r = api.put(f"campaigns/{first}", {"status": "active"})
    assert r.status_code == 409
    assert api.get(f"campaigns/{first}").json()["status"] == "archived"
    # Once the other campaign is archived, the first may come back.
    assert api.put(f"campaigns/{second}", {"status": "archived"}).status_code == 200
    assert api.put(f"campaigns/{first}", {"status": "active"}).status_code == 200


def test_update_placement__pause_rename_and_conflict(api: Api) -> None:
    cid = api.campaign()
    placement = api.placement(cid, "feature_gate")
    api.placement(cid, "app_launch", type="standard")
    url = f"campaigns/{cid}/placements/{placement['id']}"
    assert api.put(url, {"status": "paused"}).json()["status"] == "paused"
    assert api.put(url, {"status": "stopped"}).status_code == 422
    assert api.put(url, {"name": "app_launch"}).status_code == 409
    assert api.put(url, {"type": "standard"}).status_code == 422
    assert api.put(url, {"name": "paywall_decline", "type": "standard"}).json()["name"] == "paywall_decline"
    assert api.get(url).json()["status"] == "paused"


def test_delete_placement__gone_and_name_reusable(api: Api) -> None:
    cid = api.campaign()
    placement = api.placement(cid, "feature_gate")
    assert api.delete(f"campaigns/{cid}/placements/{placement['id']}").status_code == 204
    assert api.get(f"campaigns/{cid}/placements/{placement['id']}").status_code == 404
    api.placement(api.campaign("other"), "feature_gate")


def test_placement__of_another_campaign__404(api: Api) -> None:
    a, b = api.campaign("a"), api.campaign("b")
    placement = api.placement(a, "feature_gate")
    assert api.get(f"campaigns/{b}/placements/{placement['id']}").status_code == 404
    assert api.delete(f"campaigns/{b}/placements/{placement['id']}").status_code == 404


# -- paywalls ---------------------------------------------------------------------------------------


def test_create_paywall__client_id__kept_and_echoed(api: Api) -> None:
    body = api.paywall("pw_original", "Original", {"title": "Go Pro", "products": ["monthly"]})
    assert body["id"] == "pw_original"
    assert body["config"] == {"title": "Go Pro", "products": ["monthly"]}
    assert api.get("paywalls/pw_original").json() == body


def test_create_paywall__no_id__generated(api: Api) -> None:
    r = api.post("paywalls", {"name": "Generated", "config": {}})
    assert r.status_code == 201 and r.json()["id"].startswith("pw_")


def test_create_paywall__id_clash__409(api: Api) -> None:
    api.paywall("pw_original")
    r = api.post("paywalls", {"id": "pw_original", "name": "again"})
    assert r.status_code == 409 and r.json()["field"] == "id"


def test_create_paywall__same_id_in_another_workspace__allowed(
    api: Api, other_workspace: WorkspaceFixture
) -> None:
    api.paywall("pw_original")
    other = Api(api.client, other_workspace, f"/api/v1/projects/{other_workspace.id}")
    other.paywall("pw_original")


@pytest.mark.parametrize("bad_id", ["pw original", "../pw", "", "x" * 65, "pw;drop", "_pw"])
def test_create_paywall__bad_id_charset__422(api: Api, bad_id: str) -> None:
    r = api.post("paywalls", {"id": bad_id, "name": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "id"


def test_create_paywall__config_too_large__413(api: Api) -> None:
    r = api.post("paywalls", {"name": "big", "config": {"blob": "x" * 70_000}})
    assert r.status_code == 413 and r.json()["field"] == "config"


def test_update_and_delete_paywall(api: Api) -> None:
    api.paywall("pw_a", config={"v": 1})
    r = api.put("paywalls/pw_a", {"config": {"v": 2}})
    assert r.status_code == 200 and r.json()["config"] == {"v": 2} and r.json()["name"] == "pw_a"
    assert api.delete("paywalls/pw_a").status_code == 204
    assert api.get("paywalls/pw_a").status_code == 404
    assert api.put("paywalls/pw_a", {"name": "x"}).status_code == 404


def test_delete_paywall__in_use__409_and_kept(api: Api) -> None:
    api.paywall("pw_direct")
    api.paywall("pw_variant")
    cid = api.campaign()
    direct = api.audience(cid, paywall_id="pw_direct")
    api.audience(
        cid, name="exp", experiment={"variants": [{"paywall_id": "pw_variant", "traffic_percentage": 100}]}
    )
    r = api.delete("paywalls/pw_direct")
    assert r.status_code == 409 and direct["id"] in r.json()["detail"]
    assert api.delete("paywalls/pw_variant").status_code == 409
    assert api.get("paywalls/pw_variant").status_code == 200


# -- keys and scopes --------------------------------------------------------------------------------


def test_public_key__configuration_routes__403(api: Api) -> None:
    api.paywall("pw_a")
    cid = api.campaign()
    for response in (
        api.get("campaigns", public=True),
        api.post("campaigns", {"name": "x"}, public=True),
        api.get(f"campaigns/{cid}", public=True),
        api.get(f"campaigns/{cid}/audiences", public=True),
        api.get("paywalls", public=True),
        api.delete("paywalls/pw_a", public=True),
    ):
        assert response.status_code == 403


def test_scopes__read_key_reads_write_key_writes(ctx: AppContext, api: Api) -> None:
    reader = {"Authorization": f"Bearer {create_key(ctx, api.ws.id, ['campaigns:read'])}"}
    writer = {"Authorization": f"Bearer {create_key(ctx, api.ws.id, ['campaigns:write'])}"}
    assert api.post("campaigns", {"name": "x"}, headers=reader).status_code == 403
    cid = api.post("campaigns", {"name": "x"}, headers=writer).json()["id"]
    assert api.get(f"campaigns/{cid}", headers=reader).status_code == 200
    assert api.get(f"campaigns/{cid}", headers=writer).status_code == 403


def test_no_key__401(api: Api) -> None:
    assert api.client.get(api.url("campaigns")).status_code == 401
    assert api.client.post(api.url("register"), json={"placement": "x", "user_id": "u"}).status_code == 401


# -- JSON no store can hold: a 422 naming the place, on both prefixes, POST and PUT -----------------

_DEEP = '{"a": ' * 255 + "1" + "}" * 255


@pytest.mark.parametrize("prefix", ["/v1/projects", "/api/v1/projects"])
@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ('{"n": 100000000000000000000}', "config.n", "64 bits"),
        ('{"n": [-9223372036854775809]}', "config.n[0]", "64 bits"),
        (_DEEP, "config" + ".a" * 32, "deeper than 32 levels"),
        ('{"title": "\\ud800"}', "config.title", "lone surrogate"),
        ('{"ok": {"\\udfff": 1}}', "config.ok", "a key may not contain a lone surrogate"),
    ],
)
def test_paywall_config__json_no_store_can_hold__422_naming_the_field_and_nothing_changed(
    client: TestClient, workspace: WorkspaceFixture, prefix: str, config: str, field: str, words: str
) -> None:
    api = Api(client, workspace, f"{prefix}/{workspace.id}")
    api.paywall("pw_a", config={"v": 1})
    headers = {**api.ws.headers, "Content-Type": "application/json"}
    for method, path, body in (
        ("POST", "paywalls", '{"id": "pw_b", "name": "b", "config": ' + config + "}"),
        ("PUT", "paywalls/pw_a", '{"config": ' + config + "}"),
    ):
        r = api.client.request(method, api.url(path), content=body.encode(), headers=headers)
        assert r.status_code == 422, (method, r.text)
        assert r.json()["field"] == field and words in r.json()["detail"], r.text
    assert [(p["id"], p["config"]) for p in api.get("paywalls").json()] == [("pw_a", {"v": 1})]
