"""Broadcast pages: list and one broadcast's funnel, preflight checks and proofs, the write buttons
through the service (a refusal in words), a read-only key without them, and a hostile name inert."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from overture.clock import FrozenClock
from tests.broadcasts.conftest import Api, Receiver, customers
from tests.broadcasts.conftest import api as api  # the broadcasts API fixture, not batch's
from tests.delivery.conftest import receiver as receiver
from tests.ui.conftest import sign_in

HOSTILE = "<script>alert(1)</script>"


def test_broadcast_pages__funnel__preflight__proofs__read_only(
    app: FastAPI, api: Api, receiver: Receiver, frozen_clock: FrozenClock
) -> None:
    model = api.model(customers(api.ctx, 6))
    template = api.template("sms")
    b = api.broadcast(
        name=HOSTILE,
        channel="sms",
        templateId=template,
        destinationId=api.destination("webhook", {"url": receiver.url + "/sms"}),
        audience={"included": [api.segment(model)]},
        addressField="email",
    )
    api.post(f"/broadcasts/{b['id']}/reach")
    proof = api.post(f"/templates/{template}/proofs", {"recipients": ["+15550001"]}, 201)
    page_url = f"/ui/broadcasts/{b['id']}"
    hx = {"HX-Request": "1", "X-Error-Target": "#action-errors"}  # as the section's hx-headers send
    with TestClient(app) as client:
        token = sign_in(client, api.ws.api_key)
        listing = client.get("/ui/broadcasts").text
        assert page_url in listing and "never sent" in listing
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing and HOSTILE not in listing
        page = client.get(page_url).text
        assert HOSTILE not in page and "&lt;script&gt;" in page
        assert "Never sent" in page and "The preflight has not run" in page
        assert 'data-action="send-now"' in page and 'data-action="cancel"' in page
        assert 'id="proofs"' in page and proof["status"] in page
        refused = client.post(f"{page_url}/publish", headers={"X-CSRF-Token": token, **hx})
        assert refused.status_code == 409 and "preflight" in refused.text.lower()
        assert refused.headers["HX-Retarget"] == "#action-errors"
        checked = client.post(f"{page_url}/preflight", headers={"X-CSRF-Token": token, **hx})
        assert checked.status_code == 200 and 'id="preflight"' in checked.text
        started = client.post(f"{page_url}/send-now", headers={"X-CSRF-Token": token, **hx})
        assert started.status_code == 200, started.text
        assert 'data-polling="yes"' in started.text
        api.finish(frozen_clock)
        live = client.get(f"{page_url}/live").text
        assert 'data-polling="no"' in live and "completed" in live
        for stage in ("scheduled", "hydrated", "composed", "injected", "sent"):
            assert f'data-stage="{stage}">6<' in live, stage
        assert 'data-stage="failed">0<' in live and 'data-stage="cancelled">0<' in live
        assert client.post(f"{page_url}/nope", headers={"X-CSRF-Token": token, **hx}).status_code == 404
        assert "completed" in client.get("/ui/broadcasts").text
        assert "/ui/broadcasts" in client.get("/ui/").text
    viewer = api.key("campaigns:read")
    with TestClient(app) as client:
        token = sign_in(client, viewer)
        page = client.get(page_url).text
        assert page.count("data-action") == 0 and 'data-stage="sent">6<' in page
        r = client.post(f"{page_url}/cancel", headers={"X-CSRF-Token": token, **hx})
        assert r.status_code == 403
    assert api.get(f"/broadcasts/{b['id']}")["latestExecution"]["status"] == "completed"
