"""Request and response bodies of the journeys API (seed 001's orchestration object and run)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from overture.schemas import JsonCheck, JsonObject, Strict, UserJson

TileType = Literal["entry", "wait", "filter", "sync", "split", "exit"]
TILE_TYPES: tuple[str, ...] = ("entry", "wait", "filter", "sync", "split", "exit")
MAX_TILES = 200
MAX_EDGES = 400


class TileIn(Strict):
    """A node of the DAG. `config` depends on `type` (see docs/journeys.md); `position` is the UI's
    and is stored and returned untouched."""

    id: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Letters, digits, '_', '.' and '-' (member histories list tiles by id).",
    )
    type: TileType
    name: str | None = Field(default=None, max_length=200)
    config: JsonObject = Field(default_factory=dict)
    position: UserJson = None

    def stored(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type, "config": self.config}
        if self.name is not None:
            out["name"] = self.name
        if "position" in self.model_fields_set:
            out["position"] = self.position
        return out


class EdgeIn(Strict):
    """A connection. Out-edges of filter tiles carry `branch` `match`/`no_match`; of split tiles,
    the variant name."""

    model_config = ConfigDict(populate_by_name=True)  # extra fields stay forbidden (Strict)

    source: str = Field(alias="from", min_length=1, max_length=100)
    to: str = Field(min_length=1, max_length=100)
    branch: str | None = Field(default=None, max_length=100)

    def stored(self) -> dict[str, Any]:
        out: dict[str, Any] = {"from": self.source, "to": self.to}
        if self.branch is not None:
            out["branch"] = self.branch
        return out


Criteria = JsonObject | Annotated[list[Any], JsonCheck()] | None


class JourneyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    parent_model_id: str = Field(min_length=1, max_length=64)
    entry_criteria: Criteria = Field(
        default=None, description="Filter tree over the parent model: who enters. Empty: everyone."
    )
    exit_criteria: Criteria = Field(
        default=None, description="Filter tree over the parent model: who is removed. Empty: nobody."
    )
    tiles: list[TileIn] = Field(default_factory=list, max_length=MAX_TILES)
    edges: list[EdgeIn] = Field(default_factory=list, max_length=MAX_EDGES)
    schedule: str | None = Field(default=None, max_length=200, description="Cron expression")


class JourneyUpdate(Strict):
    """Every field optional: what is sent replaces what is stored; the rest is kept."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    parent_model_id: str | None = Field(default=None, min_length=1, max_length=64)
    entry_criteria: Criteria = None
    exit_criteria: Criteria = None
    tiles: list[TileIn] | None = Field(default=None, max_length=MAX_TILES)
    edges: list[EdgeIn] | None = Field(default=None, max_length=MAX_EDGES)
    schedule: str | None = Field(default=None, max_length=200)


class JourneyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    workspace_id: str
    parent_model_id: str
    name: str
    description: str
    entry_criteria: Any
    exit_criteria: Any
    tiles: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    schedule: str | None
    status: str
    status_error: str
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    last_run_id: str | None
    last_run_at: datetime | None


class ValidationResult(BaseModel):
    valid: bool
    errors: list[str]


class RunCounts(BaseModel):
    entered: int = 0
    advanced: int = 0
    exited: int = 0
    completed: int = 0
    synced: int = 0
    failed: int = 0


class RunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    journey_id: str
    status: Literal["pending", "running", "completed", "failed", "cancelled"]
    trigger: Literal["manual", "schedule"]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    counts: RunCounts
    error: str | None


class StatusOnly(BaseModel):
    status: str


class MemberCounts(BaseModel):
    active: int = 0
    completed: int = 0
    exited: int = 0


class StatsRead(BaseModel):
    tiles: dict[str, MemberCounts]
    total: MemberCounts


class PathStep(BaseModel):
    entry_number: int
    tile_id: str
    event: Literal["entered", "arrived", "synced", "completed", "exited"]
    at: datetime
    run_id: str
    detail: str | None = None


class MemberRead(BaseModel):
    member_id: str
    status: Literal["active", "completed", "exited"]
    tile_id: str
    entry_number: int
    entered_at: datetime
    tile_entered_at: datetime
    wait_until: datetime | None
    finished_at: datetime | None
    reason: str | None = Field(description="Why the member left: exit_criteria, tile_removed, ...")
    path: list[PathStep]
