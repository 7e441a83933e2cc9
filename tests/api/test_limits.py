"""Bounded requests (issue #15, item 1): the key is checked from the headers before the body is read,
bodies are capped per route class (413 naming the limit, chunked bodies counted while they stream),
and routes without a key (dashboard, health, seed 002's public API) keep working."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from overture.api.app import create_app
from overture.api.limits import build_rules
from overture.config import Settings
from overture.db.context import AppContext
from tests.cli.helpers import clean_env, run, server_process
from tests.conftest import WorkspaceFixture, create_workspace

MiB = 1024 * 1024


def _events_path(ws: WorkspaceFixture) -> str:
    return f"/v1/projects/{ws.id}/events"


async def _call(app: FastAPI, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, int]:
    """One request straight through ASGI: (status, JSON answer, body bytes the app asked for)."""
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += len(body)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("203.0.113.9", 40000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(answer), asked


def test_no_key__401_before_a_byte_of_the_body_is_read(app: FastAPI, workspace: WorkspaceFixture) -> None:
    body = json.dumps([{"user_id": "u", "event": "e"}]).encode()
    for path in (_events_path(workspace), f"/v1/projects/{workspace.id}/register"):
        for headers in ({}, {"Authorization": "Bearer pk_not-a-key"}, {"Authorization": "Basic abc"}):
            status, answer, asked = asyncio.run(
                _call(app, path, {"content-type": "application/json", **headers}, body)
            )
            assert status == 401 and answer["code"] == "unauthorized", (path, answer)
            assert asked == 0, f"{path}: the body was read before the key was checked"
    # The same request with the key is read and served.
    status, answer, asked = asyncio.run(
        _call(
            app,
            _events_path(workspace),
            {"content-type": "application/json", **workspace.public_headers},
            body,
        )
    )
    assert status == 200 and answer["accepted"] == 1 and asked == len(body)


def test_oversize_with_a_valid_key__413_naming_the_limit(
    client: TestClient, workspace: WorkspaceFixture, ctx: AppContext
) -> None:
    limit = int(ctx.settings.body_limit_events)
    r = client.post(
        _events_path(workspace),
        content=b"[" + b" " * limit + b"]",
        headers={**workspace.headers, "content-type": "application/json"},
    )
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "too_large"
    assert f"{limit:,} bytes" in r.json()["detail"] and "1 MiB" in r.json()["detail"]
    # Under the limit the same route answers as before.
    ok = client.post(
        _events_path(workspace), json=[{"user_id": "u", "event": "e"}], headers=workspace.headers
    )
    assert ok.status_code == 200, ok.text


def test_chunked_oversize__413_while_streaming(
    client: TestClient, workspace: WorkspaceFixture, ctx: AppContext
) -> None:
    limit = int(ctx.settings.body_limit_events)
    produced = 0

    def chunks() -> Iterator[bytes]:
        nonlocal produced
        yield b"["
        for _ in range(4 * limit // 65536):
            produced += 65536
            yield b" " * 65536
        yield b"]"

    r = client.post(
        _events_path(workspace),
        content=chunks(),
        headers={**workspace.headers, "content-type": "application/json"},
    )
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "too_large" and f"{limit:,} bytes" in r.json()["detail"]

    # A chunked body under the limit is served.
    small = json.dumps([{"user_id": "u", "event": "e"}]).encode()
    r = client.post(
        _events_path(workspace),
        content=iter([small[:5], small[5:]]),
        headers={**workspace.headers, "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text


def test_public_keys_are_held_to_the_events_limit_on_import_routes(
    client: TestClient, workspace: WorkspaceFixture, ctx: AppContext
) -> None:
    events_limit = int(ctx.settings.body_limit_events)
    assert int(ctx.settings.body_limit_import) > 2 * events_limit
    body = json.dumps({"events": [{"entity_id": "u", "event": "e", "properties": {"p": "x" * 1000}}] * 1500})
    assert events_limit < len(body) < int(ctx.settings.body_limit_import)
    path = f"/api/v1/workspaces/{workspace.id}/events"
    headers = {"content-type": "application/json"}
    public = client.post(path, content=body, headers={**headers, **workspace.public_headers})
    assert public.status_code == 413, public.text
    private = client.post(path, content=body, headers={**headers, **workspace.headers})
    assert private.status_code == 200, private.text


def test_route_classes_come_from_the_routes(app: FastAPI, ctx: AppContext) -> None:
    table, default = build_rules(app, ctx.settings)
    s = ctx.settings

    def rule(method: str, path: str) -> tuple[bool, int]:
        found = next(r for regex, methods, r in table if method in methods and regex.match(path))
        return found.needs_key, found.limit

    assert rule("POST", "/v1/projects/w/register") == (True, int(s.body_limit_decision))
    assert rule("POST", "/api/v1/projects/w/events") == (True, int(s.body_limit_events))
    assert rule("POST", "/api/experience/events") == (True, int(s.body_limit_events))
    assert rule("POST", "/api/v1/workspaces/w/models/m/records") == (True, int(s.body_limit_import))
    assert rule("POST", "/api/v1/workspaces/w/segments") == (True, int(s.body_limit))
    for method, path in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("POST", "/ui/segments"),
        ("GET", "/public/v1/campaigns/c/summary"),
    ]:
        assert rule(method, path) == (False, int(s.body_limit)), (method, path)
    assert not default.needs_key


def test_routes_without_a_key_keep_working(client: TestClient, workspace: WorkspaceFixture) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    # Seed 002's public API answers a missing key in its own envelope, as before.
    r = client.get("/public/v1/campaigns/nope/summary")
    assert r.status_code == 401 and r.json()["success"] is False, r.text
    # The dashboard: the sign-in page, and a form post without a session redirects to sign in.
    assert client.get("/ui/signin").status_code == 200
    r = client.post("/ui/segments", data={"name": "x"}, follow_redirects=False)
    assert r.status_code in (303, 401, 403), r.text
    # They are still capped: an oversize form is 413 (no key asked for).
    r = client.post("/ui/segments", content=b"x" * (MiB + 1), follow_redirects=False)
    assert r.status_code == 413, r.text


def test_limits_are_settings(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, run_workers=False, body_limit_decision="1KiB")
    ctx = AppContext.from_settings(settings)
    try:
        app = create_app(ctx)
        ws = create_workspace(ctx)
        path = f"/v1/projects/{ws.id}/register"
        body = json.dumps({"placement": "p", "user_id": "u", "params": {"pad": "x" * 1024}})
        with TestClient(app) as client:
            headers = {"content-type": "application/json"}
            # The key first: a caller without one is told nothing about sizes.
            assert client.post(path, content=body, headers=headers).status_code == 401
            r = client.post(path, content=body, headers={**headers, **ws.public_headers})
            assert r.status_code == 413 and "1 KiB, 1,024 bytes" in r.json()["detail"], r.text
    finally:
        ctx.close()


# -- a real server ----------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _send_big(port: int, head: bytes, total: int, chunked: bool) -> bytes:
    """Send `head` then up to `total` body bytes in 1 MiB pieces until the server answers or closes;
    return what it answered."""
    piece = b"x" * MiB
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        sent = 0
        try:
            while sent < total:
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
        except OSError:
            pass  # the server answered and closed: the rest is never sent
        s.settimeout(30)
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and answer.split(b"\r\n\r\n", 1)[1].endswith(b"}"):
                    break
        except OSError:
            pass
        return answer


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_unauthenticated_100_mb_body_costs_the_server_under_10_mb(tmp_path: Path, chunked: bool) -> None:
    env = clean_env(OVERTURE_HOME=str(tmp_path), OVERTURE_RUN_WORKERS="false")
    creds = json.loads(run("init", "--json", cwd=tmp_path, env=env).stdout)
    with server_process(tmp_path, env=env) as (base, proc):
        port = int(base.rsplit(":", 1)[1])
        path = f"/v1/projects/{creds['workspace_id']}/events"
        # Warm the route (first-use imports and caches are not the body's cost).
        httpx.post(f"{base}{path}", json=[], headers={"Authorization": "Bearer pk_x"})
        time.sleep(0.5)
        baseline = _rss_kib(proc.pid)
        peak = baseline
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _rss_kib(proc.pid))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        total = 100 * MiB
        framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % total
        head = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s\r\n" % (
            path.encode(),
            framing,
        )
        try:
            answer = _send_big(port, head, total, chunked)
        finally:
            time.sleep(0.3)
            stop.set()
            sampler.join()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
        assert b'"code":"unauthorized"' in answer
        grown_mib = (peak - baseline) / 1024
        assert grown_mib < 10, f"the server grew by {grown_mib:.1f} MiB"
        # And it still serves.
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
