"""Broadcasts: list with authoring status and the last execution's state; one broadcast's execution
funnel, stored preflight checks and its template's proofs; preflight, publish, send-now and cancel
through the broadcasts service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from overture.broadcasts import service as broadcasts
from overture.broadcasts import views
from overture.broadcasts.models import COUNTS
from overture.broadcasts.states import ExecutionStatus
from overture.db.session import Session
from overture.ui.web import Ctx, Poster, User, render, unit

router = APIRouter()
NAV = [("Broadcasts", "/broadcasts", "campaigns:read")]

#: The write buttons: each calls one service function with the broadcast id.
ACTIONS: dict[str, Callable[[Session, str], object]] = {
    "preflight": broadcasts.run_preflight,
    "publish": broadcasts.publish,
    "send-now": broadcasts.send_now,
    "cancel": broadcasts.cancel,
}


@router.get("/broadcasts", response_class=HTMLResponse)
def list_page(request: Request, ctx: Ctx, user: User) -> HTMLResponse:
    user.caller.require("campaigns:read")
    with unit(ctx, user) as session:
        rows = [views.broadcast_read(session, b) for b in broadcasts.list_broadcasts(session)]
    return render(request, "broadcasts.html", broadcasts=rows)


def _view(session: Session, broadcast_id: str) -> dict[str, Any]:
    broadcast = views.broadcast_read(session, broadcasts.get_broadcast(session, broadcast_id))
    latest = broadcast.latest_execution
    funnel = [(name, getattr(latest.counts, name)) for name in COUNTS] if latest is not None else []
    proofs = (
        [views.proof_read(p) for p in broadcasts.list_proofs(session, broadcast.template_id)]
        if broadcast.template_id
        else []
    )
    return {
        "broadcast": broadcast,
        "latest": latest,
        "funnel": funnel,
        "proofs": proofs,
        "polling": latest is not None and latest.status == ExecutionStatus.RUNNING,
    }


@router.get("/broadcasts/{broadcast_id}", response_class=HTMLResponse)
@router.get("/broadcasts/{broadcast_id}/live", response_class=HTMLResponse)
def broadcast_page(request: Request, ctx: Ctx, user: User, broadcast_id: str) -> HTMLResponse:
    """The whole page, or (`/live`, polled while the execution runs) only its live section."""
    user.caller.require("campaigns:read")
    with unit(ctx, user) as session:
        view = _view(session, broadcast_id)
    live = request.url.path.endswith("/live")
    return render(request, "_broadcast_live.html" if live else "broadcast.html", **view)


@router.post("/broadcasts/{broadcast_id}/{action}", response_class=HTMLResponse)
def act(request: Request, ctx: Ctx, user: Poster, broadcast_id: str, action: str) -> HTMLResponse:
    user.caller.require("campaigns:write")
    step = ACTIONS.get(action)
    if step is None:
        return HTMLResponse("Not found", status_code=404)
    with unit(ctx, user, write=True) as session:
        step(session, broadcast_id)
    with unit(ctx, user) as session:
        view = _view(session, broadcast_id)
    return render(request, "_broadcast_live.html", **view)
