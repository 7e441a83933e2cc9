"""HTTP for seed 004: campaigns, placements, audiences, paywalls, experiment results, events and the
register(placement) decision. Mounted twice, under `/v1/projects/{id}` (the seed's headings) and
`/api/v1/projects/{id}` (its curl lines); `{id}` is the workspace id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.routing import BaseRoute, Route

from overture.auth.deps import DbSession, authenticate, check_workspace_path, get_ctx, require
from overture.auth.service import Caller
from overture.data.schemas import BatchIdText
from overture.errors import Invalid, TooLarge
from overture.metrics import count_decision_answer
from overture.paywalls import service, service_experiments, service_register
from overture.paywalls.schemas import (
    MAX_EVENTS_PER_BATCH,
    AudienceCreate,
    AudienceRead,
    AudienceUpdate,
    CampaignCreate,
    CampaignDetail,
    CampaignRead,
    CampaignStatus,
    CampaignUpdate,
    EventIn,
    EventsAccepted,
    ExperimentResults,
    PaywallCreate,
    PaywallRead,
    PaywallUpdate,
    PlacementCreate,
    PlacementRead,
    PlacementUpdate,
    RegisterIn,
    RegisterOut,
    ReorderIn,
)
from overture.schemas import JsonCheck

PREFIXES = ("/v1/projects/{id}", "/api/v1/projects/{id}")

router = APIRouter(tags=["paywalls"], dependencies=[Depends(check_workspace_path)])
Reader = Annotated[Caller, Depends(require("campaigns:read"))]
Writer = Annotated[Caller, Depends(require("campaigns:write"))]
Analyst = Annotated[Caller, Depends(require("analytics:read"))]
EventWriter = Annotated[Caller, Depends(require("events:write"))]


# -- campaigns --------------------------------------------------------------------------------------


@router.post("/campaigns", status_code=201, response_model=CampaignRead)
def create_campaign(id: str, body: CampaignCreate, caller: Writer, db: DbSession) -> object:
    """Create a campaign (status defaults to active)."""
    return service.create_campaign(db, body)


@router.get("/campaigns", response_model=list[CampaignRead])
def list_campaigns(id: str, caller: Reader, db: DbSession, status: CampaignStatus | None = None) -> object:
    """Every campaign of the project, oldest first (optionally only one status)."""
    return service.list_campaigns(db, status)


@router.get("/campaigns/{cid}", response_model=CampaignDetail)
def get_campaign(id: str, cid: str, caller: Reader, db: DbSession) -> object:
    """The campaign with its placements and its audiences in priority order."""
    return service.campaign_detail(db, cid)


@router.put("/campaigns/{cid}", response_model=CampaignRead)
def update_campaign(id: str, cid: str, body: CampaignUpdate, caller: Writer, db: DbSession) -> object:
    """Rename or change status. Archiving frees the campaign's placement names."""
    return service.update_campaign(db, cid, body)


@router.delete("/campaigns/{cid}", status_code=204)
def delete_campaign(id: str, cid: str, caller: Writer, db: DbSession) -> None:
    """Delete the campaign with its placements, audiences and experiments."""
    service.delete_campaign(db, cid)


# -- placements -------------------------------------------------------------------------------------


@router.post("/campaigns/{cid}/placements", status_code=201, response_model=PlacementRead)
def create_placement(id: str, cid: str, body: PlacementCreate, caller: Writer, db: DbSession) -> object:
    """Add a placement; its name may belong to only one non-archived campaign (409 otherwise)."""
    return service.create_placement(db, cid, body)


@router.get("/campaigns/{cid}/placements", response_model=list[PlacementRead])
def list_placements(id: str, cid: str, caller: Reader, db: DbSession) -> object:
    return service.list_placements(db, cid)


@router.get("/campaigns/{cid}/placements/{plid}", response_model=PlacementRead)
def get_placement(id: str, cid: str, plid: str, caller: Reader, db: DbSession) -> object:
    return service.get_placement(db, cid, plid)


@router.put("/campaigns/{cid}/placements/{plid}", response_model=PlacementRead)
def update_placement(
    id: str, cid: str, plid: str, body: PlacementUpdate, caller: Writer, db: DbSession
) -> object:
    """Pause or resume (status), rename, or change type."""
    return service.update_placement(db, cid, plid, body)


@router.delete("/campaigns/{cid}/placements/{plid}", status_code=204)
def delete_placement(id: str, cid: str, plid: str, caller: Writer, db: DbSession) -> None:
    service.delete_placement(db, cid, plid)


# -- audiences --------------------------------------------------------------------------------------


@router.post("/campaigns/{cid}/audiences", status_code=201, response_model=AudienceRead)
def create_audience(id: str, cid: str, body: AudienceCreate, caller: Writer, db: DbSession) -> object:
    """Add an audience at the bottom of the campaign's order, with its inline experiment if given
    (created in the same transaction)."""
    audience = service.create_audience(db, cid, body)
    return service.audience_views(db, [audience])[0]


@router.get("/campaigns/{cid}/audiences", response_model=list[AudienceRead])
def list_audiences(id: str, cid: str, caller: Reader, db: DbSession) -> object:
    """The campaign's audiences in evaluation order."""
    return service.audience_views(db, service.list_audiences(db, cid))


# Declared before /audiences/{aid} so that "reorder" is not taken for an audience id.
@router.put("/campaigns/{cid}/audiences/reorder", response_model=list[AudienceRead])
def reorder_audiences(id: str, cid: str, body: ReorderIn, caller: Writer, db: DbSession) -> object:
    """Set the evaluation order; `order` must list every audience of the campaign exactly once."""
    return service.audience_views(db, service.reorder_audiences(db, cid, body.order))


@router.get("/campaigns/{cid}/audiences/{aid}", response_model=AudienceRead)
def get_audience(id: str, cid: str, aid: str, caller: Reader, db: DbSession) -> object:
    return service.audience_views(db, [service.get_audience(db, cid, aid)])[0]


@router.put("/campaigns/{cid}/audiences/{aid}", response_model=AudienceRead)
def update_audience(
    id: str, cid: str, aid: str, body: AudienceUpdate, caller: Writer, db: DbSession
) -> object:
    """Change any field; `experiment: null` removes the experiment and its results."""
    audience = service.update_audience(db, cid, aid, body)
    return service.audience_views(db, [audience])[0]


@router.delete("/campaigns/{cid}/audiences/{aid}", status_code=204)
def delete_audience(id: str, cid: str, aid: str, caller: Writer, db: DbSession) -> None:
    service.delete_audience(db, cid, aid)


@router.get("/campaigns/{cid}/audiences/{aid}/experiment", response_model=ExperimentResults)
def experiment_results(id: str, cid: str, aid: str, caller: Analyst, db: DbSession) -> object:
    """Per variant: users exposed, conversions, conversion rate, revenue per user, the chance to beat
    the control (first variant) with credible intervals; and the experiment's state."""
    return service_experiments.experiment_results(db, cid, aid)


# -- paywalls ---------------------------------------------------------------------------------------


@router.post("/paywalls", status_code=201, response_model=PaywallRead)
def create_paywall(id: str, body: PaywallCreate, caller: Writer, db: DbSession) -> object:
    """Create a paywall; `id` may be chosen by the client (unique in the project, 409 otherwise)."""
    return service.create_paywall(db, body)


@router.get("/paywalls", response_model=list[PaywallRead])
def list_paywalls(id: str, caller: Reader, db: DbSession) -> object:
    return service.list_paywalls(db)


@router.get("/paywalls/{pid}", response_model=PaywallRead)
def get_paywall(id: str, pid: str, caller: Reader, db: DbSession) -> object:
    return service.get_paywall(db, pid)


@router.put("/paywalls/{pid}", response_model=PaywallRead)
def update_paywall(id: str, pid: str, body: PaywallUpdate, caller: Writer, db: DbSession) -> object:
    return service.update_paywall(db, pid, body)


@router.delete("/paywalls/{pid}", status_code=204)
def delete_paywall(id: str, pid: str, caller: Writer, db: DbSession) -> None:
    """Delete a paywall no audience or experiment variant uses (409 otherwise)."""
    service.delete_paywall(db, pid)


# -- events -----------------------------------------------------------------------------------------

_EVENTS = TypeAdapter(list[EventIn])
_BATCH_ID = TypeAdapter(BatchIdText)
_EVENTS_DESCRIPTION = (
    "A batch of events {user_id, event, event_id?, timestamp?, properties?}: a JSON array, or "
    '{"events": [...], "batch_id"?: "..."} (an event without event_id then gets "<batch_id>:<index>"). '
    f"At most {MAX_EVENTS_PER_BATCH} per request (413 above that)."
)
_EVENTS_SHAPE = 'events: expected a JSON array of events or {"events": [...], "batch_id"?: "..."}'


def _parse_events(raw: Any) -> tuple[list[EventIn], str | None]:
    batch_id = None
    if isinstance(raw, dict):
        if "events" not in raw or not set(raw) <= {"events", "batch_id"}:
            raise Invalid(_EVENTS_SHAPE, field="events")
        if raw.get("batch_id") is not None:
            try:
                batch_id = _BATCH_ID.validate_python(raw["batch_id"])
            except ValidationError as exc:
                raise RequestValidationError([{**e, "loc": ("batch_id", *e["loc"])} for e in exc.errors()])
        raw = raw["events"]
    if not isinstance(raw, list):
        raise Invalid(_EVENTS_SHAPE, field="events")
    if len(raw) > MAX_EVENTS_PER_BATCH:
        raise TooLarge(f"events: at most {MAX_EVENTS_PER_BATCH} per request, got {len(raw)}", field="events")
    try:
        return _EVENTS.validate_python(raw), batch_id
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("events", *e["loc"])} for e in exc.errors()])


# The body is parsed by _parse_events (413 before validating a too-long batch); the document still
# gives its exact shape, so clients and the fuzzer (tests/test_fuzz.py) can send valid batches.
_EVENT_LIST = {**_EVENTS.json_schema(), "maxItems": MAX_EVENTS_PER_BATCH}
_EVENT_DEFS = _EVENT_LIST.pop("$defs")
_EVENTS_BODY = {
    "anyOf": [
        _EVENT_LIST,
        {
            "type": "object",
            "properties": {
                "events": _EVENT_LIST,
                "batch_id": {"anyOf": [_BATCH_ID.json_schema(), {"type": "null"}]},
            },
            "required": ["events"],
            "additionalProperties": False,
        },
    ],
    "$defs": _EVENT_DEFS,
}


@router.post(
    "/events",
    response_model=EventsAccepted,
    openapi_extra={
        "x-body-limit": "events",
        "requestBody": {"content": {"application/json": {"schema": _EVENTS_BODY}}},
    },
)
def send_events(
    id: str,
    caller: EventWriter,
    db: DbSession,
    body: Annotated[Any, JsonCheck(max_bytes=None), Body(description=_EVENTS_DESCRIPTION)],
) -> object:
    """Store events in the event stream (public keys may call this). `transaction_complete` events,
    which carry `properties.revenue`, count as conversions of the experiment variants their user saw.
    An event whose `event_id` was seen before is stored and counted once (`duplicates`)."""
    events, batch_id = _parse_events(body)
    result = service_experiments.ingest_events(db, events, batch_id)
    return EventsAccepted(
        accepted=result.accepted, duplicates=result.duplicates, conversions=result.conversions
    )


# -- the decision -----------------------------------------------------------------------------------

decision_router = APIRouter(tags=["paywalls"])

# register takes the raw request and does its own parsing: FastAPI's parameter resolution (path,
# header, body and a sub-dependency) costs more per request than everything else register does.
# The OpenAPI document still describes the path parameter, the header and the body exactly.
_REGISTER_OPENAPI: dict[str, Any] = {
    "security": [{"bearer": []}],  # checked by decision_caller (and before the body is read)
    "x-body-limit": "decision",
    "parameters": [
        {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": "Workspace id",
        },
        {
            "name": "X-Workspace-ID",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Optional; must name the path's workspace",
        },
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": RegisterIn.model_json_schema()}},
    },
}


def decision_caller(request: Request) -> Caller:
    """The same checks as every other route (authenticate, check_workspace_path, scope), run on the
    event loop: keys are cached in memory, so this costs no thread hop and, once warm, no I/O."""
    caller = authenticate(request, get_ctx(request))
    check_workspace_path(request.path_params["id"], caller, request.headers.get("x-workspace-id"))
    caller.require("decisions:write")
    return caller


@decision_router.post(
    "/register",
    response_model=RegisterOut,
    responses={422: {"description": "Invalid body, or session_id missing for a once_per_session cap"}},
    openapi_extra=_REGISTER_OPENAPI,
)
async def register(request: Request) -> Response:
    """What the SDK's register(placement:) calls: which paywall, if any, this user sees now.
    Public (`pk_`) keys may call it; the answer never contains targeting rules."""
    caller = decision_caller(request)
    try:
        body = RegisterIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False))
    content = await service_register.register(get_ctx(request), caller.workspace_id, body)
    count_decision_answer("paywalls", content)
    return Response(content, media_type="application/json")


def mount(app: FastAPI) -> None:
    """Serve every paywall route under both prefixes.

    The decision path is served by plain Starlette routes at the very front of the application's
    route list: routes are matched in order (an included router costs a scan of everything
    registered before it, ~0.3 ms with ~150 routes), and FastAPI's per-request parameter resolution
    would cost more than the decision itself. `register` does its own parsing with the same models
    and the same auth functions. The FastAPI routes behind them (never reached: same path and
    method) are what /openapi.json documents."""
    for prefix in PREFIXES:
        app.include_router(router, prefix=prefix)
    fast: list[BaseRoute] = []
    documented = APIRouter()
    for prefix in PREFIXES:
        for route in decision_router.routes:
            assert isinstance(route, APIRoute)
            fast.append(
                Route(
                    prefix + route.path, route.endpoint, methods=sorted(route.methods or ()), name=route.name
                )
            )
            documented.add_api_route(
                prefix + route.path,
                route.endpoint,
                methods=sorted(route.methods or ()),
                response_model=route.response_model,
                responses=route.responses,
                tags=route.tags,
                summary=route.summary,
                description=route.description,
                name=route.name,
                openapi_extra=route.openapi_extra,
            )
    app.router.routes[0:0] = [*fast, *documented.routes]
