"""Bounded requests: the API key is checked from the headers before a byte of the body is read, and
every body is capped by its route's class (docs/operations.md, "Limits").

FastAPI reads and parses a body before it resolves dependencies, so without this a 100 MB body with no
key was read, parsed and only then refused. `RequestLimits` (pure ASGI, in front of the routing)
finds the request's route from a table built from the app's routes (a dict lookup once a path was
seen), then:

- on a route that authenticates with an API key (its dependencies reach `authenticate`, or it
  declares `security` itself, like register), resolves the key from `Authorization` and answers 401
  unread; the caller goes into the request state, where `authenticate` finds it;
- rate-limits public keys per key and per client address (`overture.auth.ratelimit`): 429 with
  `Retry-After`, still unread;
- answers 413 naming the limit when `Content-Length` is over it, and otherwise counts a body sent
  without a length (chunked) while the route reads it, stopping at the first chunk over the limit:
  an oversize body is never held in memory.

Starlette's own `RequestBodyLimitMiddleware` caps bodies but answers in plain text, without the
limit, and knows nothing of keys. Routes without a key (the dashboard's cookie session, health,
metrics, docs, seed 002's public API, which answers in its own envelope) keep only the size cap.
A route picks its class with `openapi_extra={"x-body-limit": "<class>"}` (shown in /openapi.json)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from overture.api.errors import error_response, overture_error_response
from overture.auth.deps import authenticate, cached_caller_of_token, caller_of_token, token_of_header
from overture.auth.ratelimit import rate_limiter
from overture.auth.service import Caller
from overture.config import Settings
from overture.db.context import AppContext
from overture.errors import OvertureError

#: Route classes and the setting that bounds each (`x-body-limit` in a route's openapi_extra).
BODY_CLASSES: dict[str, str] = {
    "default": "body_limit",
    "decision": "body_limit_decision",
    "events": "body_limit_events",
    "import": "body_limit_import",
}
#: Any request made with a public key is held to the events limit, whatever its route's class.
PUBLIC_CLASS = "events"


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without a length grows past its limit: FastAPI lets an
    HTTPException out of its body reading, and the app's handler answers it in the envelope."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def too_large_message(limit: int) -> str:
    return f"the request body is larger than this operation accepts ({_size(limit)})"


def _size(limit: int) -> str:
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if limit >= factor and limit % factor == 0:
            return f"{limit // factor} {unit}, {limit:,} bytes"
    return f"{limit:,} bytes"


@dataclass(frozen=True, slots=True)
class Rule:
    """What a route needs before its body is read."""

    needs_key: bool
    limit: int
    public_limit: int


#: Paths a request names that no route serves (404, 405): no key to check, the default cap.
_UNROUTED = "default"
#: How many (method, path) classifications are remembered; past it the memory starts over.
MAX_REMEMBERED = 8192


class RequestLimits:
    """Pure ASGI middleware: classifies each request by its route (one dict lookup once its path
    was seen), then checks the key and the declared length before anything reads the body."""

    def __init__(self, app: ASGIApp, routes_of: FastAPI, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx
        limiter = rate_limiter(ctx)
        self._limiter = limiter if limiter.enabled else None
        self._routes_of = routes_of
        self._table: list[tuple[re.Pattern[str], frozenset[str], Rule]] | None = None
        self._default: Rule | None = None
        self._seen: dict[tuple[str, str], Rule] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self._table is None:
                self._build()  # at startup: building every route's context costs ~0.5 s once
            await self.app(scope, receive, send)
            return
        rule = self._seen.get((scope["method"], scope["path"]))
        if rule is None:
            rule = self._classify(scope["method"], scope["path"])
        authorization = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
        limit = rule.limit
        if rule.needs_key:
            state = scope.setdefault("state", {})
            caller = state.get("caller")
            if caller is None:
                try:
                    caller = await self._caller(authorization)
                except OvertureError as exc:
                    await overture_error_response(exc)(scope, receive, send)
                    return
                state["caller"] = caller
            if caller.public:
                limit = rule.public_limit
                if self._limiter is not None:
                    client = scope.get("client")
                    refusal = self._limiter.check(caller.key_id, client[0] if client else None)
                    if refusal is not None:
                        answer = error_response(429, refusal.detail, "rate_limited")
                        answer.headers["Retry-After"] = str(refusal.retry_after)
                        await answer(scope, receive, send)
                        return
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1  # the server refuses a malformed length before we get here
            if declared > limit:
                await error_response(413, too_large_message(limit), "too_large")(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server delivers no more than declared
            return
        await self._counted(scope, receive, send, limit)

    async def _caller(self, authorization: bytes | None) -> Caller:
        token = token_of_header(authorization.decode("latin-1") if authorization is not None else None)
        caller = cached_caller_of_token(self.ctx, token)
        if caller is None:  # a cache miss (or a due revocation check) reads the database
            caller = await run_in_threadpool(caller_of_token, self.ctx, token)
        return caller

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await error_response(413, str(exc.detail), "too_large")(scope, receive, send)

    def _build(self) -> None:
        self._table, self._default = build_rules(self._routes_of, self.ctx.settings)

    def _classify(self, method: str, path: str) -> Rule:
        """The first route serving `method` on `path`, in routing order (the rules are built on the
        first request, when every router is mounted)."""
        if self._table is None:
            self._build()
        assert self._table is not None and self._default is not None
        rule = next((r for regex, methods, r in self._table if method in methods and regex.match(path)), None)
        if len(self._seen) >= MAX_REMEMBERED:
            self._seen.clear()
        self._seen[(method, path)] = rule = rule or self._default
        return rule


def _reaches(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return dependant.call is call or any(_reaches(d, call) for d in dependant.dependencies)


def _route_class(route: RouteContext) -> tuple[bool, str]:
    extra = getattr(route, "openapi_extra", None) or {}
    dependant = getattr(route, "dependant", None)
    needs_key = bool(extra.get("security")) or (dependant is not None and _reaches(dependant, authenticate))
    body_class = extra.get("x-body-limit", "default")
    if body_class not in BODY_CLASSES:
        raise ValueError(f"{route.path}: unknown x-body-limit {body_class!r}; known: {sorted(BODY_CLASSES)}")
    return needs_key, body_class


def limit_of(settings: Settings, body_class: str) -> int:
    return int(getattr(settings, BODY_CLASSES[body_class]))


def build_rules(
    app: FastAPI, settings: Settings
) -> tuple[list[tuple[re.Pattern[str], frozenset[str], Rule]], Rule]:
    """Every route of `app`, in routing order, with its rule; and the rule of unrouted requests. A
    plain Starlette route in front of a documented FastAPI route (register, experience candidates)
    takes its documented twin's class."""
    routes = [r for r in iter_route_contexts(app.routes) if getattr(r, "path_regex", None) is not None]
    classes: dict[tuple[str, str], tuple[bool, str]] = {}
    for route in routes:
        if isinstance(route.original_route, APIRoute):
            for method in route.methods or ():
                classes.setdefault((str(route.path), method), _route_class(route))
    public_limit = limit_of(settings, PUBLIC_CLASS)
    table = []
    for route in routes:
        methods = frozenset(route.methods or ())
        found = [classes[(str(route.path), m)] for m in methods if (str(route.path), m) in classes]
        needs_key, body_class = found[0] if found else (False, _UNROUTED)
        limit = limit_of(settings, body_class)
        table.append((route.path_regex, methods, Rule(needs_key, limit, min(limit, public_limit))))
    default = limit_of(settings, _UNROUTED)
    return table, Rule(False, default, min(default, public_limit))


def install(app: FastAPI, ctx: AppContext) -> None:
    """The middleware on `app` (install it before the observability middleware, so that its 401 and
    413 answers carry a request id and are counted)."""
    app.add_middleware(RequestLimits, routes_of=app, ctx=ctx)
