"""Events and experiment results: events reach the event stream; exposures are recorded once per
user per variant; transaction_complete after exposure converts; results carry the Bayesian figures;
auto-promotion promotes a real winner (and not an A/A tie), after which the winner serves 100%."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from overture.data.service import events_relation
from overture.data.source import get_source
from overture.db.context import AppContext
from tests.conftest import create_key
from tests.paywalls.conftest import Api

TWO_ARMS = {
    "variants": [
        {"paywall_id": "pw_original", "traffic_percentage": 50},
        {"paywall_id": "pw_new_design", "traffic_percentage": 50},
    ]
}


@pytest.fixture
def experiment(api: Api) -> Callable[..., tuple[str, str]]:
    """Create a campaign whose one audience runs an experiment; returns (campaign id, audience id)."""
    api.paywall("pw_original")
    api.paywall("pw_new_design")

    def make(**settings: Any) -> tuple[str, str]:
        cid = api.setup(audiences=[{"experiment": {**TWO_ARMS, **settings}}])
        return cid, api.get(f"campaigns/{cid}/audiences").json()[0]["id"]

    return make


def results(api: Api, cid: str, aid: str) -> dict[str, Any]:
    r = api.get(f"campaigns/{cid}/audiences/{aid}/experiment")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def purchase(user_id: str, revenue: float = 9.99, **extra: Any) -> dict[str, Any]:
    return {"user_id": user_id, "event": "transaction_complete", "properties": {"revenue": revenue}, **extra}


# -- events -----------------------------------------------------------------------------------------


def test_events__stored_in_event_stream_with_user_id_as_entity(ctx: AppContext, api: Api) -> None:
    r = api.post(
        "events",
        [
            {"user_id": "u_stream", "event": "paywall_open", "properties": {"paywall_id": "pw_x"}},
            {
                "user_id": "u_stream",
                "event": "transaction_complete",
                "properties": {"revenue": 4.5},
                "timestamp": "2026-01-01T10:00:00Z",
            },
        ],
        public=True,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0, "conversions": 0}
    ev = events_relation(ctx, api.ws.id)
    with get_source(ctx).connect() as conn:
        rows = conn.execute(sa.select(ev.c.entity_id, ev.c.event).order_by(ev.c.event)).all()
    assert [tuple(row) for row in rows] == [
        ("u_stream", "paywall_open"),
        ("u_stream", "transaction_complete"),
    ]


def test_events__object_form_accepted(api: Api) -> None:
    r = api.post("events", {"events": [{"user_id": "u", "event": "app_open"}]}, public=True)
    assert r.status_code == 200 and r.json()["accepted"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([{"user_id": "u", "event": "transaction_complete"}], "events[0].properties.revenue"),
        (
            [{"user_id": "u", "event": "transaction_complete", "properties": {"revenue": "9.99"}}],
            "events[0].properties.revenue",
        ),
        ([{"event": "x"}], "events[0].user_id"),
        ([{"user_id": "u", "event": "x", "timestamp": "2026-01-01T10:00:00"}], "events[0].timestamp"),
        ([{"user_id": "u", "event": "x", "timestamp": "yesterday"}], "events[0].timestamp"),
        ({"user_id": "u", "event": "x"}, "events"),
        ("nope", "events"),
        # JSON no store holds (was a 502 echoing the internal insert, retried forever by SDKs).
        (
            {"events": [{"user_id": "u", "event": "x", "properties": {"t": "\ud800"}}]},
            "events[0].properties.t",
        ),
        ([{"user_id": "u", "event": "x", "properties": {"n": 2**64}}], "[0].properties.n"),
    ],
)
def test_events__bad_input__422_and_nothing_stored(ctx: AppContext, api: Api, body: Any, field: str) -> None:
    # Sent as written: httpx cannot encode a lone surrogate as UTF-8 (json.dumps escapes it).
    raw = json.dumps(body).encode()
    headers = {**api.ws.public_headers, "Content-Type": "application/json"}
    r = api.client.post(api.url("events"), content=raw, headers=headers)
    assert r.status_code == 422, r.text
    got = r.json().get("field") or r.json()["errors"][0]["field"]
    assert got == field
    ev = events_relation(ctx, api.ws.id)
    with get_source(ctx).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ev)).scalar() == 0


def test_events__too_many__413(api: Api) -> None:
    r = api.post("events", [{"user_id": "u", "event": "x"}] * 1001, public=True)
    assert r.status_code == 413


def test_events__key_without_events_scope__403(ctx: AppContext, api: Api) -> None:
    decisions_only = {
        "Authorization": f"Bearer {create_key(ctx, api.ws.id, ['decisions:write'], public=True)}"
    }
    assert api.post("events", [{"user_id": "u", "event": "x"}], headers=decisions_only).status_code == 403


# -- exposures and conversions ----------------------------------------------------------------------


def test_results__exposures_once_per_user_and_conversions_after_exposure(
    api: Api, experiment: Callable[..., tuple[str, str]]
) -> None:
    cid, aid = experiment()
    answers = {u: api.register(user_id=u) for u in ("alice", "bob", "carol", "dave")}
    for user_id in answers:  # returning users are not exposed twice
        api.register(user_id=user_id)
    # alice buys twice (one conversion, two revenues); bob bought *before* his exposure;
    # eve was never exposed.
    before = "2000-01-01T00:00:00Z"
    r = api.post(
        "events",
        [
            purchase("alice", 10),
            purchase("alice", 5),
            purchase("bob", 7, timestamp=before),
            purchase("eve", 99),
        ],
        public=True,
    )
    assert r.json() == {"accepted": 4, "duplicates": 0, "conversions": 2}

    body = results(api, cid, aid)
    assert body["state"] == "running" and body["auto_promote"] is False
    by_variant = {v["variant_id"]: v for v in body["variants"]}
    expected_users = {v["variant_id"]: 0 for v in body["variants"]}
    for answer in answers.values():
        expected_users[answer["variant_id"]] += 1
    assert {k: v["users_exposed"] for k, v in by_variant.items()} == expected_users
    alice = by_variant[answers["alice"]["variant_id"]]
    assert alice["conversions"] == 1 and alice["revenue"] == 15
    assert alice["revenue_per_user"] == pytest.approx(15 / alice["users_exposed"])
    assert alice["conversion_rate"] == pytest.approx(1 / alice["users_exposed"])
    control, variant = body["variants"]
    assert control["control"] is True and control["chance_to_beat_control"] is None
    assert 0 <= variant["chance_to_beat_control"] <= 1
    lo, hi = variant["uplift_interval"]
    assert lo < hi
    assert body["holdout"] is None


def test_results__holdout_users__reported_as_holdout(
    api: Api, experiment: Callable[..., tuple[str, str]]
) -> None:
    cid, aid = experiment(variants=[{"paywall_id": "pw_original", "traffic_percentage": 10}])
    answers = [api.register(user_id=f"h{i}")["result"] for i in range(30)]
    body = results(api, cid, aid)
    assert body["holdout"]["users_exposed"] == answers.count("holdout") > 0
    assert body["variants"][0]["users_exposed"] == answers.count("paywall")


def test_results__capped_user__not_exposed(api: Api) -> None:
    api.paywall("pw_original")
    cid = api.setup(
        audiences=[
            {
                "experiment": {"variants": [{"paywall_id": "pw_original", "traffic_percentage": 100}]},
                "frequency_cap": "once_per_session",
            }
        ]
    )
    aid = api.get(f"campaigns/{cid}/audiences").json()[0]["id"]
    assert [api.register(session_id="s")["result"] for _ in range(3)] == ["paywall", "capped", "capped"]
    assert results(api, cid, aid)["variants"][0]["users_exposed"] == 1


def test_results__audience_without_experiment__404_and_scope(ctx: AppContext, api: Api) -> None:
    api.paywall("pw_original")
    cid = api.setup(audiences=[{"paywall_id": "pw_original"}])
    aid = api.get(f"campaigns/{cid}/audiences").json()[0]["id"]
    assert api.get(f"campaigns/{cid}/audiences/{aid}/experiment").status_code == 404
    reader = {"Authorization": f"Bearer {create_key(ctx, api.ws.id, ['campaigns:read'])}"}
    assert api.get(f"campaigns/{cid}/audiences/{aid}/experiment", headers=reader).status_code == 403


def test_results__removing_the_experiment__drops_its_data(
    api: Api, experiment: Callable[..., tuple[str, str]]
) -> None:
    cid, aid = experiment()
    api.register(user_id="x")
    api.put(f"campaigns/{cid}/audiences/{aid}", {"experiment": None, "paywall_id": "pw_original"})
    assert api.get(f"campaigns/{cid}/audiences/{aid}/experiment").status_code == 404
    api.put(f"campaigns/{cid}/audiences/{aid}", {"paywall_id": None, "experiment": TWO_ARMS})
    assert sum(v["users_exposed"] for v in results(api, cid, aid)["variants"]) == 0


# -- auto-promotion ---------------------------------------------------------------------------------


def _run_cohort(api: Api, start: int, count: int, rates: dict[str, float]) -> None:
    """Register `count` new users and send a purchase for a deterministic share of each arm
    (rates by paywall id: every k-th user of that arm converts)."""
    seen: dict[str, int] = {}
    events = []
    for i in range(start, start + count):
        user_id = f"cohort_{i}"
        answer = api.register(user_id=user_id)
        paywall_id = answer["paywall_id"]
        seen[paywall_id] = seen.get(paywall_id, 0) + 1
        if seen[paywall_id] % round(1 / rates[paywall_id]) == 0:
            events.append(purchase(user_id, 4.99))
    for chunk in range(0, len(events), 500):
        assert api.post("events", events[chunk : chunk + 500], public=True).status_code == 200


@pytest.mark.slow
def test_auto_promote__real_effect__winner_promoted_then_serves_everyone(
    api: Api, experiment: Callable[..., tuple[str, str]]
) -> None:
    cid, aid = experiment(auto_promote=True)
    rates = {"pw_original": 0.1, "pw_new_design": 0.5}
    _run_cohort(api, 0, 260, rates)  # first look (>= 100 per arm): the new design leads
    first = results(api, cid, aid)
    assert first["state"] == "running" and first["next_look_at_exposures"] == 200
    _run_cohort(api, 260, 260, rates)  # second look: it leads again, so it is promoted
    body = results(api, cid, aid)
    winner = body["variants"][1]
    assert body["state"] == "promoted", body
    assert body["promoted_variant_id"] == winner["variant_id"] and body["promoted_at"].endswith("Z")
    promotion = body["promotion"]
    assert promotion["variant_id"] == winner["variant_id"]
    assert promotion["variants"][1]["chance_to_beat_control"] >= 0.95
    assert promotion["variants"][0]["users_exposed"] >= 100
    # Promoted: 100% of the audience sees the winner from now on, including former control users.
    assert {api.register(user_id=f"cohort_{i}")["paywall_id"] for i in range(40)} == {"pw_new_design"}
    listed = api.get(f"campaigns/{cid}/audiences/{aid}").json()["experiment"]
    assert listed["state"] == "promoted" and listed["promoted_variant_id"] == winner["variant_id"]


@pytest.mark.slow
def test_auto_promote__aa_experiment__not_promoted(
    api: Api, experiment: Callable[..., tuple[str, str]]
) -> None:
    cid, aid = experiment(auto_promote=True)
    rates = {"pw_original": 0.2, "pw_new_design": 0.2}
    _run_cohort(api, 0, 260, rates)
    _run_cohort(api, 260, 260, rates)
    body = results(api, cid, aid)
    assert body["state"] == "running" and body["promoted_variant_id"] is None
    assert body["next_look_at_exposures"] == 400  # both looks were taken


@pytest.mark.slow
def test_auto_promote__off__strong_effect_not_promoted(
    api: Api, experiment: Callable[..., tuple[str, str]]
) -> None:
    cid, aid = experiment(auto_promote=False)
    rates = {"pw_original": 0.1, "pw_new_design": 0.5}
    _run_cohort(api, 0, 260, rates)
    _run_cohort(api, 260, 260, rates)
    body = results(api, cid, aid)
    assert body["state"] == "running"
    assert body["variants"][1]["chance_to_beat_control"] > 0.99


def test_conversion__event_time_before_exposure__not_counted(
    api: Api, experiment: Callable[..., tuple[str, str]]
) -> None:
    experiment()
    api.register(user_id="late")
    past = (api.client.app.state.ctx.clock.now() - timedelta(hours=1)).isoformat()  # type: ignore[attr-defined]
    assert api.post("events", [purchase("late", timestamp=past)], public=True).json()["conversions"] == 0
    assert api.post("events", [purchase("late")], public=True).json()["conversions"] == 1
