"""Helpers for the paywall API tests: a client bound to one workspace and one URL prefix, and
builders for the usual setup (paywalls, a campaign with a placement, audiences)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import WorkspaceFixture

IOS_POWER_USER = {
    "device": {"platform": "ios", "session_count": 7},
    "user": {"subscription_status": "free"},
}


@dataclass
class Api:
    client: TestClient
    ws: WorkspaceFixture
    prefix: str

    def url(self, path: str) -> str:
        return f"{self.prefix}/{path.lstrip('/')}"

    def _headers(self, public: bool, headers: dict[str, str] | None) -> dict[str, str]:
        if headers is not None:
            return headers
        return self.ws.public_headers if public else self.ws.headers

    def get(
        self, path: str, *, public: bool = False, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.client.get(self.url(path), headers=self._headers(public, headers))

    def post(
        self, path: str, json: Any = None, *, public: bool = False, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.client.post(self.url(path), json=json, headers=self._headers(public, headers))

    def put(
        self, path: str, json: Any = None, *, public: bool = False, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.client.put(self.url(path), json=json, headers=self._headers(public, headers))

    def delete(
        self, path: str, *, public: bool = False, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.client.delete(self.url(path), headers=self._headers(public, headers))

    # -- builders (assert success so a broken setup fails where it happens) --

    def paywall(
        self, paywall_id: str, name: str | None = None, config: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        r = self.post("paywalls", {"id": paywall_id, "name": name or paywall_id, "config": config or {}})
        assert r.status_code == 201, r.text
        return r.json()

    def campaign(self, name: str = "Onboarding Flow", status: str = "active") -> str:
        r = self.post("campaigns", {"name": name, "status": status})
        assert r.status_code == 201, r.text
        campaign_id: str = r.json()["id"]
        return campaign_id

    def placement(self, campaign_id: str, name: str = "feature_gate", **extra: Any) -> dict[str, Any]:
        r = self.post(f"campaigns/{campaign_id}/placements", {"name": name, **extra})
        assert r.status_code == 201, r.text
        return r.json()

    def audience(self, campaign_id: str, **body: Any) -> dict[str, Any]:
        body.setdefault("name", "everyone")
        body.setdefault("filters", [])
        r = self.post(f"campaigns/{campaign_id}/audiences", body)
        assert r.status_code == 201, r.text
        return r.json()

    def register(
        self, placement: str = "feature_gate", user_id: str = "user_1", **body: Any
    ) -> dict[str, Any]:
        r = self.post("register", {"placement": placement, "user_id": user_id, **body}, public=True)
        assert r.status_code == 200, r.text
        return r.json()

    def setup(self, *, audiences: list[dict[str, Any]], placement: str = "feature_gate") -> str:
        """A campaign with one placement and the given audiences (paywalls must exist)."""
        campaign_id = self.campaign()
        self.placement(campaign_id, placement)
        for audience in audiences:
            self.audience(campaign_id, **audience)
        return campaign_id


@pytest.fixture
def api(client: TestClient, workspace: WorkspaceFixture) -> Api:
    return Api(client, workspace, f"/api/v1/projects/{workspace.id}")


@pytest.fixture
def api_v1(client: TestClient, workspace: WorkspaceFixture) -> Api:
    """The same workspace through the seed's heading paths (/v1/projects/{id})."""
    return Api(client, workspace, f"/v1/projects/{workspace.id}")
