"""Entity models over HTTP: managed, table and SQL models; discovery; validation; isolation."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from overture.data.source import EVENTS_TABLE, get_source, workspace_prefix
from overture.db.context import AppContext
from tests.conftest import WorkspaceFixture, create_key
from tests.data.helpers import base, create_customers, create_model, numbered_customers


def _external_table(ctx: AppContext, name: str) -> None:
    """A table the operator loaded into the source by other means."""
    with get_source(ctx).begin() as conn:
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE TABLE "{name}" (user_id BIGINT, country VARCHAR, score DOUBLE)')
        conn.exec_driver_sql(f"INSERT INTO \"{name}\" VALUES (1, 'DE', 1.5), (2, 'FR', NULL)")


def test_create_managed_model__lists_declared_columns_with_kinds(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, [])
    assert model["kind"] == "managed"
    assert model["table"].startswith(workspace_prefix(workspace.id))
    kinds = {c["name"]: c["type"] for c in model["columns"]}
    assert kinds == {
        "customer_id": "string",
        "plan": "string",
        "ltv": "number",
        "sessions": "integer",
        "signup_at": "timestamp",
        "vip": "boolean",
    }


def test_table_model__discovers_columns_and_matches_primary_key(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    _external_table(ctx, "crm_users")
    model = create_model(client, workspace, name="crm", primary_key="user_id", table="crm_users")
    assert model["kind"] == "table"
    assert [c["name"] for c in model["columns"]] == ["user_id", "country", "score"]
    assert [c["type"] for c in model["columns"]] == ["integer", "string", "number"]
    got = client.get(f"{base(workspace)}/models/{model['id']}", headers=workspace.headers).json()
    assert got["columns"] == model["columns"]
    listed = client.get(f"{base(workspace)}/models", headers=workspace.headers).json()
    assert [m["id"] for m in listed] == [model["id"]]


def test_sql_model__discovers_result_columns(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    _external_table(ctx, "crm_users2")
    model = create_model(
        client,
        workspace,
        name="scored",
        primary_key="user_id",
        sql="SELECT user_id, score * 2 AS double_score, '10:30' AS at_time FROM crm_users2",
    )
    assert model["kind"] == "sql"
    assert [(c["name"], c["type"]) for c in model["columns"]] == [
        ("user_id", "integer"),
        ("double_score", "number"),
        ("at_time", "string"),
    ]


def test_create_model__missing_table__422_naming_table(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    r = client.post(
        f"{base(workspace)}/models",
        headers=workspace.headers,
        json={"name": "x", "primary_key": "id", "table": "no_such_table"},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "table"


def test_create_model__primary_key_not_in_table__422_naming_primary_key(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    _external_table(ctx, "crm_users3")
    r = client.post(
        f"{base(workspace)}/models",
        headers=workspace.headers,
        json={"name": "x", "primary_key": "nope", "table": "crm_users3"},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "primary_key"
    assert "nope" in r.json()["detail"]


def test_create_model__table_and_sql__422(client: TestClient, workspace: WorkspaceFixture) -> None:
    r = client.post(
        f"{base(workspace)}/models",
        headers=workspace.headers,
        json={"name": "x", "primary_key": "id", "table": "t", "sql": "select 1 as id"},
    )
    assert r.status_code == 422


def test_create_model__hostile_table_name__422_not_sql(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    _external_table(ctx, "victim")
    for hostile in ['victim"; DROP TABLE victim; --', "victim; drop table victim", "a.b.c.d", "../etc"]:
        r = client.post(
            f"{base(workspace)}/models",
            headers=workspace.headers,
            json={"name": "x", "primary_key": "user_id", "table": hostile},
        )
        assert r.status_code == 422, hostile
        assert r.json()["field"] == "table"
    with get_source(ctx).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM victim")).scalar_one() == 2


def test_sql_model__bad_sql__422_naming_sql(client: TestClient, workspace: WorkspaceFixture) -> None:
    for sql in ["SELEC nonsense", "SELECT * FROM missing_table_xyz", "SELECT 1 AS id; DROP TABLE x"]:
        r = client.post(
            f"{base(workspace)}/models",
            headers=workspace.headers,
            json={"name": "x", "primary_key": "id", "sql": sql},
        )
        assert r.status_code == 422, sql
        assert r.json()["field"] == "sql"


def test_sql_model__other_workspace_table_or_events__422(
    client: TestClient, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    theirs = create_customers(client, other_workspace, numbered_customers(3))
    for sql in [
        f"SELECT * FROM {theirs['table']}",
        f"SELECT entity_id AS id FROM {EVENTS_TABLE}",
        "SELECT column1 AS id FROM read_csv('/etc/passwd')",
    ]:
        r = client.post(
            f"{base(workspace)}/models",
            headers=workspace.headers,
            json={"name": "x", "primary_key": "id", "sql": sql},
        )
        assert r.status_code == 422, sql
    r = client.post(
        f"{base(workspace)}/models",
        headers=workspace.headers,
        json={"name": "x", "primary_key": "customer_id", "table": theirs["table"]},
    )
    assert r.status_code == 422


def test_create_model__duplicate_name__409(client: TestClient, workspace: WorkspaceFixture) -> None:
    create_customers(client, workspace, [])
    r = client.post(
        f"{base(workspace)}/models",
        headers=workspace.headers,
        json={"name": "customers", "primary_key": "id"},
    )
    assert r.status_code == 409


def test_patch_model__rename_and_switch_to_sql(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    _external_table(ctx, "crm_users4")
    model = create_model(client, workspace, name="crm", primary_key="user_id", table="crm_users4")
    url = f"{base(workspace)}/models/{model['id']}"
    r = client.patch(url, headers=workspace.headers, json={"name": "crm2"})
    assert r.status_code == 200 and r.json()["name"] == "crm2"
    r = client.patch(url, headers=workspace.headers, json={"sql": "SELECT user_id, country FROM crm_users4"})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "sql" and r.json()["table"] is None
    assert [c["name"] for c in r.json()["columns"]] == ["user_id", "country"]
    r = client.patch(url, headers=workspace.headers, json={"primary_key": "missing"})
    assert r.status_code == 422 and r.json()["field"] == "primary_key"


def test_delete_managed_model__drops_its_table(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, numbered_customers(2))
    r = client.delete(f"{base(workspace)}/models/{model['id']}", headers=workspace.headers)
    assert r.status_code == 204
    assert client.get(f"{base(workspace)}/models/{model['id']}", headers=workspace.headers).status_code == 404
    source = get_source(ctx)
    with source.connect() as conn:
        from overture.data.source import TableRef

        assert source.table_columns(conn, TableRef(model["table"])) is None


def test_models__other_workspace__404(
    client: TestClient, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    theirs = create_customers(client, other_workspace, [])
    assert (
        client.get(f"{base(workspace)}/models/{theirs['id']}", headers=workspace.headers).status_code == 404
    )
    r = client.patch(
        f"{base(workspace)}/models/{theirs['id']}", headers=workspace.headers, json={"name": "z"}
    )
    assert r.status_code == 404
    assert (
        client.delete(f"{base(workspace)}/models/{theirs['id']}", headers=workspace.headers).status_code
        == 404
    )
    assert client.get(f"{base(workspace)}/models", headers=workspace.headers).json() == []


def test_models__scopes(client: TestClient, ctx: AppContext, workspace: WorkspaceFixture) -> None:
    reader = {"Authorization": f"Bearer {create_key(ctx, workspace.id, ['models:read'])}"}
    assert client.get(f"{base(workspace)}/models", headers=reader).status_code == 200
    r = client.post(f"{base(workspace)}/models", headers=reader, json={"name": "x", "primary_key": "id"})
    assert r.status_code == 403
    r = client.get(f"{base(workspace)}/models", headers=workspace.public_headers)
    assert r.status_code == 403
