"""Experience pages: the campaign > stage > experience tree, candidates for a vehicle, and the decide
explainer (a dry run: the decision segment does not grow)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from tests.conftest import WorkspaceFixture, create_workspace
from tests.experiences.helpers import audience, create_campaign, experience_ids, members, publish
from tests.ui.conftest import sign_in


def test_experience_tree__candidates__decide_explainer(app: FastAPI, ctx: AppContext) -> None:
    ws: WorkspaceFixture = create_workspace(ctx, "ui-experiences")
    with TestClient(app) as client:
        segment = audience(client, ws, n=10)
        campaign = create_campaign(
            client, ws, segment["id"], [["Banner <b>A</b>", "Banner B"]], name="Spring"
        )
        first, second = experience_ids(campaign)[0]
        published = publish(client, ws, first)
        publish(client, ws, second)
        token = sign_in(client, ws.api_key)
        page = client.get("/ui/experiences")
        assert page.status_code == 200
        assert "Spring" in page.text and "stage 1" in page.text and "Banner &lt;b&gt;A&lt;/b&gt;" in page.text
        hx = {"X-CSRF-Token": token, "HX-Request": "1"}
        r = client.post("/ui/experiences/candidates", data={"vehicle": "email", "channel": ""}, headers=hx)
        assert (
            r.status_code == 200
            and r.text.count("<li>") == 2
            and r.text.index("A&lt;/b&gt;") < r.text.index("Banner B")
        )
        user = "c00001"
        r = client.post(
            "/ui/experiences/decide", data={"user_id": user, "vehicle": "email", "limit": "1"}, headers=hx
        )
        assert r.status_code == 200 and "Shown:" in r.text and "lower priority" in r.text
        decision_segment = published["segments"]["decision"]
        assert user not in members(client, ws, decision_segment)  # nothing recorded
        r = client.post("/ui/experiences/decide", data={"user_id": "", "limit": "0"}, headers=hx)
        assert r.status_code == 422
