"""Dashboard pages: server time per page with the first-run demo data (100,000 demo customers and
their events, the demo segments, journey — after its run — paywall experiment, destination), beside
a bare FastAPI endpoint returning a small HTML page, measured in the same process and the same way.

    .venv/bin/python bench/ui.py [--customers N] [--rounds N]

Each request goes through the whole ASGI app (routing, the session cookie and its database read, the
services, the templates) via httpx's ASGI transport, so the figure is server time without a network
or a browser. Pages are requested round-robin, `--rounds` times each after one warm-up, and the bare
endpoint between them; the table prints each page's median and p95 and the ratio of its median to the
bare endpoint's. Budget (issue #17): every page <= 100 ms with the demo data.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fastapi.responses import HTMLResponse

from overture.api.app import create_app
from overture.api.tasks import import_all as import_all_tasks
from overture.auth import service as auth_service
from overture.config import Settings
from overture.data.loader import load_demo
from overture.db import migrate
from overture.db.context import AppContext
from overture.journeys import service as journeys
from overture.paywalls import service as paywalls
from overture.runtime.worker import run_once
from overture.segments import service as segments
from overture.ui import signin
from overture.ui.demo import seed_demo

BUDGET_MS = 100.0


def prepare(home: Path, customers: int) -> tuple[AppContext, str, str]:
    settings = Settings(home=home, run_workers=False)
    ctx = AppContext.from_settings(settings)
    migrate.upgrade(settings.resolved_database_url, ctx.engine)
    with ctx.transaction() as session:
        ws, secret, _ = auth_service.bootstrap_workspace(session, "bench")
        workspace_id = ws.id
    load_demo(ctx, workspace_id, rows=customers)
    seed_demo(ctx, workspace_id)
    import_all_tasks()
    counts = run_once(ctx)  # the demo journey's run, as the embedded runtime would execute it
    if not counts["jobs_run"]:
        sys.exit(f"the demo journey's run did not execute: {counts}")
    return ctx, workspace_id, secret


def pages(ctx: AppContext, workspace_id: str) -> list[tuple[str, str, dict[str, str] | None]]:
    with ctx.transaction(write=False, workspace_id=workspace_id) as session:
        segment = segments.list_segments(session)[0]
        journey = journeys.list_journeys(session)[0]
        campaign = paywalls.list_campaigns(session)[0]
    preview = {"model_id": segment.model_id, "filter": '{"field": "plan", "operator": "is", "value": "free"}'}
    return [
        ("GET", "/ui/", None),
        ("GET", "/ui/segments", None),
        ("GET", f"/ui/segments/{segment.id}", None),
        ("GET", "/ui/segments/new", None),
        ("POST", "/ui/segments/preview", preview),
        ("GET", "/ui/journeys", None),
        ("GET", f"/ui/journeys/{journey.id}", None),
        ("GET", f"/ui/journeys/{journey.id}/live", None),
        ("GET", "/ui/paywalls", None),
        ("GET", f"/ui/paywalls/{campaign.id}", None),
        ("GET", "/ui/experiences", None),
        ("GET", "/ui/batch", None),
        ("GET", "/ui/destinations", None),
        ("GET", "/ui/deliveries", None),
    ]


async def measure(ctx: AppContext, workspace_id: str, key: str, rounds: int) -> dict[str, list[float]]:
    app = create_app(ctx, run_migrations=False)

    @app.get("/bench/bare", response_class=HTMLResponse)
    def bare() -> str:
        return "<!doctype html><title>bare</title><p>hello</p>"

    cookie = signin.sign_in_with_key(ctx, key)
    user = signin.resolve(ctx, cookie)
    headers = {"X-CSRF-Token": user.csrf, "HX-Request": "true"}
    targets = [*pages(ctx, workspace_id), ("GET", "/bench/bare", None)]
    times: dict[str, list[float]] = {path: [] for _, path, _ in targets}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench", cookies={signin.COOKIE: cookie}
    ) as client:
        for round_no in range(rounds + 1):
            for method, path, form in targets:
                start = time.perf_counter()
                r = await client.request(method, path, data=form, headers=headers if form else None)
                elapsed = (time.perf_counter() - start) * 1000
                if r.status_code != 200:
                    sys.exit(f"{method} {path} answered {r.status_code}: {r.text[:300]}")
                if round_no:  # round 0 warms caches (templates, data source, decision table)
                    times[path].append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ctx, workspace_id, key = prepare(Path(tmp), args.customers)
        print(f"demo home ready in {time.perf_counter() - started:.1f} s ({args.customers:,} customers)")
        times = asyncio.run(measure(ctx, workspace_id, key, args.rounds))
        ctx.close()
    bare = statistics.median(times.pop("/bench/bare"))
    print(f"\n{'page':<58} {'median ms':>10} {'p95 ms':>8} {'x bare':>7}")
    worst = 0.0
    for path, samples in times.items():
        med = statistics.median(samples)
        p95 = sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]
        worst = max(worst, med)
        shown = path if len(path) <= 56 else path[:53] + "..."
        print(f"{shown:<58} {med:>10.1f} {p95:>8.1f} {med / bare:>7.1f}")
    print(f"{'bare FastAPI HTML endpoint (same app, same client)':<58} {bare:>10.2f}")
    verdict = "within" if worst <= BUDGET_MS else "OVER"
    print(f"\nslowest page median {worst:.1f} ms: {verdict} the {BUDGET_MS:.0f} ms budget")


if __name__ == "__main__":
    main()
