"""Destinations over HTTP: CRUD, validation naming the field, write-only secrets, scopes, isolation."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from overture.delivery import get_destination
from overture.errors import NotFound
from tests.conftest import WorkspaceFixture, create_key
from tests.delivery.conftest import Receiver, create_destination, dest_url

SECRET = "whsec_super_secret_value"


def _webhook(receiver: Receiver, **extra: object) -> dict[str, object]:
    return {"url": receiver.url + "/hook", **extra}


def test_create_get_list_update_delete__webhook__round_trip(
    client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    created = create_destination(client, workspace, "webhook", _webhook(receiver), name="orders")
    assert created["type"] == "webhook" and created["enabled"] is True
    assert created["config"]["timeout_seconds"] == 10.0  # defaults are filled in and shown
    did = created["id"]

    got = client.get(dest_url(workspace, f"/{did}"), headers=workspace.headers)
    assert got.status_code == 200 and got.json() == created
    listed = client.get(dest_url(workspace), headers=workspace.headers).json()
    assert [d["id"] for d in listed] == [did]

    r = client.patch(
        dest_url(workspace, f"/{did}"), headers=workspace.headers, json={"name": "orders-2", "enabled": False}
    )
    assert r.status_code == 200 and r.json()["name"] == "orders-2" and r.json()["enabled"] is False

    assert client.delete(dest_url(workspace, f"/{did}"), headers=workspace.headers).status_code == 204
    assert client.get(dest_url(workspace, f"/{did}"), headers=workspace.headers).status_code == 404
    assert client.get(dest_url(workspace), headers=workspace.headers).json() == []
    assert client.delete(dest_url(workspace, f"/{did}"), headers=workspace.headers).status_code == 404


def test_create__secrets__never_returned_by_any_route(
    client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    config = _webhook(
        receiver, secret=SECRET, headers={"Authorization": "Bearer tok_123", "X-Team": "growth"}
    )
    created = create_destination(client, workspace, "webhook", config)
    smtp = create_destination(
        client,
        workspace,
        "smtp",
        {
            "host": "127.0.0.1",
            "port": 2525,
            "username": "u",
            "password": "smtp-pass-xyz",
            "from": "news@example.com",
            "subject": "Hi",
            "body": "Hello",
        },
    )
    bodies = [
        created,
        smtp,
        client.get(dest_url(workspace, f"/{created['id']}"), headers=workspace.headers).json(),
        client.get(dest_url(workspace), headers=workspace.headers).json(),
        client.patch(
            dest_url(workspace, f"/{created['id']}"), headers=workspace.headers, json={"name": "renamed"}
        ).json(),
    ]
    text = json.dumps(bodies)
    for secret in (SECRET, "tok_123", "smtp-pass-xyz"):
        assert secret not in text
    assert created["config"]["secret"] == "********"
    assert created["config"]["headers"] == {"Authorization": "********", "X-Team": "growth"}
    assert smtp["config"]["password"] == "********"


def test_create__storage_option_secrets__masked(client: TestClient, workspace: WorkspaceFixture) -> None:
    created = create_destination(
        client,
        workspace,
        "file",
        {
            "url": "s3://bucket-a/exports",
            "format": "jsonl",
            "storage_options": {
                "key": "AKIAEXAMPLE",
                "secret": "s3-secret-value",
                "client_kwargs": {"region_name": "eu-west-1", "aws_session_token": "sess-tok"},
            },
        },
    )
    options = created["config"]["storage_options"]
    assert options["key"] == "********" and options["secret"] == "********"
    assert options["client_kwargs"] == {"region_name": "eu-west-1", "aws_session_token": "********"}


def test_patch__config_without_secret__keeps_stored_secret(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    created = create_destination(
        client, workspace, "webhook", _webhook(receiver, secret=SECRET, headers={"Authorization": "Bearer a"})
    )
    did = created["id"]
    # Given a client that round-trips what GET showed (masks included) and changes one field
    shown = created["config"]
    r = client.patch(
        dest_url(workspace, f"/{did}"),
        headers=workspace.headers,
        json={"config": {**shown, "timeout_seconds": 3}},
    )
    assert r.status_code == 200, r.text
    r = client.patch(
        dest_url(workspace, f"/{did}"),
        headers=workspace.headers,
        json={"config": {"url": receiver.url + "/v2"}},
    )
    assert r.status_code == 200
    # Then the stored secrets are the originals
    with ctx.transaction(write=False, workspace_id=workspace.id) as session:
        row = get_destination(session, did)
        assert row.config["secret"] == SECRET
        assert row.config["headers"] == {"Authorization": "Bearer a"}
        assert row.config["timeout_seconds"] == 3
        assert row.config["url"] == receiver.url + "/v2"
    # And null removes a secret
    r = client.patch(
        dest_url(workspace, f"/{did}"), headers=workspace.headers, json={"config": {"secret": None}}
    )
    assert r.status_code == 200 and "secret" not in r.json()["config"]


def test_create__mask_as_secret__422(
    client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    r = client.post(
        dest_url(workspace),
        headers=workspace.headers,
        json={"name": "x", "type": "webhook", "config": _webhook(receiver, secret="********")},
    )
    assert r.status_code == 422 and r.json()["field"] == "config.secret"


@pytest.mark.parametrize(
    ("type_", "config", "field"),
    [
        ("webhook", {}, "config.url"),
        ("webhook", {"url": "ftp://example.com/x"}, "config.url"),
        ("webhook", {"url": "http://user:pw@127.0.0.1/x"}, "config.url"),
        ("webhook", {"url": "http://127.0.0.1/x", "headers": {"X-A": "caf\u00e9"}}, "config.headers"),
        ("webhook", {"url": "http://127.0.0.1/x", "timeout_seconds": 0}, "config.timeout_seconds"),
        ("webhook", {"url": "http://127.0.0.1/x", "headers": {"Host": "evil"}}, "config.headers"),
        ("webhook", {"url": "http://127.0.0.1/x", "headers": {"X-A": "a\r\nB: c"}}, "config.headers"),
        ("webhook", {"url": "http://127.0.0.1/x", "extra": 1}, "config.extra"),
        (
            "smtp",
            {"host": "127.0.0.1", "port": 25, "from": "nope", "subject": "s", "body": "b"},
            "config.from",
        ),
        (
            "smtp",
            {"host": "127.0.0.1", "port": 0, "from": "a@b.co", "subject": "s", "body": "b"},
            "config.port",
        ),
        (
            "smtp",
            {"host": "127.0.0.1", "port": 25, "from": "a@b.co", "subject": "$ 1", "body": "b"},
            "config.subject",
        ),
        (
            "smtp",
            {"host": "smtp://h", "port": 25, "from": "a@b.co", "subject": "s", "body": "b"},
            "config.host",
        ),
        ("file", {"url": "/etc/cron.d"}, "config.url"),
        ("file", {"url": "../../escape"}, "config.url"),
        ("file", {"url": "http://example.com/x"}, "config.url"),
        ("file", {"url": "out", "format": "xml"}, "config.format"),
        ("file", {"url": "s3://b-1/p", "storage_options": {"profile": "prod"}}, "config.storage_options"),
        ("log", {"level": "loud"}, "config.level"),
    ],
)
def test_create__invalid_config__422_names_field(
    client: TestClient, workspace: WorkspaceFixture, type_: str, config: dict[str, object], field: str
) -> None:
    r = client.post(
        dest_url(workspace), headers=workspace.headers, json={"name": "bad", "type": type_, "config": config}
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert client.get(dest_url(workspace), headers=workspace.headers).json() == []


def test_create__unknown_type__422(client: TestClient, workspace: WorkspaceFixture) -> None:
    r = client.post(
        dest_url(workspace), headers=workspace.headers, json={"name": "x", "type": "fax", "config": {}}
    )
    assert r.status_code == 422 and "type" in r.json()["detail"]


def test_create__duplicate_name__409_and_deleted_name_reusable(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    first = create_destination(client, workspace, "log", {}, name="dup")
    r = client.post(dest_url(workspace), headers=workspace.headers, json={"name": "dup", "type": "log"})
    assert r.status_code == 409 and r.json()["field"] == "name"
    client.delete(dest_url(workspace, f"/{first['id']}"), headers=workspace.headers)
    r = client.post(dest_url(workspace), headers=workspace.headers, json={"name": "dup", "type": "log"})
    assert r.status_code == 201


def test_patch__type_change__422(client: TestClient, workspace: WorkspaceFixture) -> None:
    d = create_destination(client, workspace, "log", {})
    r = client.patch(dest_url(workspace, f"/{d['id']}"), headers=workspace.headers, json={"type": "webhook"})
    assert r.status_code == 422


def test_patch__invalid_merged_config__422_and_unchanged(
    client: TestClient, workspace: WorkspaceFixture, receiver: Receiver
) -> None:
    d = create_destination(client, workspace, "webhook", _webhook(receiver))
    r = client.patch(
        dest_url(workspace, f"/{d['id']}"), headers=workspace.headers, json={"config": {"url": "gopher://x"}}
    )
    assert r.status_code == 422 and r.json()["field"] == "config.url"
    assert client.get(dest_url(workspace, f"/{d['id']}"), headers=workspace.headers).json() == d


def test_scopes__read_key_cannot_write__write_key_can(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    reader = {"Authorization": f"Bearer {create_key(ctx, workspace.id, ['destinations:read'])}"}
    writer = {"Authorization": f"Bearer {create_key(ctx, workspace.id, ['destinations:write'])}"}
    other = {"Authorization": f"Bearer {create_key(ctx, workspace.id, ['segments:read'])}"}
    assert (
        client.post(dest_url(workspace), headers=reader, json={"name": "a", "type": "log"}).status_code == 403
    )
    r = client.post(dest_url(workspace), headers=writer, json={"name": "a", "type": "log"})
    assert r.status_code == 201
    did = r.json()["id"]
    assert client.get(dest_url(workspace), headers=reader).status_code == 200
    assert client.get(dest_url(workspace), headers=other).status_code == 403
    assert client.post(dest_url(workspace, f"/{did}/test"), headers=reader).status_code == 403
    assert client.get(dest_url(workspace), headers=workspace.public_headers).status_code == 403


def test_other_workspace__every_route__404_and_nothing_changes(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    theirs = create_destination(client, other_workspace, "log", {}, name="theirs")
    did = theirs["id"]
    # A's key on B's path, and A's key on A's path with B's destination id: both 404
    for ws_id in (other_workspace.id, workspace.id):
        base = f"/api/v1/workspaces/{ws_id}/destinations"
        assert client.get(f"{base}/{did}", headers=workspace.headers).status_code == 404
        assert (
            client.patch(f"{base}/{did}", headers=workspace.headers, json={"name": "mine"}).status_code == 404
        )
        assert client.post(f"{base}/{did}/test", headers=workspace.headers).status_code == 404
        assert client.delete(f"{base}/{did}", headers=workspace.headers).status_code == 404
    assert client.get(dest_url(workspace), headers=workspace.headers).json() == []
    still = client.get(dest_url(other_workspace, f"/{did}"), headers=other_workspace.headers).json()
    assert still == theirs


def test_get_destination__deleted_or_other_workspace__not_found(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    d = create_destination(client, workspace, "log", {})
    with ctx.transaction(write=False, workspace_id=other_workspace.id) as session, pytest.raises(NotFound):
        get_destination(session, d["id"])
    with ctx.transaction(write=False) as session:  # the dispatcher's unbound session sees it
        assert get_destination(session, d["id"]).id == d["id"]
    client.delete(dest_url(workspace, f"/{d['id']}"), headers=workspace.headers)
    with ctx.transaction(write=False) as session, pytest.raises(NotFound):
        get_destination(session, d["id"])
