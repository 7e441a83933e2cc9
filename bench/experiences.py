"""Experiences: candidates over HTTP beside a bare FastAPI endpoint, the 6-hour metrics aggregate over
the event stream beside the same query written by hand, and decide in-process and over HTTP.

    .venv/bin/python bench/experiences.py [--profiles 1000000] [--events 10000000] [--duration 10]

The project: 20 campaigns x 5 stages x 10 experiences, all published (1,000 candidates), created
through the service layer; each campaign targets a segment over a 1M-row customers model (DuckDB);
10M events (impressions, conversions, deliveries and other events over the last 7 days) in the event
stream. Candidates are asked for one vehicle and channel (a tenth of the experiences).

HTTP: one uvicorn process (uvloop + httptools, SQLite app database, no embedded workers) and the load
generator of bench/decisions.py, each phase bounded by `--duration` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
import decisions as http

CAMPAIGNS, STAGES, PER_STAGE = 20, 5, 10
VEHICLES = [("email", "newsletter"), ("push", "mobile"), ("web", "banner"), ("sms", "promo"), ("ads", "feed")]
PLANS = ("free", "trial", "basic", "pro", "team")
ASKED = ("web", "banner")


def _verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


# -- the project ------------------------------------------------------------------------------------


def prepare(home: Path, profiles: int, events: int) -> dict[str, Any]:
    """Migrate a fresh home, load profiles and events into DuckDB, create and publish the hierarchy."""
    from overture.auth import service as auth_service
    from overture.config import Settings
    from overture.data import service as data
    from overture.data.schemas import ModelCreate
    from overture.data.source import EVENTS_TABLE, get_source
    from overture.db import migrate
    from overture.db.context import AppContext
    from overture.experiences import service
    from overture.experiences.schemas import ExperienceUpdate, GroupCreate, StateIn
    from overture.segments import service as segments
    from overture.segments.schemas import SegmentCreate

    ctx = AppContext.from_settings(Settings(home=home, run_workers=False))
    migrate.upgrade(ctx.settings.resolved_database_url, ctx.engine)
    with ctx.transaction() as session:
        ws, secret, _public = auth_service.bootstrap_workspace(session, "bench")
        workspace_id = ws.id
    t0 = time.perf_counter()
    with ctx.transaction(workspace_id=workspace_id) as session:
        columns = [{"name": "plan", "type": "string"}, {"name": "sessions", "type": "integer"}]
        model = data.create_model(
            session,
            ModelCreate.model_validate(
                {"name": "customers", "primary_key": "customer_id", "columns": columns}
            ),
        )
        model_id, table = model.id, model.table_name
    source = get_source(ctx)
    source.ensure_events_table()
    with source.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO {table} (customer_id, plan, sessions) SELECT 'c' || lpad(i::VARCHAR, 7, '0'), "
            f"(['free','trial','basic','pro','team'])[1 + i % 5], i % 40 FROM range({profiles}) t(i)"
        )
    rng = random.Random(1)
    experience_ids: list[str] = []
    for c in range(CAMPAIGNS):  # one transaction per campaign, as a user would publish
        with ctx.transaction(workspace_id=workspace_id) as session:
            plans = rng.sample(PLANS, 3)
            seg = segments.create_segment(
                session,
                SegmentCreate(
                    name=f"audience {c}",
                    model_id=model_id,
                    filter={
                        "all": [
                            {"field": "plan", "operator": "in", "value": plans},
                            {"field": "sessions", "operator": "gte", "value": rng.randint(0, 20)},
                        ]
                    },
                ),
            )
            stages = []
            for s in range(STAGES):
                experiences = []
                for e in range(PER_STAGE):
                    slug, channel = VEHICLES[(c + s + e) % len(VEHICLES)]
                    experiences.append(
                        {
                            "name": f"c{c}s{s}e{e}",
                            "vehicle": {"providerSlug": slug, "providerChannel": channel, "detail": {"n": e}},
                        }
                    )
                stages.append({"name": f"stage {s}", "class": "stage", "experiences": experiences})
            group = service.create_group(
                session,
                GroupCreate.model_validate(
                    {"name": f"campaign {c}", "class": "campaign", "segmentId": seg.id, "stages": stages}
                ),
            )
            read = service.group_read(session, group)
            for stage in read.stages or []:
                for exp in stage.experiences or []:
                    experience_ids.append(exp.id)
                    service.update_experience(
                        session,
                        exp.id,
                        ExperienceUpdate(state=StateIn(status="published")),
                        update_state=True,
                        clean_override=False,
                    )
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    now = datetime.now(UTC)
    names = ", ".join(f"'{k}'" for k in ("impression", "conversion", "delivery"))
    ids = ", ".join(f"'{i}'" for i in experience_ids)
    with source.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO {EVENTS_TABLE} SELECT '{workspace_id}', "
            f"'c' || lpad((hash(i) % {profiles})::VARCHAR, 7, '0'), "
            f"CASE WHEN i % 10 < 8 THEN 'experience.' || ([{names}])[(1 + (i // 10) % 3)::BIGINT] || '.' || "
            f"([{ids}])[(1 + hash(i * 7) % {len(experience_ids)})::BIGINT] ELSE 'page_view' END, "
            f"TIMESTAMPTZ '{now.isoformat()}' - to_microseconds((hash(i * 13) % (7 * 86400000000))::BIGINT), "
            f"NULL, TIMESTAMPTZ '{now.isoformat()}' FROM range({events}) t(i)"
        )
    loaded = time.perf_counter() - t0
    ctx.close()
    print(
        f"  setup: hierarchy created and published in {setup:.1f} s, "
        f"{events:,} events loaded in {loaded:.1f} s"
    )
    return {"workspace_id": workspace_id, "key": secret, "model_id": model_id, "profiles": profiles}


# -- in-process ---------------------------------------------------------------------------------------


def metrics_aggregate(home: Path, workspace_id: str, rounds: int = 5) -> dict[str, float]:
    """Our aggregate (events.metrics_since) beside the same GROUP BY written by hand, same connection."""
    import sqlalchemy as sa

    from overture.config import Settings
    from overture.data.source import EVENTS_TABLE, get_source
    from overture.db.context import AppContext
    from overture.experiences.events import METRICS_WINDOW, metrics_since

    ctx = AppContext.from_settings(Settings(home=home, run_workers=False))
    now = datetime.now(UTC)
    source = get_source(ctx)
    hand = sa.text(
        f"SELECT event, count(*) FROM {EVENTS_TABLE} WHERE workspace_id = :w AND timestamp >= :lo "
        "AND timestamp <= :hi AND (starts_with(event, 'experience.impression.') "
        "OR starts_with(event, 'experience.conversion.')) GROUP BY event"
    )

    def ours() -> Any:
        return metrics_since(ctx, workspace_id, now)

    def baseline() -> Any:
        with source.connect() as conn:
            return conn.execute(hand, {"w": workspace_id, "lo": now - METRICS_WINDOW, "hi": now}).all()

    ours(), baseline()
    timings: dict[str, list[float]] = {"ours": [], "hand": []}
    for _ in range(rounds):
        for name, fn in (("ours", ours), ("hand", baseline)):
            t0 = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - t0)
    got = ours()
    ctx.close()
    return {
        "ours": sorted(timings["ours"])[rounds // 2],
        "hand": sorted(timings["hand"])[rounds // 2],
        "experiences": len(got),
        "impressions": sum(v[0] for v in got.values()),
    }


def decide_in_process(
    home: Path, workspace_id: str, profiles: int, users: int = 100, rounds: int = 300
) -> dict[str, float]:
    """table.decide over 1,000 candidates for pre-read users (the profile and events read excluded)."""
    from overture.config import Settings
    from overture.db.context import AppContext
    from overture.experiences.decisions import build_table

    ctx = AppContext.from_settings(Settings(home=home, run_workers=False))
    with ctx.transaction(write=False, workspace_id=workspace_id) as session:
        table = build_table(session, lambda: ctx.clock.now())
    view = table.view(ctx, ctx.clock.now(), None, None)
    rng = random.Random(5)
    loaded = []
    t0 = time.perf_counter()
    for _ in range(users):
        user = f"c{rng.randrange(profiles):07d}"
        loaded.append(table.load_user(ctx, user, None))
    read_ms = (time.perf_counter() - t0) / users * 1000
    ctx.close()

    def call(item: Any) -> Any:
        records, events = item
        return table.decide(view, records, table.converted_stages(events), 1)

    won = sum(1 for item in loaded if call(item)[0])
    for item in loaded[:200]:
        call(item)
    gc.collect()
    clock = time.perf_counter_ns
    samples = []
    for _ in range(rounds):
        for item in loaded:
            t0n = clock()
            call(item)
            samples.append(clock() - t0n)
    p50, p99 = http.percentiles(samples)
    return {
        "candidates": len(table.candidates),
        "p50_us": p50 / 1000,
        "p99_us": p99 / 1000,
        "read_ms": read_ms,
        "won": won / users,
    }


# -- HTTP ---------------------------------------------------------------------------------------------


def serve(home: str, port: int, workspace_id: str, key: str) -> None:
    import uvicorn
    from fastapi import Response

    from overture.api.app import create_app
    from overture.config import Settings
    from overture.db.context import AppContext

    ctx = AppContext.from_settings(Settings(home=Path(home), run_workers=False))
    app = create_app(ctx, run_migrations=False)
    same: dict[str, bytes] = {}

    @app.get("/bare")
    async def bare() -> dict[str, Any]:
        """The ceiling of the DESIGN's budget: a FastAPI JSON endpoint doing nothing."""
        return {"result": "ok"}

    @app.get("/bare_same")
    async def bare_same() -> Response:
        """A FastAPI endpoint answering the candidates' exact bytes (fetched once): the cost of the
        payload alone."""
        if "body" not in same:
            from overture.experiences.decisions import tables

            cache = tables(ctx)
            table = cache.get(workspace_id) or cache.load(workspace_id)
            same["body"] = table.view(ctx, cache.now(), *ASKED).body
        return Response(same["body"], media_type="application/json")

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


def _get(path: str, key: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n".encode()


def load_process(
    port: int, kind: str, ids: dict[str, Any], connections: int, duration: float, queue: Any
) -> None:
    import asyncio

    import uvloop

    key = ids["key"]
    if kind == "candidates":
        sample = _get(f"/api/experience/candidate?vehicle={ASKED[0]}&channel={ASKED[1]}", key)

        def make(n: int) -> bytes:
            return sample
    elif kind == "decide":
        rng = random.Random(n0 := random.randrange(1000))
        pool = [
            http.request_bytes(
                "/api/experience/decide",
                orjson.dumps({"userId": f"c{rng.randrange(ids['profiles']):07d}", "record": False}),
                key,
            )
            for _ in range(2000 + n0 % 7)
        ]

        def make(n: int) -> bytes:
            return pool[n % len(pool)]
    else:
        sample = _get(f"/{kind}", key)

        def make(n: int) -> bytes:
            return sample

    async def main() -> tuple[list[float], list[int], float]:
        latencies: list[float] = []
        errors: list[int] = []
        start_at = time.perf_counter() + 1.0
        stop_at = start_at + duration
        await asyncio.gather(
            *(http._client(port, make, start_at, stop_at, latencies, errors) for _ in range(connections))
        )
        return latencies, errors, duration

    latencies, errors, measured = uvloop.run(main())
    queue.put((latencies, len(errors), measured))


def run_load(
    port: int, kind: str, ids: dict[str, Any], connections: int, duration: float
) -> tuple[list[float], int]:
    import multiprocessing as mp

    queue: Any = mp.Queue()
    proc = mp.Process(target=load_process, args=(port, kind, ids, connections, duration, queue))
    proc.start()
    latencies, errors, _ = queue.get(timeout=duration + 120)
    proc.join(timeout=10)
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per HTTP phase")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--slices", type=int, default=5)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--serve", nargs=4, metavar=("HOME", "PORT", "WS", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2], args.serve[3])
        return
    print(
        f"experiences: {CAMPAIGNS} campaigns x {STAGES} stages x {PER_STAGE} experiences published, "
        f"{args.profiles:,} profiles, {args.events:,} events"
    )
    with tempfile.TemporaryDirectory(prefix="overture-bench-exp-") as tmp:
        home = Path(tmp)
        ids = prepare(home, args.profiles, args.events)
        m = metrics_aggregate(home, ids["workspace_id"])
        print(
            f"\n6-hour metrics aggregate over {args.events:,} events (DuckDB): {m['ours'] * 1000:.0f} ms "
            f"(hand-written SQL {m['hand'] * 1000:.0f} ms, {m['ours'] / m['hand']:.2f}x; "
            f"{m['experiences']} experiences, {m['impressions']:,} impressions); budget <= 500 ms "
            f"{_verdict(m['ours'] <= 0.5)}"
        )
        d = decide_in_process(home, ids["workspace_id"], args.profiles)
        print(
            f"\ndecide in-process over {d['candidates']} candidates (profile and events read excluded): "
            f"p50 {d['p50_us']:.1f} µs, p99 {d['p99_us']:.1f} µs ({d['won']:.0%} of users win one); "
            f"budget p50 <= 20 µs {_verdict(d['p50_us'] <= 20)}; "
            f"the read itself: {d['read_ms']:.2f} ms a user"
        )
        if args.skip_http:
            return
        port = http.free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(home), str(port), ids["workspace_id"], ids["key"]]
        )
        try:
            http.wait_ready(port)
            phases = {
                "bare": "bare FastAPI JSON endpoint (GET /bare)",
                "bare_same": "bare FastAPI endpoint, the candidates' bytes",
                "candidates": f"GET /candidate?vehicle={ASKED[0]}&channel={ASKED[1]}",
                "decide": "POST /decide (profile + events read, 1,000 candidates)",
            }
            collected: dict[str, tuple[list[float], int]] = {k: ([], 0) for k in phases}
            for _ in range(args.slices):
                for kind in phases:
                    lat, err = run_load(port, kind, ids, args.connections, args.duration / args.slices)
                    collected[kind] = (collected[kind][0] + lat, collected[kind][1] + err)
            results = {k: http.summarize(lat, err, args.duration) for k, (lat, err) in collected.items()}
            print(
                f"\nHTTP (one uvicorn process, {args.connections} connections, "
                f"{args.duration:.0f} s per phase)"
            )
            for kind, name in phases.items():
                r = results[kind]
                errors = f"   errors {r['errors']}" if r["errors"] else ""
                print(
                    f"  {name:56s} {r['rate']:>8,.0f} req/s   p50 {r['p50_ms']:6.2f} ms"
                    f"   p99 {r['p99_ms']:6.2f} ms{errors}"
                )
        finally:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=10)
            if server.poll() is None:
                server.kill()
        cand = results["candidates"]["rate"]
        print(
            f"  candidates vs bare endpoint: {cand / results['bare']['rate']:.0%} of its rate, "
            f"{cand / results['bare_same']['rate']:.0%} of the same bytes served bare; "
            f"budget >= 70% {_verdict(cand / results['bare']['rate'] >= 0.7)}"
        )


if __name__ == "__main__":
    main()
