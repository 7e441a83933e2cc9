"""HTTP: the public campaign API of seed 002 (`/public/v1/campaigns/{id}/summary|status|metrics`).

It renders its own envelopes and error codes (`{"success": false, "error": {"code", "message"}}`),
authentication and scope errors included, so it authenticates inside the handler instead of
through the app-wide dependencies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from overture.auth.deps import authenticate, get_ctx
from overture.broadcasts import public
from overture.broadcasts.public import PublicError
from overture.db.session import Session
from overture.errors import OvertureError

router = APIRouter(prefix="/public/v1/campaigns", tags=["public campaigns"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No key or a bad key (`JOURNEY_API.AUTH.UNAUTHENTICATED`)."},
    403: {"description": "The key lacks the scope (`JOURNEY_API.AUTH.INSUFFICIENT_SCOPE`)."},
    404: {"description": "No such campaign (`JOURNEY_API.PUBLIC.CAMPAIGNS.NOT_FOUND`)."},
    409: {"description": "Not a broadcast (`JOURNEY_API.PUBLIC.CAMPAIGNS.TYPE_UNSUPPORTED`)."},
    500: {
        "description": "Execution metadata contradicts itself "
        "(`JOURNEY_API.PUBLIC.CAMPAIGNS.STATUS_INCONSISTENT`)."
    },
}


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"success": False, "error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _respond(
    request: Request, scope: str, build: Callable[[Session], tuple[dict[str, Any], dict[str, str]]]
) -> JSONResponse:
    ctx = get_ctx(request)
    try:
        caller = authenticate(request, ctx)
    except OvertureError as exc:
        return _error(401, public.UNAUTHENTICATED, exc.message)
    if not caller.has(scope):
        return _error(403, public.INSUFFICIENT_SCOPE, f"This token lacks the '{scope}' scope.")
    try:
        with ctx.transaction(write=False, workspace_id=caller.workspace_id) as session:
            data, headers = build(session)
    except PublicError as exc:
        return _error(exc.status, exc.code, exc.message)
    return JSONResponse({"success": True, "data": data}, headers=headers)


@router.get("/{campaign_id}/summary", responses=_ERRORS)
def get_summary(campaign_id: str, request: Request) -> JSONResponse:
    """A redacted setup summary of a broadcast (scope `campaigns:read`): no sample records, internal
    state or caller-supplied headers."""
    return _respond(request, "campaigns:read", lambda s: (public.summary(s, campaign_id), {}))


@router.get("/{campaign_id}/status", responses=_ERRORS)
def get_status(campaign_id: str, request: Request) -> JSONResponse:
    """Schedule details and the latest execution (scope `campaigns:read`)."""
    return _respond(request, "campaigns:read", lambda s: (public.status(s, campaign_id), {}))


@router.get("/{campaign_id}/metrics", responses=_ERRORS)
def get_metrics(campaign_id: str, request: Request) -> JSONResponse:
    """Pipeline counts of the latest execution, zeros when it never ran (scope `analytics:read`).
    The basis is in headers: `X-Overture-Counts-Basis: latest_execution` and the execution's id in
    `X-Overture-Execution-Id` (absent when there is none)."""

    def build(session: Session) -> tuple[dict[str, Any], dict[str, str]]:
        data, latest = public.metrics(session, campaign_id)
        headers = {"X-Overture-Counts-Basis": "latest_execution"}
        if latest is not None:
            headers["X-Overture-Execution-Id"] = latest.id
        return data, headers

    return _respond(request, "analytics:read", build)
