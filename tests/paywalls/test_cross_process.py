"""Decision tables across processes: a configuration change committed by this process reaches the
compiled table of another server process (PostgreSQL: LISTEN/NOTIFY; SQLite: the change log), so its
next register sees the change; and caps hold across the two processes' group commits. Bounded: the
server is a loopback subprocess stopped at the end, polls time out."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import httpx
import pytest

from overture.db.context import AppContext
from tests.paywalls.conftest import Api

pytestmark = [pytest.mark.slow]

SERVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import uvicorn
    from overture.api.app import create_app
    from overture.config import Settings
    from overture.db.context import AppContext

    home, url, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = AppContext.from_settings(Settings(home=Path(home), database_url=url, run_workers=False))
    uvicorn.run(create_app(ctx, run_migrations=False), host="127.0.0.1", port=port, log_level="warning")
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def other_process(ctx: AppContext, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    url = ctx.settings.resolved_database_url
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path), url, str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("the second server did not start")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_register__change_committed_in_another_process__next_register_sees_it(
    api: Api, other_process: str
) -> None:
    api.paywall("pw_a")
    api.paywall("pw_b")
    cid = api.setup(audiences=[{"paywall_id": "pw_a"}])
    audience = api.get(f"campaigns/{cid}/audiences").json()[0]["id"]
    url = f"{other_process}/api/v1/projects/{api.ws.id}/register"
    body = {"placement": "feature_gate", "user_id": "u"}

    def remote() -> str | None:
        r = httpx.post(url, json=body, headers=api.ws.public_headers, timeout=5)
        assert r.status_code == 200, r.text
        paywall: str | None = r.json()["paywall_id"]
        return paywall

    assert remote() == "pw_a"  # the other process compiled its table
    api.put(f"campaigns/{cid}/audiences/{audience}", {"paywall_id": "pw_b"})
    deadline = time.monotonic() + 5
    while remote() != "pw_b":
        assert time.monotonic() < deadline, "the other process kept a stale decision table"
        time.sleep(0.05)
    api.put(f"campaigns/{cid}", {"status": "inactive"})
    deadline = time.monotonic() + 5
    while remote() is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_cap_once_per_session__50_concurrent_registers_in_two_processes__paywall_exactly_once(
    api: Api, other_process: str
) -> None:
    # Each process group-commits its own batch of the same user's cap spends: the upserts must
    # still grant exactly one between them.
    api.paywall("pw_a")
    api.setup(audiences=[{"paywall_id": "pw_a", "frequency_cap": "once_per_session"}])
    body = {"placement": "feature_gate", "user_id": "racer", "session_id": "s1"}
    remote_url = f"{other_process}/api/v1/projects/{api.ws.id}/register"
    concurrency = 50
    barrier = Barrier(concurrency)

    def call(n: int) -> str:
        barrier.wait()
        if n % 2:
            r = httpx.post(remote_url, json=body, headers=api.ws.public_headers, timeout=10)
        else:
            r = api.client.post(api.url("register"), json=body, headers=api.ws.public_headers)
        assert r.status_code == 200, r.text
        result: str = r.json()["result"]
        return result

    with httpx.Client() as warm:  # the other process compiles its table before the race
        warm.post(remote_url, json={**body, "session_id": "warm"}, headers=api.ws.public_headers)
    with ThreadPoolExecutor(concurrency) as pool:
        results = Counter(pool.map(call, range(concurrency)))
    assert results == {"paywall": 1, "capped": concurrency - 1}
