"""Workspaces and API keys over HTTP: creation, listing, revocation, scopes, tenant isolation."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from overture.auth.scopes import SCOPES
from overture.db.context import AppContext
from tests.conftest import WorkspaceFixture, create_key


def test_get_workspace__admin_key__returns_it(client: TestClient, workspace: WorkspaceFixture) -> None:
    r = client.get(f"/api/v1/workspaces/{workspace.id}", headers=workspace.headers)
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == workspace.id and body["name"] == "ws-a"
    assert body["created_at"].endswith("Z")


def test_create_key__returns_secret_once_and_lists_without_it(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    r = client.post(
        f"/api/v1/workspaces/{workspace.id}/keys",
        json={"name": "reporting", "scopes": ["campaigns:read", "analytics:read"]},
        headers=workspace.headers,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("sk_") and len(created["secret"]) >= 3 + 43
    assert created["prefix"] == created["secret"][:11]
    assert set(created) >= {"id", "name", "scopes", "prefix", "created_at", "secret"}
    listed = client.get(f"/api/v1/workspaces/{workspace.id}/keys", headers=workspace.headers).json()
    assert created["id"] in {k["id"] for k in listed}
    assert all("secret" not in k for k in listed)
    assert created["secret"] not in r.request.url.path  # never echoed anywhere else
    assert created["secret"] not in str(listed)


def test_create_key__unknown_scope__422_naming_field(client: TestClient, workspace: WorkspaceFixture) -> None:
    r = client.post(
        f"/api/v1/workspaces/{workspace.id}/keys",
        json={"name": "x", "scopes": ["campaigns:read", "everything"]},
        headers=workspace.headers,
    )
    assert r.status_code == 422
    assert r.json()["field"] == "scopes" and "everything" in r.json()["detail"]


def test_create_key__unknown_body_field__422(client: TestClient, workspace: WorkspaceFixture) -> None:
    r = client.post(
        f"/api/v1/workspaces/{workspace.id}/keys",
        json={"name": "x", "scopes": ["admin"], "colour": "red"},
        headers=workspace.headers,
    )
    assert r.status_code == 422
    assert "colour" in r.json()["detail"]


def test_create_key__public_with_private_scope__422(client: TestClient, workspace: WorkspaceFixture) -> None:
    r = client.post(
        f"/api/v1/workspaces/{workspace.id}/keys",
        json={"name": "sdk", "scopes": ["admin"], "public": True},
        headers=workspace.headers,
    )
    assert r.status_code == 422


def test_public_key__on_admin_route__403(client: TestClient, workspace: WorkspaceFixture) -> None:
    r = client.get(f"/api/v1/workspaces/{workspace.id}/keys", headers=workspace.public_headers)
    assert r.status_code == 403


def test_no_key__401(client: TestClient, workspace: WorkspaceFixture) -> None:
    assert client.get(f"/api/v1/workspaces/{workspace.id}").status_code == 401
    bad = {"Authorization": "Bearer sk_" + "A" * 43}
    assert client.get(f"/api/v1/workspaces/{workspace.id}", headers=bad).status_code == 401
    assert (
        client.get(f"/api/v1/workspaces/{workspace.id}", headers={"Authorization": "Basic x"}).status_code
        == 401
    )


def test_missing_scope__403(client: TestClient, ctx: AppContext, workspace: WorkspaceFixture) -> None:
    reader = create_key(ctx, workspace.id, ["campaigns:read"])
    r = client.get(f"/api/v1/workspaces/{workspace.id}/keys", headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403
    assert "admin" in r.json()["detail"]


def test_revoke__takes_effect_on_next_request(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    # Given a second admin key that has been used (so it sits in the cache)
    other = create_key(ctx, workspace.id, ["admin"])
    h = {"Authorization": f"Bearer {other}"}
    assert client.get(f"/api/v1/workspaces/{workspace.id}", headers=h).status_code == 200
    keys = client.get(f"/api/v1/workspaces/{workspace.id}/keys", headers=workspace.headers).json()
    key_id = next(
        k["id"]
        for k in keys
        if other.startswith(k["prefix"]) and k["scopes"] == ["admin"] and k["name"] == "t"
    )
    # When it is revoked
    assert (
        client.delete(
            f"/api/v1/workspaces/{workspace.id}/keys/{key_id}", headers=workspace.headers
        ).status_code
        == 204
    )
    # Then the very next request with it is refused
    assert client.get(f"/api/v1/workspaces/{workspace.id}", headers=h).status_code == 401
    assert (
        client.delete(
            f"/api/v1/workspaces/{workspace.id}/keys/{key_id}", headers=workspace.headers
        ).status_code
        == 404
    )


def test_last_used_at__recorded(client: TestClient, ctx: AppContext, workspace: WorkspaceFixture) -> None:
    client.get(f"/api/v1/workspaces/{workspace.id}", headers=workspace.headers)
    keys = client.get(f"/api/v1/workspaces/{workspace.id}/keys", headers=workspace.headers).json()
    admin = next(k for k in keys if workspace.api_key.startswith(k["prefix"]))
    assert admin["last_used_at"] is not None


def test_no_plaintext_key_in_database(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    created = client.post(
        f"/api/v1/workspaces/{workspace.id}/keys",
        json={"name": "n", "scopes": ["admin"]},
        headers=workspace.headers,
    ).json()
    secrets_ = [workspace.api_key, workspace.public_key, created["secret"]]
    with ctx.engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table in inspector.get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                dumped = repr(tuple(row))
                for secret in secrets_:
                    assert secret not in dumped, f"plaintext key found in {table}"
                    assert secret[3:] not in dumped, f"key body found in {table}"


def test_scopes_list_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for scope in SCOPES:
        assert f"`{scope}`" in doc
