"""Candidates: published experiences in their window, ranked by campaign, stage and experience
weight, filtered by vehicle and channel, with 6-hour metrics; changes are visible at once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from overture.clock import FrozenClock
from tests.conftest import WorkspaceFixture
from tests.experiences.helpers import API, audience, create_campaign, experience_ids, publish, send_events


def _candidates(client: TestClient, ws: WorkspaceFixture, query: str = "") -> dict[str, Any]:
    r = client.get(f"{API}/candidate{query}", headers=ws.headers)
    assert r.status_code == 200, r.text
    listed = r.json()
    assert isinstance(listed, list)  # a list is a bare JSON array
    generated = r.headers["X-Generated-At"]
    assert all(c["generatedAt"] == generated for c in listed)
    return {"generatedAt": generated, "candidates": listed}


def _ids(answer: dict[str, Any]) -> list[str]:
    return [c["experienceId"] for c in answer["candidates"]]


def test_candidates__ranked_by_campaign_stage_experience_weight(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    seg = audience(client, workspace, 3)
    one = create_campaign(client, workspace, seg["id"], [["a", "b"], ["c"]], name="one")
    two = create_campaign(client, workspace, seg["id"], [["d"]], name="two")
    (a, b), (c,) = experience_ids(one)
    ((d,),) = experience_ids(two)
    for e in (a, b, c, d):
        publish(client, workspace, e)
    assert _ids(_candidates(client, workspace)) == [a, b, c, d]  # equal weights: creation and stage order
    # campaigns by account priority, stages by the campaign's record, experiences by the stage's
    r = client.post(
        f"{API}/group/priority",
        headers=workspace.headers,
        json={"entries": [{"id": two["id"], "weight": 10}, {"id": one["id"], "weight": 5}]},
    )
    assert r.status_code == 200, r.text
    assert _ids(_candidates(client, workspace)) == [d, a, b, c]
    r = client.post(
        f"{API}/prioritization",
        headers=workspace.headers,
        json={
            "prioritization": {"groupId": one["id"], "entries": [{"id": one["stages"][1]["id"], "weight": 3}]}
        },
    )
    assert r.status_code == 201, r.text
    stage_record = next(
        p
        for p in client.get(f"{API}/prioritization", headers=workspace.headers).json()
        if p["groupId"] == one["stages"][0]["id"]
    )
    r = client.patch(
        f"{API}/prioritization/{stage_record['id']}",
        headers=workspace.headers,
        json={"prioritization": {"entries": [{"id": a, "weight": 1}, {"id": b, "weight": 2}]}},
    )
    assert r.status_code == 200, r.text
    answer = _candidates(client, workspace)
    assert _ids(answer) == [d, c, b, a]
    first = answer["candidates"][0]
    assert first["ancestorIds"] == [two["id"], two["stages"][0]["id"]]
    assert first["priority"] == {"campaign": 10.0, "stage": 0.0, "experience": 1.0}
    assert first["metrics"] == {"windowHours": 6, "impressions": 0, "conversions": 0, "conversionRate": 0.0}
    assert first["providerSlug"] == "email" and first["providerChannel"] == "newsletter"
    assert set(first["segments"]) == {"fixed", "target", "decision"}
    assert answer["generatedAt"].endswith("Z")
    account = client.get(f"{API}/prioritization/account_priority", headers=workspace.headers).json()
    assert account["slug"] == "account_priority" and account["entries"][0] == {
        "id": two["id"],
        "weight": 10.0,
    }


def test_candidates__unpublish_and_delete_visible_on_next_request(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    seg = audience(client, workspace, 3)
    ((a, b),) = experience_ids(create_campaign(client, workspace, seg["id"], [["a", "b"]]))
    publish(client, workspace, a)
    assert _ids(_candidates(client, workspace)) == [a]
    publish(client, workspace, b)
    assert _ids(_candidates(client, workspace)) == [a, b]
    client.patch(
        f"{API}/{a}?update_state=true",
        headers=workspace.headers,
        json={"experience": {"state": {"status": "unpublished"}}},
    )
    assert _ids(_candidates(client, workspace)) == [b]
    client.delete(f"{API}/{b}", headers=workspace.headers)
    assert _ids(_candidates(client, workspace)) == []


def test_candidates__vehicle_and_channel_filters__detail_override_merged(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    seg = audience(client, workspace, 3)
    campaign = create_campaign(client, workspace, seg["id"], [["a", "b"]])
    ((a, b),) = experience_ids(campaign)
    client.patch(
        f"{API}/{b}",
        headers=workspace.headers,
        json={
            "experience": {
                "vehicle": {
                    "providerId": "web-7",
                    "providerSlug": "web",
                    "providerChannel": "banner",
                    "detail": {"x": 1, "y": {"z": 1}},
                    "detailOverride": {"y": {"w": 2}},
                }
            }
        },
    )
    publish(client, workspace, a)
    publish(client, workspace, b)
    assert _ids(_candidates(client, workspace, "?vehicle=web")) == [b]
    assert _ids(_candidates(client, workspace, "?vehicle=web-7&channel=banner")) == [b]
    assert _ids(_candidates(client, workspace, "?vehicle=email&channel=newsletter")) == [a]
    assert _ids(_candidates(client, workspace, "?channel=sms")) == []
    (web,) = _candidates(client, workspace, "?vehicle=web")["candidates"]
    assert web["detail"] == {"x": 1, "y": {"z": 1, "w": 2}} and web["vehicle"]["detail"] == web["detail"]


def test_candidates__date_window_to_the_instant(
    client: TestClient, workspace: WorkspaceFixture, frozen_clock: FrozenClock
) -> None:
    seg = audience(client, workspace, 3)
    ((a,),) = experience_ids(create_campaign(client, workspace, seg["id"], [["a"]]))
    start = frozen_clock.now() + timedelta(minutes=5)
    end = start + timedelta(hours=1)
    publish(client, workspace, a, startDate=start.isoformat(), endDate=end.isoformat())
    assert _ids(_candidates(client, workspace)) == []
    frozen_clock.advance(timedelta(minutes=5))
    assert _ids(_candidates(client, workspace)) == [a]
    frozen_clock.advance(timedelta(hours=1))
    assert _ids(_candidates(client, workspace)) == []


def test_metrics__six_hours__event_ids_count_once__at_most_60s_old(
    client: TestClient, workspace: WorkspaceFixture, frozen_clock: FrozenClock
) -> None:
    seg = audience(client, workspace, 3)
    ((a,),) = experience_ids(create_campaign(client, workspace, seg["id"], [["a"]]))
    publish(client, workspace, a)
    now = frozen_clock.now()
    batch = [
        {"type": "impression", "experienceId": a, "userId": "c00000", "eventId": "i1"},
        {"type": "impression", "experienceId": a, "userId": "c00001", "eventId": "i2"},
        {"type": "impression", "experienceId": a, "userId": "c00002", "eventId": "i2"},
        {
            "type": "impression",
            "experienceId": a,
            "userId": "c00002",
            "timestamp": (now - timedelta(hours=7)).isoformat(),
        },
        {"type": "conversion", "experienceId": a, "userId": "c00001", "eventId": "c1"},
    ]
    assert send_events(client, workspace, batch) == {"accepted": 4, "duplicates": 1}
    assert send_events(client, workspace, batch) == {
        "accepted": 1,
        "duplicates": 4,
    }  # a retry: only the id-less one
    (cand,) = _candidates(client, workspace)["candidates"]
    assert cand["metrics"] == {"windowHours": 6, "impressions": 2, "conversions": 1, "conversionRate": 0.5}
    send_events(client, workspace, [{"type": "conversion", "experienceId": a, "userId": "c00000"}])
    frozen_clock.advance(timedelta(seconds=30))
    assert _candidates(client, workspace)["candidates"][0]["metrics"]["conversions"] == 1  # cached
    frozen_clock.advance(timedelta(seconds=31))
    assert _candidates(client, workspace)["candidates"][0]["metrics"]["conversions"] == 2


def test_events__batch_id_makes_a_retry_count_once(client: TestClient, workspace: WorkspaceFixture) -> None:
    """Events without their own eventId get `<batchId>:<index>` (issue #15, item 5)."""
    seg = audience(client, workspace, 3)
    ((a,),) = experience_ids(create_campaign(client, workspace, seg["id"], [["a"]]))
    events = [{"type": "impression", "experienceId": a, "userId": f"c0000{i}"} for i in range(2)]
    body = {"events": events, "batchId": "app-batch-9"}
    for expected in ({"accepted": 2, "duplicates": 0}, {"accepted": 0, "duplicates": 2}):
        r = client.post(f"{API}/events", headers=workspace.public_headers, json=body)
        assert r.status_code == 200 and r.json() == expected, r.text


def test_events__unknown_experience_and_bad_type__422(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    r = client.post(
        f"{API}/events",
        headers=workspace.public_headers,
        json={"events": [{"type": "conversion", "experienceId": "nope", "userId": "u"}]},
    )
    assert r.status_code == 422 and r.json()["field"] == "events[0].experienceId"
    r = client.post(
        f"{API}/events",
        headers=workspace.public_headers,
        json={"events": [{"type": "click", "experienceId": "x", "userId": "u"}]},
    )
    assert r.status_code == 422 and r.json()["field"] == "events[0].type"


def test_candidates__auth_and_scopes(client: TestClient, workspace: WorkspaceFixture) -> None:
    assert client.get(f"{API}/candidate").status_code == 401
    assert client.get(f"{API}/candidate", headers=workspace.public_headers).status_code == 403
    assert client.get(f"{API}/candidate", headers=workspace.headers).json() == []
    r = client.post(f"{API}/decide", headers=workspace.public_headers, json={"userId": "u", "record": False})
    assert r.status_code == 200 and r.json()["decisions"] == []
    assert (
        client.post(f"{API}/events", headers=workspace.public_headers, json={"events": []}).status_code == 200
    )
