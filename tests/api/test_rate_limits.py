"""Public keys are public (issue #15, item 4): event properties are capped (422 naming the field), and
public-key requests are rate-limited per key and per client address (429 with Retry-After, in the
envelope), held across processes on PostgreSQL through a shared table, without slowing other
workspaces."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from overture.api.app import create_app
from overture.auth.ratelimit import RateLimiter, rate_limiter
from overture.clock import FrozenClock
from overture.config import Settings
from overture.db.context import AppContext
from tests.conftest import WorkspaceFixture, create_workspace

# -- event property caps ----------------------------------------------------------------------------


def test_a_20_kb_property__422_naming_the_field(client: TestClient, workspace: WorkspaceFixture) -> None:
    events = [
        {"user_id": "u", "event": "e"},
        {"user_id": "u", "event": "e", "properties": {"p": "x" * 20_000}},
    ]
    r = client.post(f"/v1/projects/{workspace.id}/events", json=events, headers=workspace.public_headers)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "events[1].properties" and "16 KiB" in r.json()["detail"], r.json()


def test_more_than_100_properties__422(client: TestClient, workspace: WorkspaceFixture) -> None:
    props = {f"p{i}": i for i in range(101)}
    r = client.post(
        f"/api/v1/projects/{workspace.id}/events",
        json={"events": [{"user_id": "u", "event": "e", "properties": props}]},
        headers=workspace.public_headers,
    )
    assert r.status_code == 422 and r.json()["field"] == "events[0].properties", r.text
    assert "at most 100 properties" in r.json()["detail"]


def test_a_20_mb_string_in_a_data_plane_event__422_not_stored(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    """The import class lets a 20 MB body through (private key); the property cap still refuses it."""
    body = {"events": [{"entity_id": "u", "event": "big", "properties": {"blob": "x" * 20_000_000}}]}
    r = client.post(f"/api/v1/workspaces/{workspace.id}/events", json=body, headers=workspace.headers)
    assert r.status_code == 422, r.text[:300]
    assert r.json()["field"] == "events[0].properties"


# -- rate limits --------------------------------------------------------------------------------------


def _limited_ctx(home: Path, database_url: str, **limits: Any) -> AppContext:
    settings = Settings(
        home=home,
        database_url=database_url,
        data_url=f"duckdb:///{home / 'data.duckdb'}",
        run_workers=False,
        rate_limit_window=10,
        **limits,
    )
    ctx = AppContext.from_settings(settings, clock=FrozenClock())
    return ctx


@pytest.fixture
def limited(ctx: AppContext, tmp_path: Path) -> Iterator[AppContext]:
    """An app context on the test database with tiny limits: 2/s per key (20 per window) and 1/s per
    address (10 per window), on a frozen clock (one window until the test moves it)."""
    limited = _limited_ctx(
        tmp_path, ctx.settings.resolved_database_url, rate_limit_key=2, rate_limit_address=1
    )
    yield limited
    limited.close()


def _register(client: TestClient, ws: WorkspaceFixture) -> Any:
    return client.post(
        f"/v1/projects/{ws.id}/register", json={"placement": "p", "user_id": "u"}, headers=ws.public_headers
    )


def test_429_with_retry_after_once_an_address_reaches_its_limit(limited: AppContext) -> None:
    ws = create_workspace(limited)
    app = create_app(limited, run_migrations=False)
    with TestClient(app, client=("198.51.100.7", 4000)) as client:
        assert [_register(client, ws).status_code for _ in range(10)] == [200] * 10
        refused = _register(client, ws)
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "rate_limited"
        assert "1 requests per second for this client address" in refused.json()["detail"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 10
        # Events with the same key from the same address are refused too; a private key is not limited.
        r = client.post(f"/v1/projects/{ws.id}/events", json=[], headers=ws.public_headers)
        assert r.status_code == 429
        assert client.get(f"/v1/projects/{ws.id}/campaigns", headers=ws.headers).status_code == 200
    # Another address (another app user) is not held back by this one.
    with TestClient(app, client=("198.51.100.8", 4000)) as other:
        assert _register(other, ws).status_code == 200
    # The next window starts afresh.
    assert isinstance(limited.clock, FrozenClock)
    limited.clock.advance(timedelta(seconds=10))
    with TestClient(app, client=("198.51.100.7", 4000)) as client:
        assert _register(client, ws).status_code == 200


def test_a_key_at_its_limit_does_not_slow_other_workspaces(ctx: AppContext, tmp_path: Path) -> None:
    limited = _limited_ctx(
        tmp_path, ctx.settings.resolved_database_url, rate_limit_key=1, rate_limit_address=0
    )
    try:
        noisy, quiet = create_workspace(limited, "noisy"), create_workspace(limited, "quiet")
        app = create_app(limited, run_migrations=False)
        with TestClient(app, client=("198.51.100.9", 4000)) as client:
            answers = [_register(client, noisy).status_code for _ in range(12)]
            assert answers == [200] * 10 + [429] * 2
            # The same client, another workspace's key: served at once.
            started = time.perf_counter()
            assert [_register(client, quiet).status_code for _ in range(10)] == [200] * 10
            assert time.perf_counter() - started < 5
    finally:
        limited.close()


def test_loopback_is_exempt_by_default_and_the_exemption_is_a_setting(
    ctx: AppContext, tmp_path: Path
) -> None:
    for exempt, expected in (("127.0.0.0/8,::1/128", 200), ("[]", 429)):
        limited = _limited_ctx(
            tmp_path / exempt.replace("/", "_"),
            ctx.settings.resolved_database_url,
            rate_limit_key=1,
            rate_limit_address=1,
            rate_limit_exempt=exempt,
        )
        try:
            ws = create_workspace(limited)
            with TestClient(create_app(limited, run_migrations=False), client=("127.0.0.1", 4000)) as client:
                answers = [_register(client, ws).status_code for _ in range(11)]
            assert answers[-1] == expected, (exempt, answers)
        finally:
            limited.close()


def test_a_second_process_sees_the_first_ones_count(ctx: AppContext, tmp_path: Path) -> None:
    """Two AppContexts on one PostgreSQL database stand for two API processes: what one counted
    reaches the other through the shared table at the next sync."""
    if ctx.engine.dialect.name != "postgresql":
        pytest.skip("processes share counts on PostgreSQL; SQLite is one server")
    url = ctx.settings.resolved_database_url
    clock = FrozenClock()
    first = _limited_ctx(tmp_path / "a", url, rate_limit_key=1, rate_limit_address=0)
    second = _limited_ctx(tmp_path / "b", url, rate_limit_key=1, rate_limit_address=0)
    first.clock = second.clock = clock
    try:
        a, b = RateLimiter(first), RateLimiter(second)
        key = f"key-{tmp_path.name}"
        assert all(a.check(key, None) is None for _ in range(10))
        assert a.check(key, None) is not None  # at its limit in the first process
        a.sync()
        assert b.check(key, None) is None  # the second has not heard of this key yet...
        b.sync()
        refusal = b.check(key, None)  # ...and after one sync it has
        assert refusal is not None and refusal.retry_after >= 1
        # The background sync does the same on its own, within about a second.
        other_key = f"other-{tmp_path.name}"
        c, d = rate_limiter(first), rate_limiter(second)
        assert all(c.check(other_key, None) is None for _ in range(10))
        assert d.check(other_key, None) is None
        deadline = time.monotonic() + 10
        while d.check(other_key, None) is None:
            assert time.monotonic() < deadline, "the second process never saw the first one's count"
            time.sleep(0.1)
    finally:
        first.close()
        second.close()


def test_on_sqlite_counts_stay_in_the_process(ctx: AppContext, tmp_path: Path) -> None:
    if ctx.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    limited = _limited_ctx(
        tmp_path, ctx.settings.resolved_database_url, rate_limit_key=1, rate_limit_address=0
    )
    try:
        limiter = RateLimiter(limited)
        assert all(limiter.check("k", None) is None for _ in range(10))
        assert limiter.check("k", None) is not None
        assert limiter._thread is None  # no sync thread, no shared table
    finally:
        limited.close()
