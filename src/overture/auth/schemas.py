"""Request and response bodies for workspaces and keys."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from overture.auth.scopes import SCOPES
from overture.schemas import Strict


class KeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(default_factory=list, description=f"Any of: {', '.join(SCOPES)}")
    public: bool = False


class KeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    scopes: list[str]
    prefix: str
    public: bool
    created_at: datetime
    last_used_at: datetime | None = None


class KeyCreated(KeyRead):
    secret: str = Field(description="The key itself. Shown once; store it now.")


class WorkspaceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    timezone: str | None = Field(
        description="Default IANA timezone of schedules; null: none configured (UTC)."
    )
    created_at: datetime


class WorkspaceUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA timezone such as Europe/Paris; null clears it."
    )
