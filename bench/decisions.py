"""register(placement) decisions: in-process beside GrowthBook's Python SDK on the same rules, and over
HTTP beside a bare FastAPI JSON endpoint served by the same server process.

    .venv/bin/python bench/decisions.py [--duration 10] [--connections 64]

The project: 10 campaigns (one placement each) x 10 audiences x 3 rules (device.platform is,
user.session_count gte, user.plan in), each audience showing its own paywall, and one extra campaign
whose audience is capped once_per_session. Requests cycle through 2,000 generated users.

ASGI: the same application called in-process (no sockets, no server): the CPU time one `register`
request costs through routing, auth, parsing, the decision and the response, beside the bare endpoint.
This is the figure least disturbed by other processes on a shared machine.

HTTP: one uvicorn process (uvloop + httptools, SQLite in a temporary home, no embedded workers)
started and stopped here, on a free loopback port. The load generator is a separate process of
keep-alive raw-socket HTTP/1.1 clients (`--connections` of them); its own ceiling is measured against
a minimal asyncio HTTP responder, so it is visibly not the bottleneck. Every phase is bounded by
`--duration` seconds and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

CAMPAIGNS = 10
AUDIENCES = 10
USERS = 2_000
PLATFORMS = ("ios", "android", "web")
PLANS = ("free", "trial", "basic", "pro", "team")
CAPPED_PLACEMENT = "capped_gate"


# -- the project ------------------------------------------------------------------------------------


def project(seed: int = 42) -> list[dict[str, Any]]:
    """10 campaigns x 10 audiences x 3 rules, as the API would receive them."""
    rng = random.Random(seed)
    campaigns = []
    for c in range(CAMPAIGNS):
        audiences = []
        for a in range(AUDIENCES):
            audiences.append(
                {
                    "name": f"c{c}a{a}",
                    "paywall_id": f"pw_{c}_{a}",
                    "filters": [
                        {"field": "device.platform", "operator": "is", "value": rng.choice(PLATFORMS)},
                        {"field": "user.session_count", "operator": "gte", "value": rng.randint(0, 30)},
                        {"field": "user.plan", "operator": "in", "value": rng.sample(PLANS, 2)},
                    ],
                }
            )
        campaigns.append({"placement": f"placement_{c}", "audiences": audiences})
    return campaigns


def users(seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "placement": f"placement_{rng.randrange(CAMPAIGNS)}",
            "user_id": f"user_{i}",
            "user": {"plan": rng.choice(PLANS), "session_count": rng.randint(0, 40), "country": "FR"},
            "device": {"platform": rng.choice(PLATFORMS), "app_version": "5.2.0"},
            "params": {"source": "onboarding"},
        }
        for i in range(USERS)
    ]


# -- in-process -------------------------------------------------------------------------------------


def overture_table(campaigns: list[dict[str, Any]]) -> Any:
    from datetime import UTC, datetime

    from overture.paywalls.decisions import AudienceConfig, DecisionTable, PaywallConfig, PlacementConfig

    placements = [
        PlacementConfig(
            name=c["placement"],
            campaign_id=f"camp_{i}",
            audiences=tuple(
                AudienceConfig(
                    id=f"aud_{i}_{j}",
                    filters=a["filters"],
                    entitlement_check=None,
                    frequency_cap=None,
                    paywall=PaywallConfig(a["paywall_id"], a["name"], {"title": a["name"]}),
                    experiment=None,
                )
                for j, a in enumerate(c["audiences"])
            ),
        )
        for i, c in enumerate(campaigns)
    ]
    return DecisionTable(placements, lambda: datetime.now(UTC))


def growthbook_features(campaigns: list[dict[str, Any]]) -> dict[str, Any]:
    """The same rules as GrowthBook features: one feature per placement, one force rule per audience,
    first matching rule wins (GrowthBook's own rule order semantics)."""
    ops = {"is": None, "gte": "$gte", "in": "$in"}
    features = {}
    for c in campaigns:
        rules = []
        for a in c["audiences"]:
            condition: dict[str, Any] = {}
            for f in a["filters"]:
                op = ops[f["operator"]]
                condition[f["field"]] = f["value"] if op is None else {op: f["value"]}
            rules.append({"condition": condition, "force": a["paywall_id"]})
        features[c["placement"]] = {"defaultValue": None, "rules": rules}
    return features


def percentiles(samples_ns: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def time_calls(
    call: Callable[[dict[str, Any]], Any], requests: list[dict[str, Any]], rounds: int
) -> dict[str, float]:
    """decisions/s from an untimed loop, in this thread's CPU time (other processes on a busy machine
    do not distort it); p50/p99 from per-call perf_counter_ns (wall clock, adds ~0.05 µs)."""
    for r in requests[:200]:
        call(r)  # warm
    gc.collect()
    start = time.thread_time()
    for _ in range(rounds):
        for r in requests:
            call(r)
    elapsed = time.thread_time() - start
    clock = time.perf_counter_ns
    samples = []
    for _ in range(rounds):
        for r in requests:
            t0 = clock()
            call(r)
            samples.append(clock() - t0)
    p50, p99 = percentiles(samples)
    return {"rate": rounds * len(requests) / elapsed, "p50_us": p50 / 1000, "p99_us": p99 / 1000}


def in_process(rounds: int) -> dict[str, dict[str, float]]:
    from growthbook import GrowthBook

    campaigns = project()
    requests = users()
    table = overture_table(campaigns)
    features = growthbook_features(campaigns)
    gb = GrowthBook(features=features)

    def overture_call(r: dict[str, Any]) -> Any:
        return table.decide(
            r["placement"], r["user_id"], user=r["user"], device=r["device"], params=r["params"]
        )

    def growthbook_per_request(r: dict[str, Any]) -> Any:
        # The SDK README's server-side pattern: one GrowthBook per request, features shared.
        attributes = {"id": r["user_id"], "user": r["user"], "device": r["device"], "params": r["params"]}
        return GrowthBook(attributes=attributes, features=features).get_feature_value(r["placement"], None)

    def growthbook_call(r: dict[str, Any]) -> Any:
        gb.set_attributes(
            {"id": r["user_id"], "user": r["user"], "device": r["device"], "params": r["params"]}
        )
        return gb.get_feature_value(r["placement"], None)

    # Same rules, same answers: the comparison is like for like.
    matched = 0
    for r in requests:
        ours = orjson.loads(overture_call(r).body)["paywall_id"]
        assert ours == growthbook_call(r), (r, ours)
        matched += ours is not None
    print(f"  parity: identical answers for {len(requests)} users ({matched} matched an audience)")
    return {
        "overture": time_calls(overture_call, requests, rounds),
        "growthbook": time_calls(growthbook_call, requests, max(1, rounds // 20)),
        "growthbook_per_request": time_calls(growthbook_per_request, requests, max(1, rounds // 50)),
    }


# -- the application, in-process (ASGI) and served (HTTP) ------------------------------------------


def bench_app(home: str) -> Any:
    """Overture's app on the prepared home, plus the bare baseline endpoint."""
    from overture.api.app import create_app
    from overture.config import Settings
    from overture.db.context import AppContext

    ctx = AppContext.from_settings(Settings(home=Path(home), run_workers=False))
    app = create_app(ctx, run_migrations=False)

    @app.post("/bare")
    async def bare() -> dict[str, Any]:
        """The ceiling: a FastAPI JSON endpoint doing nothing."""
        return {"result": "paywall", "paywall_id": "pw_bare"}

    # First in the route list, like register: the ceiling pays no route scan either.
    app.router.routes.insert(0, app.router.routes.pop())
    return app


def asgi_calls(home: str, ids: dict[str, str], rounds: int, slices: int) -> dict[str, dict[str, float]]:
    """register (no caps) and the bare endpoint called through the ASGI interface in this thread:
    µs of thread CPU time per request, and p50/p99 wall clock per request. Interleaved slices."""
    app = bench_app(home)
    path = f"/api/v1/projects/{ids['workspace_id']}/register"
    auth = f"Bearer {ids['public_key']}".encode()

    def scope(target: str, body: bytes) -> tuple[dict[str, Any], bytes]:
        headers = [
            (b"host", b"127.0.0.1"),
            (b"authorization", auth),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": target,
            "raw_path": target.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }, body

    calls = {
        "register": [scope(path, orjson.dumps(u)) for u in users()],
        "bare": [scope("/bare", orjson.dumps(u)) for u in users()],
    }

    async def one(request: tuple[dict[str, Any], bytes]) -> None:
        sc, body = request
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(sc, receive, send)
        if status != [200]:
            raise RuntimeError(f"{sc['path']} answered {status}")

    async def run() -> dict[str, dict[str, float]]:
        for requests in calls.values():
            for r in requests[:200]:
                await one(r)  # warm: keys cached, decision table compiled
        cpu = dict.fromkeys(calls, 0.0)
        samples: dict[str, list[int]] = {k: [] for k in calls}
        clock = time.perf_counter_ns
        for _ in range(slices):
            for kind, requests in calls.items():
                gc.collect()
                start = time.thread_time()
                for _ in range(rounds):
                    for r in requests:
                        await one(r)
                cpu[kind] += time.thread_time() - start
                for r in requests:
                    t0 = clock()
                    await one(r)
                    samples[kind].append(clock() - t0)
        figures = {}
        for kind, requests in calls.items():
            p50, p99 = percentiles(samples[kind])
            n = slices * rounds * len(requests)
            figures[kind] = {"cpu_us": cpu[kind] / n * 1e6, "p50_us": p50 / 1000, "p99_us": p99 / 1000}
        return figures

    try:
        return asyncio.run(run())
    finally:
        app.state.ctx.close()


def serve(home: str, port: int) -> None:
    """The server process: `bench_app` under uvicorn."""
    import uvicorn

    app = bench_app(home)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


def prepare(home: Path) -> dict[str, str]:
    """Migrate a fresh home and create the project through the service layer (what the API calls)."""
    from overture.auth import service as auth_service
    from overture.config import Settings
    from overture.db import migrate
    from overture.db.context import AppContext
    from overture.paywalls import schemas, service

    ctx = AppContext.from_settings(Settings(home=home, run_workers=False))
    migrate.upgrade(ctx.settings.resolved_database_url, ctx.engine)
    with ctx.transaction() as session:
        ws, _secret, public = auth_service.bootstrap_workspace(session, "bench")
        workspace_id = ws.id
    with ctx.transaction(workspace_id=workspace_id) as session:
        for c in project():
            cid = service.create_campaign(session, schemas.CampaignCreate(name=c["placement"])).id
            service.create_placement(session, cid, schemas.PlacementCreate(name=c["placement"]))
            for a in c["audiences"]:
                service.create_paywall(session, schemas.PaywallCreate(id=a["paywall_id"], name=a["name"]))
                service.create_audience(session, cid, schemas.AudienceCreate(**a))
        cid = service.create_campaign(session, schemas.CampaignCreate(name="capped")).id
        service.create_placement(session, cid, schemas.PlacementCreate(name=CAPPED_PLACEMENT))
        service.create_paywall(session, schemas.PaywallCreate(id="pw_capped", name="capped"))
        service.create_audience(
            session,
            cid,
            schemas.AudienceCreate(
                name="capped", filters=[], paywall_id="pw_capped", frequency_cap="once_per_session"
            ),
        )
    ctx.close()
    return {"workspace_id": workspace_id, "public_key": public}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            if s.recv(100).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.2)
    raise RuntimeError("server did not start")


# -- HTTP: load generator ---------------------------------------------------------------------------


def request_bytes(path: str, body: bytes, key: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _client(
    port: int,
    make: Callable[[int], bytes],
    start_at: float,
    stop_at: float,
    out: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter
    n = random.randrange(1_000_000)
    try:
        while True:
            now = clock()
            if now >= stop_at:
                return
            n += 1
            writer.write(make(n))
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if head[9:12] != b"200":
                errors.append(int(head[9:12]))
            if now >= start_at:  # measured after the warm-up second
                out.append(clock() - now)
    finally:
        writer.close()


def load_process(
    port: int, kind: str, ids: dict[str, str], connections: int, duration: float, queue: Any
) -> None:
    import uvloop

    path = f"/api/v1/projects/{ids['workspace_id']}/register"
    key = ids.get("public_key", "none")
    if kind == "register":
        pool = [request_bytes(path, orjson.dumps({k: u[k] for k in u}), key) for u in users()]

        def make(n: int) -> bytes:
            return pool[n % len(pool)]
    elif kind == "capped":

        def make(n: int) -> bytes:  # a new session per request: every request takes one atomic write
            body = orjson.dumps(
                {
                    "placement": CAPPED_PLACEMENT,
                    "user_id": f"user_{n % USERS}",
                    "session_id": f"s{os.getpid()}_{n}",
                }
            )
            return request_bytes(path, body, key)
    else:  # bare FastAPI endpoint and the raw ceiling server: the same request size as register
        sample = request_bytes("/bare", orjson.dumps(users()[0]), key)

        def make(n: int) -> bytes:
            return sample

    async def main() -> tuple[list[float], list[int], float]:
        latencies: list[float] = []
        errors: list[int] = []
        start_at = time.perf_counter() + 1.0
        stop_at = start_at + duration
        await asyncio.gather(
            *(_client(port, make, start_at, stop_at, latencies, errors) for _ in range(connections))
        )
        return latencies, errors, duration

    latencies, errors, measured = uvloop.run(main())
    queue.put((latencies, len(errors), measured))


def run_load(
    port: int, kind: str, ids: dict[str, str], connections: int, duration: float, processes: int
) -> tuple[list[float], int]:
    """One bounded slice of load: every latency (seconds) measured after the warm-up, and errors."""
    queue: Any = mp.Queue()
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    procs = [mp.Process(target=load_process, args=(port, kind, ids, n, duration, queue)) for n in per]
    for p in procs:
        p.start()
    outcomes = [queue.get(timeout=duration + 60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    return [lat for o in outcomes for lat in o[0]], sum(o[1] for o in outcomes)


def summarize(latencies: list[float], errors: int, seconds: float) -> dict[str, float]:
    p50, p99 = percentiles(latencies) if latencies else (0.0, 0.0)
    return {"rate": len(latencies) / seconds, "p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "errors": errors}


def ceiling_server(port: int) -> None:
    """A minimal asyncio HTTP/1.1 responder: what the load generator can drive at most."""
    import uvloop

    response = (
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"ok": true}\n'
    )

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                length = 0
                for line in self.buffer[:end].split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length :]
                self.transport.write(response)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


# -- report -----------------------------------------------------------------------------------------

LABELS = {
    "overture": "overture DecisionTable.decide",
    "growthbook": "growthbook SDK, one instance, set_attributes",
    "growthbook_per_request": "growthbook SDK, new instance per request",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per HTTP phase")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--load-processes", type=int, default=1)
    parser.add_argument("--slices", type=int, default=5, help="interleaved rounds over the HTTP phases")
    parser.add_argument("--rounds", type=int, default=50, help="passes over the 2,000 users in-process")
    parser.add_argument("--asgi-rounds", type=int, default=1, help="passes over the users per ASGI slice")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--serve", nargs=2, metavar=("HOME", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--ceiling", metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if args.ceiling:
        ceiling_server(int(args.ceiling))
        return

    print(f"register(placement): {CAMPAIGNS} campaigns x {AUDIENCES} audiences x 3 rules, {USERS} users")
    print("\nin-process (one thread; decisions/s in thread CPU time, p50/p99 wall clock per call)")
    figures = in_process(args.rounds)
    ours = figures["overture"]
    for name, f in figures.items():
        print(
            f"  {LABELS[name]:44s} {f['rate']:>10,.0f} decisions/s"
            f"   p50 {f['p50_us']:8.2f} µs   p99 {f['p99_us']:8.2f} µs"
        )
    fastest_gb = figures["growthbook"]
    speedup = fastest_gb["p50_us"] / ours["p50_us"]
    rate_ratio = ours["rate"] / fastest_gb["rate"]
    print(f"  overture vs growthbook's fastest use: {speedup:.1f}x at p50, {rate_ratio:.1f}x the rate")
    print(
        f"  budget: p50 <= 5 µs {_verdict(ours['p50_us'] <= 5)},"
        f" p99 <= 15 µs {_verdict(ours['p99_us'] <= 15)}, >= 10x growthbook {_verdict(speedup >= 10)}"
    )

    with tempfile.TemporaryDirectory(prefix="overture-bench-") as home:
        ids = prepare(Path(home))
        print(f"\nASGI in-process (one thread, no sockets; {args.slices} interleaved slices)")
        asgi = asgi_calls(home, ids, args.asgi_rounds, args.slices)
        for kind, label in (("bare", "bare FastAPI JSON endpoint"), ("register", "register, no caps")):
            f = asgi[kind]
            print(
                f"  {label:44s} {f['cpu_us']:8.1f} µs CPU/request"
                f"   p50 {f['p50_us']:8.1f} µs   p99 {f['p99_us']:8.1f} µs"
            )
        print(f"  register / bare CPU per request: {asgi['register']['cpu_us'] / asgi['bare']['cpu_us']:.2f}")
        if args.skip_http:
            return
        print(
            f"\nHTTP (one uvicorn process, {args.connections} connections, {args.duration:.0f} s per phase,"
            f" {args.load_processes} load process(es))"
        )
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", home, str(port)])
        ceiling_port = free_port()
        ceiling = subprocess.Popen([sys.executable, __file__, "--ceiling", str(ceiling_port)])
        try:
            wait_ready(port)
            phases = {
                "ceiling": ("load generator ceiling (raw asyncio responder)", ceiling_port, "bare"),
                "bare": ("bare FastAPI JSON endpoint (POST /bare)", port, "bare"),
                "register": ("register, 10x10x3 rules, no caps", port, "register"),
                "capped": ("register, once_per_session cap (1 write each)", port, "capped"),
            }
            # Interleaved slices, so that every phase sees the same background load on a shared
            # machine: `--slices` rounds of duration/slices seconds each.
            collected: dict[str, tuple[list[float], int]] = {k: ([], 0) for k in phases}
            for _ in range(args.slices):
                for key, (_name, target, kind) in phases.items():
                    lat, err = run_load(
                        target, kind, ids, args.connections, args.duration / args.slices, args.load_processes
                    )
                    collected[key] = (collected[key][0] + lat, collected[key][1] + err)
            results = {k: summarize(lat, err, args.duration) for k, (lat, err) in collected.items()}
            for key, (name, _target, _kind) in phases.items():
                r = results[key]
                errors = f"   errors {r['errors']}" if r["errors"] else ""
                print(
                    f"  {name:48s} {r['rate']:>9,.0f} req/s"
                    f"   p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms{errors}"
                )
        finally:
            for proc in (server, ceiling):
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
                if proc.poll() is None:
                    proc.kill()
    reg, bare = results["register"], results["bare"]
    ratio = reg["rate"] / bare["rate"]
    print(
        f"  register vs bare endpoint: {ratio:.0%} of its rate;"
        f" budget >= 70% {_verdict(ratio >= 0.7)}, p99 <= 30 ms {_verdict(reg['p99_ms'] <= 30)}"
    )


def _verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


if __name__ == "__main__":
    main()
