"""Volume constraints (each alone and together), the per-customer cut, ranking, skip reasons, and the
optimal allocation, checked against a reference written here in plain Python."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import pytest

from overture.data.source import get_source
from tests.batch.conftest import Api, World

N = 20


def churn(i: int) -> float:
    """The `churn_score` column of the test customers (distinct for every customer)."""
    return ((i * 37) % 100) / 100.0


def cid(i: int) -> str:
    return f"c{i:05d}"


def plan(i: int) -> str:
    return ["free", "pro", "enterprise"][i % 3]


def greedy(cands: list[tuple[str, str, str, float]], caps: dict[str, int | None]) -> set[tuple[str, str]]:
    """The documented greedy: candidates (customer, offer, channel, score) after the per-customer cut;
    the best maxPerOffer of each offer, then of those left the best maxPerChannel of each channel, then
    the best maxTotalPerRun; best = score descending, then customer id, then offer."""
    ordered = sorted(cands, key=lambda c: (-c[3], c[0], c[1]))
    kept = ordered
    for cap, key in (
        (caps.get("maxPerOffer"), 1),
        (caps.get("maxPerChannel"), 2),
        (caps.get("maxTotalPerRun"), None),
    ):
        if cap is None:
            continue
        counts: dict[Any, int] = {}
        survivors = []
        for c in kept:
            group = c[key] if key is not None else "all"
            counts[group] = counts.get(group, 0) + 1
            if counts[group] <= cap:
                survivors.append(c)
        kept = survivors
    return {(c[0], c[1]) for c in kept}


def _setup(
    api: Api, world: World, caps: dict[str, Any], ranking: str = "score"
) -> tuple[dict[str, Any], dict[str, str]]:
    """Three offers on two channels: A (free customers, channel X), B (everyone, X), C (pro, Y)."""
    x = world.channel_id
    y = api.channel("partner-sftp", mode="integration")
    a = api.offer(
        "A",
        category="cards",
        channels=[x],
        eligibility={"field": "plan", "operator": "is", "value": "free"},
        propensity={"type": "column", "column": "churn_score"},
    )
    b = api.offer(
        "B",
        category="loans",
        channels=[x],
        propensity={"type": "logistic", "intercept": -1, "weights": {"churn_score": 1.0}},
    )
    c = api.offer(
        "C",
        category="cards",
        channels=[y],
        eligibility={"field": "plan", "operator": "is", "value": "pro"},
        propensity={"type": "constant", "value": 0.6},
    )
    flow = api.flow(world.model_id, offerIds=[a, b, c], ranking=ranking)
    campaign = api.campaign(
        flow,
        world.segment_id,
        volumeConstraints=caps,
        fileOutput={"columns": ["customer_id", "offer_id", "channel", "score", "rank"]},
    )
    return campaign, {"A": a, "B": b, "C": c, "X": x, "Y": y}


def _candidates(ids: dict[str, str]) -> list[tuple[str, str, str, float]]:
    """The per-customer cut (k=1, ranking by score) computed by hand."""
    import math

    out = []
    for i in range(N):
        options = []
        if plan(i) == "free":
            options.append((ids["A"], ids["X"], churn(i)))
        options.append((ids["B"], ids["X"], 1 / (1 + math.exp(-(-1 + churn(i))))))
        if plan(i) == "pro":
            options.append((ids["C"], ids["Y"], 0.6))
        best = sorted(options, key=lambda o: (-o[2], o[0]))[0]
        out.append((cid(i), best[0], best[1], best[2]))
    return out


@pytest.mark.parametrize(
    "caps",
    [
        {},
        {"maxPerOffer": 3},
        {"maxPerChannel": 6},
        {"maxTotalPerRun": 5},
        {"maxPerOffer": 4, "maxPerChannel": 6, "maxTotalPerRun": 8},
        {"maxPerOffer": 2, "maxTotalPerRun": 3},
    ],
)
def test_constraints__greedy_in_descending_score(api: Api, world: World, caps: dict[str, Any]) -> None:
    campaign, ids = _setup(api, world, caps)
    run = api.run(campaign["id"])
    assert run["status"] == "completed", run
    cands = _candidates(ids)
    expected = greedy(cands, caps)
    rows = list(csv.DictReader(io.StringIO(api.file(campaign["id"], run["id"]).decode())))
    assert {(r["customer_id"], r["offer_id"]) for r in rows} == expected
    assert all(r["rank"] == "1" for r in rows)
    results = run["results"]
    assert results["totalCustomers"] == N
    assert results["recommended"] == len(expected)
    cut = N - len(expected)
    skipped = results["summary"]["skipped"]
    assert skipped["notEligible"] == 0
    assert skipped["maxPerOffer"] + skipped["maxPerChannel"] + skipped["maxTotalPerRun"] == cut
    assert results["processed"] == N - cut
    if caps.get("maxPerOffer"):
        assert all(o["count"] <= caps["maxPerOffer"] for o in results["summary"]["byOffer"])
    if caps.get("maxPerChannel"):
        assert all(ch["count"] <= caps["maxPerChannel"] for ch in results["summary"]["byChannel"])
    for only in ("maxPerOffer", "maxPerChannel", "maxTotalPerRun"):
        if set(caps) == {only}:
            assert skipped[only] == cut
    by_offer = {o["offerId"]: o["count"] for o in results["summary"]["byOffer"]}
    assert sum(by_offer.values()) == len(expected) == run["file"]["rows"]
    assert {o["offerName"] for o in results["summary"]["byOffer"]} == {"A", "B", "C"}
    assert sum(c["count"] for c in results["summary"]["byCategory"]) == len(expected)
    # Per-customer results: every skipped customer has the reason of the constraint that cut it.
    skipped_customers = api.customers(campaign["id"], run["id"], status="skipped")
    assert {c["customerId"] for c in skipped_customers} == {cid(i) for i in range(N)} - {
        c for c, _ in expected
    }
    for c in skipped_customers:
        assert c["offers"] == [] and c["reason"] in ("maxPerOffer", "maxPerChannel", "maxTotalPerRun")
    reasons: dict[str, int] = {}
    for c in skipped_customers:
        reasons[c["reason"]] = reasons.get(c["reason"], 0) + 1
    assert reasons == {k: v for k, v in skipped.items() if v}
    served = api.customers(campaign["id"], run["id"], status="recommended")
    assert len(served) == len(expected)
    assert all(c["offers"][0]["offerName"] in ("A", "B", "C") and c["offers"][0]["rank"] == 1 for c in served)


def test_per_customer_cut_ranking_and_categories(api: Api, world: World) -> None:
    x = world.channel_id
    hi = api.offer(
        "hi-priority",
        priority=9,
        category="cards",
        channels=[x],
        propensity={"type": "constant", "value": 0.1},
    )
    lo = api.offer(
        "lo-priority",
        priority=1,
        category="cards",
        channels=[x],
        propensity={"type": "constant", "value": 0.9},
    )
    mid = api.offer(
        "mid", priority=5, category="loans", channels=[x], propensity={"type": "constant", "value": 0.5}
    )
    offers = [hi, lo, mid]
    cols = {"columns": ["customer_id", "offer_name", "rank", "category", "priority"]}

    def first_customer(flow_fields: dict[str, Any]) -> list[str]:
        flow = api.flow(world.model_id, offerIds=offers, **flow_fields)
        c = api.campaign(flow, world.segment_id, fileOutput=cols)
        run = api.run(c["id"])
        assert run["status"] == "completed", run
        rows = list(csv.DictReader(io.StringIO(api.file(c["id"], run["id"]).decode())))
        assert len(rows) == N * min(
            flow_fields.get("maxOffersPerCustomer", 1), 2 if flow_fields.get("oneOfferPerCategory") else 3
        )
        mine = [r for r in rows if r["customer_id"] == "c00000"]
        assert [r["rank"] for r in mine] == [str(i + 1) for i in range(len(mine))]
        return [r["offer_name"] for r in mine]

    assert first_customer({"ranking": "priority", "maxOffersPerCustomer": 3}) == [
        "hi-priority",
        "mid",
        "lo-priority",
    ]
    assert first_customer({"ranking": "score", "maxOffersPerCustomer": 2}) == ["lo-priority", "mid"]
    # priority x score: hi 0.9, lo 0.9 (tie: offer id), mid 2.5
    tie = sorted([("hi-priority", hi), ("lo-priority", lo)], key=lambda t: t[1])
    assert first_customer({"ranking": "priority_weighted_score", "maxOffersPerCustomer": 3}) == [
        "mid",
        tie[0][0],
        tie[1][0],
    ]
    assert first_customer({"ranking": "score", "maxOffersPerCustomer": 3, "oneOfferPerCategory": True}) == [
        "lo-priority",
        "mid",
    ]


def test_not_eligible_and_inactive_or_expired_offers(api: Api, world: World, frozen_clock: Any) -> None:
    from datetime import UTC, datetime

    frozen_clock.set(datetime(2026, 6, 1, tzinfo=UTC))
    x = world.channel_id
    pro = api.offer("pro-only", channels=[x], eligibility={"field": "plan", "operator": "is", "value": "pro"})
    api.offer("inactive", channels=[x], status="inactive")
    api.offer("expired", channels=[x], endDate="2026-05-01T00:00:00Z")
    api.offer("future", channels=[x], startDate="2026-07-01T00:00:00Z")
    flow = api.flow(
        world.model_id, eligibility={"field": "ltv", "operator": "lt", "value": 15}
    )  # every active offer
    c = api.campaign(flow, world.segment_id)
    run = api.run(c["id"])
    results = run["results"]
    pro_customers = [i for i in range(N) if plan(i) == "pro" and i < 15]
    assert results["recommended"] == len(pro_customers)
    assert results["summary"]["skipped"]["notEligible"] == N - len(pro_customers)
    assert results["processed"] == N  # nobody was cut by a volume constraint
    assert [o["offerId"] for o in results["summary"]["byOffer"]] == [pro]
    skipped = api.customers(c["id"], run["id"], status="skipped")
    assert {s["reason"] for s in skipped} == {"notEligible"}
    everyone = api.customers(c["id"], run["id"], limit=3)
    assert [e["customerId"] for e in everyone] == [cid(i) for i in range(N)]


def test_optimal_allocation_beats_greedy_under_binding_caps(api: Api) -> None:
    """Two offers, A capped at 2. Greedy gives A to the best A scores and leaves the others without;
    optimal moves customers who are nearly as good on B there, and reports the gain."""
    table = f"opt_{uuid.uuid4().hex[:8]}"
    rows = [("u1", 0.90, 0.85), ("u2", 0.80, 0.75), ("u3", 0.70, 0.10), ("u4", 0.65, 0.05)]
    values = ", ".join(f"('{u}', {a}, {b})" for u, a, b in rows)
    with get_source(api.ctx).begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {table} AS SELECT * FROM (VALUES {values}) t(customer_id, sa, sb)"
        )
    model = api.model(table)
    segment = api.segment(model)
    ch = api.channel("files")
    a = api.offer("A", channels=[ch], propensity={"type": "column", "column": "sa"})
    b = api.offer("B", channels=[ch], propensity={"type": "column", "column": "sb"})
    flow = api.flow(model, offerIds=[a, b], ranking="score")
    greedy_c = api.campaign(flow, segment, volumeConstraints={"maxPerOffer": 2})
    optimal_c = api.campaign(flow, segment, volumeConstraints={"maxPerOffer": 2, "allocation": "optimal"})
    g = api.run(greedy_c["id"])["results"]
    o = api.run(optimal_c["id"])
    assert o["status"] == "completed", o
    res = o["results"]
    # greedy: u1 A .9, u2 A .8; u3, u4 cut (their A is full) = 1.7
    assert g["value"] == pytest.approx(1.7) and g["recommended"] == 2
    # optimal: u3 A .7, u4 A .65, u1 B .85, u2 B .75 = 2.95
    assert res["allocation"] == "optimal"
    assert res["value"] == pytest.approx(2.95) and res["recommended"] == 4
    assert res["greedyValue"] == pytest.approx(1.7) and res["gap"] == pytest.approx(1.25)
    rows_out = list(csv.DictReader(io.StringIO(api.file(optimal_c["id"], o["id"]).decode())))
    assert {(r["customer_id"], r["offer_name"]) for r in rows_out} == {
        ("u1", "B"),
        ("u2", "B"),
        ("u3", "A"),
        ("u4", "A"),
    }
    # with caps that leave someone out, optimal names the cap
    tight = api.campaign(flow, segment, volumeConstraints={"maxTotalPerRun": 3, "allocation": "optimal"})
    t = api.run(tight["id"])
    assert t["results"]["recommended"] == 3 and t["results"]["summary"]["skipped"]["maxTotalPerRun"] == 1
