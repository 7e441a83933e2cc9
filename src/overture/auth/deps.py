"""FastAPI dependencies: the app context, the caller, scope checks and the request's unit of work.

Every route of a workspace-scoped surface uses `WorkspaceRouter`-style dependencies:
`authenticate` (401), `check_workspace_path` (404 for another workspace's path), `require(scope)` (403)
and `get_session` (one transaction per request, bound to the caller's workspace so every ORM query is
filtered to it by construction)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from overture.auth.service import Caller, KeyAuthenticator
from overture.db.context import AppContext
from overture.db.session import Session
from overture.errors import NotFound, Unauthorized

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _authenticator(ctx: AppContext) -> KeyAuthenticator:
    auth: KeyAuthenticator = ctx.service("authenticator", lambda c: KeyAuthenticator(c.sessions, c.clock))
    return auth


def caller_of_token(ctx: AppContext, token: str | None) -> Caller:
    """Resolve a key secret to its caller (cached; 401 for a bad or revoked key)."""
    return _authenticator(ctx).authenticate(token)


def cached_caller_of_token(ctx: AppContext, token: str | None) -> Caller | None:
    """The caller when resolving `token` needs no I/O (see `KeyAuthenticator.cached`), else None."""
    return _authenticator(ctx).cached(token)


def bearer_token(request: Request) -> str | None:
    return token_of_header(request.headers.get("authorization"))


def token_of_header(header: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header (None without one; 401 for another form)."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <key>'")
    return token.strip()


#: Declares the bearer scheme in OpenAPI on every route that authenticates (so `/docs` can
#: "Authorize"); the header itself is read by `bearer_token`, which words its own 401s.
BEARER = HTTPBearer(
    scheme_name="bearer",
    auto_error=False,
    description="An API key: `sk_…` (private, with scopes) or `pk_…` (public: register, events)",
)


def authenticate(
    request: Request,
    ctx: Annotated[AppContext, Depends(get_ctx)],
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> Caller:
    cached: Caller | None = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    caller = caller_of_token(ctx, bearer_token(request))
    request.state.caller = caller
    return caller


CurrentCaller = Annotated[Caller, Depends(authenticate)]


def check_workspace_path(
    id: str,
    caller: CurrentCaller,
    x_workspace_id: Annotated[
        str | None, Header(description="Optional; must name the path's workspace")
    ] = None,
) -> Caller:
    """A path naming another workspace answers 404, never 403: it does not confirm it exists."""
    if id != caller.workspace_id:
        raise NotFound("workspace not found")
    if x_workspace_id is not None and x_workspace_id != id:
        raise NotFound("workspace not found", field="X-Workspace-ID")
    return caller


def require(scope: str) -> Callable[[Caller], Caller]:
    """Dependency factory: the caller must hold `scope` (or `admin`); 403 otherwise."""

    def dependency(caller: CurrentCaller) -> Caller:
        caller.require(scope)
        return caller

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


def get_session(
    request: Request, caller: CurrentCaller, ctx: Annotated[AppContext, Depends(get_ctx)]
) -> Iterator[Session]:
    """The request's unit of work (`overture.db.engine.transaction`), bound to the caller's
    workspace. Writing requests take the SQLite write lock at BEGIN so concurrent writers queue."""
    with ctx.transaction(
        write=request.method not in READ_METHODS, workspace_id=caller.workspace_id
    ) as session:
        yield session


DbSession = Annotated[Session, Depends(get_session, scope="function")]
