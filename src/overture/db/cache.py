"""A per-process cache of one object per workspace (a compiled decision table...), built from one
read and dropped whenever its change-bus topic fires for that workspace: at once in this process,
through PostgreSQL NOTIFY in others (`overture.db.notify`)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar

from overture.db.context import AppContext
from overture.db.notify import bus
from overture.db.session import Session

__all__ = ["WorkspaceCache"]

T = TypeVar("T")


class WorkspaceCache(Generic[T]):
    def __init__(self, ctx: AppContext, topic: str, build: Callable[[Session], T]) -> None:
        self._ctx = ctx
        self._build = build
        self._items: dict[str, T] = {}
        self._generations: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        # One callable for the life of the process, read at decision time (tests swap ctx.clock).
        self.now: Callable[[], datetime] = lambda: ctx.clock.now()
        bus.subscribe(topic, self.invalidate)

    def get(self, workspace_id: str) -> T | None:
        return self._items.get(workspace_id)

    def load(self, workspace_id: str) -> T:
        """Build the workspace's object from one read transaction (blocking: off the event loop)."""
        generation = self._generations[workspace_id]
        with self._ctx.transaction(write=False, workspace_id=workspace_id) as session:
            item = self._build(session)
        with self._lock:
            # A change that committed while we read makes this one stale: use it once, keep none.
            if generation == self._generations[workspace_id]:
                self._items[workspace_id] = item
        return item

    def invalidate(self, workspace_id: str) -> None:
        with self._lock:
            self._generations[workspace_id] += 1
            self._items.pop(workspace_id, None)
