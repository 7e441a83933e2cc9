"""Experience hierarchy use cases: campaigns and stages (groups) and experiences — create (nested, in
one transaction), read, list, update (move, detach, publish), soft delete.

Lifecycle side effects (generated segments, prioritization, export jobs) live in `publishing.py`.
Slightly over ~550 lines on purpose: groups and experiences share the move/detach helpers here."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from overture.campaigns.models import unregister
from overture.db.lookup import get_or_404
from overture.db.session import Session
from overture.errors import Invalid, NotFound
from overture.experiences import publishing
from overture.experiences.models import Experience, ExperienceGroup, Template
from overture.experiences.schemas import (
    DatesRead,
    ExperienceCreate,
    ExperienceRead,
    ExperienceUpdate,
    GroupCreate,
    GroupRead,
    GroupUpdate,
    SegmentsRead,
    StateRead,
    VehicleIn,
    VehicleRead,
)
from overture.experiences.states import LIFECYCLE, ExperienceStatus, GroupClass
from overture.segments.models import Segment

__all__ = [
    "create_experience",
    "create_group",
    "delete_experience",
    "delete_group",
    "experience_read",
    "get_experience",
    "get_group",
    "group_read",
    "list_experiences",
    "list_groups",
    "list_orphans",
    "update_experience",
    "update_group",
]

VEHICLE_FIELDS = tuple(VehicleIn.model_fields)


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(f"{field}: {message}", field=field)


# -- lookups -----------------------------------------------------------------------------------------
def get_group(session: Session, group_id: str, *, deleted: bool = False) -> ExperienceGroup:
    group = get_or_404(session, ExperienceGroup, group_id, what="group")
    if group.deleted_at is not None and not deleted:
        raise NotFound("group not found")
    return group


def get_experience(
    session: Session, experience_id: str, *, deleted: bool = False, lock: bool = False
) -> Experience:
    experience = get_or_404(session, Experience, experience_id, what="experience", lock=lock)
    if experience.deleted_at is not None and not deleted:
        raise NotFound("experience not found")
    return experience


def _live_group(session: Session, group_id: str, field: str) -> ExperienceGroup:
    group = session.get(ExperienceGroup, group_id)
    if group is None or group.deleted_at is not None or group.workspace_id != session.workspace_id:
        raise _invalid(field, f"group '{group_id}' not found")
    return group


def _stage(session: Session, stage_id: str, field: str) -> ExperienceGroup:
    group = _live_group(session, stage_id, field)
    if group.kind != GroupClass.STAGE:
        raise _invalid(field, f"'{stage_id}' is a campaign; experiences belong to stages")
    return group


def _check_segment(session: Session, segment_id: str, field: str) -> None:
    segment = session.get(Segment, segment_id)
    if segment is None or segment.deleted_at is not None or segment.workspace_id != session.workspace_id:
        raise _invalid(field, f"segment '{segment_id}' not found")


# -- reads -------------------------------------------------------------------------------------------
def _vehicle_read(e: Experience) -> VehicleRead:
    return VehicleRead(**{name: getattr(e, name) for name in VEHICLE_FIELDS})


def experience_read(e: Experience, groups: dict[str, ExperienceGroup]) -> ExperienceRead:
    ancestors: list[str] = []
    stage = groups.get(e.parent_id) if e.parent_id else None
    if stage is not None:
        ancestors = [stage.parent_id, stage.id] if stage.parent_id else [stage.id]
    return ExperienceRead(
        id=e.id,
        name=e.name,
        parent_id=e.parent_id,
        template_id=e.template_id,
        order=e.position,
        vehicle=_vehicle_read(e),
        state=StateRead(status=e.status),
        dates=DatesRead(start_date=e.start_date, end_date=e.end_date),
        ancestor_ids=ancestors,
        segments=SegmentsRead(
            fixed=e.fixed_segment_id, target=e.target_segment_id, decision=e.decision_segment_id
        ),
        deleted=e.deleted_at is not None,
        created_at=e.created_at,
        updated_at=e.updated_at,
    )


def _groups_by_id(session: Session, ids: Iterable[str | None] | None = None) -> dict[str, ExperienceGroup]:
    query = sa.select(ExperienceGroup)
    if ids is not None:
        query = query.where(ExperienceGroup.id.in_([i for i in ids if i]))
    return {g.id: g for g in session.scalars(query)}


def _experiences_order(query: sa.Select[Any]) -> sa.Select[Any]:
    return query.order_by(Experience.position, Experience.created_at, Experience.id)


class _Tree:
    """Every group and (optionally) experience of the workspace, read in two queries, for reads."""

    def __init__(self, session: Session, *, deleted: bool, experiences: bool) -> None:
        self.groups = _groups_by_id(session)
        self.stages: dict[str, list[ExperienceGroup]] = defaultdict(list)
        for g in sorted(self.groups.values(), key=lambda g: (g.position, g.created_at, g.id)):
            if g.parent_id and (deleted or g.deleted_at is None):
                self.stages[g.parent_id].append(g)
        self.experiences: dict[str, list[Experience]] = defaultdict(list)
        if experiences:
            query = _experiences_order(sa.select(Experience).where(Experience.parent_id.is_not(None)))
            if not deleted:
                query = query.where(Experience.deleted_at.is_(None))
            for e in session.scalars(query):
                self.experiences[e.parent_id or ""].append(e)

    def read(self, group: ExperienceGroup, *, skip_groups: bool, skip_experiences: bool) -> GroupRead:
        stages = None if skip_groups else self.stages.get(group.id, [])
        experiences: list[ExperienceRead] | None = None
        if not skip_experiences:
            members = list(self.experiences.get(group.id, []))
            if group.kind == GroupClass.CAMPAIGN:  # a campaign's experiences: its stages', stage by stage
                members = [e for s in self.stages.get(group.id, []) for e in self.experiences.get(s.id, [])]
            experiences = [experience_read(e, self.groups) for e in members]
        return GroupRead(
            id=group.id,
            name=group.name,
            class_=group.kind,
            parent_id=group.parent_id,
            segment_id=group.segment_id,
            description=group.description,
            goal=group.goal,
            order=group.position,
            deleted=group.deleted_at is not None,
            created_at=group.created_at,
            updated_at=group.updated_at,
            stages=None
            if stages is None
            else [self.read(s, skip_groups=True, skip_experiences=skip_experiences) for s in stages],
            experiences=experiences,
        )


def group_read(
    session: Session,
    group: ExperienceGroup,
    *,
    deleted: bool = False,
    skip_child_groups: bool = False,
    skip_child_experiences: bool = False,
) -> GroupRead:
    tree = _Tree(session, deleted=deleted, experiences=not skip_child_experiences)
    return tree.read(group, skip_groups=skip_child_groups, skip_experiences=skip_child_experiences)


def list_groups(
    session: Session, *, deleted: bool, skip_child_groups: bool, skip_child_experiences: bool
) -> list[GroupRead]:
    """Top-level groups (campaigns), oldest first."""
    tree = _Tree(session, deleted=deleted, experiences=not skip_child_experiences)
    campaigns = sorted(
        (g for g in tree.groups.values() if g.parent_id is None and (deleted or g.deleted_at is None)),
        key=lambda g: (g.created_at, g.id),
    )
    return [
        tree.read(g, skip_groups=skip_child_groups, skip_experiences=skip_child_experiences)
        for g in campaigns
    ]


def list_experiences(session: Session, *, deleted: bool, provider: str | None) -> list[ExperienceRead]:
    query = sa.select(Experience)
    if not deleted:
        query = query.where(Experience.deleted_at.is_(None))
    if provider is not None:
        query = query.where(sa.or_(Experience.provider_id == provider, Experience.provider_slug == provider))
    rows = list(session.scalars(query.order_by(Experience.created_at, Experience.id)))
    groups = _groups_by_id(session)
    return [experience_read(e, groups) for e in rows]


def list_orphans(session: Session, *, deleted: bool) -> list[ExperienceRead]:
    query = sa.select(Experience).where(Experience.parent_id.is_(None))
    if not deleted:
        query = query.where(Experience.deleted_at.is_(None))
    return [
        experience_read(e, {}) for e in session.scalars(query.order_by(Experience.created_at, Experience.id))
    ]


def read_one(session: Session, e: Experience) -> ExperienceRead:
    return experience_read(e, _groups_by_id(session, [e.parent_id, _campaign_of(session, e.parent_id)]))


def _campaign_of(session: Session, stage_id: str | None) -> str | None:
    if stage_id is None:
        return None
    return session.scalar(sa.select(ExperienceGroup.parent_id).where(ExperienceGroup.id == stage_id))


# -- groups --------------------------------------------------------------------------------------------
def create_group(session: Session, body: GroupCreate, *, path: str = "group") -> ExperienceGroup:
    """A campaign or stage, with nested stages and experiences, all in the caller's transaction: any
    error is a 422 naming the nested path (`group.stages[1].experiences[0].vehicle.providerSlug`)."""
    parent: ExperienceGroup | None = None
    if body.class_ == GroupClass.CAMPAIGN.value:
        if body.parent_id is not None:
            raise _invalid(f"{path}.parentId", "a campaign has no parent")
    else:
        if body.parent_id is None:
            raise _invalid(f"{path}.parentId", "a stage needs its campaign's id")
        parent = _live_group(session, body.parent_id, f"{path}.parentId")
        if parent.kind != GroupClass.CAMPAIGN:
            raise _invalid(f"{path}.parentId", "a stage's parent must be a campaign, not a stage")
    return _create_group(session, body, path, parent)


def _create_group(
    session: Session, body: GroupCreate, path: str, parent: ExperienceGroup | None
) -> ExperienceGroup:
    if body.segment_id is not None:
        if body.class_ != GroupClass.CAMPAIGN.value:
            raise _invalid(f"{path}.segmentId", "only a campaign has a primary segment")
        _check_segment(session, body.segment_id, f"{path}.segmentId")
    if body.stages and body.class_ != GroupClass.CAMPAIGN.value:
        raise _invalid(f"{path}.stages", "a stage under a stage is not allowed")
    if body.experiences and body.class_ != GroupClass.STAGE.value:
        raise _invalid(f"{path}.experiences", "experiences belong to stages; nest them in `stages`")
    order = body.order
    if order is None:
        order = 0 if parent is None else _next_position(session, ExperienceGroup, parent.id)
    group = ExperienceGroup(
        name=body.name,
        kind=body.class_,
        parent_id=parent.id if parent else None,
        segment_id=body.segment_id,
        description=body.description,
        goal=body.goal,
        position=order,
    )
    session.add(group)
    session.flush()
    for i, stage in enumerate(body.stages or ()):
        stage_path = f"{path}.stages[{i}]"
        if stage.class_ != GroupClass.STAGE.value:
            raise _invalid(f"{stage_path}.class", "a campaign's children are stages")
        if stage.parent_id not in (None, group.id):
            raise _invalid(f"{stage_path}.parentId", "nested stages belong to the group they are nested in")
        _create_group(session, stage, stage_path, group)
    for i, item in enumerate(body.experiences or ()):
        exp_path = f"{path}.experiences[{i}]"
        if item.parent_id not in (None, group.id):
            raise _invalid(
                f"{exp_path}.parentId", "nested experiences belong to the stage they are nested in"
            )
        create_experience(session, item, path=exp_path, stage=group)
    publishing.changed(session)
    return group


def _next_position(session: Session, model: type[ExperienceGroup] | type[Experience], parent_id: str) -> int:
    current = session.scalar(
        sa.select(sa.func.max(model.position)).where(model.parent_id == parent_id, model.deleted_at.is_(None))
    )
    return 0 if current is None else int(current) + 1


def update_group(session: Session, group_id: str, body: GroupUpdate) -> ExperienceGroup:
    group = get_group(session, group_id)
    fields = body.model_fields_set
    campaigns_touched: set[str] = set()
    if body.name is not None:
        group.name = body.name
    if "description" in fields:
        group.description = body.description
    if "goal" in fields:
        group.goal = body.goal
    if body.order is not None:
        group.position = body.order
    if "segment_id" in fields:
        if group.kind != GroupClass.CAMPAIGN:
            raise _invalid("group.segmentId", "only a campaign has a primary segment")
        if body.segment_id is None:
            if publishing.published_in(session, group.id):
                raise _invalid(
                    "group.segmentId", "cannot be removed while experiences in the campaign are published"
                )
        else:
            _check_segment(session, body.segment_id, "group.segmentId")
        if group.segment_id != body.segment_id:
            group.segment_id = body.segment_id
            campaigns_touched.add(group.id)
    if "parent_id" in fields and body.parent_id != group.parent_id:
        if group.kind == GroupClass.CAMPAIGN:
            raise _invalid("group.parentId", "a campaign has no parent")
        if body.parent_id is None:
            raise _invalid("group.parentId", "a stage needs its campaign's id")
        parent = _live_group(session, body.parent_id, "group.parentId")
        if parent.kind != GroupClass.CAMPAIGN:
            raise _invalid("group.parentId", "a stage's parent must be a campaign, not a stage")
        campaigns_touched |= {group.parent_id or "", parent.id}
        group.parent_id = parent.id
    moved: list[Experience] = []
    if body.experiences is not None or body.detach:
        if group.kind != GroupClass.STAGE:
            field = "group.experiences" if body.experiences is not None else "group.detach"
            raise _invalid(field, "only a stage holds experiences")
        moved = _set_members(session, group, body.experiences, body.detach or [])
    for e in moved:
        campaigns_touched.add(_campaign_of(session, e.parent_id) or "")
    if group.kind == GroupClass.STAGE:
        campaigns_touched.add(group.parent_id or "")
    else:
        campaigns_touched.add(group.id)
    session.flush()
    for campaign_id in sorted(c for c in campaigns_touched if c):
        publishing.refresh_campaign(session, campaign_id)
    publishing.changed(session)
    return group


def _set_members(
    session: Session, stage: ExperienceGroup, order: Sequence[str] | None, detach: Sequence[str]
) -> list[Experience]:
    """Experiences whose parent changed (their old campaigns need their segments refreshed too)."""
    moved: list[Experience] = []
    current = list(
        session.scalars(
            _experiences_order(
                sa.select(Experience).where(Experience.parent_id == stage.id, Experience.deleted_at.is_(None))
            )
        )
    )
    if order is not None:
        if len(set(order)) != len(order):
            raise _invalid("group.experiences", "an experience is listed twice")
        wanted = set(order)
        for e in current:
            if e.id not in wanted:
                _detach(session, e)
                moved.append(e)
        for i, experience_id in enumerate(order):
            e = session.get(Experience, experience_id)
            if e is None or e.deleted_at is not None or e.workspace_id != session.workspace_id:
                raise _invalid(f"group.experiences[{i}]", f"experience '{experience_id}' not found")
            if e.parent_id != stage.id:
                moved.append(copy.copy(e))  # remember the old parent for its campaign's refresh
                e.parent_id = stage.id
                moved.append(e)
            e.position = i
    for i, experience_id in enumerate(detach):
        e = session.get(Experience, experience_id)
        if e is None or e.deleted_at is not None or e.workspace_id != session.workspace_id:
            raise _invalid(f"group.detach[{i}]", f"experience '{experience_id}' not found")
        if e.parent_id != stage.id:
            raise _invalid(f"group.detach[{i}]", f"experience '{experience_id}' is not in this stage")
        _detach(session, e)
        moved.append(e)
    return moved


def _detach(session: Session, e: Experience) -> None:
    """Make an orphan. A published orphan cannot be served (no campaign), so it is unpublished."""
    e.parent_id = None
    e.position = 0
    if e.status == ExperienceStatus.PUBLISHED:
        LIFECYCLE.move(e, ExperienceStatus.UNPUBLISHED)
    publishing.refresh_orphan(session, e)


def delete_group(session: Session, group_id: str) -> None:
    """Soft delete: a campaign takes its stages with it; their experiences become orphans."""
    group = get_group(session, group_id)
    now = session.now()
    stages = [group]
    if group.kind == GroupClass.CAMPAIGN:
        stages += list(
            session.scalars(
                sa.select(ExperienceGroup).where(
                    ExperienceGroup.parent_id == group.id, ExperienceGroup.deleted_at.is_(None)
                )
            )
        )
    for g in stages:
        g.deleted_at = now
    members = session.scalars(
        sa.select(Experience).where(
            Experience.parent_id.in_([g.id for g in stages]), Experience.deleted_at.is_(None)
        )
    )
    for e in list(members):
        _detach(session, e)
    session.flush()
    # Soft-deleted groups leave the campaign registry: the public API then says 404, not 409.
    unregister(session.connection(), [g.id for g in stages])
    if group.kind == GroupClass.STAGE and group.parent_id:
        publishing.refresh_campaign(session, group.parent_id)
    publishing.changed(session)


# -- experiences -----------------------------------------------------------------------------------------
def _deep_merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _deep_merge(base.get(key), value) if key in base else value
        return out
    return patch


def _apply_vehicle(e: Experience, vehicle: VehicleIn, *, clean_override: bool) -> None:
    for name in vehicle.model_fields_set:
        value = getattr(vehicle, name)
        if name == "detail_override" and not clean_override and value is not None and e.detail_override:
            value = _deep_merge(e.detail_override, value)
        setattr(e, name, value)


def _apply_template(session: Session, e: Experience, template_id: str, path: str) -> None:
    template = session.get(Template, template_id)
    if template is None or template.workspace_id != session.workspace_id:
        raise _invalid(f"{path}.templateId", f"template '{template_id}' not found")
    e.template_id = template.id
    defaults = VehicleIn.model_validate(template.vehicle or {})
    for name in defaults.model_fields_set:
        setattr(e, name, copy.deepcopy(getattr(defaults, name)))


def create_experience(
    session: Session,
    body: ExperienceCreate,
    *,
    path: str = "experience",
    stage: ExperienceGroup | None = None,
) -> Experience:
    if body.state is not None and body.state.status != ExperienceStatus.DRAFT.value:
        raise _invalid(f"{path}.state.status", "an experience is created as a draft; publish it with a PATCH")
    if stage is None and body.parent_id is not None:
        stage = _stage(session, body.parent_id, f"{path}.parentId")
    e = Experience(
        name=body.name,
        parent_id=stage.id if stage else None,
        position=_next_position(session, Experience, stage.id) if stage else 0,
        status=ExperienceStatus.DRAFT,
        publish_count=0,
    )
    if body.template_id is not None:
        _apply_template(session, e, body.template_id, path)
    if body.vehicle is not None:
        _apply_vehicle(e, body.vehicle, clean_override=True)
    if body.dates is not None:
        e.start_date, e.end_date = body.dates.start_date, body.dates.end_date
    session.add(e)
    _flush_unique(session, e, path)
    return e


def _flush_unique(session: Session, e: Experience, path: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except sa.exc.IntegrityError:
        raise _invalid(
            f"{path}.vehicle.externalId",
            f"an experience with provider '{e.provider_slug}' and externalId '{e.external_id}' exists",
        )


def update_experience(
    session: Session, experience_id: str, body: ExperienceUpdate, *, update_state: bool, clean_override: bool
) -> Experience:
    e = get_experience(session, experience_id, lock=True)
    fields = body.model_fields_set
    old_campaign = _campaign_of(session, e.parent_id)
    wants_state = body.state is not None and body.state.status != e.status
    if wants_state and not update_state:
        raise Invalid(
            "update_state: a state change needs the query parameter update_state=true", field="update_state"
        )
    if body.name is not None:
        e.name = body.name
    if body.template_id is not None:
        _apply_template(session, e, body.template_id, "experience")
    if body.vehicle is not None:
        _apply_vehicle(e, body.vehicle, clean_override=clean_override)
    if body.dates is not None:
        dates = body.dates.model_fields_set
        start = body.dates.start_date if "start_date" in dates else e.start_date
        end = body.dates.end_date if "end_date" in dates else e.end_date
        if start and end and end <= start:
            raise _invalid("experience.dates.endDate", "must be after startDate")
        e.start_date, e.end_date = start, end
    if "parent_id" in fields and body.parent_id != e.parent_id:
        if body.parent_id is None:
            _detach(session, e)
        else:
            stage = _stage(session, body.parent_id, "experience.parentId")
            e.parent_id = stage.id
            e.position = _next_position(session, Experience, stage.id)
    session.flush()
    if wants_state:
        assert body.state is not None
        target = body.state.status
        if target == ExperienceStatus.PUBLISHED.value:
            publishing.check_publishable(session, e)
        LIFECYCLE.move(e, target)
        if target == ExperienceStatus.PUBLISHED.value:
            publishing.on_published(session, e)
    _flush_unique(session, e, "experience")
    new_campaign = _campaign_of(session, e.parent_id)
    for campaign_id in {old_campaign, new_campaign} - {None}:
        assert campaign_id is not None
        publishing.refresh_campaign(session, campaign_id)
    publishing.changed(session)
    return e


def delete_experience(session: Session, experience_id: str) -> None:
    """Soft delete, with its generated segments; its stage's campaign refreshes its target segments."""
    e = get_experience(session, experience_id)
    campaign_id = _campaign_of(session, e.parent_id)
    e.deleted_at = session.now()
    publishing.forget(session, e)
    session.flush()
    if campaign_id:
        publishing.refresh_campaign(session, campaign_id)
    publishing.changed(session)
