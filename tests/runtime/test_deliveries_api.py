"""`GET /api/v1/workspaces/{id}/deliveries`, a deleted journey's owed messages cancelled, and a
permanent failure logged (issue #14, item 6)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from overture.runtime import outbox
from tests.conftest import WorkspaceFixture, create_key
from tests.journeys.conftest import Api, chain, create_customers_table


@pytest.fixture
def api(client: TestClient, ctx: AppContext, workspace: WorkspaceFixture) -> Iterator[Api]:
    yield Api(client, ctx, workspace)


def _journey_with_owed_messages(api: Api, n: int) -> tuple[str, str, str]:
    table = create_customers_table(api.ctx, n)
    model = api.model(table)
    hook = api.webhook("http://127.0.0.1:9/never-dispatched-in-this-test")
    tiles = [
        {"id": "in", "type": "entry"},
        {
            "id": "send",
            "type": "sync",
            "config": {"destination_id": hook, "field_mapping": [{"from": "customer_id", "to": "id"}]},
        },
        {"id": "out", "type": "exit"},
    ]
    journey = api.create({"name": "owes", "parent_model_id": model, "tiles": tiles, "edges": chain(*tiles)})
    api.activate(journey["id"])
    run = api.run(journey["id"])
    assert run["status"] == "completed" and run["counts"]["synced"] == n, run
    return journey["id"], run["id"], hook


def test_deliveries__filters_pages_and_scope(
    api: Api, client: TestClient, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    _, run_id, hook = _journey_with_owed_messages(api, 5)
    base = f"/api/v1/workspaces/{workspace.id}/deliveries"
    page = client.get(base, params={"source_id": run_id}, headers=workspace.headers).json()
    assert len(page["deliveries"]) == 5 and page["next_cursor"] is None
    first = page["deliveries"][0]
    assert (first["status"], first["attempts"], first["possible_duplicate"], first["last_error"]) == (
        "pending",
        0,
        False,
        None,
    )
    assert first["source_kind"] == "journey_run" and first["destination_id"] == hook
    assert first["created_at"].endswith("Z")
    ids = [d["id"] for d in page["deliveries"]]
    assert ids == sorted(ids, reverse=True)
    # Keyset pages: two, two, one; nothing twice, nothing skipped.
    seen, cursor = [], None
    while True:
        params = {"source_id": run_id, "limit": 2, **({"cursor": cursor} if cursor else {})}
        got = client.get(base, params=params, headers=workspace.headers).json()
        seen += [d["id"] for d in got["deliveries"]]
        cursor = got["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    by_destination = client.get(base, params={"destination_id": hook}, headers=workspace.headers).json()
    assert {d["id"] for d in by_destination["deliveries"]} == set(ids)
    assert (
        client.get(base, params={"status": "sent", "source_id": run_id}, headers=workspace.headers).json()[
            "deliveries"
        ]
        == []
    )
    bad = client.get(base, params={"status": "lost"}, headers=workspace.headers)
    assert bad.status_code == 422 and bad.json()["field"] == "status"
    # Another workspace sees none of them; a key without destinations:read is refused.
    other = client.get(
        f"/api/v1/workspaces/{other_workspace.id}/deliveries",
        params={"source_id": run_id},
        headers=other_workspace.headers,
    )
    assert other.json()["deliveries"] == []
    reader = create_key(api.ctx, workspace.id, ["journeys:read"])
    assert client.get(base, headers={"Authorization": f"Bearer {reader}"}).status_code == 403


def test_deleting_a_journey_cancels_its_owed_messages(
    api: Api, client: TestClient, workspace: WorkspaceFixture
) -> None:
    journey_id, run_id, _ = _journey_with_owed_messages(api, 4)
    base = f"/api/v1/workspaces/{workspace.id}/deliveries"
    api.post(f"/{journey_id}/pause")
    paused = client.get(base, params={"source_id": run_id}, headers=workspace.headers).json()["deliveries"]
    assert {d["status"] for d in paused} == {"pending"}  # pausing does not stop what is owed
    r = client.delete(api.url(f"/{journey_id}"), headers=workspace.headers)
    assert r.status_code == 200, r.text
    after = client.get(base, params={"source_id": run_id}, headers=workspace.headers).json()["deliveries"]
    assert len(after) == 4
    assert {(d["status"], d["last_error"]) for d in after} == {
        ("failed", "cancelled: the journey was deleted")
    }


def test_permanent_failures_are_logged_at_most_20_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    limited = outbox._RateLimitedLog(limit=3, window=60.0)
    with caplog.at_level(logging.WARNING, logger="overture.runtime.outbox"):
        for i in range(10):
            limited.warning("outbox: message %s failed permanently: %s", f"k{i}", "HTTP 410")
        limited._start -= 61  # the next minute
        limited.warning("outbox: message %s failed permanently: %s", "k10", "HTTP 410")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == [f"outbox: message k{i} failed permanently: HTTP 410" for i in range(3)]
    assert lines[3:] == [
        "outbox: 7 more permanent failure(s) not logged",
        "outbox: message k10 failed permanently: HTTP 410",
    ]
