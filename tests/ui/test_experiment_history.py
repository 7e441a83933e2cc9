"""The chance-to-beat-control history behind the paywall experiment chart: its last point is what the
results endpoint says now, exposures only grow, and the dashboard draws it."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from overture.core import stats
from overture.db.context import AppContext
from overture.errors import NotFound
from overture.paywalls import service as paywalls
from overture.paywalls import service_experiments as experiments
from tests.ui.conftest import DemoWorkspace, sign_in


def test_history__ends_at_the_current_results__exposures_grow(
    app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace
) -> None:
    ws = demo_workspace.ws
    with ctx.transaction(write=False, workspace_id=ws.id) as session:
        campaign = paywalls.list_campaigns(session)[0]
        tested, plain = paywalls.list_audiences(session, campaign.id)
        if tested.name != "Free users on iOS":
            tested, plain = plain, tested
        history = experiments.experiment_history(session, campaign.id, tested.id, points=8)
        now = experiments.experiment_results(session, campaign.id, tested.id)
        with pytest.raises(NotFound):
            experiments.experiment_history(session, campaign.id, plain.id)
    assert len(history) == 8
    assert [h.at for h in history] == sorted(h.at for h in history)
    for variant in now.variants:
        series = [h.exposures[variant.variant_id] for h in history]
        assert series == sorted(series) and series[-1] == variant.users_exposed
    control, challenger = now.variants
    expected = stats.chance_to_beat(
        stats.Arm(control.users_exposed, control.conversions, 0.0),
        stats.Arm(challenger.users_exposed, challenger.conversions, 0.0),
    )
    assert history[-1].chance_to_beat_control[challenger.variant_id] == pytest.approx(expected)
    assert history[0].exposures[control.variant_id] < control.users_exposed  # traffic spread over days
    with TestClient(app) as client:
        sign_in(client, ws.api_key)
        page = client.get(f"/ui/paywalls/{campaign.id}").text
        assert 'class="history"' in page and "Chance to beat control over time" in page
