"""Profile records over HTTP: set-based upsert, all-or-nothing validation, reading one, limits."""

from __future__ import annotations

from fastapi.testclient import TestClient

from overture.db.context import AppContext
from tests.conftest import WorkspaceFixture
from tests.data.helpers import base, create_customers, create_model, numbered_customers


def _records_url(ws: WorkspaceFixture, model: dict) -> str:
    return f"{base(ws)}/models/{model['id']}/records"


def test_upsert__inserts_then_updates_only_given_fields(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, numbered_customers(3))
    url = _records_url(workspace, model)
    r = client.post(
        url, headers=workspace.headers, json={"records": [{"customer_id": "c00001", "plan": "gold"}]}
    )
    assert r.json() == {"upserted": 1, "inserted": 0, "updated": 1, "columns_added": []}
    got = client.get(f"{url}/c00001", headers=workspace.headers).json()
    assert got["plan"] == "gold"
    assert got["ltv"] == 1.0  # left out: kept
    assert got["signup_at"] == "2025-02-01T00:00:00Z"
    assert got["vip"] is False


def test_upsert__null_clears_a_field(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, numbered_customers(1))
    url = _records_url(workspace, model)
    client.post(url, headers=workspace.headers, json={"records": [{"customer_id": "c00000", "ltv": None}]})
    assert client.get(f"{url}/c00000", headers=workspace.headers).json()["ltv"] is None


def test_upsert__same_key_twice_in_batch__later_fields_win(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, [])
    url = _records_url(workspace, model)
    r = client.post(
        url,
        headers=workspace.headers,
        json={
            "records": [{"customer_id": "a", "plan": "free", "ltv": 1}, {"customer_id": "a", "plan": "pro"}]
        },
    )
    assert r.json()["upserted"] == 1
    got = client.get(f"{url}/a", headers=workspace.headers).json()
    assert (got["plan"], got["ltv"]) == ("pro", 1.0)


def test_upsert__bad_value__422_names_index_and_field_and_writes_nothing(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    model = create_customers(client, workspace, [])
    url = _records_url(workspace, model)
    records = numbered_customers(20)
    records[17]["ltv"] = "lots"
    r = client.post(url, headers=workspace.headers, json={"records": records})
    assert r.status_code == 422
    assert r.json()["field"] == "records[17].ltv"
    assert r.json()["detail"] == "records[17].ltv: expected a number"
    assert client.get(f"{url}/c00000", headers=workspace.headers).status_code == 404


def test_upsert__type_errors_per_kind(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, [])
    url = _records_url(workspace, model)
    cases = {
        "sessions": (1.5, "expected an integer"),
        "vip": ("yes", "expected true or false"),
        "signup_at": ("yesterday", "expected an ISO 8601 timestamp"),
        "plan": (3, "expected a string"),
    }
    for field, (value, message) in cases.items():
        r = client.post(
            url, headers=workspace.headers, json={"records": [{"customer_id": "a", field: value}]}
        )
        assert r.status_code == 422, field
        assert r.json()["detail"] == f"records[0].{field}: {message}"
    r = client.post(url, headers=workspace.headers, json={"records": [{"plan": "free"}]})
    assert r.status_code == 422 and r.json()["field"] == "records[0].customer_id"
    r = client.post(url, headers=workspace.headers, json={"records": ["not an object"]})
    assert r.status_code == 422 and r.json()["field"] == "records[0]"


def test_upsert__managed_model_grows_columns_from_values(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    model = create_model(client, workspace, name="people", primary_key="id")
    url = _records_url(workspace, model)
    r = client.post(
        url,
        headers=workspace.headers,
        json={
            "records": [
                {"id": "p1", "age": 30, "score": 1},
                {"id": "p2", "score": 2.5, "tags": ["a"], "ok": True},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["columns_added"] == ["age", "ok", "score", "tags"]
    kinds = {
        c["name"]: c["type"]
        for c in client.get(f"{base(workspace)}/models/{model['id']}", headers=workspace.headers).json()[
            "columns"
        ]
    }
    assert kinds == {"id": "string", "age": "integer", "score": "number", "tags": "json", "ok": "boolean"}
    assert client.get(f"{url}/p2", headers=workspace.headers).json()["tags"] == ["a"]


def test_upsert__new_field_with_mixed_types__422(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_model(client, workspace, name="people", primary_key="id")
    r = client.post(
        _records_url(workspace, model),
        headers=workspace.headers,
        json={"records": [{"id": "p1", "x": 1}, {"id": "p2", "x": "one"}]},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "records[1].x"


def test_upsert__unknown_column_on_table_model__422(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    from overture.data.source import get_source

    with get_source(ctx).begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS ext_people")
        conn.exec_driver_sql("CREATE TABLE ext_people (id VARCHAR, name VARCHAR)")
    model = create_model(client, workspace, name="ext", primary_key="id", table="ext_people")
    url = _records_url(workspace, model)
    r = client.post(url, headers=workspace.headers, json={"records": [{"id": "1", "nickname": "x"}]})
    assert r.status_code == 422 and r.json()["field"] == "records[0].nickname"
    # A table without a unique index still upserts (staged UPDATE + INSERT, not ON CONFLICT).
    for _ in range(2):
        r = client.post(url, headers=workspace.headers, json={"records": [{"id": "1", "name": "Ann"}]})
        assert r.status_code == 200
    with get_source(ctx).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM ext_people").scalar_one() == 1


def test_upsert__hostile_field_name__422(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_model(client, workspace, name="people", primary_key="id")
    r = client.post(
        _records_url(workspace, model),
        headers=workspace.headers,
        json={"records": [{"id": "1", 'x" VARCHAR); DROP TABLE t; --': 1}]},
    )
    assert r.status_code == 422


def test_upsert__hostile_values_stored_literally(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, [])
    url = _records_url(workspace, model)
    nasty = "x'); DROP TABLE t; -- \\ % _ \" ünï ☃"
    client.post(url, headers=workspace.headers, json={"records": [{"customer_id": "k'1", "plan": nasty}]})
    assert client.get(f"{url}/k'1", headers=workspace.headers).json()["plan"] == nasty


def test_upsert__10001_records__413(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, [])
    records = [{"customer_id": f"c{i}"} for i in range(10_001)]
    r = client.post(_records_url(workspace, model), headers=workspace.headers, json={"records": records})
    assert r.status_code == 413
    assert client.get(f"{_records_url(workspace, model)}/c0", headers=workspace.headers).status_code == 404


def test_upsert__10000_records__one_request(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, [])
    r = client.post(
        _records_url(workspace, model),
        headers=workspace.headers,
        json={"records": numbered_customers(10_000)},
    )
    assert r.status_code == 200
    assert r.json()["inserted"] == 10_000


def test_records__sql_model_is_read_only__422(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_model(client, workspace, name="q", primary_key="id", sql="SELECT 1 AS id")
    r = client.post(_records_url(workspace, model), headers=workspace.headers, json={"records": [{"id": 2}]})
    assert r.status_code == 422
    assert client.get(f"{_records_url(workspace, model)}/1", headers=workspace.headers).json() == {"id": 1}


def test_get_record__absent__404(client: TestClient, workspace: WorkspaceFixture) -> None:
    model = create_customers(client, workspace, numbered_customers(1))
    assert (
        client.get(f"{_records_url(workspace, model)}/nobody", headers=workspace.headers).status_code == 404
    )


def test_records__other_workspace__404(
    client: TestClient, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    theirs = create_customers(client, other_workspace, numbered_customers(1))
    url = f"{base(workspace)}/models/{theirs['id']}/records"
    assert client.get(f"{url}/c00000", headers=workspace.headers).status_code == 404
    r = client.post(url, headers=workspace.headers, json={"records": [{"customer_id": "x"}]})
    assert r.status_code == 404


def test_upsert__concurrent_batches_on_same_rows__all_succeed(
    client: TestClient, ctx: AppContext, workspace: WorkspaceFixture
) -> None:
    import threading

    from overture.data import records

    model = create_customers(client, workspace, numbered_customers(2000))
    outcomes: list[str] = []

    def write(n: int) -> None:
        batch = [{"customer_id": f"c{i:05d}", "sessions": n} for i in range(2000)]
        try:
            with ctx.transaction(write=False, workspace_id=workspace.id) as session:
                records.upsert_records(session, model["id"], batch)
            outcomes.append("ok")
        except Exception as exc:  # the assertion below shows what went wrong
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes == ["ok"] * 4


def test_upsert__text_or_json_no_store_holds__422_naming_the_place_and_nothing_written(
    client: TestClient, workspace: WorkspaceFixture
) -> None:
    # Was a 502 quoting the internal insert on DuckDB, a 409 "concurrent write, retry" on PostgreSQL.
    model = create_customers(client, workspace, [])
    url = _records_url(workspace, model)
    headers = {**workspace.headers, "Content-Type": "application/json"}
    for record, field in [
        ('{"customer_id": "a", "plan": "\\ud800"}', "records[0].plan"),
        ('{"customer_id": "a\\udc00"}', "records[0].customer_id"),
        ('{"customer_id": "a", "extra": {"n": [1, 100000000000000000000]}}', "records[0].extra.n[1]"),
        ('{"customer_id": "a", "plan": "x\\u0000y"}', "records[0].plan"),
    ]:
        r = client.post(url, headers=headers, content=('{"records": [' + record + "]}").encode())
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field, r.text
    assert client.get(f"{url}/a", headers=workspace.headers).status_code == 404
