"""Build the FastAPI application for one AppContext."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from overture import __version__
from overture.api import limits, observability, openapi
from overture.api.errors import install_error_handlers
from overture.api.tasks import import_all as import_all_tasks
from overture.auth.router import router as auth_router
from overture.batch.router import router as batch_router
from overture.broadcasts.public_router import router as broadcasts_public_router
from overture.broadcasts.router import router as broadcasts_router
from overture.config import load_settings
from overture.data.router import router as data_router
from overture.db import keyring, migrate
from overture.db.base import Base
from overture.db.context import AppContext
from overture.db.notify import bus
from overture.delivery.router import router as destinations_router
from overture.experiences import router as experiences
from overture.journeys.router import router as journeys_router
from overture.paywalls import router as paywalls
from overture.runtime.router import router as deliveries_router
from overture.runtime.worker import Runtime
from overture.segments.router import router as segments_router
from overture.ui import web as ui

log = logging.getLogger(__name__)


def create_app(ctx: AppContext | None = None, *, run_migrations: bool = True) -> FastAPI:
    ctx = ctx or AppContext.from_settings(load_settings())
    import_all_tasks()
    if run_migrations:
        migrate.upgrade(ctx.settings.resolved_database_url, ctx.engine)
        keyring.prepare(ctx.engine, Base.metadata)  # refuses a ring that cannot open stored secrets

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop_listening = bus.start_listening(ctx.engine)
        # Embedded runtime (scheduler, job threads, outbox dispatcher) unless this is an API-only
        # process (OVERTURE_RUN_WORKERS=false, e.g. beside `overture worker` processes).
        embedded = (
            Runtime(ctx, concurrency=ctx.settings.worker_concurrency).start()
            if ctx.settings.run_workers
            else None
        )
        # Everything loaded so far (modules, routes, the app) lives as long as the process: keep it
        # out of the cyclic collector's full passes, which otherwise stop the event loop for the time
        # it takes to walk ~250,000 objects (100-400 ms) every so often, on every request path.
        gc.freeze()
        yield
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        await asyncio.to_thread(stop_listening)

    app = FastAPI(
        title="Overture",
        version=__version__,
        description="Self-hosted campaign orchestration: audiences, real-time decisions, journeys, "
        "orchestrated experiences, batch decisioning campaigns and broadcasts.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    limits.install(app, ctx)  # inside the observability middleware: its answers get request ids
    observability.install(app, ctx)
    openapi.install(app)
    _install_health(app, ctx)

    # One line per surface. Keep this list in layer order; surfaces never import each other.
    app.include_router(auth_router)
    # -- surfaces: add `app.include_router(...)` lines below this marker --
    app.include_router(data_router)
    app.include_router(segments_router)
    app.include_router(destinations_router)
    app.include_router(deliveries_router)
    app.include_router(journeys_router)
    app.include_router(batch_router)
    experiences.mount(app)  # puts GET /api/experience/candidate first in the route list
    paywalls.mount(app)  # under /v1/... and /api/v1/...; puts register first in the route list
    app.include_router(broadcasts_router)
    app.include_router(broadcasts_public_router)  # seed 002: its own envelopes and error codes
    ui.mount(app)  # the dashboard at /ui/ (and / redirects there)
    return app


def _install_health(app: FastAPI, ctx: AppContext) -> None:
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """The database answers and its schema is at the latest migration."""
        try:
            with ctx.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            current = migrate.is_current(ctx.engine)
        except Exception as exc:  # readiness reports, it does not raise
            log.warning("readiness check failed: %s", exc)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        if not current:
            return JSONResponse({"status": "unavailable", "migrations": "pending"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok", "migrations": "current"})
