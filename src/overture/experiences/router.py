"""HTTP: experience orchestration at the seed's own paths (`/api/experience/...`). The caller's key
names the workspace; `campaigns:read` / `campaigns:write` scopes; events also take public keys."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.routing import Route

from overture.auth.deps import CurrentCaller, DbSession, authenticate, get_ctx, require
from overture.auth.service import Caller
from overture.core.encode import isoformat_z
from overture.db.context import AppContext
from overture.errors import Forbidden
from overture.experiences import decisions as decision_tables
from overture.experiences import events, priorities, providers, service, templates
from overture.experiences.schemas import (
    AuthCreateBody,
    AuthRead,
    CampaignPriorityBody,
    CandidateRead,
    DecideBody,
    DecisionRead,
    EventsBody,
    ExperienceCreateBody,
    ExperienceRead,
    ExperienceUpdateBody,
    GroupCreateBody,
    GroupRead,
    GroupUpdateBody,
    ImportBody,
    PrioritizationCreateBody,
    PrioritizationRead,
    PrioritizationUpdateBody,
    TemplateCreateBody,
    TemplateRead,
    TemplateUpdateBody,
)

# Validation errors name nested paths as the seed's clients read them
# (`group.stages[1].experiences[0].vehicle.providerSlug`): the app's one error envelope does.
router = APIRouter(prefix="/api/experience", tags=["experiences"])
Read = Annotated[Caller, Depends(require("campaigns:read"))]
Write = Annotated[Caller, Depends(require("campaigns:write"))]
Ctx = Annotated[AppContext, Depends(get_ctx)]
Flag = Annotated[bool, Query()]


def _events_caller(caller: CurrentCaller) -> Caller:
    """Public keys (`events:write`) may send events; so may a private key that writes campaigns."""
    if caller.has("events:write") or caller.has("campaigns:write"):
        return caller
    raise Forbidden("this key lacks the 'events:write' scope", details={"required_scope": "events:write"})


def _decide_caller(caller: CurrentCaller) -> Caller:
    if caller.has("decisions:write") or caller.has("campaigns:read"):
        return caller
    raise Forbidden(
        "this key lacks the 'decisions:write' scope", details={"required_scope": "decisions:write"}
    )


EventsCaller = Annotated[Caller, Depends(_events_caller)]
DecideCaller = Annotated[Caller, Depends(_decide_caller)]


# -- groups --------------------------------------------------------------------------------------------
@router.post("/group", status_code=201, response_model=GroupRead)
def create_group(body: GroupCreateBody, caller: Write, db: DbSession) -> object:
    """A campaign or stage, with nested `stages` and `experiences`, in one transaction."""
    return service.group_read(db, service.create_group(db, body.group))


@router.get("/group", response_model=list[GroupRead])
def list_groups(
    caller: Read,
    db: DbSession,
    deleted: Flag = False,
    skip_child_groups: Flag = False,
    skip_child_experiences: Flag = True,
) -> object:
    """Top-level groups (campaigns)."""
    return service.list_groups(
        db,
        deleted=deleted,
        skip_child_groups=skip_child_groups,
        skip_child_experiences=skip_child_experiences,
    )


@router.post("/group/priority", response_model=PrioritizationRead)
def set_campaign_priority(body: CampaignPriorityBody, caller: Write, db: DbSession) -> object:
    """Set the account-level campaign ordering (the `account_priority` record)."""
    return priorities.prioritization_read(priorities.set_account_priority(db, body.entries))


@router.get("/group/{group_id}", response_model=GroupRead)
def get_group(
    group_id: str,
    caller: Read,
    db: DbSession,
    deleted: Flag = False,
    skip_child_groups: Flag = False,
    skip_child_experiences: Flag = False,
) -> object:
    """One group with its stages and experiences (a deleted one only with `deleted=true`)."""
    group = service.get_group(db, group_id, deleted=deleted)
    return service.group_read(
        db,
        group,
        deleted=deleted,
        skip_child_groups=skip_child_groups,
        skip_child_experiences=skip_child_experiences,
    )


@router.patch("/group/{group_id}", response_model=GroupRead)
def update_group(group_id: str, body: GroupUpdateBody, caller: Write, db: DbSession) -> object:
    """Change a group; for a stage, `experiences` sets its members in order and `detach` orphans some."""
    return service.group_read(db, service.update_group(db, group_id, body.group))


@router.delete("/group/{group_id}", status_code=204)
def delete_group(group_id: str, caller: Write, db: DbSession) -> Response:
    """Soft delete: a campaign's stages go with it; their experiences become orphans."""
    service.delete_group(db, group_id)
    return Response(status_code=204)


# -- prioritization -------------------------------------------------------------------------------------
@router.post("/prioritization", status_code=201, response_model=PrioritizationRead)
def create_prioritization(body: PrioritizationCreateBody, caller: Write, db: DbSession) -> object:
    return priorities.prioritization_read(priorities.create_prioritization(db, body.prioritization))


@router.get("/prioritization", response_model=list[PrioritizationRead])
def list_prioritizations(caller: Read, db: DbSession) -> object:
    return [priorities.prioritization_read(p) for p in priorities.list_prioritizations(db)]


@router.get("/prioritization/{prioritization_id}", response_model=PrioritizationRead)
def get_prioritization(prioritization_id: str, caller: Read, db: DbSession) -> object:
    """One record; `account_priority` is the campaign ordering."""
    return priorities.prioritization_read(priorities.get_prioritization(db, prioritization_id))


@router.patch("/prioritization/{prioritization_id}", response_model=PrioritizationRead)
def update_prioritization(
    prioritization_id: str, body: PrioritizationUpdateBody, caller: Write, db: DbSession
) -> object:
    return priorities.prioritization_read(
        priorities.update_prioritization(db, prioritization_id, body.prioritization)
    )


@router.delete("/prioritization/{prioritization_id}", status_code=204)
def delete_prioritization(prioritization_id: str, caller: Write, db: DbSession) -> Response:
    priorities.delete_prioritization(db, prioritization_id)
    return Response(status_code=204)


# -- templates ---------------------------------------------------------------------------------------------
@router.post("/template", status_code=201, response_model=TemplateRead)
def create_template(body: TemplateCreateBody, caller: Write, db: DbSession) -> object:
    return templates.template_read(templates.create_template(db, body.template))


@router.get("/template", response_model=list[TemplateRead])
def list_templates(caller: Read, db: DbSession) -> object:
    return [templates.template_read(t) for t in templates.list_templates(db)]


@router.get("/template/{template_id}", response_model=TemplateRead)
def get_template(template_id: str, caller: Read, db: DbSession) -> object:
    return templates.template_read(templates.get_template(db, template_id))


@router.patch("/template/{template_id}", response_model=TemplateRead)
def update_template(template_id: str, body: TemplateUpdateBody, caller: Write, db: DbSession) -> object:
    return templates.template_read(templates.update_template(db, template_id, body.template))


@router.delete("/template/{template_id}", status_code=204)
def delete_template(template_id: str, caller: Write, db: DbSession) -> Response:
    templates.delete_template(db, template_id)
    return Response(status_code=204)


# -- provider credentials and import -------------------------------------------------------------------
@router.post("/auth", status_code=201, response_model=AuthRead)
def create_auth(body: AuthCreateBody, caller: Write, db: DbSession) -> object:
    """A provider credential (`auth_id`): its feed URL and bearer token (write-only, never returned)."""
    return providers.auth_read(providers.create_auth(db, body.auth))


@router.get("/auth", response_model=list[AuthRead])
def list_auths(caller: Read, db: DbSession) -> object:
    return [providers.auth_read(a) for a in providers.list_auths(db)]


@router.delete("/auth/{auth_id}", status_code=204)
def delete_auth(auth_id: str, caller: Write, db: DbSession) -> Response:
    providers.delete_auth(db, auth_id)
    return Response(status_code=204)


@router.get("/import")
def list_importable(
    caller: Read,
    db: DbSession,
    provider_slug: str | None = None,
    auth_id: str | None = None,
    include_existing: Flag = False,
    include_ended: Flag = True,
) -> list[dict[str, Any]]:
    """Campaigns the provider offers (both parameters required; 422 naming the missing one)."""
    return providers.importable(
        db, provider_slug, auth_id, include_existing=include_existing, include_ended=include_ended
    )


@router.post("/import", response_model=list[ExperienceRead], openapi_extra={"x-body-limit": "import"})
def import_experiences(body: ImportBody, caller: Write, db: DbSession) -> object:
    """Import as draft orphans, idempotently by (provider, externalId)."""
    return [service.read_one(db, e) for e in providers.import_experiences(db, body)]


# -- events, candidates, decisions ----------------------------------------------------------------------
@router.post("/events", openapi_extra={"x-body-limit": "events"})
def record_events(body: EventsBody, caller: EventsCaller, db: DbSession) -> dict[str, int]:
    """Delivery, impression and conversion events into the event stream (`eventId`: counted once)."""
    return events.record(db, body.events, body.batch_id)


async def _candidates(request: Request) -> Response:
    """GET /candidate as a plain route (see `mount`): the same auth functions as every route, run on
    the event loop (keys are cached), the list from memory, no thread hop once warm."""
    ctx = get_ctx(request)
    caller = authenticate(request, ctx)
    caller.require("campaigns:read")
    vehicle = request.query_params.get("vehicle")
    channel = request.query_params.get("channel")
    cache = decision_tables.tables(ctx)
    table = cache.get(caller.workspace_id)
    if table is None:
        table = await run_in_threadpool(cache.load, caller.workspace_id)
    now = cache.now()
    view = table.cached_view(now, vehicle, channel)
    if view is None:
        view = await run_in_threadpool(table.view, ctx, now, vehicle, channel)
    return Response(
        view.body, media_type="application/json", headers={GENERATED_AT: isoformat_z(view.generated_at)}
    )


GENERATED_AT = "X-Generated-At"


@router.get("/candidate", responses={200: {"model": list[CandidateRead]}})
async def candidates(
    request: Request, caller: Read, vehicle: str | None = None, channel: str | None = None
) -> Response:
    """Published experiences in their date window for this vehicle (provider id or slug) and channel,
    ranked by campaign, stage and experience weight, with 6-hour metrics. A JSON array; each candidate's
    `generatedAt` (and the `X-Generated-At` header) says when the list was computed."""
    return await _candidates(request)


@router.post("/decide", responses={200: {"model": DecisionRead}}, openapi_extra={"x-body-limit": "decision"})
def decide(body: DecideBody, caller: DecideCaller, ctx: Ctx) -> Response:
    """Rank the candidates for one user and say why each other one lost (see docs/experiences.md)."""
    answer = decision_tables.decide_for(ctx, caller.workspace_id, body)
    return Response(orjson.dumps(answer), media_type="application/json")


# -- experiences (the `/{id}` routes come last: they would shadow the paths above) -----------------------
@router.post("", status_code=201, response_model=ExperienceRead)
def create_experience(body: ExperienceCreateBody, caller: Write, db: DbSession) -> object:
    return service.read_one(db, service.create_experience(db, body.experience))


@router.get("", response_model=list[ExperienceRead])
def list_experiences(
    caller: Read, db: DbSession, deleted: Flag = False, provider: str | None = None
) -> object:
    return service.list_experiences(db, deleted=deleted, provider=provider)


@router.get("/orphan", response_model=list[ExperienceRead])
def list_orphans(caller: Read, db: DbSession, deleted: Flag = False) -> object:
    return service.list_orphans(db, deleted=deleted)


@router.get("/{experience_id}", response_model=ExperienceRead)
def get_experience(experience_id: str, caller: Read, db: DbSession, deleted: Flag = False) -> object:
    return service.read_one(db, service.get_experience(db, experience_id, deleted=deleted))


@router.patch("/{experience_id}", response_model=ExperienceRead)
def update_experience(
    experience_id: str,
    body: ExperienceUpdateBody,
    caller: Write,
    db: DbSession,
    update_state: Flag = False,
    clean_override: Flag = False,
) -> object:
    """Change an experience; a `state` change needs `update_state=true`; `detailOverride` is
    deep-merged unless `clean_override=true`."""
    e = service.update_experience(
        db, experience_id, body.experience, update_state=update_state, clean_override=clean_override
    )
    return service.read_one(db, e)


@router.delete("/{experience_id}", status_code=204)
def delete_experience(experience_id: str, caller: Write, db: DbSession) -> Response:
    """Soft delete, with its generated segments."""
    service.delete_experience(db, experience_id)
    return Response(status_code=204)


def mount(app: FastAPI) -> None:
    """Mount the router, with GET /candidate also as a plain Starlette route at the front of the
    route list: FastAPI's parameter resolution and the scan of every route before it would cost
    more than serving the list. The FastAPI route behind it (same path, never reached) is what
    /openapi.json documents."""
    app.include_router(router)
    app.router.routes.insert(0, Route(f"{router.prefix}/candidate", _candidates, methods=["GET"]))
