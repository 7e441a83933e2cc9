"""`overture serve` under each HTTP server (OVERTURE_SERVER) and with several processes
(`--workers 2`, on SQLite): capped decisions stay exactly-once, and a configuration change made
through one process reaches the decisions of every process (issue #16)."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import httpx
import pytest

from tests.cli.helpers import clean_env, run, serving

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize(("server", "workers"), [("granian", "1"), ("uvicorn", "2"), ("granian", "2")])
def test_serve__server_and_processes__caps_exactly_once_and_changes_reach_every_process(
    tmp_path: Path, server: str, workers: str
) -> None:
    env = clean_env(OVERTURE_HOME=str(tmp_path), OVERTURE_RUN_WORKERS="false", OVERTURE_SERVER=server)
    out = run("init", "--json", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    creds = json.loads(out.stdout)
    admin = {"Authorization": f"Bearer {creds['api_key']}"}
    public = {"Authorization": f"Bearer {creds['public_key']}"}
    with serving(tmp_path, "--workers", workers, env=env) as base, httpx.Client(base_url=base) as http:
        api = f"/api/v1/projects/{creds['workspace_id']}"
        for pw in ("pw_a", "pw_b"):
            assert http.post(f"{api}/paywalls", json={"id": pw, "name": pw}, headers=admin).is_success
        cid = http.post(f"{api}/campaigns", json={"name": "gate"}, headers=admin).json()["id"]
        assert http.post(f"{api}/campaigns/{cid}/placements", json={"name": "gate"}, headers=admin).is_success
        audience = {"name": "all", "filters": [], "paywall_id": "pw_a", "frequency_cap": "once_per_session"}
        aid = http.post(f"{api}/campaigns/{cid}/audiences", json=audience, headers=admin).json()["id"]

        def register(session_id: str) -> dict[str, str]:
            # A new connection each time: the kernel spreads them over the processes.
            body = {"placement": "gate", "user_id": "racer", "session_id": session_id}
            r = httpx.post(f"{base}{api}/register", json=body, headers=public, timeout=30)
            assert r.status_code == 200, r.text
            answer: dict[str, str] = r.json()
            return answer

        barrier = Barrier(30)

        def race(_: int) -> str:
            barrier.wait()
            return register("s1")["result"]

        with ThreadPoolExecutor(30) as pool:
            assert Counter(pool.map(race, range(30))) == {"paywall": 1, "capped": 29}

        assert http.put(f"{api}/campaigns/{cid}/audiences/{aid}", json={"paywall_id": "pw_b"}, headers=admin)
        deadline = time.monotonic() + 10
        seen: list[str] = []
        while len(seen) < 20:  # twenty answers in a row from the new configuration, whichever process
            answer = register(f"s{time.monotonic_ns()}")
            seen = [*seen, answer["paywall_id"]] if answer["paywall_id"] == "pw_b" else []
            assert time.monotonic() < deadline, "a process kept deciding from the old configuration"
