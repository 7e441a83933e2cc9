"""The `overture` command and the real server process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

OVERTURE = str(Path(sys.executable).parent / "overture")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERTURE_")}
    env["OVERTURE_HOME"] = str(home)
    return env


def test_init_json__prints_exactly_one_object(tmp_path: Path) -> None:
    out = subprocess.run(
        [OVERTURE, "init", "--name", "Acme", "--json"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)  # the whole of stdout is one JSON object
    assert set(data) == {"workspace_id", "api_key", "public_key"}
    assert data["api_key"].startswith("sk_") and data["public_key"].startswith("pk_")
    assert (tmp_path / "overture.db").exists()


def test_keys_create__unknown_scope__exit_2(tmp_path: Path) -> None:
    ws = json.loads(
        subprocess.run(
            [OVERTURE, "init", "--json"], env=_env(tmp_path), capture_output=True, text=True, check=True
        ).stdout
    )["workspace_id"]
    ok = subprocess.run(
        [OVERTURE, "keys", "create", "--workspace", ws, "--scopes", "campaigns:read", "--json"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["scopes"] == ["campaigns:read"]
    bad = subprocess.run(
        [OVERTURE, "keys", "create", "--workspace", ws, "--scopes", "nope"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_help_on_every_command(tmp_path: Path) -> None:
    top = subprocess.run([OVERTURE, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("init", "serve", "migrate", "keys", "secrets"):
        assert command in top
        subprocess.run([OVERTURE, command, "--help"], capture_output=True, text=True, check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve__real_process__healthz_and_readyz(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [OVERTURE, "serve", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["migrations"] == "current"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
