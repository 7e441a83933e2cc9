"""Orchestration definitions over HTTP: every field of the seed's object, saving rules, scopes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from tests.conftest import WorkspaceFixture, create_key
from tests.journeys.conftest import Api, create_customers_table

SEED_FIELDS = {
    "id",
    "workspace_id",
    "parent_model_id",
    "name",
    "description",
    "entry_criteria",
    "exit_criteria",
    "tiles",
    "edges",
    "schedule",
    "status",
    "status_error",
    "created_by",
    "created_at",
    "updated_at",
    "last_run_id",
    "last_run_at",
}


@pytest.fixture
def model_id(api: Api) -> str:
    return api.model(create_customers_table(api.ctx, 20))


def seed_body(model_id: str, destination_id: str = "880e8400-e29b-41d4-a716-446655440000") -> dict[str, Any]:
    """The seed's create example, with its elided field mapping filled in."""
    return {
        "name": "Onboarding Flow",
        "description": "Welcome series for new customers",
        "parent_model_id": model_id,
        "schedule": "0 */6 * * *",
        "tiles": [
            {"id": "tile-1", "type": "entry", "position": {"x": 0, "y": 0}},
            {
                "id": "tile-2",
                "type": "sync",
                "config": {
                    "destination_id": destination_id,
                    "field_mapping": [{"from": "email", "to": "email"}],
                },
                "position": {"x": 0, "y": 200},
            },
            {
                "id": "tile-3",
                "type": "wait",
                "config": {"duration": 3, "unit": "days"},
                "position": {"x": 0, "y": 400},
            },
        ],
        "edges": [{"from": "tile-1", "to": "tile-2"}, {"from": "tile-2", "to": "tile-3"}],
    }


def _admin_key_id(client: TestClient, ws: WorkspaceFixture) -> str:
    keys = client.get(f"/api/v1/workspaces/{ws.id}/keys", headers=ws.headers).json()
    return str(next(k["id"] for k in keys if k["name"] == "admin"))


def test_create__seed_example__returns_every_seed_field(api: Api, model_id: str, frozen_clock: Any) -> None:
    # Given the seed's create request, sent with X-Workspace-ID as the seed shows
    headers = {**api.ws.headers, "X-Workspace-ID": api.ws.id}
    r = api.client.post(api.url(), headers=headers, json=seed_body(model_id))

    # Then the orchestration object has exactly the seed's fields, a draft with no run yet
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == SEED_FIELDS
    assert body["workspace_id"] == api.ws.id and body["parent_model_id"] == model_id
    assert body["status"] == "draft" and body["status_error"] == ""
    assert body["created_by"] == _admin_key_id(api.client, api.ws)
    assert body["created_at"] == body["updated_at"] == "2026-01-01T00:00:00Z"
    assert body["last_run_id"] is None and body["last_run_at"] is None
    assert body["schedule"] == "0 */6 * * *"
    assert body["entry_criteria"] == {} and body["exit_criteria"] == {}
    # Positions (the UI's) come back untouched; edges as sent.
    assert [t.get("position") for t in body["tiles"]] == [
        {"x": 0, "y": 0},
        {"x": 0, "y": 200},
        {"x": 0, "y": 400},
    ]
    assert body["edges"] == seed_body(model_id)["edges"]

    # And GET and the list return the same object
    assert api.get(f"/{body['id']}") == body
    assert body in api.get("")


def test_create__opaque_position__stored_untouched(api: Api, model_id: str) -> None:
    position = {"x": 1.5, "y": -2, "layer": {"collapsed": True, "tags": ["a", None]}}
    body = api.create(
        {
            "name": "p",
            "parent_model_id": model_id,
            "tiles": [{"id": "e", "type": "entry", "position": position}],
        }
    )
    assert api.get(f"/{body['id']}")["tiles"] == [
        {"id": "e", "type": "entry", "config": {}, "position": position}
    ]


def test_create__x_workspace_id_of_other_workspace__404(
    api: Api, model_id: str, other_workspace: WorkspaceFixture
) -> None:
    headers = {**api.ws.headers, "X-Workspace-ID": other_workspace.id}
    r = api.client.post(api.url(), headers=headers, json=seed_body(model_id))
    assert r.status_code == 404
    assert api.get("") == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"parent_model_id": "00000000-0000-0000-0000-000000000000"}, "parent_model_id"),
        ({"schedule": "every tuesday"}, "schedule"),
        ({"schedule": "61 * * * *"}, "schedule"),
        (
            {"entry_criteria": {"field": "no_such_column", "operator": "is", "value": 1}},
            "entry_criteria.field",
        ),
        (
            {"exit_criteria": {"field": "plan", "operator": "equals", "value": "pro"}},
            "exit_criteria.operator",
        ),
        (
            {"tiles": [{"id": "w", "type": "wait", "config": {"duration": 3, "unit": "fortnights"}}]},
            "tiles[0].config.unit",
        ),
        (
            {"tiles": [{"id": "w", "type": "wait", "config": {"duration": -1, "unit": "days"}}]},
            "tiles[0].config.duration",
        ),
        ({"tiles": [{"id": "w", "type": "wait", "config": {"until": "25:00"}}]}, "tiles[0].config.until"),
        (
            {"tiles": [{"id": "w", "type": "wait", "config": {"until": "09:00", "timezone": "Mars/Base"}}]},
            "tiles[0].config.timezone",
        ),
        (
            {"tiles": [{"id": "e", "type": "entry", "config": {"reentry": "always"}}]},
            "tiles[0].config.reentry",
        ),
        ({"tiles": [{"id": "e", "type": "entry", "config": {"color": "red"}}]}, "tiles[0].config.color"),
        (
            {
                "tiles": [
                    {
                        "id": "f",
                        "type": "filter",
                        "config": {"criteria": {"field": "nope", "operator": "exists"}},
                    }
                ]
            },
            "tiles[0].config.criteria.field",
        ),
        (
            {
                "tiles": [
                    {"id": "s", "type": "split", "config": {"variants": [{"name": "A", "percentage": 150}]}}
                ]
            },
            "tiles[0].config.variants[0].percentage",
        ),
        (
            {
                "tiles": [
                    {
                        "id": "s",
                        "type": "split",
                        "config": {
                            "variants": [{"name": "A", "percentage": 50}, {"name": "A", "percentage": 50}]
                        },
                    }
                ]
            },
            "tiles[0].config.variants[1].name",
        ),
        (
            {
                "tiles": [
                    {
                        "id": "y",
                        "type": "sync",
                        "config": {"destination_id": "d", "field_mapping": [{"from": "nope", "to": "x"}]},
                    }
                ]
            },
            "tiles[0].config.field_mapping[0].from",
        ),
        (
            {
                "tiles": [
                    {
                        "id": "y",
                        "type": "sync",
                        "config": {
                            "destination_id": "d",
                            "field_mapping": [{"from": "email", "to": "e"}, {"from": "plan", "to": "e"}],
                        },
                    }
                ]
            },
            "tiles[0].config.field_mapping[1].to",
        ),
        ({"tiles": [{"id": "t", "type": "teleport"}]}, "tiles[0].type"),
        ({"tiles": [{"id": "tile 1:x", "type": "entry"}]}, "tiles[0].id"),
        ({"edges": [{"from": "a"}]}, "edges[0].to"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_create__malformed_input__422_naming_the_field_and_nothing_saved(
    api: Api, model_id: str, change: dict[str, Any], field: str
) -> None:
    body = {"name": "bad", "parent_model_id": model_id, **change}
    r = api.client.post(api.url(), headers=api.ws.headers, json=body)
    assert r.status_code == 422, r.text
    payload = r.json()
    fields = [payload.get("field")] + [e.get("field") for e in payload.get("errors", [])]
    assert field in fields, payload
    assert api.get("") == []


def test_create__other_workspaces_model__422(
    api: Api, client: TestClient, ctx: AppContext, other_workspace: WorkspaceFixture
) -> None:
    theirs = Api(client, ctx, other_workspace).model(create_customers_table(ctx, 5))
    r = api.client.post(api.url(), headers=api.ws.headers, json={"name": "x", "parent_model_id": theirs})
    assert r.status_code == 422 and r.json()["field"] == "parent_model_id"


def test_create__incomplete_draft__saved(api: Api, model_id: str) -> None:
    # A draft may be saved half-built: missing config and edges are for validate to report.
    body = api.create(
        {
            "name": "draft",
            "parent_model_id": model_id,
            "tiles": [{"id": "a", "type": "wait"}, {"id": "b", "type": "split"}, {"id": "c", "type": "sync"}],
        }
    )
    assert body["status"] == "draft"


def test_update__fields_sent_replace_the_rest_kept(api: Api, model_id: str, frozen_clock: Any) -> None:
    created = api.create(seed_body(model_id))
    frozen_clock.advance(minutes=5)
    r = api.client.put(
        api.url(f"/{created['id']}"),
        headers=api.ws.headers,
        json={"name": "Renamed", "exit_criteria": {"field": "plan", "operator": "is", "value": "pro"}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "Renamed" and body["description"] == created["description"]
    assert body["exit_criteria"] == {"field": "plan", "operator": "is", "value": "pro"}
    assert body["tiles"] == created["tiles"]
    assert body["created_at"] == created["created_at"] and body["updated_at"] == "2026-01-01T00:05:00Z"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"schedule": "nope"}, "schedule"),
        # The foreign key used to refuse it first, at an autoflush: a 500 (POST said 422).
        ({"parent_model_id": "no-such-model"}, "parent_model_id"),
        # 10^9 days overflowed a timedelta before the 10-year check: a 500.
        (
            {"tiles": [{"id": "w", "type": "wait", "config": {"duration": 10**9, "unit": "days"}}]},
            "tiles[0].config.duration",
        ),
        (
            {"tiles": [{"id": "w", "type": "wait", "config": {"duration": 2**70, "unit": "minutes"}}]},
            "tiles[0].config.duration",
        ),
    ],
)
def test_update__malformed__422_and_unchanged(
    api: Api, model_id: str, change: dict[str, Any], field: str | None
) -> None:
    created = api.create(seed_body(model_id))
    r = api.client.put(api.url(f"/{created['id']}"), headers=api.ws.headers, json=change)
    assert r.status_code == 422, r.text
    if field is not None:
        assert r.json()["field"] == field
    assert api.get(f"/{created['id']}") == created


def test_delete__draft__status_deleted_then_404(api: Api, model_id: str) -> None:
    created = api.create(seed_body(model_id))
    r = api.client.delete(api.url(f"/{created['id']}"), headers=api.ws.headers)
    assert r.status_code == 200 and r.json() == {"status": "deleted"}
    api.get(f"/{created['id']}", expect=404)
    r = api.client.delete(api.url(f"/{created['id']}"), headers=api.ws.headers)
    assert r.status_code == 404


def test_get__unknown_or_other_workspaces_journey__404(
    api: Api, model_id: str, client: TestClient, ctx: AppContext, other_workspace: WorkspaceFixture
) -> None:
    created = api.create(seed_body(model_id))
    api.get("/00000000-0000-0000-0000-000000000000", expect=404)
    theirs = Api(client, ctx, other_workspace)
    for suffix in ("", "/runs", "/stats"):
        r = client.get(f"{theirs.url()}/{created['id']}{suffix}", headers=other_workspace.headers)
        assert r.status_code == 404


def test_scopes__read_key_reads_write_key_writes_stats_need_analytics(
    api: Api, model_id: str, client: TestClient, ctx: AppContext
) -> None:
    created = api.create(seed_body(model_id))
    reader = {"Authorization": f"Bearer {create_key(ctx, api.ws.id, ['journeys:read'])}"}
    writer = {"Authorization": f"Bearer {create_key(ctx, api.ws.id, ['journeys:write'])}"}
    analyst = {"Authorization": f"Bearer {create_key(ctx, api.ws.id, ['analytics:read'])}"}
    jid = created["id"]

    assert client.get(api.url(f"/{jid}"), headers=reader).status_code == 200
    assert client.get(api.url(f"/{jid}/runs"), headers=reader).status_code == 200
    assert client.post(api.url(f"/{jid}/validate"), headers=reader).status_code == 200
    assert client.post(api.url(), headers=reader, json=seed_body(model_id)).status_code == 403
    assert client.post(api.url(f"/{jid}/activate"), headers=reader).status_code == 403
    assert client.post(api.url(f"/{jid}/trigger"), headers=reader).status_code == 403
    assert client.delete(api.url(f"/{jid}"), headers=reader).status_code == 403
    assert client.get(api.url(f"/{jid}/stats"), headers=reader).status_code == 403

    assert client.get(api.url(f"/{jid}"), headers=writer).status_code == 403
    r = client.post(api.url(), headers=writer, json=seed_body(model_id))
    assert r.status_code == 201
    # created_by is the key that created it
    keys = client.get(f"/api/v1/workspaces/{api.ws.id}/keys", headers=api.ws.headers).json()
    writer_key = next(k for k in keys if k["scopes"] == ["journeys:write"])
    assert r.json()["created_by"] == writer_key["id"]

    assert client.get(api.url(f"/{jid}/stats"), headers=analyst).status_code == 200
    assert client.get(api.url(f"/{jid}"), headers=analyst).status_code == 403
