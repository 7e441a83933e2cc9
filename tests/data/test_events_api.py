"""Events over HTTP and `record_events`: stored per workspace, visible to behavioural conditions."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from fastapi.testclient import TestClient

from overture.clock import FrozenClock
from overture.data.events import EventIn, record_events
from overture.data.source import get_source
from overture.db.context import AppContext
from tests.conftest import WorkspaceFixture
from tests.data.helpers import base


def _events_of(ctx: AppContext, workspace_id: str) -> list[tuple]:
    source = get_source(ctx)
    ev = source.events_table()
    with source.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(ev.c.entity_id, ev.c.event, ev.c.timestamp, ev.c.properties)
                .where(ev.c.workspace_id == workspace_id)
                .order_by(ev.c.timestamp)
            )
        ]


def test_post_events__public_key__stored_with_default_timestamp(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture, frozen_clock: FrozenClock
) -> None:
    r = client.post(
        f"{base(workspace)}/events",
        headers=workspace.public_headers,
        json={
            "events": [
                {
                    "entity_id": "u1",
                    "event": "purchase",
                    "timestamp": "2025-06-01T10:00:00+02:00",
                    "properties": {"revenue": 9.99, "sku": "x'y"},
                },
                {"entity_id": 42, "event": "app_open"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0}
    rows = _events_of(ctx, workspace.id)
    assert rows[0][:3] == ("u1", "purchase", datetime(2025, 6, 1, 8, 0, tzinfo=UTC))
    assert rows[0][3] == {"revenue": 9.99, "sku": "x'y"}
    assert rows[1][:3] == ("42", "app_open", frozen_clock.now())


def test_post_events__one_bad_event__422_and_nothing_stored(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    r = client.post(
        f"{base(workspace)}/events",
        headers=workspace.headers,
        json={
            "events": [{"entity_id": "u1", "event": "ok"}, {"entity_id": "u1", "event": "", "timestamp": "x"}]
        },
    )
    assert r.status_code == 422
    assert r.json()["detail"].startswith("events[1].")
    assert _events_of(ctx, workspace.id) == []


def test_post_events__10001__413(client: TestClient, ctx: AppContext, workspace: WorkspaceFixture) -> None:
    events = [{"entity_id": "u", "event": "e"}] * 10_001
    r = client.post(f"{base(workspace)}/events", headers=workspace.headers, json={"events": events})
    assert r.status_code == 413
    assert _events_of(ctx, workspace.id) == []


def test_post_events__without_scope__403(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    from tests.conftest import create_key

    key = create_key(ctx, workspace.id, ["models:read"])
    r = client.post(
        f"{base(workspace)}/events",
        headers={"Authorization": f"Bearer {key}"},
        json={"events": [{"entity_id": "u", "event": "e"}]},
    )
    assert r.status_code == 403


def test_record_events__function_for_other_surfaces__isolated_per_workspace(
    ctx: AppContext, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    n = record_events(
        ctx, workspace.id, [EventIn(entity_id="user_1", event="paywall_open", properties={"p": 1})]
    )
    assert n == 1
    assert [r[:2] for r in _events_of(ctx, workspace.id)] == [("user_1", "paywall_open")]
    assert _events_of(ctx, other_workspace.id) == []


def test_post_events__properties_no_store_holds__422_naming_the_place_and_nothing_stored(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    # Was a 502 whose message quoted the internal insert (SDKs retry 502s forever).
    for properties, field in [
        ('{"note": "\\ud800"}', "events[0].properties.note"),
        ('{"n": -9223372036854775809}', "events[0].properties.n"),
        ('{"n": NaN}', "events[0].properties.n"),
    ]:
        body = '{"events": [{"entity_id": "u1", "event": "x", "properties": ' + properties + "}]}"
        r = client.post(
            f"{base(workspace)}/events",
            headers={**workspace.public_headers, "Content-Type": "application/json"},
            content=body.encode(),
        )
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field, r.text
    assert _events_of(ctx, workspace.id) == []
