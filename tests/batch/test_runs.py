"""Runs end to end: eligibility, scores, ranks, the per-customer cut, the file and the results."""

from __future__ import annotations

import csv
import io

from tests.batch.conftest import Api, World


def test_run__logistic_scores_ranks_and_file(api: Api, world: World) -> None:
    a = api.offer(
        "Gold card",
        category="cards",
        priority=2,
        channels=[world.channel_id],
        creatives=[{"name": "gold-email", "content": "Hi"}],
        propensity={"type": "logistic", "intercept": -1.0, "weights": {"ltv": 0.02, "vip": 1.0}},
        eligibility={"field": "plan", "operator": "is", "value": "pro"},
    )
    b = api.offer(
        "Loan", category="loans", priority=1, propensity={"type": "column", "column": "churn_score"}
    )
    flow = api.flow(world.model_id, offerIds=[a, b], ranking="score", maxOffersPerCustomer=2)
    campaign = api.campaign(
        flow, world.segment_id, fileOutput={"columns": ["customer_id", "offer_name", "rank", "score"]}
    )
    run = api.run(campaign["id"])
    assert run["status"] == "completed", run
    results = run["results"]
    assert results["totalCustomers"] == 20
    assert results["recommended"] == 20
    rows = list(csv.DictReader(io.StringIO(api.file(campaign["id"], run["id"]).decode())))
    assert len(rows) == run["file"]["rows"] == 20 + 7
    customers = api.customers(campaign["id"], run["id"], limit=7)
    assert len(customers) == 20


def test_run__no_offer_fits_anyone(api: Api, world: World) -> None:
    flow = api.flow(world.model_id)  # every active offer: there is none
    for fmt in ("csv", "json"):
        campaign = api.campaign(flow, world.segment_id, fileOutput={"format": fmt})
        run = api.run(campaign["id"])
        assert run["status"] == "completed", run
        assert run["results"]["recommended"] == 0 and run["results"]["totalCustomers"] == 20
        assert run["results"]["summary"]["skipped"]["notEligible"] == 20
        assert run["results"]["summary"]["byOffer"] == [] and run["file"]["rows"] == 0
        body = api.file(campaign["id"], run["id"]).decode()
        if fmt == "json":
            import json

            assert json.loads(body) == []
        else:
            assert body.strip() == "customer_id,offer_name,channel,score,creative"
    skipped = api.customers(campaign["id"], run["id"], status="skipped")
    assert len(skipped) == 20 and {c["reason"] for c in skipped} == {"notEligible"}
    assert api.customers(campaign["id"], run["id"], status="recommended") == []


def test_run__segment_filter_and_integer_keys(api: Api) -> None:
    from overture.data.source import get_source

    table = "intkeys_" + api.ws.id.replace("-", "")[:8]
    with get_source(api.ctx).begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} AS SELECT i AS id, i % 5 AS bucket FROM range(50) t(i)")
    r = api.client.post(
        f"{api.base}/models",
        headers=api.ws.headers,
        json={"name": table, "primary_key": "id", "table": table},
    )
    model = r.json()["id"]
    segment = api.segment(model, {"field": "bucket", "operator": "lt", "value": 2})
    offer = api.offer("only", propensity={"type": "logistic", "weights": {"bucket": 1.0}})
    campaign = api.campaign(api.flow(model, offerIds=[offer]), segment)
    run = api.run(campaign["id"])
    assert run["results"]["totalCustomers"] == 20 and run["results"]["recommended"] == 20
    ids = [c["customerId"] for c in api.customers(campaign["id"], run["id"], limit=6)]
    assert ids == sorted(i for i in range(50) if i % 5 < 2)


def test_old_runs_keep_summary_and_file_but_not_per_customer_results(
    api: Api, world: World, monkeypatch: object
) -> None:
    from overture.batch import runner

    monkeypatch.setattr(runner, "KEEP_RESULTS", 2)  # type: ignore[attr-defined]
    campaign = api.campaign(api.flow(world.model_id), world.segment_id)
    runs = [api.run(campaign["id"]) for _ in range(3)]
    oldest = runs[0]
    r = api.get(f"/batch-campaigns/{campaign['id']}/runs/{oldest['id']}/customers", expect=None)
    assert r.status_code == 404 and "no longer kept" in r.json()["detail"]
    assert (
        api.get(f"/batch-campaigns/{campaign['id']}/runs/{oldest['id']}")["results"]["totalCustomers"] == 20
    )
    api.file(campaign["id"], oldest["id"])
    assert len(api.customers(campaign["id"], runs[2]["id"])) == 20
