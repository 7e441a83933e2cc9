"""The seed's example journey end to end: entry -> sync -> wait 3 days -> filter -> sync -> exit, over
demo-style customers, delivering to a real local webhook receiver, with time moved by a frozen clock."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from overture.data.source import get_source
from overture.runtime import outbox
from overture.runtime.models import OutboxMessage
from tests.delivery.conftest import Receiver
from tests.journeys.conftest import PRO, Api, create_customers_table, edge, sync_tile, tile


def _deliver_all(api: Api) -> None:
    while outbox.dispatch_once(api.ctx):
        pass


def _count(api: Api, sql: str) -> int:
    with get_source(api.ctx).connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def test_seed_example__entry_sync_wait_3_days_filter_sync_exit__delivered_once_each(
    api: Api, receiver: Receiver, frozen_clock: Any
) -> None:
    # Given 400 demo-style customers, a webhook destination on loopback, and the seed's journey
    table = create_customers_table(api.ctx, 400)
    model_id = api.model(table)
    hook = api.webhook(f"{receiver.url}/journey")
    entrants = _count(api, f"SELECT count(*) FROM {table} WHERE country IN ('US', 'DE')")
    pro_entrants = _count(api, f"SELECT count(*) FROM {table} WHERE country IN ('US', 'DE') AND plan = 'pro'")
    assert entrants == 200 and 0 < pro_entrants < entrants
    journey = api.create(
        {
            "name": "Onboarding Flow",
            "description": "Welcome series for new customers",
            "parent_model_id": model_id,
            "entry_criteria": {"field": "country", "operator": "in", "value": ["US", "DE"]},
            "schedule": "0 */6 * * *",
            "tiles": [
                {"id": "tile-1", "type": "entry", "position": {"x": 0, "y": 0}},
                {
                    "id": "tile-2",
                    "type": "sync",
                    "config": {
                        "destination_id": hook,
                        "field_mapping": [{"from": "email", "to": "email"}, {"from": "plan", "to": "plan"}],
                    },
                    "position": {"x": 0, "y": 200},
                },
                {
                    "id": "tile-3",
                    "type": "wait",
                    "config": {"duration": 3, "unit": "days"},
                    "position": {"x": 0, "y": 400},
                },
                tile("tile-4", "filter", criteria=PRO),
                sync_tile("tile-5", hook, ("customer_id", "id"), ("ltv", "lifetime_value")),
                tile("tile-6", "exit"),
                tile("tile-7", "exit"),
            ],
            "edges": [
                edge("tile-1", "tile-2"),
                edge("tile-2", "tile-3"),
                edge("tile-3", "tile-4"),
                edge("tile-4", "tile-5", "match"),
                edge("tile-4", "tile-7", "no_match"),
                edge("tile-5", "tile-6"),
            ],
        }
    )
    jid = journey["id"]
    assert api.post(f"/{jid}/validate").json() == {"valid": True, "errors": []}
    assert api.activate(jid)["status"] == "active"

    # When the first run evaluates: everyone matching enters, is synced, and waits
    first = api.run(jid)
    assert first["status"] == "completed"
    assert first["counts"] == {
        "entered": entrants,
        "advanced": 2 * entrants,
        "exited": 0,
        "completed": 0,
        "synced": entrants,
        "failed": 0,
    }
    _deliver_all(api)
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert len(bodies) == entrants
    assert all(set(b) == {"email", "plan"} and b["email"].endswith("@example.com") for b in bodies)
    keys = [r.headers["idempotency-key"] for r in receiver.requests]
    assert len(set(keys)) == entrants and all(k.startswith(f"journey:{jid}:tile-2:") for k in keys)
    stats = api.stats(jid)
    assert stats["tiles"]["tile-3"] == {"active": entrants, "completed": 0, "exited": 0}

    # Two days later nothing has moved; the wait holds
    frozen_clock.advance(days=2)
    assert api.run(jid)["counts"]["advanced"] == 0

    # Three days after entry the wait is over: pro members get the second sync, then everyone exits
    frozen_clock.advance(days=1)
    third = api.run(jid)
    assert third["counts"] == {
        "entered": 0,
        "advanced": entrants + pro_entrants + pro_entrants + (entrants - pro_entrants),
        "exited": 0,
        "completed": entrants,
        "synced": pro_entrants,
        "failed": 0,
    }
    _deliver_all(api)
    second_wave = [json.loads(r.body) for r in receiver.requests[entrants:]]
    assert len(second_wave) == pro_entrants
    assert all(
        set(b) == {"id", "lifetime_value"} and isinstance(b["lifetime_value"], float) for b in second_wave
    )

    # Then the stats have the seed's shape, and every member finished on an exit tile
    stats = api.stats(jid)
    assert set(stats) == {"tiles", "total"}
    assert set(stats["tiles"]) == {f"tile-{i}" for i in range(1, 8)}
    assert stats["total"] == {"active": 0, "completed": entrants, "exited": 0}
    assert stats["tiles"]["tile-6"]["completed"] == pro_entrants
    assert stats["tiles"]["tile-7"]["completed"] == entrants - pro_entrants

    # And a pro member's path tells its whole story, with times
    member = _pro_member(api, table)
    path = api.get(f"/{jid}/members/{member}")
    assert path["status"] == "completed" and path["tile_id"] == "tile-6" and path["reason"] == "exit_tile"
    assert [(s["tile_id"], s["event"], s["at"]) for s in path["path"]] == [
        ("tile-1", "entered", "2026-01-01T00:00:00Z"),
        ("tile-2", "arrived", "2026-01-01T00:00:00Z"),
        ("tile-2", "synced", "2026-01-01T00:00:00Z"),
        ("tile-3", "arrived", "2026-01-01T00:00:00Z"),
        ("tile-4", "arrived", "2026-01-04T00:00:00Z"),
        ("tile-5", "arrived", "2026-01-04T00:00:00Z"),
        ("tile-5", "synced", "2026-01-04T00:00:00Z"),
        ("tile-6", "arrived", "2026-01-04T00:00:00Z"),
        ("tile-6", "completed", "2026-01-04T00:00:00Z"),
    ]
    assert path["path"][0]["run_id"] == first["id"] and path["path"][-1]["run_id"] == third["id"]

    # Nothing is owed twice: another run sends nothing, and the ledger holds one message per visit
    assert api.run(jid)["counts"]["synced"] == 0
    _deliver_all(api)
    assert len(receiver.requests) == entrants + pro_entrants
    with api.ctx.transaction(write=False) as session:
        statuses = session.scalars(
            sa.select(OutboxMessage.status).where(OutboxMessage.destination_id == hook)
        ).all()
    assert len(statuses) == entrants + pro_entrants and set(statuses) == {"sent"}


def _pro_member(api: Api, table: str) -> str:
    with get_source(api.ctx).connect() as conn:
        return str(
            conn.execute(
                sa.text(
                    f"SELECT customer_id FROM {table} "
                    "WHERE plan = 'pro' AND country = 'DE' ORDER BY 1 LIMIT 1"
                )
            ).scalar_one()
        )


def test_member__never_entered_or_unknown_journey__404(api: Api) -> None:
    model_id = api.model(create_customers_table(api.ctx, 3))
    journey = api.create({"name": "m", "parent_model_id": model_id, "tiles": [{"id": "in", "type": "entry"}]})
    api.get(f"/{journey['id']}/members/c000001", expect=404)
    api.activate(journey["id"])
    api.run(journey["id"])
    assert api.get(f"/{journey['id']}/members/c000001")["status"] == "completed"
    api.get(f"/{journey['id']}/members/nobody", expect=404)
    api.get("/00000000-0000-0000-0000-000000000000/members/c000001", expect=404)
