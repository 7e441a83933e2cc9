"""Executing one run: a handful of set-based statements in the data source, one transaction per step.

A run happens at its logical instant (`started_at`, kept by a resumed attempt) and is made of:

1. a first *pass*, one transaction: remove the members that must leave (on a tile the definition no
   longer has, without a profile, matching the exit criteria); then one SELECT walks every member
   that can move — new entrants (unless draining), members whose wait is over — through the DAG
   level by level (filters by their criteria joined against the profiles, splits by an md5 bucket
   computed in SQL, waits reached now start their deadline), and the result is applied with one
   UPDATE, one INSERT of new members and one INSERT of history;
2. syncs: members standing on a sync tile are sent in batches, then moved on; another pass carries
   them further; repeated until a round syncs nobody (at most one round per sync tile on a path).

A sync batch is the one step that spans two databases: the outbox messages (application database,
idempotency key = journey, tile, member, entry number) commit first, then the members advance (data
source). A crash between the two leaves the members on the sync tile; the retry writes the same keys,
which the outbox skips, and advances them: nothing lost, nothing sent twice.

Between steps the run checks whether it was cancelled, its journey paused or deleted, or its job
lost; every step being one transaction, each member always stands on a tile it really reached.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from overture.core.dag import topological_order
from overture.core.encode import to_json
from overture.core.filters import FilterError, parse, to_sql
from overture.core.schedules import next_local_time
from overture.data.service import get_model, relation_for
from overture.data.source import SourceError, get_source
from overture.db.context import AppContext
from overture.delivery.service import get_destination
from overture.errors import Invalid, NotFound, OvertureError
from overture.journeys import service, validation
from overture.journeys.lifecycle import RUN, RUNNABLE, UNFINISHED_RUN, JourneyStatus, RunStatus
from overture.journeys.members import passes, reads, syncs
from overture.journeys.members.passes import Layout
from overture.journeys.members.tables import MemberStore, Relation, Step, naive_utc
from overture.journeys.models import Journey, JourneyRun
from overture.runtime import outbox
from overture.runtime.jobs import JobCancelled, JobInterrupted, LeaseLost

log = logging.getLogger(__name__)

__all__ = ["NeedsHuman", "RunStopped", "execute_run"]

#: Members per sync batch: one outbox transaction and one advance statement each.
SYNC_BATCH = 5_000


class NeedsHuman(Exception):
    """The run cannot go on until someone fixes the journey or its data: the journey goes to error."""


class RunStopped(Exception):
    """Cancelled, journey paused or deleted: stop before the next step."""


@dataclass
class Plan:
    """The journey as this run executes it (a snapshot: an edit mid-run applies to the next run)."""

    journey_id: str
    workspace_id: str
    parent_model_id: str
    admits: bool
    tiles: dict[str, dict[str, Any]]
    order: list[str]
    out: dict[str, list[tuple[str, str | None]]]
    entry_tile: str
    reentry: str
    entry_criteria: Any
    exit_criteria: Any


@dataclass
class Compiled:
    relation: Relation
    entry: sa.ColumnElement[bool] | None
    exit: sa.ColumnElement[bool] | None
    layout: Layout


Check = Callable[[], None]


def execute_run(
    ctx: AppContext, run_id: str, *, check: Check | None = None, last_attempt: bool = True
) -> str:
    """Run (or resume) `run_id` to an outcome and return its final status. `check` is the job's own
    stop check (lease lost, job cancelled). Errors that need a human fail the run and put the journey
    in `error`; other errors fail the run on the last attempt, else propagate so the job retries and
    the next attempt resumes where this one stopped."""
    started = _start(ctx, run_id)
    if started is None:
        return _status_of(ctx, run_id)
    run_now, plan = started
    execution = _Execution(ctx, run_id, plan, run_now, check or (lambda: None))
    try:
        execution.run()
    except (LeaseLost, JobInterrupted):
        raise  # another worker owns the run now, or this one stops: the run resumes elsewhere
    except JobCancelled:
        return _end(ctx, run_id, RunStatus.CANCELLED, "cancelled by request")
    except RunStopped as stop:
        return _end(ctx, run_id, RunStatus.CANCELLED, str(stop))
    except NeedsHuman as exc:
        return _end(ctx, run_id, RunStatus.FAILED, str(exc), needs_human=True, failed=execution.failed)
    except OvertureError as exc:
        if isinstance(exc, Invalid | NotFound | SourceError):
            return _end(ctx, run_id, RunStatus.FAILED, exc.message, needs_human=True, failed=execution.failed)
        if last_attempt:
            return _end(ctx, run_id, RunStatus.FAILED, exc.message, failed=execution.failed)
        raise
    except Exception as exc:
        if last_attempt:
            return _end(
                ctx, run_id, RunStatus.FAILED, f"{type(exc).__name__}: {exc}", failed=execution.failed
            )
        raise
    return _finish(ctx, run_id, execution)


def _status_of(ctx: AppContext, run_id: str) -> str:
    with ctx.transaction(write=False) as session:
        status = session.scalar(sa.select(JourneyRun.status).where(JourneyRun.id == run_id))
    return str(status or "missing")


def _start(ctx: AppContext, run_id: str) -> tuple[datetime, Plan] | None:
    """Mark the run running (keeping started_at on a resumed attempt) and snapshot its journey."""
    with ctx.transaction() as session:
        run = session.get(JourneyRun, run_id)
        if run is None or run.status not in UNFINISHED_RUN:
            return None
        journey = session.get(Journey, run.journey_id)
        if journey is None or journey.status not in RUNNABLE:
            reason = "journey is not active" if journey is None else f"journey is {journey.status}"
            service.end_run(session, run, RunStatus.CANCELLED, reason)
            return None
        if run.status == RunStatus.PENDING:
            RUN.move(run, RunStatus.RUNNING)
        if run.started_at is None:
            run.started_at = session.now()
            run.journey_version = journey.version
        journey.last_run_id = run.id
        journey.last_run_at = run.started_at
        plan = _plan(journey)
        return run.started_at, plan


def _plan(journey: Journey) -> Plan:
    tiles = {str(t["id"]): t for t in journey.tiles}
    out: dict[str, list[tuple[str, str | None]]] = {tile_id: [] for tile_id in tiles}
    for edge in journey.edges:
        if edge.get("from") in out:
            out[edge["from"]].append((str(edge["to"]), edge.get("branch")))
    entry = next((tile_id for tile_id, t in tiles.items() if t.get("type") == "entry"), "")
    return Plan(
        journey_id=journey.id,
        workspace_id=journey.workspace_id,
        parent_model_id=journey.parent_model_id,
        admits=journey.status == JourneyStatus.ACTIVE,
        tiles=tiles,
        order=topological_order(tiles, ((e["from"], e["to"]) for e in journey.edges)),
        out=out,
        entry_tile=entry,
        reentry=str((tiles.get(entry, {}).get("config") or {}).get("reentry", "never")),
        entry_criteria=journey.entry_criteria,
        exit_criteria=journey.exit_criteria,
    )


class _Execution:
    def __init__(self, ctx: AppContext, run_id: str, plan: Plan, now: datetime, check: Check) -> None:
        self.ctx = ctx
        self.run_id = run_id
        self.plan = plan
        self.now = naive_utc(now)
        self.aware_now = now
        self.check = check
        self.source = get_source(ctx)
        self.store = MemberStore(self.source, plan.workspace_id, plan.journey_id)
        self.failed = 0
        self._seq: itertools.count[int] | None = None

    # -- plumbing ----------------------------------------------------------------------------------
    def step(self) -> Step:
        """A fresh step identity: a sequence number no earlier step of this journey used."""
        assert self._seq is not None
        return Step(self.run_id, self.now, next(self._seq))

    def between_steps(self, step: str) -> None:
        """Stop here if the run was cancelled, the journey paused or deleted, or the job lost."""
        self.check()
        with self.ctx.transaction() as session:
            moved: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
                sa.update(JourneyRun)
                .where(JourneyRun.id == self.run_id, JourneyRun.status == RunStatus.RUNNING)
                .values(step=step[:120])
            )
            if not moved.rowcount:
                raise RunStopped("cancelled by request")
            status = session.scalar(sa.select(Journey.status).where(Journey.id == self.plan.journey_id))
        if status is None:
            raise RunStopped("journey was deleted")
        if status not in RUNNABLE:
            raise RunStopped(f"journey was {status} during the run")

    # -- the run -----------------------------------------------------------------------------------
    def run(self) -> None:
        self.validate_plan()
        compiled = self.compile()
        with self.source.begin() as conn:
            self.store.ensure(conn, compiled.relation)
            self._seq = itertools.count(self.store.last_seq(conn) + 1)
        self.between_steps("pass")
        try:
            with self.source.begin() as conn:
                passes.exit_members(
                    self.store, conn, self.step(), compiled.relation, list(self.plan.tiles), compiled.exit
                )
                passes.walk(
                    self.store,
                    conn,
                    self.step(),
                    compiled.relation,
                    compiled.layout,
                    entry_tile=self.plan.entry_tile if self.plan.admits else None,
                    entry_criteria=compiled.entry,
                    exit_criteria=compiled.exit,
                    reentry=self.plan.reentry,
                )
            # Members reaching a sync tile wait there for their messages; once synced they move on,
            # and another pass carries them as far as they go (a sync per round at most per path).
            while self.sync_all(compiled):
                self.between_steps("pass")
                with self.source.begin() as conn:
                    passes.walk(self.store, conn, self.step(), compiled.relation, compiled.layout)
        except OvertureError:
            if not self.failed:
                self.failed = self._active_count()
            raise

    def validate_plan(self) -> None:
        tiles = list(self.plan.tiles.values())
        edges = [
            {"from": source, "to": target, **({"branch": branch} if branch is not None else {})}
            for source, outs in self.plan.out.items()
            for target, branch in outs
        ]
        errors = validation.graph_errors(tiles, edges)
        errors += [p.message for p in validation.config_problems(tiles, columns=None, check_criteria=None)]
        if errors:
            raise NeedsHuman(f"journey is not valid: {errors[0]}")

    def compile(self) -> Compiled:
        with self.ctx.transaction(write=False, workspace_id=self.plan.workspace_id) as session:
            try:
                model = get_model(session, self.plan.parent_model_id)
            except NotFound:
                raise NeedsHuman(f"parent model '{self.plan.parent_model_id}' no longer exists")
            rows, sql_model = relation_for(session, model)
            relation = Relation(rows, rows.c[model.primary_key])
            for tile_id, tile in self.plan.tiles.items():
                if tile.get("type") == "sync":
                    destination_id = str((tile.get("config") or {}).get("destination_id"))
                    try:
                        get_destination(session, destination_id)
                    except NotFound:
                        raise NeedsHuman(f"tile '{tile_id}' sends to unknown destination '{destination_id}'")
        layout = Layout(
            levels=_levels(self.plan.order, self.plan.out),
            types={t: str(tile.get("type")) for t, tile in self.plan.tiles.items()},
            outs=self.plan.out,
        )
        for tile_id, tile in self.plan.tiles.items():
            config = tile.get("config") or {}
            kind = tile.get("type")
            if kind == "filter":
                criteria = self._criteria(config.get("criteria"), sql_model, f"tile '{tile_id}' criteria")
                layout.criteria[tile_id] = criteria if criteria is not None else sa.true()
            elif kind == "split":
                uppers, total = [], 0
                for name, points in validation.split_variants(config):
                    total += points
                    uppers.append((name, total))
                layout.splits[tile_id] = uppers
            elif kind == "wait":
                layout.deadlines[tile_id] = self.wait_deadline(config)
        return Compiled(
            relation=relation,
            entry=self._criteria(self.plan.entry_criteria, sql_model, "entry_criteria"),
            exit=self._criteria(self.plan.exit_criteria, sql_model, "exit_criteria"),
            layout=layout,
        )

    def _criteria(self, raw: Any, sql_model: Any, where: str) -> sa.ColumnElement[bool] | None:
        """None for an empty tree (no condition). Relative times anchor at the run's instant."""
        if raw in (None, {}, []):
            return None
        try:
            return to_sql(parse(raw, root=where), sql_model, now=self.aware_now)
        except FilterError as exc:
            raise NeedsHuman(f"{where} no longer fits the parent model: {exc}")

    def wait_deadline(self, config: Mapping[str, Any]) -> datetime:
        """When a member arriving now on a wait tile with `config` may leave it."""
        delay = validation.wait_delay(config)
        if delay is not None:
            return self.now + delay
        local = next_local_time(self.aware_now, str(config["until"]), str(config.get("timezone", "UTC")))
        return naive_utc(local)

    def _active_count(self) -> int:
        try:
            with self.source.connect() as conn:
                return reads.active_count(self.store, conn) if self.store.exists(conn) else 0
        except Exception:  # counting is best effort on a source that just failed
            return 0

    # -- sync: outbox first, then advance ----------------------------------------------------------
    def sync_all(self, compiled: Compiled) -> bool:
        """Sync every member standing on a sync tile, tile by tile in DAG order. True if any moved."""
        synced = False
        for tile_id in self.plan.order:
            if self.plan.tiles[tile_id].get("type") == "sync":
                synced |= self.sync(tile_id, self.plan.tiles[tile_id], compiled)
        return synced

    def sync(self, tile_id: str, tile: Mapping[str, Any], compiled: Compiled) -> bool:
        config = tile.get("config") or {}
        destination_id = str(config["destination_id"])
        mapping = [(str(m["from"]), str(m["to"])) for m in config["field_mapping"]]
        columns = list(dict.fromkeys(source for source, _ in mapping))
        position = {name: i for i, name in enumerate(columns)}
        outs = self.plan.out[tile_id]
        target = outs[0][0] if outs else None
        deadline = None
        if target is not None and self.plan.tiles[target].get("type") == "wait":
            deadline = self.wait_deadline(self.plan.tiles[target].get("config") or {})
        moved = False
        try:
            while True:
                self.between_steps(f"sync:{tile_id}")
                with self.source.connect() as conn:
                    batch = syncs.sync_batch(
                        self.store, conn, compiled.relation, tile_id, columns, size=SYNC_BATCH
                    )
                if not batch:
                    return moved
                items = [
                    outbox.OutboxItem(
                        workspace_id=self.plan.workspace_id,
                        destination_id=destination_id,
                        idempotency_key=outbox.idempotency_key(
                            "journey", self.plan.journey_id, tile_id, row["__member_id"], row["__entry_no"]
                        ),
                        payload={to: to_json(row[f"f_{position[source]}"]) for source, to in mapping},
                        source_kind="journey_run",
                        source_id=self.run_id,
                    )
                    for row in batch
                ]
                with self.ctx.transaction(workspace_id=self.plan.workspace_id) as session:
                    outbox.enqueue(session, items)
                # Only now, with the messages committed, do the members move past the sync tile.
                with self.source.begin() as conn:
                    syncs.pass_sync(
                        self.store,
                        conn,
                        self.step(),
                        compiled.relation,
                        tile_id,
                        batch[0]["__member_id"],
                        batch[-1]["__member_id"],
                        target,
                        target_is_exit=target is not None and self.plan.tiles[target].get("type") == "exit",
                        deadline=deadline,
                    )
                moved = True
                if len(batch) < SYNC_BATCH:
                    return moved
        except OvertureError:
            self.failed = self._waiting_on(tile_id)
            raise

    def _waiting_on(self, tile_id: str) -> int:
        try:
            with self.source.connect() as conn:
                return reads.waiting_on(self.store, conn, tile_id)
        except Exception:  # best effort
            return 0


def _levels(order: Sequence[str], out: Mapping[str, Sequence[tuple[str, str | None]]]) -> list[list[str]]:
    """Tiles grouped by longest distance from a source: no edge joins two tiles of one level, so a
    pass moves members one level at a time with one CASE per level."""
    level: dict[str, int] = dict.fromkeys(order, 0)
    for tile in order:
        for target, _ in out.get(tile, ()):
            if target in level:
                level[target] = max(level[target], level[tile] + 1)
    grouped: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for tile in order:
        grouped[level[tile]].append(tile)
    return grouped


# -- outcomes --------------------------------------------------------------------------------------
def _final_counts(ctx: AppContext, run_id: str, failed: int) -> dict[str, int]:
    """The run's counts summed from the steps it committed in the data source (best effort when
    the source is what failed)."""
    with ctx.transaction(write=False) as session:
        run = session.get(JourneyRun, run_id)
        ids = (run.workspace_id, run.journey_id) if run is not None else None
    if ids is None:
        return service.run_counts({}, failed)
    store = MemberStore(get_source(ctx), *ids)
    try:
        with store.source.connect() as conn:
            steps = reads.run_counts(store, conn, run_id) if store.exists(conn) else {}
    except OvertureError:
        steps = {}
    return service.run_counts(steps, failed)


def _finish(ctx: AppContext, run_id: str, execution: _Execution) -> str:
    counts = _final_counts(ctx, run_id, 0)
    with execution.source.connect() as conn:
        still_active = reads.active_count(execution.store, conn)
    with ctx.transaction(workspace_id=execution.plan.workspace_id) as session:
        run = session.get(JourneyRun, run_id)
        if run is None:
            return "missing"
        run.counts = counts
        if run.status != RunStatus.RUNNING:  # cancelled after its last step: keep the cancellation
            return str(run.status)
        service.end_run(session, run, RunStatus.COMPLETED, None)
        run.step = None
        journey = session.get(Journey, run.journey_id)
        if journey is not None and journey.status == JourneyStatus.DRAINING and still_active == 0:
            service.record_run_outcome(session, journey, JourneyStatus.ARCHIVED)
        return RunStatus.COMPLETED


def _end(
    ctx: AppContext,
    run_id: str,
    status: RunStatus,
    reason: str,
    *,
    needs_human: bool = False,
    failed: int = 0,
) -> str:
    """End a run that stopped early: cancelled (by request, its journey paused or deleted) or failed
    (`needs_human` also puts the journey in error, with `reason`). Returns the run's final status; a
    run already over (cancelled meanwhile) keeps its outcome."""
    if status == RunStatus.FAILED:
        log.warning("journey run %s failed: %s", run_id, reason)
    counts = _final_counts(ctx, run_id, failed)
    with ctx.transaction() as session:
        run = session.get(JourneyRun, run_id)
        if run is None:
            return "missing"
        run.counts = counts
        service.end_run(session, run, status, reason)
        if needs_human:
            journey = session.get(Journey, run.journey_id)
            if journey is not None and journey.status in RUNNABLE:
                service.record_run_outcome(session, journey, JourneyStatus.ERROR, reason)
        return str(run.status)
