"""Publishing: the lifecycle table, what publishing needs, update_state and clean_override, the
generated segments (real segments, listed with `generated: true`), prioritization entries."""

from __future__ import annotations

import itertools

import pytest
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from overture.errors import Conflict
from overture.experiences.states import LIFECYCLE, ExperienceStatus
from overture.runtime.jobs import drain
from tests.conftest import WorkspaceFixture
from tests.data.helpers import base
from tests.experiences.helpers import API, audience, create_campaign, experience_ids, publish

ALLOWED = {("draft", "published"), ("published", "unpublished"), ("unpublished", "published")}


@pytest.mark.parametrize(("a", "b"), list(itertools.product(list(ExperienceStatus), list(ExperienceStatus))))
def test_lifecycle__every_pair__allowed_exactly_as_listed(a: str, b: str) -> None:
    if (a, b) in ALLOWED:
        assert LIFECYCLE.transition(a, b) == b
    else:
        with pytest.raises(Conflict):
            LIFECYCLE.transition(a, b)


def test_patch__state_change_without_update_state__422_names_it(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    seg = audience(client, workspace, 2)
    ((a,),) = experience_ids(create_campaign(client, workspace, seg["id"], [["a"]]))
    r = client.patch(
        f"{API}/{a}", headers=workspace.headers, json={"experience": {"state": {"status": "published"}}}
    )
    assert r.status_code == 422 and r.json()["field"] == "update_state"
    assert client.get(f"{API}/{a}", headers=workspace.headers).json()["state"]["status"] == "draft"
    # the same status is no change
    r = client.patch(
        f"{API}/{a}",
        headers=workspace.headers,
        json={"experience": {"state": {"status": "draft"}, "name": "a2"}},
    )
    assert r.status_code == 200 and r.json()["name"] == "a2"


def test_publish__needs_stage_segment_and_provider__422_saying_which(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    orphan = client.post(
        f"{API}",
        headers=workspace.headers,
        json={"experience": {"name": "o", "vehicle": {"providerSlug": "email"}}},
    ).json()
    pub = {"experience": {"state": {"status": "published"}}}
    r = client.patch(f"{API}/{orphan['id']}?update_state=true", headers=workspace.headers, json=pub)
    assert r.status_code == 422 and r.json()["field"] == "experience.parentId"
    campaign = create_campaign(client, workspace, None, [["a"]])
    ((a,),) = experience_ids(campaign)
    r = client.patch(f"{API}/{a}?update_state=true", headers=workspace.headers, json=pub)
    assert r.status_code == 422 and r.json()["field"] == "segmentId"
    seg = audience(client, workspace, 2)
    client.patch(
        f"{API}/group/{campaign['id']}", headers=workspace.headers, json={"group": {"segmentId": seg["id"]}}
    )
    client.patch(
        f"{API}/{a}", headers=workspace.headers, json={"experience": {"vehicle": {"providerSlug": None}}}
    )
    r = client.patch(f"{API}/{a}?update_state=true", headers=workspace.headers, json=pub)
    assert r.status_code == 422 and r.json()["field"] == "experience.vehicle.providerId"
    assert client.get(f"{API}/{a}", headers=workspace.headers).json()["state"]["status"] == "draft"


def test_publish__unpublish__republish__and_refused_moves(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    seg = audience(client, workspace, 2)
    ((a,),) = experience_ids(create_campaign(client, workspace, seg["id"], [["a"]]))
    got = publish(client, workspace, a, startDate="2026-01-01T00:00:00Z", endDate="2027-01-01T00:00:00Z")
    assert got["state"]["status"] == "published"
    assert got["dates"] == {"startDate": "2026-01-01T00:00:00Z", "endDate": "2027-01-01T00:00:00Z"}

    def move(status: str) -> int:
        return client.patch(
            f"{API}/{a}?update_state=true",
            headers=workspace.headers,
            json={"experience": {"state": {"status": status}}},
        ).status_code

    assert move("draft") == 409
    assert move("unpublished") == 200
    assert move("published") == 200
    r = client.patch(
        f"{API}/{a}",
        headers=workspace.headers,
        json={"experience": {"dates": {"endDate": "2025-01-01T00:00:00Z"}}},
    )
    assert r.status_code == 422 and r.json()["field"] == "experience.dates.endDate"


def test_publish__generates_three_real_segments__listed_generated_with_reach(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    seg = audience(client, workspace, 12)
    ((a, _b),) = experience_ids(create_campaign(client, workspace, seg["id"], [["a", "b"]]))
    got = publish(client, workspace, a)
    fixed, target, decision = (got["segments"][k] for k in ("fixed", "target", "decision"))
    assert None not in (fixed, target, decision)
    listed = {s["id"]: s for s in client.get(f"{base(workspace)}/segments", headers=workspace.headers).json()}
    assert {fixed, target, decision} <= set(listed)
    assert (
        all(listed[s]["generated"] for s in (fixed, target, decision)) and not listed[seg["id"]]["generated"]
    )
    assert listed[fixed]["filter"] == {"segment": seg["id"]}
    drain(ctx, raise_errors=True)
    reach = client.get(f"{base(workspace)}/segments/{target}", headers=workspace.headers).json()["reach"]
    assert reach["status"] == "ok" and reach["evaluated_count"] == 12
    reach = client.get(f"{base(workspace)}/segments/{decision}", headers=workspace.headers).json()["reach"]
    assert reach["status"] == "ok" and reach["evaluated_count"] == 0
    # read-only through the segments API
    assert client.delete(f"{base(workspace)}/segments/{target}", headers=workspace.headers).status_code == 409
    # deleting the experience soft-deletes its segments
    assert client.delete(f"{API}/{a}", headers=workspace.headers).status_code == 204
    for sid in (fixed, target, decision):
        assert client.get(f"{base(workspace)}/segments/{sid}", headers=workspace.headers).status_code == 404
    # the campaign's audience cannot be deleted under it
    assert (
        client.delete(f"{base(workspace)}/segments/{seg['id']}", headers=workspace.headers).status_code == 409
    )


def test_publish__adds_stage_prioritization_entry(client: TestClient, workspace: WorkspaceFixture) -> None:
    seg = audience(client, workspace, 2)
    campaign = create_campaign(client, workspace, seg["id"], [["a", "b"]])
    ((a, b),) = experience_ids(campaign)
    stage = campaign["stages"][0]["id"]
    publish(client, workspace, a)
    publish(client, workspace, b)
    records = client.get(f"{API}/prioritization", headers=workspace.headers).json()
    (record,) = [p for p in records if p["groupId"] == stage]
    assert record["entries"] == [{"id": a, "weight": 1.0}, {"id": b, "weight": 1.0}]


def test_patch__detail_override_merged__or_replaced_with_clean_override(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    body = {
        "experience": {
            "name": "x",
            "vehicle": {"detail": {"subject": "Hi"}, "detailOverride": {"a": {"b": 1, "c": 2}, "d": 1}},
        }
    }
    e = client.post(f"{API}", headers=workspace.headers, json=body).json()
    patch = {"experience": {"vehicle": {"detailOverride": {"a": {"b": 5}, "e": 3}}}}
    r = client.patch(f"{API}/{e['id']}", headers=workspace.headers, json=patch)
    assert r.json()["vehicle"]["detailOverride"] == {"a": {"b": 5, "c": 2}, "d": 1, "e": 3}
    r = client.patch(f"{API}/{e['id']}?clean_override=true", headers=workspace.headers, json=patch)
    assert r.json()["vehicle"]["detailOverride"] == {"a": {"b": 5}, "e": 3}
    assert r.json()["vehicle"]["detail"] == {"subject": "Hi"}


def test_detach_published__unpublished_and_targets_no_one(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    seg = audience(client, workspace, 5)
    campaign = create_campaign(client, workspace, seg["id"], [["a"]])
    ((a,),) = experience_ids(campaign)
    got = publish(client, workspace, a)
    r = client.patch(
        f"{API}/group/{campaign['stages'][0]['id']}",
        headers=workspace.headers,
        json={"group": {"detach": [a]}},
    )
    assert r.status_code == 200
    e = client.get(f"{API}/{a}", headers=workspace.headers).json()
    assert e["state"]["status"] == "unpublished" and e["parentId"] is None
    r = client.get(
        f"{base(workspace)}/segments/{got['segments']['target']}/members", headers=workspace.headers
    )
    assert r.json()["members"] == []
