"""Frequency caps: per session, per UTC day, N in total; per user and audience; counted atomically
(50 concurrent registers for one user show the paywall exactly once)."""

from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from threading import Barrier

import pytest

from overture.clock import FrozenClock
from overture.db.context import AppContext
from overture.paywalls.decisions import CapSpend
from overture.paywalls.recorder import spend_cap, spend_caps
from tests.paywalls.conftest import Api

CONCURRENCY = 50


@pytest.fixture
def pw(api: Api) -> str:
    api.paywall("pw_a")
    return "pw_a"


def test_cap_once_per_session__second_register_capped__new_session_shows_again(api: Api, pw: str) -> None:
    cid = api.setup(audiences=[{"paywall_id": pw, "frequency_cap": "once_per_session"}])
    first = api.register(session_id="s1")
    assert first["result"] == "paywall"
    capped = api.register(session_id="s1")
    assert capped["result"] == "capped"
    assert (capped["campaign_id"], capped["audience_id"]) == (cid, first["audience_id"])
    assert capped["paywall"] is None and capped["paywall_id"] is None
    assert api.register(session_id="s2")["result"] == "paywall"
    assert api.register(user_id="someone_else", session_id="s1")["result"] == "paywall"


def test_cap_once_per_session__no_session_id__422(api: Api, pw: str) -> None:
    api.setup(audiences=[{"paywall_id": pw, "frequency_cap": "once_per_session"}])
    r = api.post("register", {"placement": "feature_gate", "user_id": "u"}, public=True)
    assert r.status_code == 422 and r.json()["field"] == "session_id"


def test_cap_once_per_day__resets_at_utc_midnight(api: Api, pw: str, frozen_clock: FrozenClock) -> None:
    frozen_clock.set(datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    api.setup(audiences=[{"paywall_id": pw, "frequency_cap": "once_per_day"}])
    assert api.register(session_id="a")["result"] == "paywall"
    assert api.register(session_id="b")["result"] == "capped"  # another session, same day
    frozen_clock.advance(timedelta(minutes=29))
    assert api.register()["result"] == "capped"
    frozen_clock.advance(timedelta(minutes=2))  # 00:01 UTC the next day
    assert api.register()["result"] == "paywall"
    assert api.register()["result"] == "capped"


def test_cap_n_times_total__n_paywalls_then_capped_forever(
    api: Api, pw: str, frozen_clock: FrozenClock
) -> None:
    api.setup(audiences=[{"paywall_id": pw, "frequency_cap": "3_times_total"}])
    results = [api.register(session_id=f"s{i}")["result"] for i in range(5)]
    assert results == ["paywall", "paywall", "paywall", "capped", "capped"]
    frozen_clock.advance(days=400)
    assert api.register(session_id="later")["result"] == "capped"


def test_cap__per_audience__other_audience_counts_separately(api: Api, pw: str) -> None:
    cid = api.campaign()
    api.placement(cid, "feature_gate")
    api.placement(api.campaign("second"), "app_launch")
    second = api.get("campaigns").json()[1]["id"]
    api.audience(cid, paywall_id=pw, frequency_cap="1_times_total")
    api.audience(second, paywall_id=pw, frequency_cap="1_times_total")
    assert api.register("feature_gate")["result"] == "paywall"
    assert api.register("app_launch")["result"] == "paywall"
    assert api.register("feature_gate")["result"] == "capped"


def test_cap__capped_user_is_not_passed_to_the_next_audience(api: Api, pw: str) -> None:
    # The first matching audience decides, even when its cap is spent.
    api.setup(audiences=[{"paywall_id": pw, "frequency_cap": "1_times_total"}, {"paywall_id": pw}])
    assert api.register()["result"] == "paywall"
    assert api.register()["result"] == "capped"


def test_cap__raising_the_limit__allows_more(api: Api, pw: str) -> None:
    cid = api.setup(audiences=[{"paywall_id": pw, "frequency_cap": "1_times_total"}])
    aud = api.get(f"campaigns/{cid}/audiences").json()[0]["id"]
    assert [api.register()["result"] for _ in range(2)] == ["paywall", "capped"]
    api.put(f"campaigns/{cid}/audiences/{aud}", {"frequency_cap": "2_times_total"})
    assert [api.register()["result"] for _ in range(2)] == ["paywall", "capped"]


def test_cap__holdout_does_not_spend_the_cap(api: Api, pw: str) -> None:
    experiment = {"variants": [{"paywall_id": pw, "traffic_percentage": 0}]}  # everyone held out
    api.setup(audiences=[{"experiment": experiment, "frequency_cap": "1_times_total"}])
    assert [api.register()["result"] for _ in range(3)] == ["holdout"] * 3


def test_cap_once_per_session__50_concurrent_registers__paywall_exactly_once(api: Api, pw: str) -> None:
    api.setup(audiences=[{"paywall_id": pw, "frequency_cap": "once_per_session"}])
    barrier = Barrier(CONCURRENCY)
    body = {"placement": "feature_gate", "user_id": "racer", "session_id": "s1"}

    def call(_: int) -> str:
        barrier.wait()
        r = api.client.post(api.url("register"), json=body, headers=api.ws.public_headers)
        assert r.status_code == 200, r.text
        result: str = r.json()["result"]
        return result

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = Counter(pool.map(call, range(CONCURRENCY)))
    assert results == {"paywall": 1, "capped": CONCURRENCY - 1}


@pytest.mark.parametrize("limit", [1, 3])
def test_spend_cap__50_concurrent_transactions__exactly_limit_succeed(
    ctx: AppContext, api: Api, limit: int
) -> None:
    # The statement itself is atomic, without the recorder's single thread: what keeps caps right
    # across processes. Each thread commits its own transaction.
    barrier = Barrier(CONCURRENCY)
    spend = CapSpend(f"aud_concurrency_{limit}", "racer", "total", limit)

    def call(_: int) -> bool:
        barrier.wait()
        with ctx.transaction() as session:
            return spend_cap(session, api.ws.id, spend, ctx.clock.now())

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = Counter(pool.map(call, range(CONCURRENCY)))
    assert results == {True: limit, False: CONCURRENCY - limit}


def test_spend_caps__one_batch_with_repeated_keys_and_limits__first_come_first_served(
    ctx: AppContext, api: Api
) -> None:
    # What one group commit holds under load: the same user's key several times, mixed limits, a key
    # whose count is already spent. Each request is answered in order; the counters end at the limit.
    ws = api.ws.id
    once = CapSpend("aud_batch", "racer", "session:s1", 1)
    thrice = CapSpend("aud_batch", "racer", "total", 3)
    spent = CapSpend("aud_batch", "other", "total", 1)
    with ctx.transaction() as session:
        assert spend_cap(session, ws, spent, ctx.clock.now())
    batch = [(ws, once), (ws, thrice), (ws, spent), (ws, once), (ws, thrice), (ws, thrice), (ws, thrice)]
    with ctx.transaction() as session:
        cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        shown = spend_caps(session, cursor, batch, ctx.clock.now())
    assert shown == [True, True, False, False, True, True, False]
    with ctx.transaction() as session:  # nothing left anywhere
        assert not any(spend_cap(session, ws, s, ctx.clock.now()) for s in (once, thrice, spent))


def test_spend_caps__batch_larger_than_one_statement__every_row_counted(ctx: AppContext, api: Api) -> None:
    spends = [(api.ws.id, CapSpend("aud_big", f"user_{i % 700}", "total", 2)) for i in range(2_100)]
    with ctx.transaction() as session:
        cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        shown = spend_caps(session, cursor, spends, ctx.clock.now())
    assert shown == [True] * 1_400 + [False] * 700


def test_recorder__registers_decided_in_one_loop_iteration__one_group_commit(
    ctx: AppContext, api: Api
) -> None:
    # The loop hands everything it decided in one iteration to the writer thread at once: one
    # transaction, one wake-up of the thread, one callback answering them all.
    from overture.paywalls.decisions import Decision
    from overture.paywalls.recorder import BATCH_ROWS, DecisionRecorder

    recorder = DecisionRecorder(ctx)
    decisions = [
        Decision(b"{}", cap=CapSpend("aud_loop", f"user_{i}", "total", 1), capped_body=b"{}")
        for i in range(10)
    ]

    def observed() -> tuple[float, float]:
        count = sum(m.value for s in BATCH_ROWS.collect() for m in s.samples if m.name.endswith("_count"))
        total = sum(m.value for s in BATCH_ROWS.collect() for m in s.samples if m.name.endswith("_sum"))
        return count, total

    async def register_all() -> list[bool]:
        waiters = [recorder.record(api.ws.id, d) for d in decisions]
        return await asyncio.gather(*(w for w in waiters if w is not None))

    before = observed()
    try:
        assert asyncio.run(register_all()) == [True] * 10
    finally:
        recorder.close()
    after = observed()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 10)
