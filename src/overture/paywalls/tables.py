"""The per-process cache of compiled decision tables, one per workspace, dropped on every change.

Configuration writes publish the workspace id on the `paywalls` topic when they commit
(`overture.db.notify.bus`: in this process at once, in other processes through PostgreSQL
LISTEN/NOTIFY); the next register in that workspace compiles a fresh table from one read."""

from __future__ import annotations

from overture.db.cache import WorkspaceCache
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


class DecisionTables(WorkspaceCache[DecisionTable]):
    """Compiled from one read of the configuration (`load_snapshot`)."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx, TOPIC, lambda session: DecisionTable(load_snapshot(session), self.now))


def decision_tables(ctx: AppContext) -> DecisionTables:
    tables: DecisionTables = ctx.service("paywalls.tables", DecisionTables)
    return tables


def decision_recorder(ctx: AppContext) -> DecisionRecorder:
    recorder: DecisionRecorder = ctx.service("paywalls.recorder", DecisionRecorder)
    return recorder
