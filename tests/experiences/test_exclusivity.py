"""The promise of target segments: a user who converts in stage 1 is not targeted in stage 2 — in
the target segment's members (SQL) and in decide (the compiled predicates), which agree user by user."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import WorkspaceFixture
from tests.data.helpers import numbered_customers
from tests.experiences.helpers import (
    API,
    audience,
    create_campaign,
    decide,
    experience_ids,
    members,
    publish,
    send_events,
)

PRO_OR_FREE = {"field": "plan", "operator": "in", "value": ["pro", "free"]}


def test_converted_in_stage_1__absent_from_stage_2_target__in_members_and_in_decide(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    # Given a campaign over the pro and free customers, three stages, published experiences
    seg = audience(client, workspace, 30, PRO_OR_FREE)
    campaign = create_campaign(client, workspace, seg["id"], [["s1a", "s1b"], ["s2a"], ["s3a"]])
    (s1a, s1b), (s2a,), (s3a,) = experience_ids(campaign)
    targets = {e: publish(client, workspace, e)["segments"] for e in (s1a, s1b, s2a, s3a)}
    audience_ids = {c["customer_id"] for c in numbered_customers(30) if c["plan"] in ("pro", "free")}
    assert members(client, workspace, targets[s2a]["target"]) == audience_ids

    # When two users convert on stage 1's experiences and one on stage 3's
    converted_1 = sorted(audience_ids)[:2]
    converted_3 = sorted(audience_ids)[2]
    send_events(
        client,
        workspace,
        [
            {"type": "conversion", "experienceId": s1a, "userId": converted_1[0]},
            {"type": "conversion", "experienceId": s1b, "userId": converted_1[1]},
            {"type": "conversion", "experienceId": s3a, "userId": converted_3},
        ],
    )

    # Then stage 2's target lacks all three (sibling conversions), stage 1's lacks only the stage-3
    # converter (its own stage's conversions do not exclude), and fixed keeps everyone
    assert members(client, workspace, targets[s2a]["target"]) == audience_ids - {*converted_1, converted_3}
    assert members(client, workspace, targets[s1a]["target"]) == audience_ids - {converted_3}
    assert members(client, workspace, targets[s3a]["target"]) == audience_ids - set(converted_1)
    assert members(client, workspace, targets[s2a]["fixed"]) == audience_ids

    # And decide agrees with the segments for every customer, with the reason
    stage_2_target = members(client, workspace, targets[s2a]["target"])
    for customer in numbered_customers(30):
        user = customer["customer_id"]
        answer = decide(client, workspace, user, limit=10, record=False)
        won = {d["experienceId"] for d in answer["decisions"]}
        reasons = {x["experienceId"]: x["reason"] for x in answer["excluded"]}
        assert (s2a in won) == (user in stage_2_target), user
        if user not in audience_ids:
            assert won == set() and set(reasons.values()) == {"not_in_target"}
        elif user in converted_1:
            assert (
                reasons[s2a] == "converted_in_sibling_stage" and reasons[s3a] == "converted_in_sibling_stage"
            )
            assert won == {s1a, s1b}
        elif user == converted_3:
            assert won == {s3a} and reasons[s1a] == "converted_in_sibling_stage"
        else:
            assert won == {s1a, s1b, s2a, s3a}


def test_decide__limit_ranks_and_explains_lower_priority(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    seg = audience(client, workspace, 6)
    (a, b), (c,) = experience_ids(create_campaign(client, workspace, seg["id"], [["a", "b"], ["c"]]))
    for e in (a, b, c):
        publish(client, workspace, e)
    answer = decide(client, workspace, "c00001", record=False)
    assert [d["experienceId"] for d in answer["decisions"]] == [a]
    assert {x["experienceId"]: x["reason"] for x in answer["excluded"]} == {
        b: "lower_priority",
        c: "lower_priority",
    }
    assert "generatedAt" in answer
    # Unknown user: in no segment
    answer = decide(client, workspace, "nobody", record=False)
    assert answer["decisions"] == [] and {x["reason"] for x in answer["excluded"]} == {"not_in_target"}


def test_decide__record__decision_segment_grows(client: TestClient, workspace: WorkspaceFixture) -> None:
    seg = audience(client, workspace, 4)
    ((a,),) = experience_ids(create_campaign(client, workspace, seg["id"], [["a"]]))
    segments = publish(client, workspace, a)["segments"]
    assert members(client, workspace, segments["decision"]) == set()
    answer = decide(client, workspace, "c00002")
    assert [d["experienceId"] for d in answer["decisions"]] == [a]
    assert members(client, workspace, segments["decision"]) == {"c00002"}


def test_decide__outside_dates__and_context(client: TestClient, workspace: WorkspaceFixture) -> None:
    seg = audience(client, workspace, 4, {"field": "plan", "operator": "is", "value": "pro"})
    ((a, b),) = experience_ids(create_campaign(client, workspace, seg["id"], [["a", "b"]]))
    publish(client, workspace, a, startDate="2099-01-01T00:00:00Z")
    publish(client, workspace, b)
    answer = decide(client, workspace, "c00001", limit=5, record=False)  # c00001 is pro
    assert [d["experienceId"] for d in answer["decisions"]] == [b]
    assert answer["excluded"] == [{"experienceId": a, "reason": "outside_dates"}]
    # context fields are merged over the profile for this decision
    answer = decide(client, workspace, "c00000", limit=5, record=False, context={"plan": "pro"})
    assert [d["experienceId"] for d in answer["decisions"]] == [b]
    r = client.post(f"{API}/decide", headers=workspace.headers, json={"userId": "x", "limit": 0})
    assert r.status_code == 422 and r.json()["field"] == "limit"
