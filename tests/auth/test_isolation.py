"""Tenant isolation: a key of workspace A gets 404 on every workspace route of B and changes nothing."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from tests.conftest import WorkspaceFixture

SCOPED_PREFIXES = ("/api/v1/workspaces/{id}", "/api/v1/projects/{id}", "/v1/projects/{id}")


def _workspace_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every operation under a workspace path, read from the OpenAPI document (it lists them all)."""
    return [
        (method.upper(), path)
        for path, ops in app.openapi()["paths"].items()
        if path.startswith(SCOPED_PREFIXES)
        for method in ops
    ]


def test_every_workspace_route__other_workspace_key__404_and_no_change(
    app: FastAPI,
    client: TestClient,
    ctx: AppContext,
    workspace: WorkspaceFixture,
    other_workspace: WorkspaceFixture,
) -> None:
    routes = _workspace_routes(app)
    assert routes, "no workspace routes mounted"
    before = client.get(
        f"/api/v1/workspaces/{other_workspace.id}/keys", headers=other_workspace.headers
    ).json()
    for method, path in routes:
        url = path.replace("{id}", other_workspace.id)
        url = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", url)
        r = client.request(method, url, headers=workspace.headers, json={})
        assert r.status_code == 404, f"{method} {path} answered {r.status_code}"
    after = client.get(
        f"/api/v1/workspaces/{other_workspace.id}/keys", headers=other_workspace.headers
    ).json()
    assert before == after


def test_object_of_other_workspace__404(
    client: TestClient, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    keys_b = client.get(
        f"/api/v1/workspaces/{other_workspace.id}/keys", headers=other_workspace.headers
    ).json()
    # A's key, A's path, B's key id: the object does not exist as far as A can tell.
    r = client.delete(f"/api/v1/workspaces/{workspace.id}/keys/{keys_b[0]['id']}", headers=workspace.headers)
    assert r.status_code == 404
    still = client.get(
        f"/api/v1/workspaces/{other_workspace.id}/keys", headers=other_workspace.headers
    ).json()
    assert still == keys_b


@pytest.mark.parametrize("header_value", ["someone-else"])
def test_x_workspace_id_mismatch__404(
    client: TestClient, workspace: WorkspaceFixture, header_value: str
) -> None:
    h = {**workspace.headers, "X-Workspace-ID": header_value}
    assert client.get(f"/api/v1/workspaces/{workspace.id}", headers=h).status_code == 404
    h = {**workspace.headers, "X-Workspace-ID": workspace.id}
    assert client.get(f"/api/v1/workspaces/{workspace.id}", headers=h).status_code == 200
