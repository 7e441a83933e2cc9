"""Bad input never produces a 500: every operation in the OpenAPI document, with hostile bodies and
query strings, answers a 4xx (or a success) — and never an internal error."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import WorkspaceFixture

HOSTILE_VALUES: list[Any] = [
    *(None, "", "'; drop table x; --", -1, 10**30, 1.5e308, [], {}, True, "\u0000", "%_\\"),
]
HOSTILE_BODIES: list[Any] = [{}, [], "text", 0, None, {"unexpected": 1}]
HOSTILE_QUERY = {"limit": "-5", "cursor": "!!notacursor!!", "offset": "x", "since": "yesterday"}


def _operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    ops = []
    for path, methods in app.openapi()["paths"].items():
        for method, op in methods.items():
            ops.append((method.upper(), path, op))
    return ops


def _body_fields(app: FastAPI, op: dict[str, Any]) -> list[str]:
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref")
    if ref:
        schema = app.openapi()["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return list(schema.get("properties", {}))


def _url(path: str, workspace_id: str) -> str:
    url = path.replace("{id}", workspace_id)
    return re.sub(r"\{[^}]+\}", "does-not-exist", url)


def test_every_operation__hostile_input__never_500(
    app: FastAPI, client: TestClient, workspace: WorkspaceFixture
) -> None:
    failures: list[str] = []
    for method, path, op in _operations(app):
        url = _url(path, workspace.id)
        attempts: list[dict[str, Any]] = [{"params": HOSTILE_QUERY}]
        if "requestBody" in op:
            attempts += [{"json": body} for body in HOSTILE_BODIES]
            for field in _body_fields(app, op):
                attempts += [{"json": {field: value}} for value in HOSTILE_VALUES]
        for kwargs in attempts:
            r = client.request(method, url, headers=workspace.headers, **kwargs)
            if r.status_code >= 500 and r.status_code != 503:
                failures.append(f"{method} {path} {kwargs} -> {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b'{"a": ' * 50])
def test_malformed_json__400_saying_where(
    client: TestClient, workspace: WorkspaceFixture, raw: bytes
) -> None:
    r = client.post(
        f"/api/v1/workspaces/{workspace.id}/keys",
        content=raw,
        headers={**workspace.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "malformed_json" and "line 1, column" in r.json()["detail"]
