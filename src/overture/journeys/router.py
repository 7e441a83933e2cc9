"""HTTP: the journeys API of seed 001 under /api/v1/workspaces/{id}/journeys (plus drain and members)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from overture.auth.deps import DbSession, check_workspace_path, require
from overture.auth.service import Caller
from overture.journeys import service
from overture.journeys.lifecycle import Action, RunTrigger
from overture.journeys.schemas import (
    JourneyCreate,
    JourneyRead,
    JourneyUpdate,
    MemberRead,
    RunRead,
    StatsRead,
    StatusOnly,
    ValidationResult,
)

router = APIRouter(
    prefix="/api/v1/workspaces/{id}/journeys",
    tags=["journeys"],
    dependencies=[Depends(check_workspace_path)],
)
Reader = Annotated[Caller, Depends(require("journeys:read"))]
Writer = Annotated[Caller, Depends(require("journeys:write"))]
#: Stats are analytics (the scope table says so): a reporting key needs no access to definitions.
Analyst = Annotated[Caller, Depends(require("analytics:read"))]


@router.get("", response_model=list[JourneyRead], summary="List all orchestrations")
def list_journeys(id: str, caller: Reader, db: DbSession) -> object:
    return service.list_journeys(db)


@router.post("", status_code=201, response_model=JourneyRead, summary="Create an orchestration")
def create_journey(id: str, body: JourneyCreate, caller: Writer, db: DbSession) -> object:
    return service.create_journey(db, caller.key_id, body)


@router.get("/{journeyId}", response_model=JourneyRead, summary="Get an orchestration")
def get_journey(id: str, journeyId: str, caller: Reader, db: DbSession) -> object:
    return service.get_journey(db, journeyId)


@router.put("/{journeyId}", response_model=JourneyRead, summary="Update an orchestration")
def update_journey(id: str, journeyId: str, body: JourneyUpdate, caller: Writer, db: DbSession) -> object:
    """Fields sent replace the stored ones. On an active journey the change takes effect at the next
    run; members standing on a tile the change removed then leave with reason `tile_removed`."""
    return service.update_journey(db, journeyId, body)


@router.delete("/{journeyId}", response_model=StatusOnly, summary="Delete an orchestration")
def delete_journey(id: str, journeyId: str, caller: Writer, db: DbSession) -> object:
    """Active (and draining) orchestrations must be paused first (409)."""
    service.delete_journey(db, journeyId)
    return {"status": "deleted"}


@router.post("/{journeyId}/validate", response_model=ValidationResult, summary="Validate orchestration DAG")
def validate_journey(id: str, journeyId: str, caller: Reader, db: DbSession) -> object:
    errors = service.validation_errors(db, service.get_journey(db, journeyId))
    return {"valid": not errors, "errors": errors}


def _lifecycle(action: Action, summary: str, doc: str) -> None:
    def endpoint(id: str, journeyId: str, caller: Writer, db: DbSession) -> object:
        return service.change_status(db, journeyId, action)

    endpoint.__name__ = f"{action}_journey"
    endpoint.__doc__ = doc
    router.add_api_route(
        f"/{{journeyId}}/{action}", endpoint, methods=["POST"], response_model=JourneyRead, summary=summary
    )


_lifecycle(
    Action.ACTIVATE,
    "Activate an orchestration",
    "draft (or error) -> active. The orchestration must pass validation (else 422 with the errors).",
)
_lifecycle(
    Action.PAUSE,
    "Pause an orchestration",
    "active (or draining) -> paused. Members stay on their tiles; no evaluation runs.",
)
_lifecycle(Action.RESUME, "Resume an orchestration", "paused -> active.")
_lifecycle(
    Action.DRAIN,
    "Drain an orchestration",
    "active (or paused) -> draining: nobody new enters, members already in finish their path; the "
    "first run that ends with no active member archives the orchestration. (Not in seed 001.)",
)


@router.post("/{journeyId}/trigger", response_model=RunRead, status_code=201, summary="Trigger evaluation")
def trigger(id: str, journeyId: str, caller: Writer, db: DbSession, response: Response) -> object:
    """Creates a run (201) that a worker executes; while a run of this orchestration is pending or
    running, returns that run instead (200)."""
    run, created = service.trigger_run(db, journeyId, RunTrigger.MANUAL)
    if not created:
        response.status_code = 200
    return run


@router.get("/{journeyId}/runs", response_model=list[RunRead], summary="List runs")
def list_runs(id: str, journeyId: str, caller: Reader, db: DbSession) -> object:
    """The last 50 runs, newest first."""
    return service.list_runs(db, journeyId)


@router.get("/{journeyId}/runs/{runId}", response_model=RunRead, summary="Get a run")
def get_run(id: str, journeyId: str, runId: str, caller: Reader, db: DbSession) -> object:
    return service.get_run(db, journeyId, runId)


@router.post("/{journeyId}/runs/{runId}/cancel", response_model=StatusOnly, summary="Cancel a run")
def cancel_run(id: str, journeyId: str, runId: str, caller: Writer, db: DbSession) -> object:
    """A running run stops before its next step; a finished run cannot be cancelled (409)."""
    service.cancel_run(db, journeyId, runId)
    return {"status": "cancelled"}


@router.get("/{journeyId}/stats", response_model=StatsRead, summary="Get orchestration stats")
def get_stats(id: str, journeyId: str, caller: Analyst, db: DbSession) -> object:
    """Member counts by tile (where each member stands or finished) and in total."""
    return service.stats(db, journeyId)


@router.get("/{journeyId}/members/{memberId}", response_model=MemberRead, summary="Get a member's path")
def get_member(id: str, journeyId: str, memberId: str, caller: Reader, db: DbSession) -> object:
    """The member's status and every tile it passed, with timestamps (not in seed 001)."""
    return service.member_path(db, journeyId, memberId)
