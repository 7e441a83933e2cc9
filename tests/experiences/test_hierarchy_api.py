"""Campaign > stage > experience over HTTP: nested create in one transaction, reads with the seed's
query parameters, moves and detaches, soft delete, isolation and scopes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from overture.db.context import AppContext
from tests.conftest import WorkspaceFixture, create_key
from tests.experiences.helpers import API, audience, create_campaign, experience_body, experience_ids


def test_create_campaign__nested_stages_and_experiences__one_answer(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    seg = audience(client, workspace, 3)
    campaign = create_campaign(client, workspace, seg["id"], [["a", "b"], ["c"]])
    assert (
        campaign["class"] == "campaign"
        and campaign["segmentId"] == seg["id"]
        and campaign["parentId"] is None
    )
    assert [s["name"] for s in campaign["stages"]] == ["stage 1", "stage 2"]
    assert [s["order"] for s in campaign["stages"]] == [0, 1]
    stage1 = campaign["stages"][0]
    assert [e["name"] for e in stage1["experiences"]] == ["a", "b"]
    a = stage1["experiences"][0]
    assert a["parentId"] == stage1["id"] and a["ancestorIds"] == [campaign["id"], stage1["id"]]
    assert a["state"] == {"status": "draft"}
    assert a["segments"] == {"fixed": None, "target": None, "decision": None}
    assert a["vehicle"]["providerSlug"] == "email" and a["deleted"] is False
    got = client.get(f"{API}/group/{campaign['id']}", headers=workspace.headers).json()
    assert got == campaign
    stage = client.get(f"{API}/group/{stage1['id']}", headers=workspace.headers).json()
    assert stage["class"] == "stage" and stage["parentId"] == campaign["id"]


def test_create_campaign__bad_nested_experience__422_names_path_and_nothing_created(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    body = {
        "group": {
            "name": "c",
            "class": "campaign",
            "stages": [
                {"name": "s1", "class": "stage"},
                {
                    "name": "s2",
                    "class": "stage",
                    "experiences": [experience_body("x", providerSlug="bad slug!")],
                },
            ],
        }
    }
    r = client.post(f"{API}/group", headers=workspace.headers, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "group.stages[1].experiences[0].vehicle.providerSlug"
    body["group"]["stages"][1]["experiences"] = [{"name": "x", "templateId": "nope"}]
    r = client.post(f"{API}/group", headers=workspace.headers, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "group.stages[1].experiences[0].templateId"
    assert client.get(f"{API}/group", headers=workspace.headers).json() == []
    assert client.get(f"{API}", headers=workspace.headers).json() == []


def test_create_group__stage_under_stage_and_bad_parents__422(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    campaign = create_campaign(client, workspace, None, [[]])
    stage_id = campaign["stages"][0]["id"]
    r = client.post(
        f"{API}/group",
        headers=workspace.headers,
        json={"group": {"name": "x", "class": "stage", "parentId": stage_id}},
    )
    assert r.status_code == 422 and r.json()["field"] == "group.parentId"
    nested = {
        "name": "x",
        "class": "stage",
        "parentId": campaign["id"],
        "stages": [{"name": "y", "class": "stage"}],
    }
    r = client.post(f"{API}/group", headers=workspace.headers, json={"group": nested})
    assert r.status_code == 422 and r.json()["field"] == "group.stages"
    r = client.post(
        f"{API}/group", headers=workspace.headers, json={"group": {"name": "x", "class": "stage"}}
    )
    assert r.status_code == 422 and r.json()["field"] == "group.parentId"
    r = client.post(
        f"{API}/group",
        headers=workspace.headers,
        json={"group": {"name": "x", "class": "campaign", "segmentId": "nope"}},
    )
    assert r.status_code == 422 and r.json()["field"] == "group.segmentId"
    r = client.post(f"{API}/group", headers=workspace.headers, json={"group": {"name": "x", "class": "team"}})
    assert r.status_code == 422 and r.json()["field"] == "group.class"


def test_create_stage__snake_case_accepted__appended_in_order(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    campaign = create_campaign(client, workspace, None, [[], []])
    r = client.post(
        f"{API}/group",
        headers=workspace.headers,
        json={"group": {"name": "s3", "class": "stage", "parent_id": campaign["id"]}},
    )
    assert r.status_code == 201, r.text
    assert r.json()["order"] == 2 and r.json()["parentId"] == campaign["id"]
    got = client.get(f"{API}/group/{campaign['id']}", headers=workspace.headers).json()
    assert [s["name"] for s in got["stages"]] == ["stage 1", "stage 2", "s3"]


def test_list_groups__campaigns_only__query_parameters(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    first = create_campaign(client, workspace, None, [["a"]], name="first")
    create_campaign(client, workspace, None, [["b"]], name="second")
    listed = client.get(f"{API}/group", headers=workspace.headers).json()
    assert [g["name"] for g in listed] == ["first", "second"]
    assert listed[0]["experiences"] is None  # skip_child_experiences defaults to true
    assert listed[0]["stages"][0]["experiences"] is None
    full = client.get(f"{API}/group?skip_child_experiences=false", headers=workspace.headers).json()
    assert [e["name"] for e in full[0]["stages"][0]["experiences"]] == ["a"]
    assert [e["name"] for e in full[0]["experiences"]] == ["a"]
    bare = client.get(f"{API}/group?skip_child_groups=true", headers=workspace.headers).json()
    assert bare[0]["stages"] is None
    assert client.delete(f"{API}/group/{first['id']}", headers=workspace.headers).status_code == 204
    assert [g["name"] for g in client.get(f"{API}/group", headers=workspace.headers).json()] == ["second"]
    with_deleted = client.get(f"{API}/group?deleted=true", headers=workspace.headers).json()
    assert [(g["name"], g["deleted"]) for g in with_deleted] == [("first", True), ("second", False)]


def test_delete_campaign__stages_deleted__experiences_orphaned(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    campaign = create_campaign(client, workspace, None, [["a", "b"], ["c"]])
    stage_ids = [s["id"] for s in campaign["stages"]]
    ids = [i for stage in experience_ids(campaign) for i in stage]
    assert client.delete(f"{API}/group/{campaign['id']}", headers=workspace.headers).status_code == 204
    for gid in [campaign["id"], *stage_ids]:
        assert client.get(f"{API}/group/{gid}", headers=workspace.headers).status_code == 404
        got = client.get(f"{API}/group/{gid}?deleted=true", headers=workspace.headers)
        assert got.status_code == 200 and got.json()["deleted"] is True
    orphans = client.get(f"{API}/orphan", headers=workspace.headers).json()
    assert sorted(e["id"] for e in orphans) == sorted(ids)
    assert all(e["parentId"] is None and e["ancestorIds"] == [] and not e["deleted"] for e in orphans)
    assert client.delete(f"{API}/group/{campaign['id']}", headers=workspace.headers).status_code == 404


def test_patch_stage__sets_members_in_order__moves_and_detaches(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    campaign = create_campaign(client, workspace, None, [["a", "b"], ["c"]])
    (a, b), (c,) = experience_ids(campaign)
    s1, s2 = (s["id"] for s in campaign["stages"])
    r = client.patch(f"{API}/group/{s2}", headers=workspace.headers, json={"group": {"experiences": [b, c]}})
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()["experiences"]] == [b, c]
    r = client.patch(f"{API}/group/{s2}", headers=workspace.headers, json={"group": {"experiences": [c, b]}})
    assert [e["id"] for e in r.json()["experiences"]] == [c, b]
    assert [
        e["id"] for e in client.get(f"{API}/group/{s1}", headers=workspace.headers).json()["experiences"]
    ] == [a]
    r = client.patch(f"{API}/group/{s2}", headers=workspace.headers, json={"group": {"detach": [b]}})
    assert [e["id"] for e in r.json()["experiences"]] == [c]
    assert [e["id"] for e in client.get(f"{API}/orphan", headers=workspace.headers).json()] == [b]
    r = client.patch(f"{API}/group/{s2}", headers=workspace.headers, json={"group": {"detach": [a]}})
    assert r.status_code == 422 and r.json()["field"] == "group.detach[0]"
    r = client.patch(
        f"{API}/group/{s2}", headers=workspace.headers, json={"group": {"experiences": ["nope"]}}
    )
    assert r.status_code == 422 and r.json()["field"] == "group.experiences[0]"
    r = client.patch(
        f"{API}/group/{campaign['id']}", headers=workspace.headers, json={"group": {"experiences": [a]}}
    )
    assert r.status_code == 422


def test_patch_group__fields_and_order(client: TestClient, workspace: WorkspaceFixture) -> None:
    seg = audience(client, workspace, 2)
    campaign = create_campaign(client, workspace, None, [[], []])
    s1, s2 = (s["id"] for s in campaign["stages"])
    r = client.patch(
        f"{API}/group/{campaign['id']}",
        headers=workspace.headers,
        json={
            "group": {
                "name": "renamed",
                "goal": {"kpi": "signups"},
                "segment_id": seg["id"],
                "description": "d",
            }
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["goal"], body["segmentId"], body["description"]) == (
        "renamed",
        {"kpi": "signups"},
        seg["id"],
        "d",
    )
    client.patch(f"{API}/group/{s1}", headers=workspace.headers, json={"group": {"order": 5}})
    got = client.get(f"{API}/group/{campaign['id']}", headers=workspace.headers).json()
    assert [s["id"] for s in got["stages"]] == [s2, s1]


def test_experiences__list_filter_by_provider__get_deleted(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    r = client.post(f"{API}", headers=workspace.headers, json={"experience": experience_body("e1")})
    assert r.status_code == 201, r.text
    e1 = r.json()
    assert e1["parentId"] is None and e1["state"]["status"] == "draft"
    body = {
        "experience": {
            "name": "e2",
            "vehicle": {
                "providerId": "push-1",
                "providerSlug": "push",
                "tactic": "present_message",
                "aggression": 0.4,
            },
        }
    }
    e2 = client.post(f"{API}", headers=workspace.headers, json=body).json()
    assert [e["id"] for e in client.get(f"{API}?provider=push", headers=workspace.headers).json()] == [
        e2["id"]
    ]
    assert [e["id"] for e in client.get(f"{API}?provider=push-1", headers=workspace.headers).json()] == [
        e2["id"]
    ]
    assert client.delete(f"{API}/{e1['id']}", headers=workspace.headers).status_code == 204
    assert client.get(f"{API}/{e1['id']}", headers=workspace.headers).status_code == 404
    assert client.get(f"{API}/{e1['id']}?deleted=true", headers=workspace.headers).json()["deleted"] is True
    assert [e["id"] for e in client.get(f"{API}", headers=workspace.headers).json()] == [e2["id"]]
    assert len(client.get(f"{API}?deleted=true", headers=workspace.headers).json()) == 2


def test_experience__bad_vehicle_and_dates__422(client: TestClient, workspace: WorkspaceFixture) -> None:
    for vehicle, field in (
        ({"tactic": "shout"}, "experience.vehicle.tactic"),
        ({"aggression": 1.5}, "experience.vehicle.aggression"),
        ({"detail": [1]}, "experience.vehicle.detail"),
    ):
        r = client.post(
            f"{API}", headers=workspace.headers, json={"experience": {"name": "x", "vehicle": vehicle}}
        )
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    dates = {"startDate": "2026-02-01T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"}
    r = client.post(f"{API}", headers=workspace.headers, json={"experience": {"name": "x", "dates": dates}})
    assert r.status_code == 422 and r.json()["field"].startswith("experience.dates")
    r = client.post(
        f"{API}",
        headers=workspace.headers,
        json={"experience": {"name": "x", "state": {"status": "published"}}},
    )
    assert r.status_code == 422
    r = client.post(f"{API}", headers=workspace.headers, json={"experience": {"name": "x", "surprise": 1}})
    assert r.status_code == 422 and r.json()["field"] == "experience.surprise"
    assert client.get(f"{API}", headers=workspace.headers).json() == []


def test_isolation__other_workspace_ids_are_404(
    client: TestClient, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    campaign = create_campaign(client, workspace, None, [["a"]])
    ((a,),) = experience_ids(campaign)
    h = other_workspace.headers
    assert client.get(f"{API}/group/{campaign['id']}", headers=h).status_code == 404
    assert client.get(f"{API}/{a}", headers=h).status_code == 404
    assert client.patch(f"{API}/{a}", headers=h, json={"experience": {"name": "x"}}).status_code == 404
    assert client.delete(f"{API}/group/{campaign['id']}", headers=h).status_code == 404
    assert client.get(f"{API}/group", headers=h).json() == []
    r = client.post(
        f"{API}", headers=h, json={"experience": {"name": "x", "parentId": campaign["stages"][0]["id"]}}
    )
    assert r.status_code == 422 and r.json()["field"] == "experience.parentId"


def test_scopes__read_key_cannot_write__public_key_cannot_read(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    read = {"Authorization": f"Bearer {create_key(ctx, workspace.id, ['campaigns:read'])}"}
    assert client.get(f"{API}/group", headers=read).status_code == 200
    assert (
        client.post(
            f"{API}/group", headers=read, json={"group": {"name": "c", "class": "campaign"}}
        ).status_code
        == 403
    )
    assert client.get(f"{API}/group", headers=workspace.public_headers).status_code == 403
    assert client.get(f"{API}/group").status_code == 401
