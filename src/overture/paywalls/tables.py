"""The per-process cache of compiled decision tables, one per workspace, dropped on every change.

Configuration writes publish the workspace id on the `paywalls` topic when they commit
(`overture.db.notify.bus`: in this process at once, in other processes through PostgreSQL
LISTEN/NOTIFY); the next register in that workspace compiles a fresh table from one read."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from overture.db.context import AppContext
from overture.db.notify import bus
from overture.db.session import Session
from overture.paywalls.decisions import DecisionTable
from overture.paywalls.recorder import DecisionRecorder
from overture.paywalls.snapshot import load_snapshot

TOPIC = "paywalls"


def changed(session: Session) -> None:
    """The session's workspace's decision tables are stale once this transaction commits."""
    bus.publish_on_commit(session, TOPIC, session.workspace_id)


class DecisionTables:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._tables: dict[str, DecisionTable] = {}
        self._generations: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        # One callable for the life of the process, read at decision time (tests swap ctx.clock).
        self.now: Callable[[], datetime] = lambda: ctx.clock.now()
        bus.subscribe(TOPIC, self.invalidate)

    def get(self, workspace_id: str) -> DecisionTable | None:
        return self._tables.get(workspace_id)

    def load(self, workspace_id: str) -> DecisionTable:
        """Compile the workspace's table from one read (blocking: call it off the event loop)."""
        generation = self._generations[workspace_id]
        with self._ctx.transaction(write=False, workspace_id=workspace_id) as session:
            snapshot = load_snapshot(session)
        table = DecisionTable(snapshot, self.now)
        with self._lock:
            # A change that committed while we read makes this table stale: use it once, keep none.
            if generation == self._generations[workspace_id]:
                self._tables[workspace_id] = table
        return table

    def invalidate(self, workspace_id: str) -> None:
        with self._lock:
            self._generations[workspace_id] += 1
            self._tables.pop(workspace_id, None)


def decision_tables(ctx: AppContext) -> DecisionTables:
    tables: DecisionTables = ctx.service("paywalls.tables", DecisionTables)
    return tables


def decision_recorder(ctx: AppContext) -> DecisionRecorder:
    recorder: DecisionRecorder = ctx.service("paywalls.recorder", DecisionRecorder)
    return recorder
