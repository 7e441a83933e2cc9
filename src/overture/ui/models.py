"""Dashboard sign-in sessions: a row per session (or one-time sign-in link) pointing at an API key.

The cookie carries a random token, signed; the table keeps only its SHA-256, so a copy of the database
holds no live session. Sign-out (or revoking the key) ends the session for every process at once."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from overture.db.base import Base


class UiSession(Base):
    __tablename__ = "ui_sessions"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    #: "session" (a signed-in browser) or "link" (a one-time sign-in link, e.g. from `make run`).
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    workspace_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), index=True, nullable=False
    )
    key_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), index=True, nullable=False
    )
    created_at: Mapped[datetime] = mapped_column(nullable=False)
    expires_at: Mapped[datetime] = mapped_column(nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
