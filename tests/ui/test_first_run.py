"""`overture serve --first-run` (what `make run` does): demo data and objects, the dashboard URL and a
one-time sign-in link that opens a populated dashboard once."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.delivery.conftest import free_port
from tests.test_cli_and_server import OVERTURE, _env


@pytest.mark.slow
def test_serve_first_run__prints_a_one_time_link_to_a_populated_dashboard(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [OVERTURE, "serve", "--first-run", "--port", str(port)],
        env={**_env(tmp_path), "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 240
        link = None
        while link is None:
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)[-3000:]
            line = proc.stdout.readline() if proc.stdout else ""
            lines.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+/ui/signin/link\?token=[\w-]+)", line)
            link = found.group(1) if found else None
        printed = "".join(lines)
        # Keep reading what the server prints (the demo journey logs every message it syncs): a full
        # pipe would block the server's logging, and with it the server.
        assert proc.stdout is not None
        drain = proc.stdout
        threading.Thread(target=lambda: [None for _ in drain], daemon=True).start()
        assert f"http://127.0.0.1:{port}/ui/" in printed
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        # The first page may render while the demo journey's first run is still syncing: a browser
        # waits, and so does this client (httpx's default 5 s read timeout is not a browser's).
        with httpx.Client(follow_redirects=True, timeout=60) as browser:
            page = browser.get(link)
            assert page.status_code == 200 and str(page.url).endswith("/ui/")
            assert "Welcome series" in page.text or ">3<" in page.text
            segments = browser.get(f"http://127.0.0.1:{port}/ui/segments").text
            assert "Free plan" in segments and "iOS power users" in segments
        with httpx.Client(follow_redirects=True) as other:
            again = other.get(link)
            assert again.status_code == 404 and "already used" in again.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
