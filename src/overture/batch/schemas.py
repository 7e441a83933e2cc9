"""Request and response bodies of batch decisioning (seed 003). JSON is camelCase (`scheduleTime`,
`maxTotalPerRun`, `includePersonalization`); requests also accept snake_case. Rules that need the
database (a model's columns, a destination's type) are checked by the services."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt

from overture.schemas import Camel, UserJson

Name = Annotated[str, Field(min_length=1, max_length=200)]
Id = Annotated[str, Field(min_length=1, max_length=36)]
DeliveryMode = Literal["file", "integration", "manual", "api"]
Ranking = Literal["priority", "score", "priority_weighted_score"]
ScheduleType = Literal["manual", "daily", "weekly", "monthly"]
CampaignStatusName = Literal["draft", "active", "paused", "archived"]
RunStatusName = Literal["pending", "running", "completed", "completed_with_errors", "failed"]

#: The seed's available file columns, and its default selection.
AVAILABLE_COLUMNS = (
    "customer_id",
    "offer_name",
    "offer_id",
    "channel",
    "creative",
    "score",
    "rank",
    "category",
    "priority",
    "personalization",
)
DEFAULT_COLUMNS = ("customer_id", "offer_name", "channel", "score", "creative")
#: Channels that take part in batch campaigns (api channels are real-time only).
BATCH_MODES = ("file", "integration", "manual")


# -- offers ----------------------------------------------------------------------------------------
class ConstantPropensity(Camel):
    type: Literal["constant"]
    value: float = Field(ge=0, le=1)


class ColumnPropensity(Camel):
    type: Literal["column"]
    column: str = Field(min_length=1, max_length=200, description="A precomputed 0-1 score in the model.")


class LogisticPropensity(Camel):
    type: Literal["logistic"]
    intercept: float = 0.0
    weights: dict[str, float] = Field(
        default_factory=dict, max_length=200, description="Model column -> weight; null values count as 0."
    )


Propensity = Annotated[
    ConstantPropensity | ColumnPropensity | LogisticPropensity, Field(discriminator="type")
]


class Creative(Camel):
    name: Name
    channel_id: str | None = Field(default=None, max_length=36)
    content: UserJson = None


class OfferCreate(Camel):
    name: Name
    category: str | None = Field(default=None, max_length=200, description="Business objective.")
    priority: StrictInt = Field(default=0, ge=-1_000_000, le=1_000_000, description="Higher first.")
    channels: list[Id] = Field(default_factory=list, max_length=100, description="Batch channel ids.")
    creatives: list[Creative] = Field(default_factory=list, max_length=100)
    eligibility: UserJson = Field(default=None, description="A filter tree over the decision flow's model.")
    propensity: Propensity = Field(default_factory=lambda: ConstantPropensity(type="constant", value=0.5))
    start_date: datetime | None = None
    end_date: datetime | None = None
    status: Literal["active", "inactive"] = "active"


class OfferUpdate(Camel):
    name: Name | None = None
    category: str | None = Field(default=None, max_length=200)
    priority: StrictInt | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    channels: list[Id] | None = Field(default=None, max_length=100)
    creatives: list[Creative] | None = Field(default=None, max_length=100)
    eligibility: UserJson = None
    propensity: Propensity | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    status: Literal["active", "inactive"] | None = None


class OfferRead(Camel):
    id: str
    name: str
    category: str | None
    priority: int
    channels: list[str]
    creatives: list[dict[str, Any]]
    eligibility: Any
    propensity: dict[str, Any]
    start_date: datetime | None
    end_date: datetime | None
    status: str
    created_at: datetime
    updated_at: datetime


# -- batch channels --------------------------------------------------------------------------------
class ChannelCreate(Camel):
    name: Name
    delivery_mode: DeliveryMode
    destination_id: Id | None = None


class ChannelUpdate(Camel):
    name: Name | None = None
    delivery_mode: DeliveryMode | None = None
    destination_id: Id | None = None


class ChannelRead(Camel):
    id: str
    name: str
    delivery_mode: str
    destination_id: str | None
    batch_compatible: bool = Field(
        description="file, integration and manual channels take part in batch runs."
    )
    created_at: datetime
    updated_at: datetime


# -- decision flows --------------------------------------------------------------------------------
class FlowCreate(Camel):
    name: Name
    model_id: Id
    offer_ids: list[Id] = Field(
        default_factory=list, max_length=500, description="Empty: every active offer."
    )
    eligibility: UserJson = Field(default=None, description="A filter applied before the offers' own.")
    ranking: Ranking = "priority"
    max_offers_per_customer: StrictInt = Field(default=1, ge=1, le=100)
    one_offer_per_category: bool = False


class FlowUpdate(Camel):
    name: Name | None = None
    model_id: Id | None = None
    offer_ids: list[Id] | None = Field(default=None, max_length=500)
    eligibility: UserJson = None
    ranking: Ranking | None = None
    max_offers_per_customer: StrictInt | None = Field(default=None, ge=1, le=100)
    one_offer_per_category: bool | None = None


class FlowRead(Camel):
    id: str
    name: str
    model_id: str
    offer_ids: list[str]
    eligibility: Any
    ranking: str
    max_offers_per_customer: int
    one_offer_per_category: bool
    created_at: datetime
    updated_at: datetime


# -- campaigns -------------------------------------------------------------------------------------
class ScheduleIn(Camel):
    type: ScheduleType = "manual"
    schedule_time: str | None = Field(default=None, description="HH:MM, 24-hour, on the zone's wall clock.")
    schedule_timezone: str | None = Field(default=None, description="IANA zone, e.g. Europe/Paris.")
    schedule_day_of_week: StrictInt | None = Field(default=None, description="0=Sunday .. 6=Saturday.")
    schedule_day_of_month: StrictInt | Literal["last_working_day"] | None = Field(
        default=None, description="1-28, or last_working_day (the month's last Monday-Friday)."
    )


class VolumeConstraints(Camel):
    max_total_per_run: StrictInt | None = Field(default=None, ge=1)
    max_per_offer: StrictInt | None = Field(default=None, ge=1)
    max_per_channel: StrictInt | None = Field(default=None, ge=1)
    allocation: Literal["greedy", "optimal"] = Field(
        default="greedy",
        description="greedy: best scores served first; optimal: the largest total score under the caps.",
    )


class FileOutput(Camel):
    format: Literal["csv", "json"] = "csv"
    columns: list[str] = Field(default_factory=lambda: list(DEFAULT_COLUMNS), min_length=1, max_length=20)
    include_personalization: bool = False
    destination: Literal["download", "s3"] = "download"
    s3_path: str | None = Field(
        default=None, max_length=1024, description="e.g. s3://bucket/campaigns/{campaign_id}/{run_date}/"
    )


class CampaignCreate(Camel):
    name: Name
    decision_flow_id: Id
    segment_id: Id
    schedule: ScheduleIn = Field(default_factory=ScheduleIn)
    volume_constraints: VolumeConstraints = Field(default_factory=VolumeConstraints)
    channel_ids: list[Id] = Field(default_factory=list, max_length=100)
    file_output: FileOutput = Field(default_factory=FileOutput)
    status: Literal["draft", "active"] = "draft"


class CampaignUpdate(Camel):
    name: Name | None = None
    decision_flow_id: Id | None = None
    segment_id: Id | None = None
    schedule: ScheduleIn | None = None
    volume_constraints: VolumeConstraints | None = None
    channel_ids: list[Id] | None = Field(default=None, max_length=100)
    file_output: FileOutput | None = None
    status: CampaignStatusName | None = None


class CampaignRead(Camel):
    id: str
    name: str
    decision_flow_id: str
    segment_id: str
    schedule: dict[str, Any]
    volume_constraints: dict[str, Any]
    channel_ids: list[str]
    file_output: dict[str, Any]
    status: str
    next_run_at: datetime | None = Field(description="The next scheduled run (active campaigns only).")
    created_at: datetime
    updated_at: datetime


# -- runs ------------------------------------------------------------------------------------------
class OfferCount(Camel):
    offer_id: str
    offer_name: str
    count: int


class ChannelCount(Camel):
    channel_id: str | None
    channel_name: str | None
    count: int


class CategoryCount(Camel):
    category: str | None
    count: int


class Skipped(Camel):
    """Customers left without any offer, by reason (each customer counted once)."""

    max_total_per_run: int = 0
    max_per_offer: int = 0
    max_per_channel: int = 0
    not_eligible: int = 0


class Summary(Camel):
    by_offer: list[OfferCount] = Field(default_factory=list)
    by_channel: list[ChannelCount] = Field(default_factory=list)
    by_category: list[CategoryCount] = Field(default_factory=list)
    skipped: Skipped = Field(default_factory=Skipped)


class RunResults(Camel):
    total_customers: int = Field(description="Customers in the target segment.")
    processed: int = Field(description="Customers processed: all but those a volume constraint cut.")
    recommended: int = Field(description="Customers who received at least one offer.")
    avg_latency_ms: float = Field(description="Run time divided by the segment's size.")
    summary: Summary
    allocation: Literal["greedy", "optimal"] = "greedy"
    value: float = Field(description="Sum of the scores of the recommendations made.")
    greedy_value: float | None = Field(default=None, description="optimal only: what greedy would make.")
    gap: float | None = Field(default=None, description="optimal only: value - greedyValue.")


class RunFile(Camel):
    format: str
    rows: int
    bytes: int
    sha256: str
    path: str
    download_url: str


class RunRead(Camel):
    id: str
    campaign_id: str
    status: RunStatusName
    trigger: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None
    step: str | None
    results: RunResults | None
    file: RunFile | None


class CustomerOffer(Camel):
    offer_id: str
    offer_name: str
    channel_id: str | None
    channel: str | None
    creative: str | None
    category: str | None
    score: float
    rank: int


class CustomerResult(Camel):
    customer_id: Any
    status: Literal["recommended", "skipped"]
    reason: Literal["notEligible", "maxPerOffer", "maxPerChannel", "maxTotalPerRun"] | None
    offers: list[CustomerOffer]


class CustomersPage(Camel):
    customers: list[CustomerResult]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
