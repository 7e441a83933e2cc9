"""Typed helpers the data and segment tests share: a managed model filled through the records API."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import WorkspaceFixture

CUSTOMER_COLUMNS = [
    {"name": "customer_id", "type": "string"},
    {"name": "plan", "type": "string"},
    {"name": "ltv", "type": "number"},
    {"name": "sessions", "type": "integer"},
    {"name": "signup_at", "type": "timestamp"},
    {"name": "vip", "type": "boolean"},
]


def base(ws: WorkspaceFixture) -> str:
    return f"/api/v1/workspaces/{ws.id}"


def create_model(client: TestClient, ws: WorkspaceFixture, **body: Any) -> dict[str, Any]:
    r = client.post(f"{base(ws)}/models", headers=ws.headers, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def create_customers(
    client: TestClient, ws: WorkspaceFixture, records: list[dict[str, Any]], name: str = "customers"
) -> dict[str, Any]:
    """A managed `customers` model with typed columns, loaded with `records`."""
    model = create_model(client, ws, name=name, primary_key="customer_id", columns=CUSTOMER_COLUMNS)
    if records:
        r = client.post(
            f"{base(ws)}/models/{model['id']}/records", headers=ws.headers, json={"records": records}
        )
        assert r.status_code == 200, r.text
    return model


def numbered_customers(n: int) -> list[dict[str, Any]]:
    plans = ["free", "pro", "enterprise"]
    return [
        {
            "customer_id": f"c{i:05d}",
            "plan": plans[i % 3],
            "ltv": float(i),
            "sessions": i % 10,
            "signup_at": f"2025-{1 + i % 12:02d}-01T00:00:00Z",
            "vip": i % 7 == 0,
        }
        for i in range(n)
    ]
