"""Destination and provider credentials are encrypted at rest (issue #15, item 6): the database file
and its WAL hold no usable secret, the API still never shows one, sends still use them, and plaintext
written before encryption existed is encrypted at start."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from overture.db.base import Base, JSONType
from overture.db.context import AppContext
from overture.db.keyring import census, prepare
from overture.delivery.models import Destination
from overture.delivery.redaction import MASK
from tests.conftest import WorkspaceFixture
from tests.delivery.conftest import Receiver, create_destination, dest_url
from tests.experiences.helpers import API as EXPERIENCES
from tests.ui.conftest import sign_in


def _stored(ctx: AppContext, destination_id: str) -> Any:
    """The config column as the database holds it (no decryption)."""
    with ctx.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.type_coerce(Destination.__table__.c.config, JSONType)).where(
                Destination.__table__.c.id == destination_id
            )
        ).scalar_one()


def _raw_bytes(ctx: AppContext) -> bytes:
    """Every byte the database keeps on disk (SQLite: the file and its WAL), or every stored config as
    PostgreSQL's text (its files are the server's, not ours to read)."""
    if ctx.engine.dialect.name == "sqlite":
        path = ctx.engine.url.database
        assert path
        out = b""
        for suffix in ("", "-wal"):
            try:
                with open(path + suffix, "rb") as fh:
                    out += fh.read()
            except FileNotFoundError:
                pass
        return out
    with ctx.engine.connect() as conn:
        return "\n".join(conn.execute(sa.text("SELECT config::text FROM destinations")).scalars()).encode()


def test_credentials__not_in_the_database_file_or_its_wal__masked_in_the_api__used_by_sends(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    tag = uuid.uuid4().hex
    secrets = {
        "signing": f"whsec-{tag}",
        "header": f"hdr-token-{tag}",
        "smtp": f"smtp-pw-{tag}",
        "s3": f"s3-secret-{tag}",
        "provider": f"provider-token-{tag}",
    }
    configs: dict[str, dict[str, Any]] = {
        "webhook": {"url": f"{receiver.url}/hook", "secret": secrets["signing"]},
        "smtp": {"host": "127.0.0.1", "port": 2525, "from": "a@example.com", "subject": "s", "body": "b"},
        "file": {"url": "s3://bucket/out/", "storage_options": {"key": "AKIA", "secret": secrets["s3"]}},
    }
    configs["webhook"]["headers"] = {"X-Api-Token": secrets["header"]}
    configs["smtp"] |= {"username": "u", "password": secrets["smtp"]}
    hook, smtp, _ = (create_destination(client, workspace, kind, c) for kind, c in configs.items())
    body = {
        "auth": {
            "providerSlug": "http",
            "name": "ads",
            "url": f"{receiver.url}/feed",
            "token": secrets["provider"],
        }
    }
    auth = client.post(f"{EXPERIENCES}/auth", headers=workspace.headers, json=body)
    assert auth.status_code == 201, auth.text

    # The API never shows them
    listed = client.get(dest_url(workspace), headers=workspace.headers)
    assert listed.status_code == 200 and not any(s in listed.text for s in secrets.values())
    shown = {d["id"]: d["config"] for d in listed.json()}
    assert shown[hook["id"]]["secret"] == MASK and shown[hook["id"]]["headers"]["X-Api-Token"] == MASK
    assert shown[smtp["id"]]["password"] == MASK
    sign_in(client, workspace.api_key)  # nor does the dashboard
    page = client.get("/ui/destinations")
    assert page.status_code == 200 and hook["name"] in page.text
    assert not [name for name, s in secrets.items() if s in page.text]
    # ... and the database holds them only encrypted, before and after a checkpoint
    assert not [name for name, s in secrets.items() if s.encode() in _raw_bytes(ctx)]
    if ctx.engine.dialect.name == "sqlite":
        with ctx.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        assert not [name for name, s in secrets.items() if s.encode() in _raw_bytes(ctx)]
    stored = _stored(ctx, hook["id"])
    assert isinstance(stored, str) and stored.startswith("enc1:")

    # A send decrypts them: the receiver sees the header and a signature made with the secret
    r = client.post(dest_url(workspace, f"/{hook['id']}/test"), headers=workspace.headers)
    assert r.status_code == 200 and r.json()["status"] == "sent", r.text
    (req,) = [q for q in receiver.requests if q.path == "/hook"]
    assert req.headers["x-api-token"] == secrets["header"]
    timestamp, signature = (part.split("=", 1)[1] for part in req.headers["x-overture-signature"].split(","))
    expected = hmac.new(secrets["signing"].encode(), f"{timestamp}.".encode() + req.body, hashlib.sha256)
    assert signature == expected.hexdigest()

    # An update that does not re-send a secret keeps it (decrypted, merged, encrypted again)
    r = client.patch(
        dest_url(workspace, f"/{hook['id']}"),
        headers=workspace.headers,
        json={"config": {"url": f"{receiver.url}/hook2", "secret": MASK, "headers": {"X-Api-Token": MASK}}},
    )
    assert r.status_code == 200, r.text
    with ctx.transaction(write=False) as session:
        config = session.get(Destination, hook["id"]).config  # type: ignore[union-attr]
    assert config["secret"] == secrets["signing"] and config["headers"]["X-Api-Token"] == secrets["header"]
    assert _stored(ctx, hook["id"]) != stored  # a fresh token (Fernet: random IV)


def test_plaintext_written_before_encryption__reads__and_is_encrypted_at_start(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    tag = uuid.uuid4().hex
    d = create_destination(client, workspace, "webhook", {"url": "http://127.0.0.1:9/old", "secret": "x" * 8})
    legacy = {"url": "http://127.0.0.1:9/old", "secret": f"legacy-{tag}", "timeout_seconds": 5}
    table = Destination.__table__
    with ctx.engine.begin() as conn:  # what a version before encryption stored
        conn.execute(
            table.update()
            .where(table.c.id == d["id"])
            .values(config=sa.bindparam("legacy", legacy, type_=JSONType))
        )
    assert _stored(ctx, d["id"]) == legacy
    assert census(ctx.engine, Base.metadata)[None] >= 1
    with ctx.transaction(write=False) as session:
        assert session.get(Destination, d["id"]).config == legacy  # type: ignore[union-attr]
    before = client.get(dest_url(workspace, f"/{d['id']}"), headers=workspace.headers).json()

    prepare(ctx.engine, Base.metadata)

    stored = _stored(ctx, d["id"])
    assert isinstance(stored, str) and stored.startswith("enc1:") and tag not in stored
    assert census(ctx.engine, Base.metadata)[None] == 0
    after = client.get(dest_url(workspace, f"/{d['id']}"), headers=workspace.headers).json()
    assert after == before  # same config, same updated_at: re-encrypting is not a change
    with ctx.transaction(write=False) as session:
        assert session.get(Destination, d["id"]).config == legacy  # type: ignore[union-attr]
