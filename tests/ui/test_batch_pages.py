"""Batch campaign pages: list, Run now through the service, summary charts by offer and channel, file
download, and a read-only key without the button."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from overture.runtime import jobs
from tests.batch.conftest import Api, World
from tests.conftest import create_key
from tests.ui.conftest import sign_in


def test_batch_pages__run_now__charts__file(app: FastAPI, api: Api, world: World) -> None:
    gold = api.offer("Gold <card>", category="cards", channels=[world.channel_id])
    loan = api.offer("Loan", category="loans", propensity={"type": "column", "column": "churn_score"})
    flow = api.flow(world.model_id, offerIds=[gold, loan], ranking="score", maxOffersPerCustomer=2)
    campaign = api.campaign(flow, world.segment_id, fileOutput={"columns": ["customer_id", "offer_name"]})
    with TestClient(app) as client:
        token = sign_in(client, api.ws.api_key)
        listing = client.get("/ui/batch")
        assert listing.status_code == 200 and f"/ui/batch/{campaign['id']}" in listing.text
        page = client.get(f"/ui/batch/{campaign['id']}").text
        assert "No run yet" in page and 'data-action="run"' in page
        r = client.post(f"/ui/batch/{campaign['id']}/run", headers={"X-CSRF-Token": token, "HX-Request": "1"})
        assert r.status_code == 200 and "pending" in r.text and 'hx-trigger="every 2s"' in r.text
        jobs.drain(api.ctx)
        live = client.get(f"/ui/batch/{campaign['id']}/live").text
        assert "completed" in live and 'data-polling="no"' in live
        assert "Gold &lt;card&gt;" in live and "<card>" not in live
        assert live.count('class="bar"') >= 3  # two offers, at least one channel row
        link = re.search(r'href="(/ui/batch/[^"]+/file)"', live)
        assert link is not None
        file = client.get(link.group(1))
        assert file.status_code == 200 and file.content.startswith(b"customer_id")
    viewer = create_key(api.ctx, api.ws.id, ["campaigns:read"])
    with TestClient(app) as client:
        token = sign_in(client, viewer)
        assert 'data-action="run"' not in client.get(f"/ui/batch/{campaign['id']}").text
        r = client.post(f"/ui/batch/{campaign['id']}/run", headers={"X-CSRF-Token": token, "HX-Request": "1"})
        assert r.status_code == 403
