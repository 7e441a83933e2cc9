"""Every shell block of README.md and docs/*.md runs, in order, against a fresh server (issue #14,
item 2). See tests/docs/runner.py for the rules."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import free_port, wait_for
from tests.docs.runner import Shell, blocks, clean_env

BIN = Path(sys.executable).parent


def test_every_block_is_found_and_every_skip_says_why() -> None:
    found = blocks()
    pages = {b.page for b in found}
    assert {"README.md", "docs/quickstart.md", "docs/journeys.md", "docs/paywalls.md"} <= pages
    for block in found:
        assert block.skip is None or len(block.skip) >= 10, block.where


@pytest.mark.slow
def test_the_docs_run_as_written(tmp_path: Path) -> None:
    """`make run` in a fresh clone, then every block a reader would paste, in order."""
    port = free_port()
    env = clean_env(tmp_path, BIN)
    log = (tmp_path / "server.log").open("wb")
    # What `make run` starts (see the Makefile), on a free port instead of 8000.
    server = subprocess.Popen(
        [str(BIN / "overture"), "serve", "--first-run", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env={**env, "OVERTURE_EGRESS_ALLOW": "127.0.0.1/32,::1/128"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    shell = Shell(tmp_path, env, port)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", server, tmp_path / "server.log", timeout=300)
        ran = 0
        for block in blocks():
            if block.skip:
                continue
            ok, report = shell.run(block)
            assert ok, report
            ran += 1
        assert ran >= 15
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shell.stop_background()
        log.close()
