"""Request and response bodies of experience orchestration (seed 000): camelCase JSON that also
accepts snake_case; requests wrapped like the seed's publish example (`{"experience": {...}}`),
responses bare."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from overture.data.schemas import BatchIdText, EventIdText
from overture.schemas import Camel, JsonObject, UserJson

__all__ = [
    "TACTICS",
    "AuthCreate",
    "AuthCreateBody",
    "AuthRead",
    "CampaignPriorityBody",
    "CandidateRead",
    "DatesIn",
    "DecideBody",
    "DecisionRead",
    "EventIn",
    "EventsBody",
    "ExperienceCreate",
    "ExperienceCreateBody",
    "ExperienceRead",
    "ExperienceUpdate",
    "ExperienceUpdateBody",
    "GroupCreate",
    "GroupCreateBody",
    "GroupRead",
    "GroupUpdate",
    "GroupUpdateBody",
    "ImportBody",
    "PrioritizationCreate",
    "PrioritizationCreateBody",
    "PrioritizationRead",
    "PrioritizationUpdate",
    "PrioritizationUpdateBody",
    "PriorityEntry",
    "SegmentsRead",
    "StateIn",
    "TemplateCreate",
    "TemplateCreateBody",
    "TemplateRead",
    "TemplateUpdate",
    "TemplateUpdateBody",
    "VehicleIn",
]

TACTICS = ("capture_leads", "present_message", "target_url", "recommend_content", "SiteGate")
Tactic = Literal["capture_leads", "present_message", "target_url", "recommend_content", "SiteGate"]
Status = Literal["draft", "published", "unpublished"]
GroupClass = Literal["campaign", "stage"]
SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
Id = str


# -- vehicle, state, dates ---------------------------------------------------------------------------
class VehicleIn(Camel):
    provider_id: str | None = Field(default=None, min_length=1, max_length=200)
    provider_slug: str | None = Field(default=None, pattern=SLUG, description="e.g. email, push, web, http")
    provider_channel: str | None = Field(default=None, min_length=1, max_length=100)
    tactic: Tactic | None = None
    aggression: float | None = Field(default=None, ge=0, le=1, description="Confidence, 0 to 1.")
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    detail: JsonObject | None = Field(default=None, description="Provider-specific configuration.")
    detail_override: JsonObject | None = Field(
        default=None,
        description="Runtime overrides, deep-merged over `detail` in candidates. A PATCH deep-merges it "
        "into the stored one unless `clean_override=true`.",
    )


class StateIn(Camel):
    status: Status


class DatesIn(Camel):
    start_date: datetime | None = None
    end_date: datetime | None = None

    @model_validator(mode="after")
    def _end_after_start(self) -> DatesIn:
        for name in ("start_date", "end_date"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name}: give a time zone (e.g. Z)")
        if self.start_date and self.end_date and self.end_date <= self.start_date:
            raise ValueError("endDate must be after startDate")
        return self


# -- experiences ---------------------------------------------------------------------------------------
class ExperienceCreate(Camel):
    name: str = Field(min_length=1, max_length=200)
    parent_id: Id | None = Field(default=None, description="A stage; null makes an orphan.")
    template_id: Id | None = Field(default=None, description="Prefill the vehicle from this template.")
    vehicle: VehicleIn | None = None
    state: StateIn | None = Field(default=None, description="Only `draft` on create; publish with a PATCH.")
    dates: DatesIn | None = None


class ExperienceCreateBody(Camel):
    experience: ExperienceCreate


class ExperienceUpdate(Camel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    parent_id: Id | None = None
    template_id: Id | None = None
    vehicle: VehicleIn | None = None
    state: StateIn | None = Field(default=None, description="Needs `update_state=true`.")
    dates: DatesIn | None = None


class ExperienceUpdateBody(Camel):
    experience: ExperienceUpdate


class VehicleRead(Camel):
    provider_id: str | None
    provider_slug: str | None
    provider_channel: str | None
    tactic: str | None
    aggression: float | None
    external_id: str | None
    detail: dict[str, Any] | None
    detail_override: dict[str, Any] | None


class StateRead(Camel):
    status: Status


class DatesRead(Camel):
    start_date: datetime | None
    end_date: datetime | None


class SegmentsRead(Camel):
    fixed: str | None = Field(description="Members of the campaign's primary segment.")
    target: str | None = Field(description="fixed minus users who converted on a sibling stage's experience.")
    decision: str | None = Field(description="Users the experience was delivered to.")


class ExperienceRead(Camel):
    id: str
    name: str
    parent_id: str | None
    template_id: str | None
    order: int
    vehicle: VehicleRead
    state: StateRead
    dates: DatesRead
    ancestor_ids: list[str] = Field(description="[campaign id, stage id]; empty for an orphan.")
    segments: SegmentsRead
    deleted: bool
    created_at: datetime
    updated_at: datetime


# -- groups ----------------------------------------------------------------------------------------------
class GroupCreate(Camel):
    name: str = Field(min_length=1, max_length=200)
    class_: GroupClass = Field(alias="class")
    parent_id: Id | None = Field(default=None, description="A stage's campaign; a campaign has none.")
    segment_id: Id | None = Field(default=None, description="A campaign's primary audience (a segment id).")
    description: str | None = Field(default=None, max_length=10_000)
    goal: UserJson = None
    order: int | None = Field(
        default=None, ge=0, le=1_000_000, description="A stage's position in its campaign."
    )
    stages: list[GroupCreate] | None = Field(default=None, max_length=200)
    experiences: list[ExperienceCreate] | None = Field(default=None, max_length=1000)


class GroupCreateBody(Camel):
    group: GroupCreate


class GroupUpdate(Camel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    parent_id: Id | None = None
    segment_id: Id | None = None
    description: str | None = Field(default=None, max_length=10_000)
    goal: UserJson = None
    order: int | None = Field(default=None, ge=0, le=1_000_000)
    experiences: list[Id] | None = Field(
        default=None, max_length=1000, description="A stage's experiences, in order (others are detached)."
    )
    detach: list[Id] | None = Field(default=None, max_length=1000, description="Experiences to make orphans.")


class GroupUpdateBody(Camel):
    group: GroupUpdate


class GroupRead(Camel):
    id: str
    name: str
    class_: GroupClass = Field(alias="class")
    parent_id: str | None
    segment_id: str | None
    description: str | None
    goal: Any
    order: int
    deleted: bool
    created_at: datetime
    updated_at: datetime
    stages: list[GroupRead] | None = Field(description="Ordered; null when skipped.")
    experiences: list[ExperienceRead] | None = Field(description="Ordered; null when skipped.")


# -- prioritization ------------------------------------------------------------------------------------
class PriorityEntry(Camel):
    id: Id = Field(min_length=1, max_length=64)
    weight: float = Field(ge=-1e9, le=1e9, description="Higher weight = higher priority.")


class PrioritizationCreate(Camel):
    group_id: Id = Field(
        description="The campaign (ordering its stages) or stage (ordering its experiences)."
    )
    entries: list[PriorityEntry] = Field(default_factory=list, max_length=10_000)


class PrioritizationCreateBody(Camel):
    prioritization: PrioritizationCreate


class PrioritizationUpdate(Camel):
    entries: list[PriorityEntry] | None = Field(default=None, max_length=10_000)


class PrioritizationUpdateBody(Camel):
    prioritization: PrioritizationUpdate


class PrioritizationRead(Camel):
    id: str
    group_id: str | None
    slug: str | None
    entries: list[PriorityEntry]
    created_at: datetime
    updated_at: datetime


class CampaignPriorityBody(Camel):
    entries: list[PriorityEntry] = Field(max_length=10_000)


# -- templates --------------------------------------------------------------------------------------------
class TemplateCreate(Camel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    vehicle: VehicleIn = Field(default_factory=VehicleIn)


class TemplateCreateBody(Camel):
    template: TemplateCreate


class TemplateUpdate(Camel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    vehicle: VehicleIn | None = None


class TemplateUpdateBody(Camel):
    template: TemplateUpdate


class TemplateRead(Camel):
    id: str
    name: str
    description: str | None
    vehicle: VehicleRead
    created_at: datetime
    updated_at: datetime


# -- events and decisions -------------------------------------------------------------------------------
class EventIn(Camel):
    type: Literal["delivery", "impression", "conversion"]
    experience_id: Id = Field(min_length=1, max_length=64)
    user_id: str = Field(min_length=1, max_length=200)
    timestamp: datetime | None = None
    event_id: EventIdText | None = None


class EventsBody(Camel):
    events: list[EventIn] = Field(max_length=10_000)
    batch_id: BatchIdText | None = None


class DecideBody(Camel):
    user_id: str = Field(min_length=1, max_length=200)
    vehicle: str | None = Field(default=None, max_length=200, description="Provider id or slug.")
    channel: str | None = Field(default=None, max_length=100)
    context: JsonObject | None = Field(
        default=None, description="Fields known now (merged over the profile for this decision)."
    )
    limit: int = Field(default=1, ge=1, le=1000)
    record: bool = Field(default=True, description="Record the winners' deliveries (decision segments grow).")


# -- provider credentials and import ----------------------------------------------------------------------
class AuthCreate(Camel):
    provider_slug: str = Field(pattern=SLUG)
    name: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=1, max_length=2048, description="The provider's feed URL (http provider).")
    token: str = Field(min_length=1, max_length=4096, description="Bearer token. Write-only.")


class AuthCreateBody(Camel):
    auth: AuthCreate


class AuthRead(Camel):
    id: str
    provider_slug: str
    name: str
    url: str
    destination_id: str
    created_at: datetime
    updated_at: datetime


class ImportBody(Camel):
    provider_slug: str = Field(pattern=SLUG)
    auth_id: Id
    external_ids: list[str] | None = Field(
        default=None,
        max_length=1000,
        description="Which campaigns to import (default: every importable one).",
    )


class Excluded(Camel):
    experience_id: str
    reason: Literal["outside_dates", "not_in_target", "converted_in_sibling_stage", "lower_priority"]


class CandidateRead(Camel):
    """One ranked candidate: experienceId, name, ancestorIds, priority {campaign, stage, experience},
    metrics {windowHours, impressions, conversions, conversionRate}, the vehicle attributes (detail with
    detailOverride merged over it, also under `vehicle`), segments, dates."""

    model_config = ConfigDict(extra="allow")

    experience_id: str
    name: str
    generated_at: datetime = Field(description="When this list was computed (metrics at most 60 s older).")


class DecisionRead(Camel):
    user_id: str
    generated_at: datetime
    decisions: list[dict[str, Any]] = Field(description="The winners, as candidates, in priority order.")
    excluded: list[Excluded] = Field(description="Every other candidate, with the first reason that applies.")
