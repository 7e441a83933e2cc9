"""Dashboard test helpers: a signed-in TestClient, and a workspace holding the demo data and objects."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from overture.data.demo import load_demo
from overture.db.context import AppContext
from overture.ui.demo import seed_demo
from tests.batch.conftest import api, world  # noqa: F401  (batch fixtures for the batch pages' test)
from tests.conftest import WorkspaceFixture, create_workspace

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NONCE = re.compile(r'name="nonce" value="([^"]+)"')


def sign_in(client: TestClient, api_key: str) -> str:
    """Sign in through the form; returns the page's CSRF token."""
    page = client.get("/ui/signin")
    nonce = NONCE.search(page.text)
    assert nonce is not None
    r = client.post("/ui/signin", data={"nonce": nonce.group(1), "api_key": api_key}, follow_redirects=True)
    assert r.status_code == 200, r.text[:300]
    token = CSRF.search(r.text)
    assert token is not None, r.text[:500]
    return token.group(1)


@dataclass
class DemoWorkspace:
    ws: WorkspaceFixture
    model_id: str


@pytest.fixture(scope="session")
def demo_workspace(ctx: AppContext) -> DemoWorkspace:
    """One workspace per backend with 500 demo customers and the first-run demo objects."""
    ws = create_workspace(ctx, "ui-demo")
    result = load_demo(ctx, ws.id, rows=500)
    seed_demo(ctx, ws.id, simulated_users=400)
    return DemoWorkspace(ws, result.model_id)
