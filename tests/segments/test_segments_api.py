"""Segments over HTTP: CRUD with filter validation, reach states, members pages, preview, isolation."""

from __future__ import annotations

import base64
import itertools
from typing import Any

import pytest
from fastapi.testclient import TestClient

from overture.clock import FrozenClock
from overture.data.source import get_source
from overture.db.context import AppContext
from overture.errors import Conflict
from overture.segments import service as segments
from overture.segments.models import Segment
from overture.segments.states import REACH, ReachStatus
from tests.conftest import WorkspaceFixture, create_key
from tests.data.helpers import base, create_customers, create_model, numbered_customers

PRO = {"field": "plan", "operator": "is", "value": "pro"}


def _segment(
    client: TestClient, ws: WorkspaceFixture, model: dict[str, Any], flt: Any = PRO
) -> dict[str, Any]:
    r = client.post(
        f"{base(ws)}/segments",
        headers=ws.headers,
        json={"name": "seg", "model_id": model["id"], "filter": flt},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _evaluate(client: TestClient, ws: WorkspaceFixture, seg: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"{base(ws)}/segments/{seg['id']}/evaluate", headers=ws.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_create_segment__starts_idle(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, numbered_customers(9))
    seg = _segment(client, workspace, model)
    assert seg["reach"] == {
        "status": "idle",
        "evaluated_count": None,
        "evaluated_at": None,
        "is_stale": False,
        "error": None,
    }
    got = client.get(f"{base(workspace)}/segments/{seg['id']}", headers=workspace.headers).json()
    assert got == seg
    assert [s["id"] for s in client.get(f"{base(workspace)}/segments", headers=workspace.headers).json()] == [
        seg["id"]
    ]


def test_create_segment__unknown_field__422_naming_path(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, [])
    r = client.post(
        f"{base(workspace)}/segments",
        headers=workspace.headers,
        json={
            "name": "s",
            "model_id": model["id"],
            "filter": {"all": [PRO, {"field": "nope", "operator": "exists"}]},
        },
    )
    assert r.status_code == 422
    assert r.json()["field"] == "filter.all[1].field"


def test_create_segment__hostile_field_name__422_not_sql(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, numbered_customers(3))
    for field in ['plan"; DROP TABLE x; --', "plan) OR (1=1", "customer_id' --"]:
        r = client.post(
            f"{base(workspace)}/segments/preview",
            headers=workspace.headers,
            json={"model_id": model["id"], "filter": {"field": field, "operator": "exists"}},
        )
        assert r.status_code == 422, field
    r = client.post(
        f"{base(workspace)}/segments/preview",
        headers=workspace.headers,
        json={
            "model_id": model["id"],
            "filter": {"field": "plan", "operator": "is", "value": "x' OR '1'='1"},
        },
    )
    assert r.json()["count"] == 0


def test_create_segment__unknown_model__422(client: TestClient, workspace: WorkspaceFixture) -> None:
    r = client.post(
        f"{base(workspace)}/segments",
        headers=workspace.headers,
        json={"name": "s", "model_id": "nope", "filter": None},
    )
    assert r.status_code == 422 and r.json()["field"] == "model_id"


def test_evaluate__counts_members_and_goes_ok(
    client: TestClient, workspace: WorkspaceFixture, frozen_clock: FrozenClock
) -> None:
    model = create_customers(client, workspace, numbered_customers(30))
    seg = _segment(client, workspace, model)
    out = _evaluate(client, workspace, seg)
    assert out["reach"] == {
        "status": "ok",
        "evaluated_count": 10,
        "evaluated_at": "2026-01-01T00:00:00Z",
        "is_stale": False,
        "error": None,
    }


def test_patch_filter__reach_is_stale_until_evaluated(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, numbered_customers(30))
    seg = _segment(client, workspace, model)
    _evaluate(client, workspace, seg)
    url = f"{base(workspace)}/segments/{seg['id']}"
    renamed = client.patch(url, headers=workspace.headers, json={"name": "renamed"}).json()
    assert renamed["reach"]["is_stale"] is False  # a name is not the definition
    changed = client.patch(
        url,
        headers=workspace.headers,
        json={"filter": {"field": "plan", "operator": "in", "value": ["pro", "free"]}},
    ).json()
    assert changed["reach"]["is_stale"] is True
    assert changed["reach"]["evaluated_count"] == 10
    again = _evaluate(client, workspace, seg)
    assert again["reach"]["is_stale"] is False and again["reach"]["evaluated_count"] == 20
    r = client.patch(
        url, headers=workspace.headers, json={"filter": {"field": "bogus", "operator": "exists"}}
    )
    assert r.status_code == 422 and r.json()["field"] == "filter.field"


def test_evaluate__source_fails__failed_keeps_prior_count(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, numbered_customers(30), name="doomed")
    seg = _segment(client, workspace, model)
    assert _evaluate(client, workspace, seg)["reach"]["evaluated_count"] == 10
    with get_source(ctx).begin() as conn:
        conn.exec_driver_sql(f'ALTER TABLE "{model["table"]}" RENAME TO "{model["table"]}_gone"')
    try:
        failed = _evaluate(client, workspace, seg)
        assert failed["reach"]["status"] == "failed"
        assert failed["reach"]["evaluated_count"] == 10
        assert failed["reach"]["error"]
    finally:
        with get_source(ctx).begin() as conn:
            conn.exec_driver_sql(f'ALTER TABLE "{model["table"]}_gone" RENAME TO "{model["table"]}"')
    assert _evaluate(client, workspace, seg)["reach"]["status"] == "ok"


def test_evaluate__broken_sql_model__failed(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    with get_source(ctx).begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS seg_src")
        conn.exec_driver_sql("CREATE TABLE seg_src (id INTEGER, plan VARCHAR)")
        conn.exec_driver_sql("INSERT INTO seg_src VALUES (1, 'pro'), (2, 'free')")
    model = create_model(client, workspace, name="q", primary_key="id", sql="SELECT id, plan FROM seg_src")
    seg = _segment(client, workspace, model)
    assert _evaluate(client, workspace, seg)["reach"]["evaluated_count"] == 1
    with get_source(ctx).begin() as conn:
        conn.exec_driver_sql("DROP TABLE seg_src")
    out = _evaluate(client, workspace, seg)
    assert out["reach"]["status"] == "failed" and out["reach"]["evaluated_count"] == 1


def test_evaluate__while_pending__409(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, numbered_customers(3))
    seg = _segment(client, workspace, model)
    with ctx.transaction(workspace_id=workspace.id) as session:
        row = session.get(Segment, seg["id"])
        assert row is not None
        row.reach_status, row.evaluation_started_at = "pending", ctx.clock.now()
    r = client.post(f"{base(workspace)}/segments/{seg['id']}/evaluate", headers=workspace.headers)
    assert r.status_code == 409
    got = client.get(f"{base(workspace)}/segments/{seg['id']}", headers=workspace.headers).json()
    assert got["reach"]["status"] == "pending"


def test_evaluate__pending_past_lease__retaken(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, frozen_clock: FrozenClock
) -> None:
    model = create_customers(client, workspace, numbered_customers(3))
    seg = _segment(client, workspace, model)
    with ctx.transaction(workspace_id=workspace.id) as session:
        row = session.get(Segment, seg["id"])
        assert row is not None
        row.reach_status, row.evaluation_started_at = "pending", frozen_clock.now()
    frozen_clock.advance(segments.PENDING_LEASE)
    assert _evaluate(client, workspace, seg)["reach"]["status"] == "ok"


#: Seed 002's reach machine, written out here (not read from the code) so a wrong table entry fails.
REACH_ALLOWED = {
    ("idle", "pending"),
    ("ok", "pending"),
    ("failed", "pending"),
    ("pending", "ok"),
    ("pending", "failed"),
}
REACH_STATES = ("idle", "pending", "ok", "failed")


def test_reach_states__are_the_seeds() -> None:
    assert sorted(ReachStatus) == sorted(REACH_STATES)


@pytest.mark.parametrize(("start", "end"), list(itertools.product(REACH_STATES, repeat=2)))
def test_reach_transitions__every_pair(start: str, end: str) -> None:
    segment = Segment(reach_status=start)
    if (start, end) in REACH_ALLOWED:
        REACH.move(segment, end, attr="reach_status")
        assert segment.reach_status == end
    else:
        with pytest.raises(Conflict) as info:
            REACH.move(segment, end, attr="reach_status")
        assert f"'{start}'" in info.value.message and f"'{end}'" in info.value.message
        assert segment.reach_status == start


def test_members__pages_cover_every_member_once(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, numbered_customers(250))
    seg = _segment(client, workspace, model, {"field": "plan", "operator": "is_not", "value": "free"})
    expected = sorted(f"c{i:05d}" for i in range(250) if i % 3 != 0)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 37}
        if cursor:
            params["cursor"] = cursor
        r = client.get(
            f"{base(workspace)}/segments/{seg['id']}/members", headers=workspace.headers, params=params
        )
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["primary_key"] == "customer_id"
        assert len(page["members"]) <= 37
        seen += page["members"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert pages == -(-len(expected) // 37)


def test_members__bad_limit_or_cursor__422(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, numbered_customers(3))
    seg = _segment(client, workspace, model)
    url = f"{base(workspace)}/segments/{seg['id']}/members"
    assert client.get(url, headers=workspace.headers, params={"limit": 0}).status_code == 422
    assert client.get(url, headers=workspace.headers, params={"limit": 1001}).status_code == 422
    for bad in ["garbage!", base64.urlsafe_b64encode(b'{"x":1}').decode()]:
        r = client.get(url, headers=workspace.headers, params={"cursor": bad})
        assert r.status_code == 422 and r.json()["field"] == "cursor"


def test_members__integer_keys_page_in_numeric_order(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    with get_source(ctx).begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS seg_ints")
        conn.exec_driver_sql("CREATE TABLE seg_ints (id BIGINT, plan VARCHAR)")
        conn.exec_driver_sql("INSERT INTO seg_ints SELECT i, 'pro' FROM range(1, 26) t(i)")
    model = create_model(client, workspace, name="ints", primary_key="id", table="seg_ints")
    seg = _segment(client, workspace, model)
    url = f"{base(workspace)}/segments/{seg['id']}/members"
    first = client.get(url, headers=workspace.headers, params={"limit": 10}).json()
    assert first["members"] == list(range(1, 11))
    second = client.get(
        url, headers=workspace.headers, params={"limit": 10, "cursor": first["next_cursor"]}
    ).json()
    assert second["members"] == list(range(11, 21))


def test_preview__counts_unsaved_filter(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, numbered_customers(30))
    r = client.post(
        f"{base(workspace)}/segments/preview",
        headers=workspace.headers,
        json={
            "model_id": model["id"],
            "filter": {"all": [PRO, {"field": "ltv", "operator": "gte", "value": 10}]},
        },
    )
    assert r.status_code == 200
    assert r.json() == {"model_id": model["id"], "count": 7}
    everyone = client.post(
        f"{base(workspace)}/segments/preview", headers=workspace.headers, json={"model_id": model["id"]}
    ).json()
    assert everyone["count"] == 30


def test_preview__behavioural_condition_uses_workspace_events(
    client: TestClient,
    workspace: WorkspaceFixture,
    other_workspace: WorkspaceFixture,
    frozen_clock: FrozenClock,
) -> None:
    model = create_customers(client, workspace, numbered_customers(5))
    events = [{"entity_id": "c00001", "event": "purchase", "properties": {"revenue": 5}}] * 2 + [
        {"entity_id": "c00002", "event": "purchase", "properties": {"revenue": 50}}
    ]
    client.post(f"{base(workspace)}/events", headers=workspace.public_headers, json={"events": events})
    # The same entity id in another workspace must not count here.
    client.post(
        f"{base(other_workspace)}/events",
        headers=other_workspace.public_headers,
        json={"events": [{"entity_id": "c00003", "event": "purchase"}]},
    )

    def count(flt: Any) -> int:
        r = client.post(
            f"{base(workspace)}/segments/preview",
            headers=workspace.headers,
            json={"model_id": model["id"], "filter": flt},
        )
        assert r.status_code == 200, r.text
        return int(r.json()["count"])

    assert count({"event": "purchase"}) == 2
    assert count({"event": "purchase", "count": {"gte": 2}}) == 1
    assert count({"event": "purchase", "where": {"field": "revenue", "operator": "gt", "value": 10}}) == 1
    frozen_clock.advance(days=40)
    assert count({"event": "purchase", "within_last": "30d"}) == 0


def test_segments__other_workspace__404(
    client: TestClient, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    theirs_model = create_customers(client, other_workspace, numbered_customers(3))
    theirs = _segment(client, other_workspace, theirs_model)
    url = f"{base(workspace)}/segments/{theirs['id']}"
    h = workspace.headers
    assert client.get(url, headers=h).status_code == 404
    assert client.patch(url, headers=h, json={"name": "x"}).status_code == 404
    assert client.post(f"{url}/evaluate", headers=h).status_code == 404
    assert client.get(f"{url}/members", headers=h).status_code == 404
    assert client.delete(url, headers=h).status_code == 404
    r = client.post(f"{base(workspace)}/segments/preview", headers=h, json={"model_id": theirs_model["id"]})
    assert r.status_code == 422  # another workspace's model is as good as absent
    r = client.post(
        f"{base(workspace)}/segments", headers=h, json={"name": "s", "model_id": theirs_model["id"]}
    )
    assert r.status_code == 422
    assert (
        client.get(
            f"{base(other_workspace)}/segments/{theirs['id']}", headers=other_workspace.headers
        ).json()["name"]
        == "seg"
    )


def test_delete__segment_gone_and_model_in_use_409(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, numbered_customers(3))
    seg = _segment(client, workspace, model)
    r = client.delete(f"{base(workspace)}/models/{model['id']}", headers=workspace.headers)
    assert r.status_code == 409
    assert (
        client.delete(f"{base(workspace)}/segments/{seg['id']}", headers=workspace.headers).status_code == 204
    )
    assert client.get(f"{base(workspace)}/segments/{seg['id']}", headers=workspace.headers).status_code == 404
    assert (
        client.delete(f"{base(workspace)}/models/{model['id']}", headers=workspace.headers).status_code == 204
    )


def test_segments__scopes(client: TestClient, ctx: AppContext, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, numbered_customers(3))
    seg = _segment(client, workspace, model)
    reader = {"Authorization": f"Bearer {create_key(ctx, workspace.id, ['segments:read'])}"}
    assert client.get(f"{base(workspace)}/segments/{seg['id']}/members", headers=reader).status_code == 200
    assert client.post(f"{base(workspace)}/segments/{seg['id']}/evaluate", headers=reader).status_code == 403
    assert client.get(f"{base(workspace)}/segments", headers=workspace.public_headers).status_code == 403


def test_segment_members_select__reusable_by_other_surfaces(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, numbered_customers(12))
    seg = _segment(client, workspace, model)
    with ctx.transaction(write=False, workspace_id=workspace.id) as session:
        row = segments.get_segment(session, seg["id"])
        select = segments.segment_members_select(session, row)
        assert segments.count_select(session, select) == 4
    with get_source(ctx).connect() as conn:
        keys = sorted(r.entity_id for r in conn.execute(select))
    assert keys == ["c00001", "c00004", "c00007", "c00010"]
