"""Shared fixtures: a fresh database per test run on SQLite and (when OVERTURE_TEST_POSTGRES_URL is
set) PostgreSQL, migrated once; every API test runs on both. Tests isolate by creating their own
workspace, which the tenant scoping makes a clean world."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from overture.api.app import create_app
from overture.auth import service as auth_service
from overture.clock import FrozenClock, SystemClock
from overture.config import Settings
from overture.db import migrate
from overture.db.context import AppContext

PG_URL = os.environ.get("OVERTURE_TEST_POSTGRES_URL") or None
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PG_URL:
        return
    skip = pytest.mark.skip(reason="OVERTURE_TEST_POSTGRES_URL not set")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@contextmanager
def throwaway_pg_database(prefix: str = "overture_t") -> Iterator[str]:
    """Create a PostgreSQL database (named `prefix` + random) and drop it after; yields its URL."""
    assert PG_URL
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """A throwaway PostgreSQL database for this test run (parallel runs never collide)."""
    if not PG_URL:
        yield None
        return
    with throwaway_pg_database() as url:
        yield url


def _make_ctx(home: Path, database_url: str) -> AppContext:
    settings = Settings(
        home=home,
        database_url=database_url,
        data_url=f"duckdb:///{home / 'data.duckdb'}",
        egress_allow=["127.0.0.1/32", "::1/128"],
        run_workers=False,
    )
    ctx = AppContext.from_settings(settings)
    migrate.upgrade(database_url, ctx.engine)
    return ctx


@pytest.fixture(scope="session", params=BACKENDS)
def ctx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppContext]:
    """The application context on one backend, migrated to head once per test run."""
    home = tmp_path_factory.mktemp(f"home-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'overture.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    context = _make_ctx(home, url)
    yield context
    context.close()


@pytest.fixture(scope="session")
def app(ctx: AppContext) -> FastAPI:
    return create_app(ctx, run_migrations=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def frozen_clock(ctx: AppContext) -> Iterator[FrozenClock]:
    clock = FrozenClock()
    previous = ctx.clock
    ctx.clock = clock
    try:
        yield clock
    finally:
        ctx.clock = previous if not isinstance(previous, FrozenClock) else SystemClock()


@dataclass
class WorkspaceFixture:
    id: str
    api_key: str
    public_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def public_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.public_key}"}


def create_workspace(ctx: AppContext, name: str = "test") -> WorkspaceFixture:
    with ctx.transaction() as session:
        ws, secret, public = auth_service.bootstrap_workspace(session, name)
        return WorkspaceFixture(ws.id, secret, public)


def create_key(ctx: AppContext, workspace_id: str, scopes: list[str], public: bool = False) -> str:
    with ctx.transaction() as session:
        _, secret = auth_service.create_key(session, workspace_id, name="t", scopes=scopes, public=public)
        return secret


@pytest.fixture
def workspace(ctx: AppContext) -> WorkspaceFixture:
    """A fresh workspace with an admin key and a public key."""
    return create_workspace(ctx, "ws-a")


@pytest.fixture
def other_workspace(ctx: AppContext) -> WorkspaceFixture:
    return create_workspace(ctx, "ws-b")
