"""Request and response bodies of the broadcast authoring API (camelCase, snake_case accepted)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field

from overture.schemas import Camel

Channel = Literal["email", "sms", "push", "direct_mail"]
CHANNELS: tuple[str, ...] = ("email", "sms", "push", "direct_mail")
#: The profile column a channel's address is read from unless the broadcast names another.
DEFAULT_ADDRESS_FIELD = {
    "email": "email",
    "sms": "phone",
    "push": "push_token",
    "direct_mail": "postal_address",
}
#: Destination types that can carry each channel.
DESTINATION_TYPES = {
    "email": ("smtp", "webhook", "log"),
    "sms": ("webhook", "log"),
    "push": ("webhook", "log"),
    "direct_mail": ("file", "webhook", "log"),
}
_ID = Field(min_length=1, max_length=64)


class TemplateCreate(Camel):
    name: str = Field(min_length=1, max_length=200)
    channel: Channel
    subject: str | None = Field(default=None, max_length=998, description="Email only; Liquid.")
    body: str = Field(min_length=1, max_length=500_000, description="Liquid over the recipient's profile.")
    status: Literal["draft", "published"] = "draft"


class TemplateUpdate(Camel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    subject: str | None = Field(default=None, max_length=998)
    body: str | None = Field(default=None, min_length=1, max_length=500_000)
    status: Literal["draft", "published"] | None = None


class TemplateRead(Camel):
    id: str
    name: str
    channel: str
    subject: str | None
    body: str
    status: str
    proof_status: str
    created_at: datetime
    updated_at: datetime


class ProofCreate(Camel):
    recipients: list[str] = Field(min_length=1, max_length=10, description="Addresses to send the proof to.")
    sample_customer_id: str | None = Field(
        default=None, max_length=200, description="Render with this customer's profile (default: empty)."
    )
    destination_id: str | None = Field(
        default=None,
        max_length=36,
        description="Default: the destination of the most recently changed broadcast using the template.",
    )


class ProofRead(Camel):
    id: str
    template_id: str
    destination_id: str
    recipients: list[str]
    sample_customer_id: str | None
    status: str
    error: str | None
    created_at: datetime
    approved_at: datetime | None


class Audience(Camel):
    included: list[str] = Field(default_factory=list, max_length=50)
    excluded: list[str] = Field(default_factory=list, max_length=50)


class ScheduleIn(Camel):
    """One of: `sendAt` (an instant), `batchDate` (direct mail: the day the batch file is written),
    or `localTime` + `date` (each recipient at that wall-clock time in their own timezone)."""

    send_at: datetime | None = None
    batch_date: date | None = None
    local_time: str | None = Field(default=None, description="HH:MM in each recipient's timezone.")
    on_date: date | None = Field(default=None, alias="date", description="With localTime: the day.")
    timezone_field: str | None = Field(
        default=None, max_length=200, description="Profile column of the zone."
    )
    timezone: str | None = Field(default=None, max_length=64)
    max_per_minute: int | None = Field(default=None, ge=1, le=1_000_000, description="Throttle.")


class BroadcastCreate(Camel):
    name: str = Field(min_length=1, max_length=200)
    channel: Channel
    template_id: str | None = Field(default=None, max_length=36)
    destination_id: str | None = Field(default=None, max_length=36)
    address_field: str | None = Field(default=None, max_length=200)
    audience: Audience | None = None
    schedule: ScheduleIn | None = None


class BroadcastUpdate(Camel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    template_id: str | None = Field(default=None, max_length=36)
    destination_id: str | None = Field(default=None, max_length=36)
    address_field: str | None = Field(default=None, max_length=200)
    audience: Audience | None = None
    schedule: ScheduleIn | None = None


class ReachRead(Camel):
    status: str
    evaluated_count: int | None
    evaluated_at: datetime | None
    is_stale: bool
    error: str | None = None


class PreflightRead(Camel):
    status: str
    checks: list[dict[str, Any]]
    evaluated_at: datetime | None


class Counts(Camel):
    scheduled: int
    hydrated: int
    composed: int
    injected: int
    sent: int
    failed: int
    dropped: int
    cancelled: int
    retried: int
    zone_fallbacks: int


class ExecutionRead(Camel):
    id: str
    broadcast_id: str
    touchpoint_id: int
    manifest_id: str
    status: str
    phase: str
    started_at: datetime
    completed_at: datetime | None
    counts: Counts
    error: str | None


class BroadcastRead(Camel):
    id: str
    name: str
    channel: str
    template_id: str | None
    destination_id: str | None
    address_field: str
    model_id: str | None
    audience: Audience
    reach: ReachRead
    schedule: dict[str, Any] | None
    scheduled: bool
    authoring_status: str
    preflight: PreflightRead
    proof_status: str
    latest_execution: ExecutionRead | None
    created_at: datetime
    updated_at: datetime


class RecipientRead(Camel):
    entity_id: str
    stage: str
    outcome: str | None
    reason: str | None
    attempt: int


class RecipientsPage(Camel):
    execution_id: str
    recipients: list[RecipientRead]
    next_cursor: int | None = Field(description="Pass as `after` for the next page; null on the last.")
