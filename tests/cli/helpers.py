"""Run the real `overture` command as a user does: a subprocess with a clean OVERTURE_* environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

OVERTURE = str(Path(sys.executable).parent / "overture")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERTURE_")}
    env.update(extra)
    return env


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OVERTURE, *args], cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=120
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(
    home: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[str]:
    """`overture serve` in its own process on a free port; yields its base URL once it answers."""
    with server_process(home, *args, env=env, log=log) as (base, _proc):
        yield base


@contextmanager
def server_process(
    home: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`serving`, yielding the process too (its pid, to watch its memory)."""
    port = free_port()
    out = (log or home / "serve.log").open("wb")
    proc = subprocess.Popen(
        [OVERTURE, "serve", "--port", str(port), *args],
        cwd=home,
        env=env or clean_env(OVERTURE_HOME=str(home)),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    raise AssertionError((log or home / "serve.log").read_text()) from None
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    """Until `url` answers 200 (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise AssertionError(log.read_text())
        assert time.monotonic() < deadline, f"{url} did not answer in {timeout} s"
        time.sleep(0.3)
