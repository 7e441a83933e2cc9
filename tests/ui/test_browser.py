"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the app served by a
real uvicorn process on a loopback port. Each main page is saved as a screenshot under
test-output/ui/ (look at them: a page that renders but looks broken is a failure) and checked for the
things a broken page shows: no stylesheet, console errors, content wider than the window."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from overture.auth import service as auth_service
from overture.config import Settings
from overture.data.demo import load_demo
from overture.db import migrate
from overture.db.context import AppContext
from overture.ui.demo import seed_demo
from tests.delivery.conftest import free_port

pytestmark = pytest.mark.browser
playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "ui"
READ_ONLY = ["segments:read", "journeys:read", "campaigns:read", "destinations:read"]


@dataclass
class Server:
    url: str
    workspace_id: str
    api_key: str
    read_only_key: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A home with demo customers and the first-run demo objects, served by `uvicorn` in its own process
    (with the embedded runtime, so triggered runs really execute)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    home = tmp_path_factory.mktemp("ui-home")
    settings = Settings(home=home, egress_allow=["127.0.0.1/32"])
    ctx = AppContext.from_settings(settings)
    migrate.upgrade(settings.resolved_database_url, ctx.engine)
    with ctx.transaction() as session:
        ws, secret, _ = auth_service.bootstrap_workspace(session, "browser")
        _, read_only = auth_service.create_key(session, ws.id, name="viewer", scopes=READ_ONLY)
        workspace_id = ws.id
    load_demo(ctx, workspace_id, rows=3000)
    seed_demo(ctx, workspace_id, simulated_users=600)
    ctx.close()
    port = free_port()
    env = {**os.environ, "OVERTURE_HOME": str(home), "OVERTURE_EGRESS_ALLOW": '["127.0.0.1/32"]'}
    env.pop("OVERTURE_DATABASE_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "overture.api.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"server did not start: {out[-2000:]}")
            time.sleep(0.2)
        yield Server(url, workspace_id, secret, read_only)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.console_errors = errors
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def sign_in(page: object, server: Server, key: str | None = None) -> None:
    page.goto(f"{server.url}/")  # type: ignore[attr-defined]
    assert page.url.endswith("/ui/signin")  # type: ignore[attr-defined]
    page.fill("#api_key", key or server.api_key)  # type: ignore[attr-defined]
    page.click("form button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(f"{server.url}/ui/")  # type: ignore[attr-defined]


def looks_right(page: object, name: str) -> None:
    """Save a screenshot and check what a broken page would show."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
    header_bg = page.eval_on_selector("header.top", "e => getComputedStyle(e).backgroundColor")  # type: ignore[attr-defined]
    assert header_bg == "rgb(29, 35, 48)", f"{name}: stylesheet not applied ({header_bg})"
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")  # type: ignore[attr-defined]
    assert overflow <= 1, f"{name}: content {overflow}px wider than the window"
    assert page.locator("h1").count() >= 1, f"{name}: no heading"  # type: ignore[attr-defined]
    assert "Traceback" not in page.content()  # type: ignore[attr-defined]
    assert not page.console_errors, f"{name}: console errors {page.console_errors}"  # type: ignore[attr-defined]


def test_sign_in_every_main_page_and_sign_out(page: object, server: Server) -> None:
    page.goto(f"{server.url}/ui/signin")  # type: ignore[attr-defined]
    looks_right(page, "signin")
    sign_in(page, server)
    assert server.api_key not in page.content()  # type: ignore[attr-defined]
    cookies = page.context.cookies()  # type: ignore[attr-defined]
    session = next(c for c in cookies if c["name"] == "overture_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and server.api_key not in session["value"]
    assert page.locator(".stat b").first.inner_text() != ""  # type: ignore[attr-defined]
    looks_right(page, "overview")
    for label, name in (
        ("Segments", "segments"),
        ("Journeys", "journeys"),
        ("Paywalls", "paywalls"),
        ("Experiences", "experiences"),
        ("Batch", "batch"),
        ("Broadcasts", "broadcasts"),
        ("Destinations", "destinations"),
        ("Deliveries", "deliveries"),
    ):
        page.click(f"header nav >> text={label}")  # type: ignore[attr-defined]
        page.wait_for_load_state()  # type: ignore[attr-defined]
        looks_right(page, name)
    page.click("text=Sign out")  # type: ignore[attr-defined]
    page.wait_for_url(f"{server.url}/ui/signin")  # type: ignore[attr-defined]
    page.goto(f"{server.url}/ui/segments")  # type: ignore[attr-defined]
    assert page.url.endswith("/ui/signin")  # type: ignore[attr-defined]


def test_phone_width_overview_and_journey_fit(browser: object, server: Server) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    pg = context.new_page()
    pg.console_errors = []
    sign_in(pg, server)
    looks_right(pg, "phone-overview")
    pg.click("header nav >> text=Journeys")
    pg.click("text=Welcome series")
    pg.wait_for_selector("svg.canvas")
    looks_right(pg, "phone-journey")
    context.close()


def test_read_only_key__sees_no_write_buttons__a_write_is_refused(page: object, server: Server) -> None:
    sign_in(page, server, server.read_only_key)
    page.click("header nav >> text=Segments")  # type: ignore[attr-defined]
    assert page.locator("text=New segment").count() == 0  # type: ignore[attr-defined]
    page.click("header nav >> text=Journeys")  # type: ignore[attr-defined]
    page.click("text=Welcome series")  # type: ignore[attr-defined]
    page.wait_for_selector("svg.canvas")  # type: ignore[attr-defined]
    assert page.locator("[data-action]").count() == 0  # type: ignore[attr-defined]
    looks_right(page, "journey-read-only")
    token = page.get_attribute("input[name=csrf_token]", "value")  # type: ignore[attr-defined]
    journey_url = page.url  # type: ignore[attr-defined]
    r = page.request.post(f"{journey_url}/pause", headers={"X-CSRF-Token": token or ""})  # type: ignore[attr-defined]
    assert r.status == 403 and "journeys:write" in r.text()


def test_segment_editor__live_count__create__member_sample(page: object, server: Server) -> None:
    sign_in(page, server)
    page.goto(f"{server.url}/ui/segments/new")  # type: ignore[attr-defined]
    count = page.locator("#count [data-count]")  # type: ignore[attr-defined]
    count.wait_for()
    everyone = int(count.get_attribute("data-count"))
    assert everyone == 3000
    page.fill("#name", "Free on Android")  # type: ignore[attr-defined]
    page.click("text=+ condition")  # type: ignore[attr-defined]
    row = page.locator(".frow").first  # type: ignore[attr-defined]
    row.locator("select.field").select_option("plan")
    row.locator("select.operator").select_option("is")
    row.locator("input.value").fill("free")
    page.click("text=+ group")  # type: ignore[attr-defined]
    inner = page.locator(".fgroup .fgroup")  # type: ignore[attr-defined]
    inner.locator("select.mode").select_option("any")
    inner.locator("text=+ condition").click()
    nested = inner.locator(".frow").first
    nested.locator("select.field").select_option("platform")
    nested.locator("input.value").fill("android")
    page.wait_for_function(  # type: ignore[attr-defined]
        "n => { const e = document.querySelector('#count [data-count]'); return e && +e.dataset.count < n }",
        arg=everyone,
    )
    page.wait_for_timeout(600)  # type: ignore[attr-defined]  (the last keystroke's count)
    shown = int(count.get_attribute("data-count"))
    tree = {
        "all": [
            {"field": "plan", "operator": "is", "value": "free"},
            {"any": [{"field": "platform", "operator": "is", "value": "android"}]},
        ]
    }
    assert json.loads(page.input_value("#filter-json")) == tree  # type: ignore[attr-defined]
    api = httpx.post(
        f"{server.url}/api/v1/workspaces/{server.workspace_id}/segments/preview",
        json={"model_id": page.input_value("[name=model_id]"), "filter": tree},  # type: ignore[attr-defined]
        headers={"Authorization": f"Bearer {server.api_key}"},
    )
    assert 0 < shown == api.json()["count"] < everyone
    looks_right(page, "segment-editor")
    page.click("text=Create segment")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r".*/ui/segments/[0-9a-f-]{36}$"))  # type: ignore[attr-defined]
    assert page.locator("h1").inner_text() == "Free on Android"  # type: ignore[attr-defined]
    assert page.locator(".card code").count() > 0  # type: ignore[attr-defined]  (member sample)
    page.click("text=Evaluate now")  # type: ignore[attr-defined]
    page.wait_for_selector(f"text={shown:,}")  # type: ignore[attr-defined]
    looks_right(page, "segment")


def test_journey__activate_trigger__canvas_counts_change(page: object, server: Server) -> None:
    sign_in(page, server)
    page.goto(f"{server.url}/ui/journeys/new")  # type: ignore[attr-defined]
    page.fill("#name", "Browser journey")  # type: ignore[attr-defined]
    page.click("#entry-json-wrap >> text=+ condition")  # type: ignore[attr-defined]
    row = page.locator("#entry-json-wrap .frow").first  # type: ignore[attr-defined]
    row.locator("select.field").select_option("plan")
    row.locator("input.value").fill("free")
    page.click("text=Create journey")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r".*/ui/journeys/[0-9a-f-]{36}$"))  # type: ignore[attr-defined]
    status = page.locator("#journey-status")  # type: ignore[attr-defined]
    assert status.inner_text() == "draft"
    wait_counts = page.locator('[data-tile="wait"] .counts')  # type: ignore[attr-defined]
    assert wait_counts.get_attribute("data-counts") == "0/0/0"
    page.click("[data-action=activate]")  # type: ignore[attr-defined]
    page.wait_for_selector("#journey-status >> text=active")  # type: ignore[attr-defined]
    page.click("[data-action=trigger]")  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => { const e = document.querySelector('[data-tile=\"wait\"] .counts');"
        " return e && !e.dataset.counts.startsWith('0/') }",
        timeout=30_000,
    )
    page.wait_for_selector("#runs >> text=completed", timeout=30_000)  # type: ignore[attr-defined]
    active = int(wait_counts.get_attribute("data-counts").split("/")[0])
    assert active > 0
    assert page.get_attribute("#journey-live", "data-polling") in ("yes", "no")  # type: ignore[attr-defined]
    page.fill("[name=member_id]", "cus_0000000")  # type: ignore[attr-defined]
    page.click("text=Show path")  # type: ignore[attr-defined]
    page.wait_for_selector("#member-path .card, #member-path .error")  # type: ignore[attr-defined]
    looks_right(page, "journey")


def test_reorder_audiences_and_try_register(page: object, server: Server) -> None:
    sign_in(page, server)
    page.click("header nav >> text=Paywalls")  # type: ignore[attr-defined]
    page.click("text=Upgrade prompts")  # type: ignore[attr-defined]
    names = page.locator(".audience-name")  # type: ignore[attr-defined]
    before = names.all_inner_texts()
    assert before == ["Free users on iOS", "Everyone else"]
    assert page.locator("g.variant").count() == 2  # type: ignore[attr-defined]
    looks_right(page, "paywall-campaign")
    page.click("[aria-label='move Free users on iOS down']")  # type: ignore[attr-defined]
    page.wait_for_function("() => document.querySelector('.audience-name').textContent === 'Everyone else'")  # type: ignore[attr-defined]
    assert names.all_inner_texts() == ["Everyone else", "Free users on iOS"]
    page.reload()  # type: ignore[attr-defined]
    assert names.all_inner_texts() == ["Everyone else", "Free users on iOS"]
    page.click("[aria-label='move Free users on iOS up']")  # type: ignore[attr-defined]
    page.wait_for_function(
        "() => document.querySelector('.audience-name').textContent === 'Free users on iOS'"
    )  # type: ignore[attr-defined]
    page.fill("#try-user", "browser-user")  # type: ignore[attr-defined]
    page.fill("#try-attrs", '{"plan": "free"}')  # type: ignore[attr-defined]
    page.fill("#try-device", '{"platform": "ios"}')  # type: ignore[attr-defined]
    page.click("text=Decide")  # type: ignore[attr-defined]
    page.wait_for_selector("#decision pre")  # type: ignore[attr-defined]
    assert "variant" in page.inner_text("#decision")  # type: ignore[attr-defined]


def test_csrf_less_post_refused__xss_names_render_inert(page: object, server: Server) -> None:
    sign_in(page, server)
    before = page.request.get(f"{server.url}/ui/segments").text()  # type: ignore[attr-defined]
    r = page.request.post(f"{server.url}/ui/segments", form={"name": "no token", "filter": ""})  # type: ignore[attr-defined]
    assert r.status == 403
    assert "no token" not in page.request.get(f"{server.url}/ui/segments").text() and "no token" not in before  # type: ignore[attr-defined]
    evil = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
    page.goto(f"{server.url}/ui/segments/new")  # type: ignore[attr-defined]
    page.fill("#name", evil)  # type: ignore[attr-defined]
    page.click("text=Create segment")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r".*/ui/segments/[0-9a-f-]{36}$"))  # type: ignore[attr-defined]
    page.goto(f"{server.url}/ui/journeys/new")  # type: ignore[attr-defined]
    page.fill("#name", evil)  # type: ignore[attr-defined]
    tiles = [{"id": "in", "type": "entry", "name": evil}, {"id": "out", "type": "exit", "name": evil}]
    page.fill("#tiles", json.dumps(tiles))  # type: ignore[attr-defined]
    page.fill("#edges", json.dumps([{"from": "in", "to": "out"}]))  # type: ignore[attr-defined]
    page.click("text=Create journey")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r".*/ui/journeys/[0-9a-f-]{36}$"))  # type: ignore[attr-defined]
    assert page.evaluate("window.__xss") is None  # type: ignore[attr-defined]
    assert evil[:20] in page.inner_text("h1")  # type: ignore[attr-defined]
    looks_right(page, "xss-journey")
    page.goto(f"{server.url}/ui/segments")  # type: ignore[attr-defined]
    assert page.evaluate("window.__xss") is None  # type: ignore[attr-defined]
    assert page.locator(f"text={evil}").count() >= 1  # type: ignore[attr-defined]
