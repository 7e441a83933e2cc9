"""A journey over the real `overture demo` data: the demo `customers` model and its events, with a
behavioural filter (bought in the last 90 days), delivering to a local webhook receiver."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from overture.data.demo import load_demo
from overture.data.source import get_source
from overture.runtime import outbox
from tests.delivery.conftest import Receiver
from tests.journeys.conftest import Api, edge, sync_tile, tile


def _scalar(api: Api, sql: str, **params: Any) -> int:
    with get_source(api.ctx).connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


def test_demo_customers__welcome_then_buyers_only__counts_match_the_data(
    api: Api, receiver: Receiver, frozen_clock: Any
) -> None:
    # Given the demo data (3,000 customers with their events) and a webhook on loopback
    load_demo(api.ctx, api.ws.id, rows=3_000)
    models = api.client.get(f"{api.base}/models", headers=api.ws.headers).json()
    model = next(m for m in models if m["name"] == "customers")
    table = model["table"]
    hook = api.webhook(f"{receiver.url}/demo")
    bought = {"event": "purchase", "count": {"gte": 1}, "within_last": "90d"}
    journey = api.create(
        {
            "name": "Welcome, then thank buyers",
            "parent_model_id": model["id"],
            "entry_criteria": {
                "all": [
                    {"field": "country", "operator": "in", "value": ["US", "DE"]},
                    {"field": "email", "operator": "exists"},
                ]
            },
            "tiles": [
                tile("in", "entry"),
                sync_tile("welcome", hook, "email"),
                tile("3d", "wait", duration=3, unit="days"),
                tile("buyer", "filter", criteria=bought),
                sync_tile("thanks", hook, ("customer_id", "id"), "plan"),
                tile("done", "exit"),
                tile("skip", "exit"),
            ],
            "edges": [
                edge("in", "welcome"),
                edge("welcome", "3d"),
                edge("3d", "buyer"),
                edge("buyer", "thanks", "match"),
                edge("buyer", "skip", "no_match"),
                edge("thanks", "done"),
            ],
        }
    )
    jid = journey["id"]
    api.activate(jid)
    entrants = _scalar(
        api, f"SELECT count(*) FROM {table} WHERE country IN ('US', 'DE') AND email IS NOT NULL"
    )
    assert entrants > 100

    # When it runs now and again three days later
    assert api.run(jid)["counts"]["synced"] == entrants
    frozen_clock.advance(days=3)
    later = api.run(jid)

    # Then exactly the entrants with a purchase in the 90 days before that run were thanked
    buyers = _scalar(
        api,
        f"SELECT count(*) FROM {table} c WHERE country IN ('US', 'DE') AND email IS NOT NULL AND EXISTS ("
        " SELECT 1 FROM overture_events e WHERE e.workspace_id = :ws AND e.entity_id = c.customer_id"
        " AND e.event = 'purchase' AND e.timestamp >= :since)",
        ws=api.ws.id,
        since=frozen_clock.now() - timedelta(days=90),
    )
    assert 0 < buyers < entrants
    assert later["counts"]["synced"] == buyers and later["counts"]["completed"] == entrants
    stats = api.stats(jid)
    assert stats["tiles"]["done"]["completed"] == buyers
    assert stats["tiles"]["skip"]["completed"] == entrants - buyers
    while outbox.dispatch_once(api.ctx):
        pass
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert len(bodies) == entrants + buyers
    assert sum(1 for b in bodies if set(b) == {"id", "plan"}) == buyers
