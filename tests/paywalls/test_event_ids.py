"""Idempotent events (issue #15, item 5): an `event_id` (or `<batch_id>:<index>`) seen before is stored
and counted once, and the answer says how many were `duplicates`; the same batch sent three times at
once counts its revenue and conversions once, in experiment results and in the event stream that
behavioural conditions count. One claim table serves paywall, data-plane and experience events."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa

from overture.data.service import events_relation
from overture.data.source import get_source
from overture.db.context import AppContext
from tests.conftest import WorkspaceFixture
from tests.paywalls.conftest import Api
from tests.paywalls.test_experiments_and_events import experiment, purchase, results

__all__ = ["experiment"]  # the fixture, shared with the experiment tests


def _stream(ctx: AppContext, workspace_id: str) -> list[tuple[str, str]]:
    ev = events_relation(ctx, workspace_id)
    with get_source(ctx).connect() as conn:
        rows = conn.execute(sa.select(ev.c.entity_id, ev.c.event).order_by(ev.c.entity_id, ev.c.event))
        return [tuple(row) for row in rows]  # type: ignore[misc]


def _at_once(n: int, send: Callable[[], httpx.Response]) -> list[httpx.Response]:
    barrier = threading.Barrier(n)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        r = send()
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return answers


def test_the_same_batch_three_times_at_once__stored_and_counted_once(
    ctx: AppContext, api: Api, experiment: Callable[..., tuple[str, str]]
) -> None:
    cid, aid = experiment()
    buyers = [f"buyer{i}" for i in range(8)]
    for user_id in buyers:
        api.register(user_id=user_id)
    # Purchases with their own ids, and app opens identified only by the batch id and their index.
    events = [purchase(u, 10.0, event_id=f"purchase-{u}") for u in buyers]
    events += [{"user_id": u, "event": "app_open"} for u in buyers[:4]]
    body = {"events": events, "batch_id": "sdk-batch-0001"}

    answers = _at_once(3, lambda: api.post("events", body, public=True))
    assert [r.status_code for r in answers] == [200] * 3, [r.text for r in answers]
    assert sum(r.json()["accepted"] for r in answers) == len(events)
    assert sum(r.json()["duplicates"] for r in answers) == 2 * len(events)
    assert sum(r.json()["conversions"] for r in answers) == len(buyers)

    figures = results(api, cid, aid)["variants"]
    assert sum(v["conversions"] for v in figures) == len(buyers)
    assert sum(v["revenue"] for v in figures) == 10.0 * len(buyers)
    stream = _stream(ctx, api.ws.id)
    assert sorted(stream) == sorted(
        [(u, "transaction_complete") for u in buyers] + [(u, "app_open") for u in buyers[:4]]
    )

    # A later retry of the same batch is all duplicates; a new batch id is new events.
    again = api.post("events", body, public=True).json()
    assert again == {"accepted": 0, "duplicates": len(events), "conversions": 0}
    fresh = api.post("events", {"events": events[8:], "batch_id": "sdk-batch-0002"}, public=True).json()
    assert fresh == {"accepted": 4, "duplicates": 0, "conversions": 0}


def test_an_id_twice_in_one_batch__once(ctx: AppContext, api: Api) -> None:
    same = {"user_id": "u", "event": "app_open", "event_id": "dup"}
    r = api.post("events", [same, same, {"user_id": "u", "event": "app_open"}], public=True)
    assert r.json() == {"accepted": 2, "duplicates": 1, "conversions": 0}
    assert len(_stream(ctx, api.ws.id)) == 2


def test_data_plane_and_experience_events_share_the_ids(
    ctx: AppContext, client: Any, workspace: WorkspaceFixture
) -> None:
    url = f"/api/v1/workspaces/{workspace.id}/events"
    batch = {"events": [{"entity_id": "c1", "event": "purchase"}, {"entity_id": "c2", "event": "purchase"}]}
    answers = _at_once(
        3, lambda: client.post(url, json={**batch, "batch_id": "import-7"}, headers=workspace.headers)
    )
    assert sorted(r.json()["accepted"] for r in answers) == [0, 0, 2], [r.text for r in answers]
    assert sum(r.json()["duplicates"] for r in answers) == 4
    assert _stream(ctx, workspace.id) == [("c1", "purchase"), ("c2", "purchase")]
    # Without ids nothing is claimed: the same events are stored again, as before.
    assert client.post(url, json=batch, headers=workspace.headers).json() == {"accepted": 2, "duplicates": 0}
    # An id used on one endpoint is seen by the others (one table per workspace).
    r = client.post(
        f"/v1/projects/{workspace.id}/events",
        json=[{"user_id": "c1", "event": "purchase", "event_id": "import-7:0"}],
        headers=workspace.public_headers,
    )
    assert r.json()["duplicates"] == 1


def test_batch_id_is_checked(api: Api) -> None:
    r = api.post("events", {"events": [], "batch_id": ""}, public=True)
    assert r.status_code == 422 and r.json()["field"] == "batch_id", r.text
    r = api.post("events", {"events": [], "batch": "x"}, public=True)
    assert r.status_code == 422 and r.json()["field"] == "events", r.text
