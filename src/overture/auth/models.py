"""Workspace and API key tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from overture.db.base import Base, Timestamped, WorkspaceScoped, new_id


class Workspace(Timestamped, Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    #: The workspace's default IANA timezone; None when none is configured (schedules then use UTC).
    timezone: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, default=None)
    settings: Mapped[dict[str, Any]] = mapped_column(nullable=False, default=dict)


class ApiKey(WorkspaceScoped, Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    #: First characters of the secret, shown in lists and used to find the row; not a secret.
    prefix: Mapped[str] = mapped_column(sa.String(16), index=True, nullable=False)
    #: SHA-256 of the whole key; the key itself is never stored.
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    scopes: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    public: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class RateCount(Base):
    """Requests of a public key or a client address in one rate-limit window, summed over every API
    process (`overture.auth.ratelimit`; PostgreSQL only, rows of past windows are deleted)."""

    __tablename__ = "rate_limit_counts"

    window_no: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    #: `k:<key id>` or `a:<client address>`.
    subject: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    count: Mapped[int] = mapped_column(sa.Integer, nullable=False)
