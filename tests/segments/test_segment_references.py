"""Segments that refer to segments ({"segment": "<id>"}): members, cycles refused, in-use refused,
generated segments read-only."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from overture.db.context import AppContext
from overture.segments import service as segments
from tests.conftest import WorkspaceFixture
from tests.data.helpers import base, create_customers, numbered_customers

PRO = {"field": "plan", "operator": "is", "value": "pro"}


def _post(client: TestClient, ws: WorkspaceFixture, model: dict[str, Any], flt: Any) -> Any:
    return client.post(
        f"{base(ws)}/segments", headers=ws.headers, json={"name": "s", "model_id": model["id"], "filter": flt}
    )


def _members(client: TestClient, ws: WorkspaceFixture, seg_id: str) -> list[Any]:
    r = client.get(f"{base(ws)}/segments/{seg_id}/members?limit=1000", headers=ws.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["members"])


def test_reference__members_are_the_referenced_segments(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, numbered_customers(30))
    pro = _post(client, workspace, model, PRO).json()
    vip_pro = _post(
        client,
        workspace,
        model,
        {"all": [{"segment": pro["id"]}, {"field": "vip", "operator": "is", "value": True}]},
    ).json()
    not_pro = _post(client, workspace, model, {"not": {"segment": pro["id"]}}).json()
    everyone = {c["customer_id"] for c in numbered_customers(30)}
    pros = {c["customer_id"] for c in numbered_customers(30) if c["plan"] == "pro"}
    assert set(_members(client, workspace, pro["id"])) == pros
    assert set(_members(client, workspace, vip_pro["id"])) == {
        c["customer_id"] for c in numbered_customers(30) if c["plan"] == "pro" and c["vip"]
    }
    assert set(_members(client, workspace, not_pro["id"])) == everyone - pros
    r = client.post(f"{base(workspace)}/segments/{not_pro['id']}/evaluate", headers=workspace.headers)
    assert r.json()["reach"]["evaluated_count"] == len(everyone - pros)


def test_reference__cycle__422_and_nothing_changed(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, numbered_customers(3))
    a = _post(client, workspace, model, PRO).json()
    b = _post(client, workspace, model, {"segment": a["id"]}).json()
    r = client.patch(
        f"{base(workspace)}/segments/{a['id']}",
        headers=workspace.headers,
        json={"filter": {"segment": b["id"]}},
    )
    assert r.status_code == 422, r.text
    assert "cycle" in r.json()["detail"] and r.json()["field"] == "filter.segment"
    r = client.patch(
        f"{base(workspace)}/segments/{a['id']}",
        headers=workspace.headers,
        json={"filter": {"any": [PRO, {"segment": a["id"]}]}},
    )
    assert r.status_code == 422 and "cycle" in r.json()["detail"]
    assert (
        client.get(f"{base(workspace)}/segments/{a['id']}", headers=workspace.headers).json()["filter"] == PRO
    )


def test_reference__unknown_or_other_workspace_segment__422(
    client: TestClient, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, [])
    other_model = create_customers(client, other_workspace, [])
    foreign = _post(client, other_workspace, other_model, PRO).json()
    for ref in ("nope", foreign["id"]):
        r = _post(client, workspace, model, {"all": [PRO, {"segment": ref}]})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "filter.all[1].segment"


def test_reference__referenced_segment__delete_409(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, [])
    a = _post(client, workspace, model, PRO).json()
    b = _post(client, workspace, model, {"segment": a["id"]}).json()
    assert (
        client.delete(f"{base(workspace)}/segments/{a['id']}", headers=workspace.headers).status_code == 409
    )
    assert (
        client.delete(f"{base(workspace)}/segments/{b['id']}", headers=workspace.headers).status_code == 204
    )
    assert (
        client.delete(f"{base(workspace)}/segments/{a['id']}", headers=workspace.headers).status_code == 204
    )


def test_generated_segment__listed_read_only_and_soft_deleted(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, numbered_customers(6))
    with ctx.transaction(workspace_id=workspace.id) as session:
        gen = segments.save_generated(session, None, name="gen", model_id=model["id"], filter=PRO)
        gen_id = gen.id
    listed = client.get(f"{base(workspace)}/segments", headers=workspace.headers).json()
    assert [(s["id"], s["generated"]) for s in listed] == [(gen_id, True)]
    r = client.patch(f"{base(workspace)}/segments/{gen_id}", headers=workspace.headers, json={"name": "x"})
    assert r.status_code == 409
    assert client.delete(f"{base(workspace)}/segments/{gen_id}", headers=workspace.headers).status_code == 409
    with ctx.transaction(workspace_id=workspace.id) as session:
        segments.delete_generated(session, [gen_id])
    assert client.get(f"{base(workspace)}/segments", headers=workspace.headers).json() == []
    assert client.get(f"{base(workspace)}/segments/{gen_id}", headers=workspace.headers).status_code == 404
