"""Readiness: the database answers and every migration branch is applied."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from fastapi.testclient import TestClient

from overture.api.app import create_app
from overture.config import Settings
from overture.db import migrate
from overture.db.context import AppContext


def test_readyz__all_branches_applied__ok(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["migrations"] == "current"


def test_readyz__branch_missing__503_then_ok_after_upgrade(tmp_path: Path) -> None:
    # Given a database migrated only to the foundation revision
    ctx = AppContext.from_settings(Settings(home=tmp_path, run_workers=False))
    url = ctx.settings.resolved_database_url
    command.upgrade(migrate.alembic_config(url), "foundation")
    app = create_app(ctx, run_migrations=False)
    with TestClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["migrations"] == "pending"
        # When the remaining branches are applied, it is ready
        migrate.upgrade(url, ctx.engine)
        assert c.get("/readyz").status_code == 200
    ctx.close()
