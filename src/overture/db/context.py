"""The process-wide context an app or worker runs with: settings, database, clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from overture.clock import Clock, SystemClock
from overture.config import Settings
from overture.db.engine import create_app_engine, make_session_factory, transaction
from overture.db.keyring import KeyRing, attach, ring_of
from overture.db.session import Session


@dataclass
class AppContext:
    settings: Settings
    engine: sa.Engine
    sessions: sessionmaker[Session]
    clock: Clock = field(default_factory=SystemClock)
    #: Lazily built process-wide services (data sources, decision tables...), keyed by name.
    services: dict[str, Any] = field(default_factory=dict)
    #: Called by `close()`, in reverse order (engines of data sources, worker threads...).
    closers: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Every session this context makes carries it: `session.ctx`, `session.now()`.
        self.sessions.configure(info={"ctx": self})

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock | None = None) -> AppContext:
        settings.ensure_home()
        engine = create_app_engine(settings.resolved_database_url)
        attach(engine, KeyRing.from_settings(settings))  # encrypted columns find their keys here
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            clock=clock or SystemClock(),
        )

    @property
    def keyring(self) -> KeyRing:
        return ring_of(self.engine)

    @contextmanager
    def transaction(self, *, write: bool = True, workspace_id: str | None = None) -> Iterator[Session]:
        with transaction(self.sessions, write=write, workspace_id=workspace_id) as session:
            yield session

    def service(self, name: str, build: Callable[[AppContext], Any]) -> Any:
        """Get or build a process-wide service once (thread-safe enough: a duplicate build is dropped)."""
        existing = self.services.get(name)
        if existing is None:
            existing = self.services.setdefault(name, build(self))
        return existing

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()
        self.closers.clear()
        self.engine.dispose()
