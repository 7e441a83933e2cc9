"""The key ring from the operator's side, with the real `overture` command: `overture secrets rotate`
under a running `overture serve` that keeps sending (webhook signatures and header token checked by the
receiver, the SMTP password by the SMTP server), on SQLite and PostgreSQL; a missing or wrong key is
one line and exit 2; a ring from OVERTURE_SECRET_KEY (issue #15, item 6)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from overture.auth import service as auth_service
from overture.config import Settings
from overture.db import migrate
from overture.db.context import AppContext
from overture.db.keyring import KEY_FILE
from overture.delivery import service as destinations
from overture.delivery.schemas import DestinationCreate
from overture.runtime.models import OutboxMessage
from overture.runtime.outbox import OutboxItem, enqueue
from tests.cli.helpers import clean_env, free_port, run, serving
from tests.delivery.conftest import Mailbox, Received, Receiver, _SmtpHandler, receiver  # noqa: F401
from tests.runtime.test_reliability import pg_url  # noqa: F401

SIGNING = "whsec-rotation-test-signing-secret"
TOKEN = "Bearer rotation-test-header-token"
PASSWORD = "rotation-test-smtp-password"


def _one_line_error(out: Any, *fragments: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert all(f in lines[0] for f in fragments), lines[0]
    return str(lines[0])


def _status(cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    out = run("secrets", "status", "--json", cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def _seed(home: Path, **settings: Any) -> str:
    """A workspace with one webhook destination holding a signing secret, written in-process."""
    ctx = AppContext.from_settings(Settings(home=home, egress_allow=["127.0.0.1/32"], **settings))
    try:
        migrate.upgrade(ctx.settings.resolved_database_url, ctx.engine)
        with ctx.transaction() as session:
            ws, _, _ = auth_service.bootstrap_workspace(session, "seeded")
        with ctx.transaction(workspace_id=ws.id) as session:
            config = {"url": "http://127.0.0.1:9/hook", "secret": SIGNING}
            destinations.create_destination(
                session, DestinationCreate(name="h", type="webhook", config=config)
            )
        return ws.id
    finally:
        ctx.close()


def test_missing_or_wrong_key__one_line__exit_2__nothing_served(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = clean_env(OVERTURE_HOME=str(home))
    assert run("init", "--json", cwd=tmp_path, env=env).returncode == 0
    key_file = home / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # made by init
    _seed(home)
    (kid,) = _status(tmp_path, env)["keys"]

    wrong = clean_env(OVERTURE_HOME=str(home), OVERTURE_SECRET_KEY="w" * 40)
    line = _one_line_error(
        run("keys", "list", cwd=tmp_path, env=wrong),
        kid,
        "OVERTURE_SECRET_KEY holds",
        "is not read while it is set",
    )
    assert "w" * 40 not in line  # a key is never printed
    shutil.move(key_file, tmp_path / "kept")
    _one_line_error(
        run("serve", "--port", str(free_port()), cwd=tmp_path, env=env), kid, f"{key_file} does not exist"
    )
    assert not key_file.exists()  # the refusal made no new key
    shutil.move(tmp_path / "kept", key_file)
    assert _status(tmp_path, env)["values"] == {kid: 1}


def test_key_ring_from_the_environment__rotate_says_what_to_set(tmp_path: Path) -> None:
    home = tmp_path / "home"
    old, new = (run("secrets", "generate", cwd=tmp_path).stdout.strip() for _ in range(2))
    assert len(old) >= 32 and old != new
    _seed(home, secret_key=old)
    assert not (home / KEY_FILE).exists()  # the environment's ring is the only one

    def env(ring: str) -> dict[str, str]:
        return clean_env(OVERTURE_HOME=str(home), OVERTURE_SECRET_KEY=ring)

    (old_kid,) = _status(tmp_path, env(old))["keys"]
    # One key: rotate cannot add one to the environment, and says how
    line = _one_line_error(
        run("secrets", "rotate", cwd=tmp_path, env=env(old)), "OVERTURE_SECRET_KEY=<new>,<current>"
    )
    assert old not in line
    # The new key alone cannot open what the old one encrypted
    _one_line_error(run("secrets", "status", cwd=tmp_path, env=env(new)), old_kid)
    # <new>,<old>: rotate re-encrypts under <new> and says the others can go
    out = run("secrets", "rotate", "--json", cwd=tmp_path, env=env(f"{new},{old}"))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["reencrypted"] == 1 and report["retired"] == [] and "first entry alone" in report["todo"]
    assert old not in out.stdout and new not in out.stdout
    after = _status(tmp_path, env(new))
    assert after["values"] == {report["new_kid"]: 1} and after["keys"] == [report["new_kid"]]
    _one_line_error(run("secrets", "status", cwd=tmp_path, env=env(old)), report["new_kid"])


# -- rotation under a running server ----------------------------------------------------------------


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, list[bool]]]:
    """An SMTP server that requires the destination's login (AUTH over plain TCP, for the test)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    box, logins = Mailbox(port=free_port()), []

    def authenticator(_server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"u" and data.password == PASSWORD.encode()
        logins.append(ok)
        return AuthResult(success=ok)

    controller = Controller(
        _SmtpHandler(box),
        hostname="127.0.0.1",
        port=box.port,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    yield box, logins
    controller.stop()


def _outbox_states(ctx: AppContext) -> dict[str, int]:
    with ctx.transaction(write=False) as session:
        rows = session.execute(
            sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status)
        )
        return {str(status): int(n) for status, n in rows}


def _verify(req: Received) -> tuple[int, dict[str, str], bytes]:
    """The receiver answers 401 unless the header token and the signature are right."""
    parts = dict(p.split("=", 1) for p in req.headers.get("x-overture-signature", "").split(",") if "=" in p)
    expected = hmac.new(
        SIGNING.encode(), f"{parts.get('t')}.".encode() + req.body, hashlib.sha256
    ).hexdigest()
    ok = req.headers.get("authorization") == TOKEN and hmac.compare_digest(parts.get("v1", ""), expected)
    return (200, {}, b"ok") if ok else (401, {}, b"bad credentials")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_rotate_under_a_running_server__every_send_and_save_succeeds__old_key_retired(
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    receiver: Receiver,  # noqa: F811
    mailbox: tuple[Mailbox, list[bool]],
) -> None:
    box, logins = mailbox
    receiver.rule = _verify
    home = tmp_path / "home"
    env = clean_env(OVERTURE_HOME=str(home), OVERTURE_EGRESS_ALLOW="127.0.0.1/32")
    if backend == "postgres":
        env["OVERTURE_DATABASE_URL"] = request.getfixturevalue("pg_url")
    creds = json.loads(run("init", "--json", cwd=tmp_path, env=env).stdout)
    (old_kid,) = _status(tmp_path, env)["keys"]
    api = f"/api/v1/workspaces/{creds['workspace_id']}/destinations"
    headers = {"Authorization": f"Bearer {creds['api_key']}"}
    log: list[tuple[float, str, int, str]] = []  # (when, what, HTTP status, outcome)

    with serving(home, env=env) as base, httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        hook_config = {"url": f"{receiver.url}/hook", "secret": SIGNING, "headers": {"Authorization": TOKEN}}
        hook = http.post(api, json={"name": "hook", "type": "webhook", "config": hook_config}).json()["id"]
        smtp_config = {"host": "127.0.0.1", "port": box.port, "from": "a@example.com", "subject": "s"}
        smtp_config |= {"body": "b", "username": "u", "password": PASSWORD}
        mail = http.post(api, json={"name": "mail", "type": "smtp", "config": smtp_config}).json()["id"]
        stop = threading.Event()
        # Messages owed through the outbox too: the server's own dispatcher sends them meanwhile.
        owed = AppContext.from_settings(Settings(home=home, database_url=env.get("OVERTURE_DATABASE_URL")))

        def traffic() -> None:
            # Sends read (and decrypt) the destination on every call; the save writes a new token
            # under whichever key the server holds as newest at that moment.
            for i in range(10_000):
                if stop.is_set():
                    return
                for what, r in (
                    ("hook", http.post(f"{api}/{hook}/test")),
                    ("mail", http.post(f"{api}/{mail}/test", json={"payload": {"email": "x@example.org"}})),
                    ("save", http.patch(f"{api}/{hook}", json={"config": {"timeout_seconds": 5 + i % 3}})),
                ):
                    log.append((time.monotonic(), what, r.status_code, str(r.json().get("status", "saved"))))
                with owed.transaction(workspace_id=creds["workspace_id"]) as session:
                    item = OutboxItem(creds["workspace_id"], hook, f"rotation-{i}", {"n": i}, "test")
                    enqueue(session, [item])

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            time.sleep(1.0)
            started = time.monotonic()
            rotated = run("secrets", "rotate", "--json", cwd=tmp_path, env=env)
            finished = time.monotonic()
            time.sleep(1.0)
        finally:
            stop.set()
            thread.join(timeout=60)
        deadline = time.monotonic() + 60
        while (states := _outbox_states(owed)).keys() - {"sent", "failed"} and time.monotonic() < deadline:
            time.sleep(0.2)
        owed.close()

    assert rotated.returncode == 0, rotated.stderr
    report = json.loads(rotated.stdout)
    assert report["retired"] == [old_kid] and report["new_kid"] != old_kid
    failures = [entry for entry in log if entry[2] != 200 or entry[3] not in ("sent", "saved")]
    assert not failures, failures[:5]
    during = {what for when, what, _, _ in log if started < when < finished}
    after = {what for when, what, _, _ in log if when > finished}
    assert during == after == {"hook", "mail", "save"}  # traffic went on through and after the rotation
    assert logins and all(logins)
    assert set(states) == {"sent"} and states["sent"] > 10, states  # every owed message sent
    # Only the new key is left, and every stored secret is under it
    assert len((home / KEY_FILE).read_text().split()) == 1
    assert stat.S_IMODE((home / KEY_FILE).stat().st_mode) == 0o600
    status = _status(tmp_path, env)
    assert status["keys"] == [report["new_kid"]] and status["values"] == {report["new_kid"]: 2}
