"""The `overture` command as a user runs it (issue #14, item 7): version, -h, keys list/revoke (a key
revoked from the CLI stops working in a running SQLite server within seconds), JSON errors with
--json, import --format, serve prints its URL."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from overture import __version__
from tests.cli.helpers import clean_env, run, serving


@pytest.fixture
def home(tmp_path: Path) -> Path:
    out = run("init", "--json", cwd=tmp_path, env=clean_env(OVERTURE_HOME=str(tmp_path)))
    assert out.returncode == 0, out.stderr
    (tmp_path / "creds.json").write_text(out.stdout)
    return tmp_path


def _creds(home: Path) -> dict[str, str]:
    return dict(json.loads((home / "creds.json").read_text()))


def _ov(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(*args, cwd=home, env=clean_env(OVERTURE_HOME=str(home)))


def test_version_and_short_help(tmp_path: Path) -> None:
    out = run("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"overture {__version__}"
    for args in (["-h"], ["keys", "-h"], ["import", "-h"]):
        out = run(*args, cwd=tmp_path)
        assert out.returncode == 0 and "Usage:" in out.stdout, (args, out.stderr)
    assert "list" in run("keys", "-h", cwd=tmp_path).stdout
    assert "revoke" in run("keys", "-h", cwd=tmp_path).stdout


def test_keys_list_and_revoke(home: Path) -> None:
    ws = _creds(home)["workspace_id"]
    made = json.loads(
        _ov(
            home, "keys", "create", "--workspace", ws, "--scopes", "campaigns:read", "--name", "bi", "--json"
        ).stdout
    )
    listed = json.loads(_ov(home, "keys", "list", "--json").stdout)
    assert [k["name"] for k in listed] == ["admin", "public", "bi"]
    assert all("secret" not in k and "key_hash" not in k for k in listed)
    assert next(k for k in listed if k["name"] == "bi")["revoked_at"] is None
    text = _ov(home, "keys", "list").stdout
    assert made["id"] in text and "campaigns:read" in text

    out = _ov(home, "keys", "revoke", made["id"], "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["revoked_at"]
    listed = json.loads(_ov(home, "keys", "list", "--json").stdout)
    assert next(k for k in listed if k["name"] == "bi")["revoked_at"]
    again = _ov(home, "keys", "revoke", made["id"])
    assert again.returncode == 2 and again.stderr.strip() == "error: API key not found"


def test_errors_are_json_on_stderr_with_json(home: Path) -> None:
    out = _ov(home, "keys", "revoke", "no-such-key", "--json")
    assert out.returncode == 2 and out.stdout == ""
    assert json.loads(out.stderr) == {"detail": "API key not found", "code": "not_found"}
    out = _ov(home, "keys", "create", "--workspace", "nope", "--scopes", "admin", "--json")
    assert json.loads(out.stderr)["code"] == "not_found"
    # A usage error too: one JSON object naming the option.
    out = _ov(home, "keys", "list", "--bogus", "--json")
    body = json.loads(out.stderr)
    assert out.returncode == 2 and body["code"] == "usage" and "--bogus" in body["detail"]


def test_import_format_is_honoured_and_a_wrong_one_named(home: Path) -> None:
    data = home / "people.dat"
    data.write_text("id,plan\n1,free\n2,pro\n")
    out = _ov(home, "import", str(data), "--model", "people", "--primary-key", "id", "--json")
    assert out.returncode == 2 and "format" in json.loads(out.stderr)["detail"]
    out = _ov(
        home, "import", str(data), "--format", "csv", "--model", "people", "--primary-key", "id", "--json"
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"] == 2
    out = _ov(home, "import", str(data), "--format", "xml", "--model", "people")
    assert out.returncode == 2
    line = out.stderr.strip()
    assert len(line.splitlines()) == 1 and "'xml'" in line and "csv" in line and "parquet" in line, line
    # A file that is not what --format says: the reader's complaint, one line, not a traceback.
    pq = home / "people.parquet"
    pq.write_text("id,plan\n1,free\n")
    out = _ov(home, "import", str(pq), "--format", "parquet", "--model", "people")
    assert out.returncode == 2 and "Traceback" not in out.stderr


@pytest.mark.slow
def test_serve_prints_its_url_and_a_cli_revoked_key_stops_within_seconds(home: Path) -> None:
    creds = _creds(home)
    ws = creds["workspace_id"]
    made = json.loads(_ov(home, "keys", "create", "--workspace", ws, "--scopes", "admin", "--json").stdout)
    headers = {"Authorization": f"Bearer {made['secret']}"}
    with serving(home, env=clean_env(OVERTURE_HOME=str(home))) as base:
        assert base in (home / "serve.log").read_text()
        assert httpx.get(f"{base}/api/v1/workspaces/{ws}", headers=headers).status_code == 200  # cached now
        assert _ov(home, "keys", "revoke", made["id"]).returncode == 0
        revoked_at = time.monotonic()
        while httpx.get(f"{base}/api/v1/workspaces/{ws}", headers=headers).status_code == 200:
            assert time.monotonic() - revoked_at < 5, "the revoked key still works after 5 s"
            time.sleep(0.2)
        assert httpx.get(f"{base}/api/v1/workspaces/{ws}", headers=headers).status_code == 401
        # The other keys keep working.
        admin = {"Authorization": f"Bearer {creds['api_key']}"}
        assert httpx.get(f"{base}/api/v1/workspaces/{ws}", headers=admin).status_code == 200
