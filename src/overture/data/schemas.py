"""Request and response bodies of the data plane: entity models, profile records, events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, field_validator

from overture.schemas import JsonCheck, Strict, UserJson

#: A request carries at most this many records or events (bigger batches: `overture import`).
MAX_BATCH = 10_000
#: One event's properties: at most this many (top-level), and this many bytes as JSON. Public keys
#: ship in apps, so these bound what anyone can make the event stream store per event.
MAX_EVENT_PROPERTIES = 100
MAX_EVENT_PROPERTIES_BYTES = 16 * 1024


def _few_properties(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_EVENT_PROPERTIES:
        raise ValueError(f"at most {MAX_EVENT_PROPERTIES} properties per event, got {len(value)}")
    return value


#: An event's id (every events endpoint): seen before in the workspace, the event is not stored again.
EventIdText = Annotated[
    str, Field(min_length=1, max_length=200, examples=["6f1c2a0e-3b7d-4c55-9d1e-2f8a7b6c5d4e"])
]
#: A batch's id: an event without its own id gets `<batch id>:<index>`, so a retried batch counts once.
BatchIdText = Annotated[str, Field(min_length=1, max_length=100, examples=["sdk-batch-0001"])]

#: An event's `properties` (every events endpoint): 422 naming the field above the caps.
EventProperties = Annotated[
    dict[str, Any], JsonCheck(max_bytes=MAX_EVENT_PROPERTIES_BYTES), AfterValidator(_few_properties)
]

ColumnType = Literal["string", "integer", "number", "boolean", "timestamp", "date", "json"]


class ColumnSpec(Strict):
    name: str = Field(min_length=1, max_length=63, description="Column name (letters, digits, _).")
    type: ColumnType = "string"


class ModelCreate(Strict):
    """Give `table` (an existing table or view) or `sql` (a SELECT), or neither for a table Overture
    creates and manages (it then grows columns as records arrive; `columns` may declare types)."""

    name: str = Field(min_length=1, max_length=200)
    primary_key: str = Field(min_length=1, max_length=200)
    table: str | None = Field(default=None, max_length=200, description="`name` or `schema.name`.")
    sql: str | None = Field(default=None, min_length=1, max_length=100_000)
    columns: list[ColumnSpec] | None = Field(
        default=None, max_length=500, description="Only for managed models: initial columns and types."
    )


class ModelUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    primary_key: str | None = Field(default=None, min_length=1, max_length=200)
    table: str | None = Field(default=None, max_length=200)
    sql: str | None = Field(default=None, min_length=1, max_length=100_000)


class ColumnRead(BaseModel):
    name: str
    type: str = Field(description="string, integer, number, boolean, timestamp, date, json or other")
    sql_type: str = Field(description="The type as the data source names it.")


class ModelRead(BaseModel):
    id: str
    workspace_id: str
    name: str
    primary_key: str
    kind: Literal["table", "sql", "managed"]
    table: str | None
    sql: str | None
    columns: list[ColumnRead]
    columns_error: str | None = Field(
        default=None, description="Why columns could not be discovered just now (the source failed)."
    )
    created_at: datetime
    updated_at: datetime


class RecordsIn(Strict):
    records: list[UserJson] = Field(description=f"Up to {MAX_BATCH:,} JSON objects keyed by column name.")


class RecordsResult(BaseModel):
    upserted: int
    inserted: int
    updated: int
    columns_added: list[str] = Field(default_factory=list)


class EventIn(Strict):
    """One event about one entity. `timestamp` defaults to the server's now; `entity_id` is the
    model's primary key value (numbers are accepted and stored as text)."""

    entity_id: str = Field(min_length=1, max_length=200)
    event: str = Field(min_length=1, max_length=200)
    timestamp: datetime | None = None
    properties: EventProperties = Field(default_factory=dict)
    event_id: EventIdText | None = None

    @field_validator("entity_id", mode="before")
    @classmethod
    def _id_text(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EventsIn(Strict):
    events: list[EventIn] = Field(description=f"Up to {MAX_BATCH:,} events (413 above that).")
    batch_id: BatchIdText | None = None


class EventsResult(BaseModel):
    accepted: int = Field(description="Events stored.")
    duplicates: int = Field(
        default=0, description="Events not stored again: their `event_id` was seen before."
    )
