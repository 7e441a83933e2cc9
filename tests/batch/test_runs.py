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
