"""One error envelope and one path notation everywhere (issue #14, item 4)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import WorkspaceFixture, create_key

ENVELOPE = {"detail", "code", "field", "errors"}


def _envelope(body: dict[str, object]) -> None:
    assert set(body) <= ENVELOPE and {"detail", "code"} <= set(body), body
    for item in body.get("errors") or []:  # type: ignore[attr-defined]
        assert set(item) == {"field", "message", "code"}, item


def test_malformed_json__400_with_line_and_column(client: TestClient, workspace: WorkspaceFixture) -> None:
    r = client.post(
        f"/api/v1/workspaces/{workspace.id}/segments",
        headers={**workspace.headers, "Content-Type": "application/json"},
        content=b'{"name": "x",\n  "filter": {,}}',
    )
    assert r.status_code == 400, r.text
    body = r.json()
    _envelope(body)
    assert body["code"] == "malformed_json" and "field" not in body
    assert "line 2, column 14" in body["detail"], body["detail"]


def test_malformed_json_on_register__400_with_line_and_column(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    r = client.post(
        f"/api/v1/projects/{workspace.id}/register",
        headers={**workspace.public_headers, "Content-Type": "application/json"},
        content=b'{"placement": "x", "user_id": }',
    )
    assert r.status_code == 400, r.text
    assert "line 1, column 31" in r.json()["detail"]


def test_a_body_without_json_content_type__415_saying_so(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    r = client.post(
        f"/api/v1/workspaces/{workspace.id}/keys",
        headers={**workspace.headers, "Content-Type": "application/x-www-form-urlencoded"},
        content=b'{"name": "r", "scopes": ["campaigns:read"]}',
    )
    assert r.status_code == 415, r.text
    body = r.json()
    _envelope(body)
    assert "Content-Type: application/json" in body["detail"] and "x-www-form-urlencoded" in body["detail"]


def test_validation_errors__one_path_notation(client: TestClient, workspace: WorkspaceFixture) -> None:
    r = client.post(
        f"/api/v1/workspaces/{workspace.id}/journeys",
        headers=workspace.headers,
        json={"name": "j", "parent_model_id": "m", "tiles": [{"id": "a", "type": "entry"}, {"id": "b"}]},
    )
    assert r.status_code == 422, r.text
    body = r.json()
    _envelope(body)
    fields = [e["field"] for e in body["errors"]]
    assert "tiles[1].type" in fields, fields
    assert all("." + str(i) not in (f or "") for f in fields for i in range(3)), fields
    assert body["field"] == fields[0] and body["detail"].startswith(f"{fields[0]}: ")


def test_query_parameter_error_names_the_parameter(client: TestClient, workspace: WorkspaceFixture) -> None:
    r = client.get(
        f"/api/v1/workspaces/{workspace.id}/segments/x/members?limit=lots", headers=workspace.headers
    )
    assert r.status_code == 422
    assert r.json()["field"] == "limit"


def test_401_403_404_and_unknown_routes_share_the_envelope(
    client: TestClient, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    base = f"/api/v1/workspaces/{workspace.id}"
    no_key = client.get(f"{base}/segments")
    assert no_key.status_code == 401 and no_key.headers["www-authenticate"] == "Bearer"
    reader = create_key(client.app.state.ctx, workspace.id, ["campaigns:read"])  # type: ignore[attr-defined]
    forbidden = client.get(f"{base}/segments", headers={"Authorization": f"Bearer {reader}"})
    assert forbidden.status_code == 403
    foreign = client.get(f"/api/v1/workspaces/{other_workspace.id}/segments", headers=workspace.headers)
    assert foreign.status_code == 404
    nowhere = client.get("/api/v1/nowhere", headers=workspace.headers)
    assert nowhere.status_code == 404
    wrong_method = client.patch("/readyz")
    assert wrong_method.status_code == 405
    for r, code in [
        (no_key, "unauthorized"),
        (forbidden, "forbidden"),
        (foreign, "not_found"),
        (nowhere, "not_found"),
        (wrong_method, "method_not_allowed"),
    ]:
        _envelope(r.json())
        assert r.json()["code"] == code, r.json()


def test_journey_activation_failure__the_envelope_with_every_error(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    base = f"/api/v1/workspaces/{workspace.id}"
    model = client.post(
        f"{base}/models",
        headers=workspace.headers,
        json={"name": "people", "primary_key": "id", "columns": [{"name": "id", "type": "string"}]},
    ).json()
    journey = client.post(
        f"{base}/journeys",
        headers=workspace.headers,
        json={"name": "bad", "parent_model_id": model["id"], "tiles": [{"id": "w", "type": "wait"}]},
    ).json()
    r = client.post(f"{base}/journeys/{journey['id']}/activate", headers=workspace.headers)
    assert r.status_code == 422
    body = r.json()
    _envelope(body)
    assert next(e["message"] for e in body["errors"]) == "Orchestration must have exactly one entry tile"
    assert body["detail"].startswith("Journey is not valid: ")
