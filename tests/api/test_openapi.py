"""The OpenAPI document tells the truth (issue #14, item 3): the bearer scheme, every operation's
error answers in the envelope the server really sends (each one checked against a real answer), the
register endpoint's body and answers, and the docs pages served from the package."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from tests.conftest import WorkspaceFixture

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def doc(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        # not the dashboard (HTML, cookie sessions) nor seed 002's public API (its own envelope)
        if method in HTTP_METHODS and not path.startswith(("/ui/", "/public/"))
    ]


def _check(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    jsonschema.validate(instance, {**schema, "components": doc["components"]})


def _url(path: str, workspace_id: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path.replace("{id}", workspace_id))


def test_every_reference_resolves_and_the_default_422_is_gone(doc: dict[str, Any]) -> None:
    text = str(doc)
    for ref in set(re.findall(r"'\$ref': '([^']+)'", text)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref
    assert all("HTTPValidationError" not in str(op) for _, _, op in _operations(doc))
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }


def test_authenticated_operations_declare_the_scheme_and_their_errors(doc: dict[str, Any]) -> None:
    ops = _operations(doc)
    assert len(ops) > 40
    for path, method, op in ops:
        if path in ("/healthz", "/readyz", "/metrics"):
            assert "security" not in op and "401" not in op["responses"], path
            continue
        assert op.get("security") == [{"bearer": []}], (method, path)
        expected = (
            {"401", "403"} | ({"404"} if "{" in path else set()) | ({"409"} if method != "get" else set())
        )
        if "requestBody" in op:
            expected |= {"400", "413", "415", "422"}
        assert expected <= set(op["responses"]), (method, path, sorted(op["responses"]))
        for code in expected:
            schema = op["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, code)


def test_register_declares_its_body_and_answers(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/api/v1/projects/{id}/register"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert {"placement", "user_id"} <= set(body["properties"]) and "placement" in body["required"]
    answer = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/RegisterOut"}
    assert {"401", "403", "404", "400", "422"} <= set(op["responses"])


def test_declared_error_schemas_match_real_answers_for_every_operation(
    client: TestClient, doc: dict[str, Any], workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    checked = 0
    for path, method, op in _operations(doc):
        responses = op["responses"]
        url = _url(path, workspace.id)
        if "401" in responses:
            r = client.request(method, url)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            _check(doc, responses["401"]["content"]["application/json"]["schema"], r.json())
            checked += 1
        if "404" in responses and "{id}" in path:
            r = client.request(method, _url(path, other_workspace.id), headers=workspace.headers)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            _check(doc, responses["404"]["content"]["application/json"]["schema"], r.json())
            checked += 1
        if "400" in responses:
            r = client.request(
                method, url, headers={**workspace.headers, "Content-Type": "application/json"}, content=b"{"
            )
            assert r.status_code == 400, (method, path, r.status_code, r.text)
            _check(doc, responses["400"]["content"]["application/json"]["schema"], r.json())
            checked += 1
    assert checked > 100


def test_declared_success_schemas_match_real_answers_of_list_operations(
    client: TestClient, doc: dict[str, Any], workspace: WorkspaceFixture
) -> None:
    checked = 0
    for path, method, op in _operations(doc):
        if method != "get" or re.search(r"\{(?!id\})", path) or "security" not in op:
            continue
        if any(
            p["in"] == "query" and p["name"] not in ("limit", "cursor", "status")
            for p in op.get("parameters", [])
        ):
            continue  # an operation with filters of its own is checked by its surface's tests
        r = client.get(_url(path, workspace.id), headers=workspace.headers)
        assert r.status_code == 200, (path, r.text)
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        _check(doc, schema, r.json())
        checked += 1
    assert checked >= 8


def test_docs_pages_use_packaged_assets(client: TestClient) -> None:
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page).text
        assert f"/docs-assets/{asset}" in html and "cdn" not in html.lower() and "googleapis" not in html
        r = client.get(f"/docs-assets/{asset}")
        assert r.status_code == 200 and len(r.content) > 500_000
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
