"""Request and response bodies of segments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from overture.schemas import Strict, UserJson
from overture.segments.states import ReachStatus


class SegmentCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    model_id: str = Field(min_length=1, max_length=36)
    filter: UserJson = Field(
        default=None, description="A filter tree over the model's fields (empty: everyone)."
    )


class SegmentUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    model_id: str | None = Field(default=None, min_length=1, max_length=36)
    filter: UserJson = None


class Reach(BaseModel):
    status: ReachStatus = Field(
        description="idle: never evaluated; pending: evaluating (count not reliable); ok: count is current "
        "as of evaluated_at; failed: the last evaluation failed, count is the prior successful one."
    )
    evaluated_count: int | None
    evaluated_at: datetime | None
    is_stale: bool = Field(description="The definition changed after the last successful evaluation.")
    error: str | None = None


class SegmentRead(BaseModel):
    id: str
    workspace_id: str
    name: str
    model_id: str
    filter: Any
    reach: Reach
    generated: bool = Field(
        description="Made and kept current by Overture (an experience's fixed, target or decision segment); "
        "read-only through this API."
    )
    created_at: datetime
    updated_at: datetime


class PreviewIn(Strict):
    model_id: str = Field(min_length=1, max_length=36)
    filter: UserJson = None


class PreviewRead(BaseModel):
    model_id: str
    count: int


class MembersPage(BaseModel):
    segment_id: str
    primary_key: str
    members: list[Any] = Field(description="Primary key values, ascending.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
