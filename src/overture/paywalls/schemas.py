"""Request and response bodies of the paywall campaign API (seed 004). All fields are snake_case,
as the seed insists (its one camelCase response example, `projectId`/`createdAt`, is `project_id` /
`created_at` here)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from overture.data.schemas import (
    MAX_EVENT_PROPERTIES,
    MAX_EVENT_PROPERTIES_BYTES,
    EventIdText,
    EventProperties,
)
from overture.schemas import JsonObject, Strict, UserJson

CampaignStatus = Literal["active", "inactive", "archived"]
PlacementStatus = Literal["active", "paused"]
PlacementType = Literal["custom", "standard"]
ExperimentState = Literal["running", "promoted"]
DecisionResult = Literal["paywall", "holdout", "no_audience_match", "placement_not_found", "capped"]

#: `once_per_session`, `once_per_day` or `N_times_total` with N from 1 to 1,000,000.
FREQUENCY_CAP_PATTERN = re.compile(r"once_per_session|once_per_day|([1-9][0-9]{0,6})_times_total")
MAX_TIMES_TOTAL = 1_000_000
PAYWALL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
# A placement is what the SDK passes to register(placement:): any printable text without surrounding
# blanks, up to 100 characters.
PLACEMENT_NAME_PATTERN = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]{0,98}[^\s\x00-\x1f\x7f])?$"
MAX_AUDIENCES_PER_CAMPAIGN = 200
MAX_VARIANTS = 20
MAX_EVENTS_PER_BATCH = 1000

Name = Annotated[str, Field(min_length=1, max_length=200)]
PlacementName = Annotated[str, Field(pattern=PLACEMENT_NAME_PATTERN, examples=["feature_gate"])]
PaywallId = Annotated[str, Field(pattern=PAYWALL_ID_PATTERN, examples=["pw_original"])]
UserId = Annotated[str, Field(min_length=1, max_length=200)]


def check_frequency_cap(value: str | None) -> str | None:
    if value is None:
        return value
    match = FREQUENCY_CAP_PATTERN.fullmatch(value)
    if match is None or (match.group(1) and int(match.group(1)) > MAX_TIMES_TOTAL):
        raise ValueError(
            "must be once_per_session, once_per_day or N_times_total (e.g. 3_times_total, "
            f"N from 1 to {MAX_TIMES_TOTAL})"
        )
    return value


# -- paywalls ---------------------------------------------------------------------------------------


class PaywallCreate(Strict):
    id: PaywallId | None = Field(
        default=None, description="Optional client-chosen id, unique in the project (e.g. pw_original)."
    )
    name: Name
    config: JsonObject = Field(default_factory=dict, description="What the SDK needs to render it.")


class PaywallUpdate(Strict):
    name: Name | None = None
    config: JsonObject | None = None


class PaywallRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    config: dict[str, Any]
    project_id: str = Field(validation_alias=AliasChoices("workspace_id", "project_id"))
    created_at: datetime
    updated_at: datetime


class PaywallPublic(BaseModel):
    """The paywall as the decision returns it to the SDK."""

    id: str
    name: str
    config: dict[str, Any]


# -- campaigns --------------------------------------------------------------------------------------


class CampaignCreate(Strict):
    name: Name
    status: CampaignStatus = "active"


class CampaignUpdate(Strict):
    name: Name | None = None
    status: CampaignStatus | None = None


class CampaignRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    status: CampaignStatus
    project_id: str = Field(validation_alias=AliasChoices("workspace_id", "project_id"))
    created_at: datetime
    updated_at: datetime


# -- placements -------------------------------------------------------------------------------------


class PlacementCreate(Strict):
    name: PlacementName
    type: PlacementType = "custom"
    status: PlacementStatus = "active"


class PlacementUpdate(Strict):
    name: PlacementName | None = None
    type: PlacementType | None = None
    status: PlacementStatus | None = None


class PlacementRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    campaign_id: str
    name: str
    type: PlacementType
    status: PlacementStatus
    created_at: datetime
    updated_at: datetime


# -- audiences and experiments ----------------------------------------------------------------------


class VariantIn(Strict):
    paywall_id: PaywallId
    traffic_percentage: float = Field(ge=0, le=100)


class ExperimentIn(Strict):
    variants: list[VariantIn] = Field(min_length=1, max_length=MAX_VARIANTS)
    confidence_threshold: float = Field(
        default=0.95,
        ge=0.5,
        lt=1,
        description="Chance to beat control a variant needs to be promoted (0.5 <= t < 1).",
    )
    auto_promote: bool = False

    @field_validator("variants")
    @classmethod
    def _at_most_100_percent(cls, variants: list[VariantIn]) -> list[VariantIn]:
        total = sum(v.traffic_percentage for v in variants)
        if total > 100 + 1e-9:
            raise ValueError(f"traffic percentages sum to {total:g}; at most 100 (the rest is holdout)")
        return variants


class VariantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    paywall_id: str
    traffic_percentage: float


class ExperimentRead(BaseModel):
    id: str
    variants: list[VariantRead]
    holdout_percentage: float
    confidence_threshold: float
    auto_promote: bool
    state: ExperimentState
    promoted_variant_id: str | None = None
    promoted_at: datetime | None = None


_FILTERS_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]
}


class AudienceCreate(Strict):
    name: Name
    filters: UserJson = Field(
        description="Flat list of rules {field, operator, value, conjunction} or a canonical filter tree; "
        "[] matches everyone.",
        json_schema_extra=_FILTERS_SCHEMA,
    )
    entitlement_check: Name | None = Field(default=None, description="Skip if the user has it.")
    frequency_cap: str | None = Field(
        default=None, description="once_per_session, once_per_day or N_times_total (e.g. 3_times_total)."
    )
    paywall_id: PaywallId | None = Field(default=None, description="The paywall shown (no experiment).")
    experiment: ExperimentIn | None = None

    _cap = field_validator("frequency_cap")(check_frequency_cap)


class AudienceUpdate(Strict):
    """Every field optional; `experiment: null` removes the experiment, `paywall_id: null` the paywall."""

    name: Name | None = None
    filters: UserJson = Field(default=None, json_schema_extra=_FILTERS_SCHEMA)
    entitlement_check: Name | None = None
    frequency_cap: str | None = None
    paywall_id: PaywallId | None = None
    experiment: ExperimentIn | None = None

    _cap = field_validator("frequency_cap")(check_frequency_cap)


class AudienceRead(BaseModel):
    id: str
    campaign_id: str
    name: str
    priority: int = Field(description="Evaluation order in the campaign, 0 first.")
    filters: Any = Field(json_schema_extra=_FILTERS_SCHEMA)
    entitlement_check: str | None
    frequency_cap: str | None
    paywall_id: str | None
    experiment: ExperimentRead | None
    created_at: datetime
    updated_at: datetime


class ReorderIn(Strict):
    order: list[str] = Field(description="Every audience id of the campaign, in priority order.")


class CampaignDetail(CampaignRead):
    placements: list[PlacementRead]
    audiences: list[AudienceRead]


# -- the decision -----------------------------------------------------------------------------------


class RegisterIn(Strict):
    """What the SDK's register(placement:) sends."""

    placement: Annotated[str, Field(min_length=1, max_length=100)]
    user_id: UserId
    session_id: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    user: JsonObject | None = Field(default=None, description="user.* attributes for the filters.")
    device: JsonObject | None = Field(default=None, description="device.* attributes.")
    params: JsonObject | None = Field(default=None, description="params.* of this placement call.")
    entitlements: list[Annotated[str, Field(max_length=200)]] | None = Field(default=None, max_length=100)

    @field_validator("user")
    @classmethod
    def _seed_in_range(cls, user: dict[str, Any] | None) -> dict[str, Any] | None:
        if user is not None and user.get("seed") is not None:
            seed = user["seed"]
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 99:
                raise ValueError("user.seed must be an integer from 0 to 99 (or left out)")
        return user


class RegisterOut(BaseModel):
    result: DecisionResult
    campaign_id: str | None
    placement: str
    audience_id: str | None
    paywall_id: str | None
    paywall: PaywallPublic | None
    experiment_id: str | None
    variant_id: str | None


# -- events and results -----------------------------------------------------------------------------


class EventIn(Strict):
    user_id: UserId
    event: Annotated[str, Field(min_length=1, max_length=200)]
    event_id: EventIdText | None = None
    timestamp: AwareDatetime | None = Field(default=None, description="ISO 8601 with offset; default now.")
    properties: EventProperties | None = Field(
        default=None,
        description=f"At most {MAX_EVENT_PROPERTIES} properties and "
        f"{MAX_EVENT_PROPERTIES_BYTES // 1024} KiB of JSON.",
    )


class EventsAccepted(BaseModel):
    accepted: int = Field(description="Events stored.")
    duplicates: int = Field(
        default=0, description="Events not stored again: their `event_id` was seen before (a retried batch)."
    )
    conversions: int = Field(description="Conversions attributed to experiment variants.")


class ArmFigures(BaseModel):
    users_exposed: int
    conversions: int
    conversion_rate: float | None
    revenue: float
    revenue_per_user: float | None
    conversion_rate_interval: tuple[float, float]


class VariantFigures(ArmFigures):
    variant_id: str
    paywall_id: str
    traffic_percentage: float
    control: bool
    chance_to_beat_control: float | None
    uplift_interval: tuple[float, float] | None = Field(
        description="95% credible interval of the relative uplift in conversion rate over control."
    )


class ExperimentResults(BaseModel):
    experiment_id: str
    campaign_id: str
    audience_id: str
    state: ExperimentState
    confidence_threshold: float
    auto_promote: bool
    conversion_event: str
    min_exposures_per_arm: int
    min_conversions_per_arm: int
    next_look_at_exposures: int | None
    variants: list[VariantFigures]
    holdout: ArmFigures | None
    promoted_variant_id: str | None
    promoted_at: datetime | None
    promotion: dict[str, Any] | None
