"""The dashboard's plumbing: templates, the signed-in user, CSRF checks, error pages, mounting.

Pages live in `pages_<surface>.py`, one APIRouter each, registered in `PAGE_MODULES`; a surface
added later writes its own module in the same pattern (see docs/dashboard.md)."""

from __future__ import annotations

import importlib
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pydantic import BaseModel, ValidationError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from overture.core.encode import isoformat_z
from overture.db.context import AppContext
from overture.db.session import Session
from overture.errors import Forbidden, Invalid, OvertureError, Unauthorized
from overture.ui import signin
from overture.ui.signin import UiUser

PREFIX = "/ui"
BodyT = TypeVar("BodyT", bound=BaseModel)
STATIC = Path(__file__).parent / "static"
#: One module per surface; each exposes `router` and `NAV` (label, path, scope needed to see it).
PAGE_MODULES = [
    "overture.ui.pages_overview",
    "overture.ui.pages_segments",
    "overture.ui.pages_journeys",
    "overture.ui.pages_paywalls",
    "overture.ui.pages_experiences",
    "overture.ui.pages_batch",
    "overture.ui.pages_broadcasts",
    "overture.ui.pages_destinations",
]
#: Content Security Policy: scripts and styles only from /ui/static (no inline script, no eval), so
#: a value that slipped past escaping still could not run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

env = Environment(
    loader=PackageLoader("overture.ui", "templates"),
    autoescape=select_autoescape(["html", "svg"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    return "—" if value is None else isoformat_z(value).replace("T", " ")[:19] + "Z"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


env.filters["when"] = _when
env.filters["pretty"] = _pretty
env.filters["pct"] = lambda v: "—" if v is None else f"{100 * v:.1f}%"
env.filters["num"] = lambda v: "—" if v is None else f"{v:,}"


class SignInRequired(Exception):
    """Raised by the page dependency when there is no valid session: redirect to the sign-in page."""


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def current_user(request: Request, ctx: Ctx) -> UiUser:
    try:
        user = signin.resolve(ctx, request.cookies.get(signin.COOKIE))
    except Unauthorized:
        raise SignInRequired()
    request.state.ui_user = user
    return user


async def checked_user(request: Request, ctx: Ctx) -> UiUser:
    """A signed-in user whose POST carries the session's CSRF token (form field or htmx header)."""
    user = current_user(request, ctx)
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    signin.check_csrf(user, sent)
    return user


User = Annotated[UiUser, Depends(current_user)]
Poster = Annotated[UiUser, Depends(checked_user)]


@dataclass(frozen=True)
class Page:
    """What every template gets besides its own values."""

    request: Request
    user: UiUser | None


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    user: UiUser | None = getattr(request.state, "ui_user", None)
    html = env.get_template(template).render(
        request=request,
        user=user,
        nav=[n for n in NAV if user is not None and (n[2] is None or user.can(n[2]))],
        prefix=PREFIX,
        **values,
    )
    return HTMLResponse(html, status_code=status_code)


def error_fragment(exc: OvertureError) -> HTMLResponse:
    """A service's refusal as words next to the field it names (htmx swaps it in)."""
    html = env.get_template("_error.html").render(message=exc.message, field=exc.field, details=exc.details)
    return HTMLResponse(html, status_code=200)


@contextmanager
def unit(ctx: AppContext, user: UiUser, *, write: bool = False) -> Iterator[Session]:
    with ctx.transaction(write=write, workspace_id=user.caller.workspace_id) as session:
        yield session


def require(user: UiUser, scope: str) -> None:
    user.caller.require(scope)


def csrf_field(user: UiUser | None) -> Markup:
    if user is None:
        return Markup("")
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(user.csrf)


env.globals["csrf_field"] = csrf_field

NAV: list[tuple[str, str, str | None]] = []

router = APIRouter(prefix=PREFIX, include_in_schema=False)
SIGNIN_COOKIE = "overture_signin"


def _set_session_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        signin.COOKIE,
        value,
        max_age=int(signin.SESSION_TTL.total_seconds()),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@router.get("/signin")
def signin_page(request: Request) -> HTMLResponse:
    # Sign-in CSRF: the form's nonce must match a SameSite=Strict cookie a cross-site post lacks.
    nonce = secrets.token_urlsafe(24)
    response = render(request, "signin.html", nonce=nonce, error=request.query_params.get("error"))
    response.set_cookie(SIGNIN_COOKIE, nonce, max_age=900, path=PREFIX, httponly=True, samesite="strict")
    return response


@router.post("/signin")
async def signin_submit(request: Request, ctx: Ctx) -> Response:
    form = await request.form()
    nonce, key = form.get("nonce"), form.get("api_key")
    cookie = request.cookies.get(SIGNIN_COOKIE)
    if not isinstance(nonce, str) or not cookie or not secrets.compare_digest(nonce, cookie):
        return _signin_error(request, "The sign-in form expired; please try again.", 403)
    if not isinstance(key, str) or not key.strip():
        return _signin_error(request, "Enter an API key.", 422)
    try:
        value = signin.sign_in_with_key(ctx, key)
    except (Unauthorized, Forbidden) as exc:
        return _signin_error(request, exc.message, exc.status_code)
    response = RedirectResponse(f"{PREFIX}/", status_code=303)
    _set_session_cookie(response, request, value)
    response.delete_cookie(SIGNIN_COOKIE, path=PREFIX)
    return response


def _signin_error(request: Request, message: str, status: int) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    response = render(request, "signin.html", status_code=status, nonce=nonce, error=message)
    response.set_cookie(SIGNIN_COOKIE, nonce, max_age=900, path=PREFIX, httponly=True, samesite="strict")
    return response


@router.get("/signin/link")
def signin_link(request: Request, ctx: Ctx, token: str = "") -> Response:
    """A one-time link (printed by `overture serve --first-run`); the token is spent on first use."""
    try:
        value = signin.redeem_link(ctx, token[:200])
    except OvertureError as exc:
        return _signin_error(request, exc.message, 404)
    response = RedirectResponse(f"{PREFIX}/", status_code=303)
    _set_session_cookie(response, request, value)
    return response


@router.post("/signout")
def signout(request: Request, ctx: Ctx, user: Poster) -> Response:
    signin.sign_out(ctx, user)
    response = RedirectResponse(f"{PREFIX}/signin", status_code=303)
    response.delete_cookie(signin.COOKIE, path=PREFIX)
    return response


def mount(app: FastAPI) -> None:
    """Serve the dashboard at /ui/ (and redirect / there)."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(router)
    for name in PAGE_MODULES:
        module = importlib.import_module(name)
        # HTML pages for a signed-in browser, not the API: kept out of /openapi.json.
        app.include_router(module.router, prefix=PREFIX, include_in_schema=False)
        NAV.extend(n for n in module.NAV if n not in NAV)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _exc: SignInRequired) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": f"{PREFIX}/signin"})
        if request.method != "GET":
            return HTMLResponse("Not signed in.", status_code=401)
        return RedirectResponse(f"{PREFIX}/signin", status_code=303)

    api_error = app.exception_handlers.get(OvertureError)

    @app.exception_handler(OvertureError)
    async def _ui_error(request: Request, exc: OvertureError) -> Response:
        """Under /ui a refusal is words on the page (htmx swaps 4xx answers in place), never JSON."""
        if not request.url.path.startswith(PREFIX) and api_error is not None:
            return await api_error(request, exc)  # type: ignore[misc,no-any-return]
        if request.headers.get("hx-request"):
            response = error_fragment(exc)
            response.status_code = exc.status_code
            # A region that swaps a large target names a smaller place for its errors.
            target = request.headers.get("x-error-target", "")
            if target.startswith("#") and target[1:].replace("-", "").isalnum():
                response.headers["HX-Retarget"] = target
                response.headers["HX-Reswap"] = "innerHTML"
            return response
        return render(request, "error.html", status_code=exc.status_code, message=exc.message)

    app.add_middleware(SecurityHeaders)


class SecurityHeaders:
    """Dashboard responses carry CSP, nosniff, a same-origin referrer policy and (pages) no-store.
    Pure ASGI: every other path (the API, the decision path) passes straight through, without the
    task and streams `BaseHTTPMiddleware` costs each request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        extra = _SECURITY_HEADERS if path.startswith(f"{PREFIX}/static") else _PAGE_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


_SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)
_PAGE_HEADERS = (*_SECURITY_HEADERS, ("Cache-Control", "no-store"))


def parse_body(schema: type[BodyT], values: dict[str, Any]) -> BodyT:
    """Validate form values with the API's own request model; a bad value is a 422 naming its field."""
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or None
        raise Invalid(f"{first.get('msg', 'invalid')}", field=field)


def json_field(text: str | None, field: str, *, empty: Any = None) -> Any:
    """A JSON value typed in a form field ("" means `empty`); unreadable JSON is a 422 naming it."""
    if text is None or not text.strip():
        return empty
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Invalid(f"not valid JSON ({exc})", field=field)


async def form_values(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
