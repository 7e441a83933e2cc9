"""Destinations (with their test button) and deliveries (outbox messages by state, last errors,
possible duplicates), read through the delivery service and `overture.runtime.deliveries`."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from overture.delivery import service as destinations
from overture.errors import Invalid
from overture.runtime import deliveries
from overture.ui.web import Ctx, Poster, User, render, unit

router = APIRouter()
NAV = [
    ("Destinations", "/destinations", "destinations:read"),
    ("Deliveries", "/deliveries", "destinations:read"),
]
PAGE = 100


@router.get("/destinations", response_class=HTMLResponse)
def list_page(request: Request, ctx: Ctx, user: User) -> HTMLResponse:
    user.caller.require("destinations:read")
    with unit(ctx, user) as session:
        rows = [destinations.to_read(d) for d in destinations.list_destinations(session)]
        sends = deliveries.summary(session, ctx.clock.now() - timedelta(hours=24))
    return render(request, "destinations.html", destinations=rows, failed=sends.failed_by_destination)


@router.post("/destinations/{destination_id}/test", response_class=HTMLResponse)
def test(request: Request, ctx: Ctx, user: Poster, destination_id: str) -> HTMLResponse:
    """One test message through the real adapter; an unreachable target is an outcome, not an error."""
    user.caller.require("destinations:write")
    outcome = destinations.test_destination(ctx, user.caller.workspace_id, destination_id, None)
    return render(request, "_test_outcome.html", outcome=outcome)


@router.get("/deliveries", response_class=HTMLResponse)
def deliveries_page(
    request: Request, ctx: Ctx, user: User, status: str | None = None, duplicates: bool = False
) -> HTMLResponse:
    user.caller.require("destinations:read")
    if status is not None and status not in deliveries.STATES:
        raise Invalid(f"status must be one of {', '.join(deliveries.STATES)}", field="status")
    with unit(ctx, user) as session:
        names = {d.id: d.name for d in destinations.list_destinations(session)}
        counts = deliveries.summary(session, ctx.clock.now() - timedelta(days=3650))
        messages = deliveries.list_messages(
            session, status=status, possible_duplicate=True if duplicates else None, limit=PAGE
        )
    return render(
        request,
        "deliveries.html",
        counts=counts,
        messages=messages,
        names=names,
        status=status,
        duplicates=duplicates,
        states=deliveries.STATES,
    )
