"""The dashboard over HTTP (TestClient, both backends): sign-in, sessions, CSRF, scopes, escaping, and
every page and action going through the services."""

from __future__ import annotations

import re

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from overture.journeys import service as journeys_service
from overture.paywalls import service as paywalls_service
from overture.runtime.models import OutboxMessage
from overture.runtime.outbox import OutboxItem, enqueue
from overture.segments import service as segments_service
from overture.ui import signin
from tests.conftest import create_key, create_workspace
from tests.ui.conftest import DemoWorkspace, sign_in


def _ids(ctx: AppContext, workspace_id: str) -> dict[str, str]:
    with ctx.transaction(write=False, workspace_id=workspace_id) as session:
        segment = segments_service.list_segments(session)[0]
        journey = journeys_service.list_journeys(session)[0]
        campaign = paywalls_service.list_campaigns(session)[0]
        return {"segment": segment.id, "journey": journey.id, "campaign": campaign.id}


def _pages(ids: dict[str, str]) -> list[str]:
    return [
        "/ui/",
        "/ui/segments",
        "/ui/segments/new",
        f"/ui/segments/{ids['segment']}",
        "/ui/journeys",
        "/ui/journeys/new",
        f"/ui/journeys/{ids['journey']}",
        "/ui/paywalls",
        f"/ui/paywalls/{ids['campaign']}",
        "/ui/destinations",
        "/ui/deliveries",
    ]


def test_root__redirects_to_dashboard__unsigned_goes_to_sign_in(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    r = client.get("/ui/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/signin"
    assert client.get("/ui/journeys", follow_redirects=False).headers["location"] == "/ui/signin"


def test_sign_in__every_page_renders__key_never_in_a_page(
    app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace
) -> None:
    ws = demo_workspace.ws
    with TestClient(app) as client:
        page = client.get("/ui/signin")
        nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
        assert nonce is not None
        r = client.post(
            "/ui/signin", data={"nonce": nonce.group(1), "api_key": ws.api_key}, follow_redirects=False
        )
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and ws.api_key not in cookie
        for path in _pages(_ids(ctx, ws.id)):
            r = client.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            assert ws.api_key not in r.text and ws.api_key[3:20] not in r.text, path
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert "Traceback" not in r.text


def test_sign_in__bad_public_or_missing_key__refused_in_words(
    client: TestClient, demo_workspace: DemoWorkspace
) -> None:
    for key, status, words in (
        ("sk_nope", 401, "invalid or revoked"),
        (demo_workspace.ws.public_key, 403, "public"),
        ("", 422, "Enter an API key"),
    ):
        page = client.get("/ui/signin")
        nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
        assert nonce is not None
        r = client.post("/ui/signin", data={"nonce": nonce.group(1), "api_key": key})
        assert r.status_code == status and words in r.text
        assert "set-cookie" not in r.headers or signin.COOKIE not in r.headers["set-cookie"]


def test_sign_in__without_the_form_nonce__refused(client: TestClient, demo_workspace: DemoWorkspace) -> None:
    r = client.post("/ui/signin", data={"nonce": "forged", "api_key": demo_workspace.ws.api_key})
    assert r.status_code == 403
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_sign_out__revokes_the_session_even_for_a_copied_cookie(
    app: FastAPI, demo_workspace: DemoWorkspace
) -> None:
    with TestClient(app) as client:
        token = sign_in(client, demo_workspace.ws.api_key)
        copied = client.cookies.get(signin.COOKIE)
        assert client.get("/ui/", follow_redirects=False).status_code == 200
        r = client.post("/ui/signout", data={"csrf_token": token}, follow_redirects=False)
        assert r.status_code == 303
    with TestClient(app) as thief:
        thief.cookies.set(signin.COOKIE, copied or "", path="/ui")
        assert thief.get("/ui/", follow_redirects=False).status_code == 303


def test_revoking_the_key__ends_its_sessions(app: FastAPI, ctx: AppContext) -> None:
    ws = create_workspace(ctx, "ui-revoke")
    key = create_key(ctx, ws.id, ["segments:read"])
    with TestClient(app) as client:
        sign_in(client, key)
        assert client.get("/ui/segments").status_code == 200
        keys = client.get(f"/api/v1/workspaces/{ws.id}/keys", headers=ws.headers)
        assert keys.status_code == 200, keys.text
        key_id = next(k["id"] for k in keys.json() if k["scopes"] == ["segments:read"])
        assert client.delete(f"/api/v1/workspaces/{ws.id}/keys/{key_id}", headers=ws.headers).status_code in (
            200,
            204,
        )
        assert client.get("/ui/segments", follow_redirects=False).status_code == 303


def test_forged_cookie__not_signed_in(client: TestClient) -> None:
    client.cookies.set(signin.COOKIE, "abc.def", path="/ui")
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_one_time_link__signs_in_once(app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace) -> None:
    token = signin.create_link(ctx, demo_workspace.ws.api_key)
    with TestClient(app) as client:
        r = client.get(f"/ui/signin/link?token={token}")
        assert r.status_code == 200 and "Overview" in r.text
    with TestClient(app) as other:
        r = other.get(f"/ui/signin/link?token={token}")
        assert r.status_code == 404 and "already used" in r.text
        assert other.get("/ui/", follow_redirects=False).status_code == 303


def test_post_without_csrf_token__refused_and_nothing_changes(
    app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace
) -> None:
    ws = demo_workspace.ws
    with TestClient(app) as client:
        sign_in(client, ws.api_key)
        before = _segment_names(ctx, ws.id)
        body = {"name": "csrf-less", "model_id": demo_workspace.model_id, "filter": ""}
        for extra in ({}, {"csrf_token": "forged"}):
            r = client.post("/ui/segments", data={**body, **extra}, follow_redirects=False)
            assert r.status_code == 403 and "security token" in r.text
        assert _segment_names(ctx, ws.id) == before
        ids = _ids(ctx, ws.id)
        r = client.post(f"/ui/journeys/{ids['journey']}/pause", headers={"HX-Request": "true"})
        assert r.status_code == 403


def _segment_names(ctx: AppContext, workspace_id: str) -> list[str]:
    with ctx.transaction(write=False, workspace_id=workspace_id) as session:
        return [s.name for s in segments_service.list_segments(session)]


def test_read_only_key__no_write_buttons__writes_refused(
    app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace
) -> None:
    ws = demo_workspace.ws
    key = create_key(ctx, ws.id, ["segments:read", "journeys:read", "campaigns:read", "destinations:read"])
    ids = _ids(ctx, ws.id)
    with TestClient(app) as client:
        token = sign_in(client, key)
        assert "New segment" not in client.get("/ui/segments").text
        journey = client.get(f"/ui/journeys/{ids['journey']}").text
        assert 'data-action="' not in journey and "active ·" not in journey  # no buttons, no stats scope
        campaign = client.get(f"/ui/paywalls/{ids['campaign']}").text
        assert "move " not in campaign and "analytics:read scope" in campaign
        r = client.post(
            "/ui/segments",
            data={"csrf_token": token, "name": "x", "model_id": demo_workspace.model_id},
            follow_redirects=False,
        )
        assert r.status_code == 403 and "segments:write" in r.text
        r = client.post(
            f"/ui/journeys/{ids['journey']}/pause", headers={"X-CSRF-Token": token, "HX-Request": "1"}
        )
        assert r.status_code == 403 and "journeys:write" in r.text
        assert client.get("/ui/segments/new").status_code == 403


def test_segment_editor__preview_count_matches_service__create_and_errors_name_the_field(
    app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace
) -> None:
    ws = demo_workspace.ws
    tree = '{"all": [{"field": "plan", "operator": "is", "value": "free"}]}'
    with TestClient(app) as client:
        token = sign_in(client, ws.api_key)
        hx = {"X-CSRF-Token": token, "HX-Request": "true"}
        r = client.post(
            "/ui/segments/preview", data={"model_id": demo_workspace.model_id, "filter": tree}, headers=hx
        )
        shown = re.search(r'data-count="(\d+)"', r.text)
        assert shown is not None
        api = client.post(
            f"/api/v1/workspaces/{ws.id}/segments/preview",
            json={
                "model_id": demo_workspace.model_id,
                "filter": {"field": "plan", "operator": "is", "value": "free"},
            },
            headers=ws.headers,
        )
        assert int(shown.group(1)) == api.json()["count"] > 0
        bad = '{"field": "no_such_column", "operator": "is", "value": 1}'
        r = client.post(
            "/ui/segments/preview", data={"model_id": demo_workspace.model_id, "filter": bad}, headers=hx
        )
        assert r.status_code == 422 and "no_such_column" in r.text and 'class="error"' in r.text
        r = client.post(
            "/ui/segments/preview", data={"model_id": demo_workspace.model_id, "filter": "{"}, headers=hx
        )
        assert r.status_code == 422 and "filter" in r.text and "JSON" in r.text
        r = client.post(
            "/ui/segments",
            data={"name": "Free (ui)", "model_id": demo_workspace.model_id, "filter": tree},
            headers=hx,
        )
        assert r.status_code == 204 and r.headers["HX-Redirect"].startswith("/ui/segments/")
        detail = client.get(r.headers["HX-Redirect"])
        assert "Free (ui)" in detail.text and "Member sample" in detail.text
    assert "Free (ui)" in _segment_names(ctx, ws.id)


def test_xss__script_names_render_inert(app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace) -> None:
    ws = demo_workspace.ws
    evil = "<script>alert('x')</script><img src=x onerror=alert(1)>"
    with TestClient(app) as client:
        token = sign_in(client, ws.api_key)
        r = client.post(
            "/ui/segments",
            data={"csrf_token": token, "name": evil, "model_id": demo_workspace.model_id, "filter": ""},
            follow_redirects=True,
        )
        assert r.status_code == 200
        tiles = f'[{{"id": "e", "type": "entry", "name": "{evil}"}}, {{"id": "x", "type": "exit"}}]'
        r = client.post(
            "/ui/journeys",
            data={
                "csrf_token": token,
                "name": evil,
                "parent_model_id": demo_workspace.model_id,
                "tiles": tiles.replace("'", "\\u0027"),
                "edges": '[{"from": "e", "to": "x"}]',
            },
            follow_redirects=True,
        )
        assert r.status_code == 200, r.text[:300]
        for page in (client.get("/ui/segments").text, r.text, client.get("/ui/journeys").text):
            assert "<script>alert" not in page and "<img src=x" not in page
            assert "&lt;script&gt;" in page


def test_journey_lifecycle_buttons__go_through_the_service(
    app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace
) -> None:
    ws = demo_workspace.ws
    journey_id = _ids(ctx, ws.id)["journey"]
    with TestClient(app) as client:
        token = sign_in(client, ws.api_key)
        hx = {"X-CSRF-Token": token, "HX-Request": "true"}
        r = client.post(f"/ui/journeys/{journey_id}/pause", headers=hx)
        assert r.status_code == 200 and 'id="journey-status">paused<' in r.text
        assert 'data-action="resume"' in r.text and 'data-action="trigger"' not in r.text
        r = client.post(
            f"/ui/journeys/{journey_id}/trigger", headers={**hx, "X-Error-Target": "#action-errors"}
        )
        assert r.status_code == 409 and "only active or draining" in r.text
        assert r.headers["HX-Retarget"] == "#action-errors"
        r = client.post(f"/ui/journeys/{journey_id}/resume", headers=hx)
        assert 'id="journey-status">active<' in r.text
        r = client.post(f"/ui/journeys/{journey_id}/explode", headers=hx)
        assert r.status_code == 404
        r = client.get(f"/ui/journeys/{journey_id}/member?member_id=nobody")
        assert r.status_code == 404 and "member not found" in r.text


def test_journey_canvas__validation_errors_on_the_tiles_they_name(
    app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace
) -> None:
    ws = demo_workspace.ws
    with TestClient(app) as client:
        token = sign_in(client, ws.api_key)
        r = client.post(
            "/ui/journeys",
            data={
                "csrf_token": token,
                "name": "broken draft",
                "parent_model_id": demo_workspace.model_id,
                "tiles": '[{"id": "start", "type": "entry"}, {"id": "lonely", "type": "wait"}]',
                "edges": "[]",
            },
            follow_redirects=True,
        )
        assert r.status_code == 200
        lonely = re.search(r'<g class="tile wait invalid" data-tile="lonely"', r.text)
        assert lonely is not None, r.text[:2000]
        assert "Tile &#39;lonely&#39; has no incoming edges" in r.text


def test_reorder_audiences__up_and_down(app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace) -> None:
    ws = demo_workspace.ws
    campaign_id = _ids(ctx, ws.id)["campaign"]

    def order() -> list[str]:
        with ctx.transaction(write=False, workspace_id=ws.id) as session:
            return [a.name for a in paywalls_service.list_audiences(session, campaign_id)]

    start = order()
    with TestClient(app) as client:
        token = sign_in(client, ws.api_key)
        with ctx.transaction(write=False, workspace_id=ws.id) as session:
            last = paywalls_service.list_audiences(session, campaign_id)[-1].id
        hx = {"X-CSRF-Token": token, "HX-Request": "true"}
        r = client.post(
            f"/ui/paywalls/{campaign_id}/audiences/{last}/move", data={"direction": "up"}, headers=hx
        )
        assert r.status_code == 200 and order() == [start[-1], *start[:-1]]
        r = client.post(
            f"/ui/paywalls/{campaign_id}/audiences/{last}/move", data={"direction": "down"}, headers=hx
        )
        assert order() == start
        r = client.post(
            f"/ui/paywalls/{campaign_id}/audiences/{last}/move", data={"direction": "sideways"}, headers=hx
        )
        assert r.status_code == 422 and "direction" in r.text


def test_experiment_chart_and_try_register(
    app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace
) -> None:
    ws = demo_workspace.ws
    campaign_id = _ids(ctx, ws.id)["campaign"]
    with TestClient(app) as client:
        token = sign_in(client, ws.api_key)
        page = client.get(f"/ui/paywalls/{campaign_id}").text
        assert page.count('<g class="variant"') == 2 and "chance to beat control" in page
        hx = {"X-CSRF-Token": token, "HX-Request": "true"}
        r = client.post(
            "/ui/paywalls/try",
            data={"placement": "onboarding", "user_id": "someone", "user": '{"plan": "pro"}', "device": ""},
            headers=hx,
        )
        assert r.status_code == 200 and "<b>paywall</b>" in r.text and "pw_demo_original" in r.text
        r = client.post("/ui/paywalls/try", data={"placement": "", "user_id": "u"}, headers=hx)
        assert r.status_code == 422 and "placement" in r.text


def test_deliveries__messages_by_state_with_errors_and_duplicates(
    app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace
) -> None:
    ws = create_workspace(ctx, "ui-deliveries")
    with TestClient(app) as client:
        dest = client.post(
            f"/api/v1/workspaces/{ws.id}/destinations",
            json={"name": "hook", "type": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}},
            headers=ws.headers,
        )
        assert dest.status_code == 201, dest.text
        dest_id = dest.json()["id"]
        with ctx.transaction(workspace_id=ws.id) as session:
            enqueue(
                session,
                [OutboxItem(ws.id, dest_id, f"k-{i}-{ws.id}", {"n": i}, "test", None) for i in range(3)],
            )
        with ctx.transaction(workspace_id=ws.id) as session:
            session.execute(
                sa.update(OutboxMessage)
                .where(OutboxMessage.idempotency_key == f"k-0-{ws.id}")
                .values(status="failed", last_error="HTTP 410 <gone>", possible_duplicate=True)
            )
        token = sign_in(client, ws.api_key)
        page = client.get("/ui/deliveries").text
        assert "pending 2" in page and "failed 1" in page and "possible duplicates 1" in page
        failed = client.get("/ui/deliveries?status=failed").text
        assert "HTTP 410 &lt;gone&gt;" in failed and "possible duplicate" in failed
        assert client.get("/ui/deliveries?status=bogus").status_code == 422
        assert "hook" in client.get("/ui/").text  # failing destination on the overview
        r = client.post(
            f"/ui/destinations/{dest_id}/test", headers={"X-CSRF-Token": token, "HX-Request": "1"}
        )
        assert r.status_code == 200 and ("retry" in r.text or "failed" in r.text)
    with ctx.transaction(workspace_id=ws.id) as session:  # settle what this test left owed
        session.execute(
            sa.update(OutboxMessage).where(OutboxMessage.status == "pending").values(status="failed")
        )


def test_every_dashboard_route__hostile_input__never_500(
    app: FastAPI, ctx: AppContext, demo_workspace: DemoWorkspace
) -> None:
    ws = demo_workspace.ws
    paths = sorted(
        {
            (m, r.path)
            for r in app.routes
            if getattr(r, "path", "").startswith("/ui/")
            for m in getattr(r, "methods", ())
        }
    )
    hostile = ["", "'; drop table x; --", "\u0000", "{", "[]", "null", "x" * 5000, '{"all": 5}']
    failures = []
    with TestClient(app) as client:
        token = sign_in(client, ws.api_key)
        for method, path in paths:
            if path.endswith("/signout"):
                continue
            url = re.sub(r"\{[^}]+\}", "does-not-exist", path)
            for value in hostile:
                data = {
                    k: value
                    for k in (
                        "name",
                        "model_id",
                        "filter",
                        "tiles",
                        "edges",
                        "placement",
                        "user_id",
                        "user",
                        "direction",
                        "api_key",
                        "nonce",
                        "parent_model_id",
                    )
                }
                if method == "GET":
                    r = client.get(
                        url, params={"member_id": value, "model_id": value, "status": value, "token": value}
                    )
                else:
                    r = client.post(url, data=data, headers={"X-CSRF-Token": token, "HX-Request": "1"})
                if r.status_code >= 500:
                    failures.append(f"{method} {path} {value[:20]!r} -> {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures[:20])
