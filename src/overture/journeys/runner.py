"""Executing one run: a handful of set-based statements in the data source, one transaction per step.

Order of a run (all at the run's logical instant, `started_at`, also on a resumed attempt):

1. exits: members on tiles the definition no longer has (tile_removed), members whose profile is
   gone (profile_missing), members matching the exit criteria (exit_criteria);
2. entries (not while draining): profiles matching the entry criteria and not the exit criteria,
   respecting the entry tile's `reentry`;
3. the walk: tiles in topological order; at each, the members ready there (not waiting) move on in
   one statement — a filter by its criteria joined against the profiles, a split by an md5 bucket of
   (journey, tile, member) computed in SQL, a wait when its deadline passed, an exit (or a tile
   without out-edges) completes them. Because the order is topological, a member crosses every
   instantaneous tile in one run and stops on the first wait not yet over.

A sync tile is the one step that spans two databases: per batch of members, the outbox messages
(application database, idempotency key = journey, tile, member, entry number) commit first, then the
members advance (data source). A crash between the two leaves the members on the sync tile; the
retry writes the same keys, which the outbox skips, and advances them: nothing lost, nothing twice.

Between steps the run checks whether it was cancelled, its journey paused or deleted, or its job
lost; every step being one transaction, each member always stands on a consistent tile.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from overture.core.dag import topological_order
from overture.core.filters import FilterError, parse, to_sql
from overture.core.schedules import next_local_time
from overture.data.service import get_model, relation_for
from overture.data.source import SourceError, get_source
from overture.db.context import AppContext
from overture.delivery.service import get_destination
from overture.errors import Invalid, NotFound, OvertureError
from overture.journeys import service, validation
from overture.journeys.lifecycle import RUNNABLE, UNFINISHED_RUN, JourneyStatus, RunStatus
from overture.journeys.members import MemberStore, Relation, Step, naive_utc
from overture.journeys.models import Journey, JourneyRun
from overture.runtime import outbox

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
    filters: dict[str, sa.ColumnElement[bool]] = field(default_factory=dict)
    sql_model: Any = None


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
    except RunStopped as stop:
        return _stop(ctx, run_id, str(stop))
    except NeedsHuman as exc:
        return _fail(ctx, run_id, str(exc), needs_human=True, failed=execution.failed)
    except OvertureError as exc:
        if isinstance(exc, Invalid | NotFound | SourceError):
            return _fail(ctx, run_id, exc.message, needs_human=True, failed=execution.failed)
        if last_attempt:
            return _fail(ctx, run_id, exc.message, needs_human=False, failed=execution.failed)
        raise
    except Exception as exc:
        if last_attempt:
            return _fail(
                ctx, run_id, f"{type(exc).__name__}: {exc}", needs_human=False, failed=execution.failed
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
            run.status = RunStatus.CANCELLED
            run.finished_at = ctx.clock.now()
            run.error = "journey is not active" if journey is None else f"journey is {journey.status}"
            return None
        if run.status == RunStatus.PENDING or run.started_at is None:
            run.status = RunStatus.RUNNING
            run.started_at = ctx.clock.now()
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
        self._marks: itertools.count[int] | None = None

    # -- plumbing ----------------------------------------------------------------------------------
    def step(self) -> Step:
        """A fresh statement identity: a mark no earlier statement on these tables used."""
        assert self._marks is not None
        return Step(self.run_id, self.now, next(self._marks))

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
            self._marks = itertools.count(self.store.max_mark(conn) + 1)
        self.between_steps("exit")
        self.exits(compiled)
        if self.plan.admits:
            self.between_steps("entry")
            self.enter(compiled)
        for tile_id in self.plan.order:
            self.between_steps(f"tile:{tile_id}")
            self.process(tile_id, compiled)

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
            rows, sql_model = relation_for(self.ctx, model)
            relation = Relation(rows, rows.c[model.primary_key])
            for tile_id, tile in self.plan.tiles.items():
                if tile.get("type") == "sync":
                    destination_id = str((tile.get("config") or {}).get("destination_id"))
                    try:
                        get_destination(session, destination_id)
                    except NotFound:
                        raise NeedsHuman(f"tile '{tile_id}' sends to unknown destination '{destination_id}'")
        compiled = Compiled(
            relation=relation,
            entry=self._criteria(self.plan.entry_criteria, sql_model, "entry_criteria"),
            exit=self._criteria(self.plan.exit_criteria, sql_model, "exit_criteria"),
            sql_model=sql_model,
        )
        for tile_id, tile in self.plan.tiles.items():
            if tile.get("type") == "filter":
                criteria = self._criteria((tile.get("config") or {}).get("criteria"), sql_model, tile_id)
                compiled.filters[tile_id] = criteria if criteria is not None else sa.true()
        return compiled

    def _criteria(self, raw: Any, sql_model: Any, where: str) -> sa.ColumnElement[bool] | None:
        """None for an empty tree (no condition). Relative times anchor at the run's instant."""
        if raw in (None, {}, []):
            return None
        try:
            return to_sql(parse(raw, root=where), sql_model, now=self.aware_now)
        except FilterError as exc:
            raise NeedsHuman(f"{where} no longer fits the parent model: {exc}")

    def exits(self, compiled: Compiled) -> None:
        with self.source.begin() as conn:
            self.store.exit_removed_tiles(conn, self.step(), list(self.plan.tiles))
        with self.source.begin() as conn:
            self.store.exit_missing_profiles(conn, self.step(), compiled.relation)
        if compiled.exit is not None:
            with self.source.begin() as conn:
                self.store.exit_matching(conn, self.step(), compiled.relation, compiled.exit)

    def enter(self, compiled: Compiled) -> None:
        with self.source.begin() as conn:
            self.store.enter(
                conn,
                self.step(),
                compiled.relation,
                entry_tile=self.plan.entry_tile,
                criteria=compiled.entry,
                exit_criteria=compiled.exit,
                reentry=self.plan.reentry,
            )

    # -- one tile ----------------------------------------------------------------------------------
    def wait_deadline(self, tile_id: str) -> datetime | None:
        """When a member arriving now on `tile_id` may leave it (None unless it is a wait)."""
        tile = self.plan.tiles[tile_id]
        if tile.get("type") != "wait":
            return None
        config = tile.get("config") or {}
        delay = validation.wait_delay(config)
        if delay is not None:
            return self.now + delay
        local = next_local_time(self.aware_now, str(config["until"]), str(config.get("timezone", "UTC")))
        return naive_utc(local)

    def _deadline_expr(self, choices: Sequence[tuple[sa.ColumnElement[bool] | None, str]]) -> Any:
        """Wait deadline per chosen target, as a CASE over the same conditions (NULL when no wait)."""
        deadlines = [(cond, self.wait_deadline(target)) for cond, target in choices]
        if all(d is None for _, d in deadlines):
            return None
        if len(deadlines) == 1:
            return deadlines[0][1]
        whens = [(cond, sa.literal(d, sa.DateTime())) for cond, d in deadlines[:-1] if cond is not None]
        last = deadlines[-1][1]
        return sa.case(*whens, else_=sa.literal(last, sa.DateTime()) if last is not None else sa.null())

    @staticmethod
    def _target_expr(choices: Sequence[tuple[sa.ColumnElement[bool] | None, str]]) -> Any:
        if len(choices) == 1:
            return choices[0][1]
        whens = [(cond, sa.literal(target, sa.String())) for cond, target in choices[:-1] if cond is not None]
        return sa.case(*whens, else_=sa.literal(choices[-1][1], sa.String()))

    def process(self, tile_id: str, compiled: Compiled) -> None:
        tile = self.plan.tiles[tile_id]
        kind = tile.get("type")
        outs = self.plan.out[tile_id]
        try:
            if kind == "sync":
                self.sync(tile_id, tile, compiled)
                return
            with self.source.begin() as conn:
                if kind == "exit":
                    self.store.complete(conn, self.step(), tile_id, "exit_tile")
                elif not outs:
                    self.store.complete(conn, self.step(), tile_id, "end_of_path")
                elif kind == "filter":
                    by_branch = {branch: target for target, branch in outs}
                    choices = [(compiled.filters[tile_id], by_branch["match"]), (None, by_branch["no_match"])]
                    self.store.move(
                        conn,
                        self.step(),
                        tile_id,
                        self._target_expr(choices),
                        self._deadline_expr(choices),
                        relation=compiled.relation,
                    )
                elif kind == "split":
                    by_branch = {branch: target for target, branch in outs}
                    bucket = self.store.bucket(tile_id)
                    choices = []
                    upper = 0
                    for name, points in validation.split_variants(tile.get("config") or {}):
                        upper += points
                        choices.append((bucket < upper, by_branch[name]))
                    choices[-1] = (None, choices[-1][1])
                    self.store.move(
                        conn, self.step(), tile_id, self._target_expr(choices), self._deadline_expr(choices)
                    )
                else:  # entry, wait: one way on
                    target = outs[0][0]
                    self.store.move(conn, self.step(), tile_id, target, self.wait_deadline(target))
        except OvertureError:
            self.failed = self._ready_count(tile_id)
            raise

    def _ready_count(self, tile_id: str) -> int:
        try:
            with self.source.connect() as conn:
                return self.store.ready_count(conn, tile_id, self.now)
        except Exception:  # counting is best effort on a source that just failed
            return 0

    # -- sync: outbox first, then advance ----------------------------------------------------------
    def sync(self, tile_id: str, tile: Mapping[str, Any], compiled: Compiled) -> None:
        config = tile.get("config") or {}
        destination_id = str(config["destination_id"])
        mapping = [(str(m["from"]), str(m["to"])) for m in config["field_mapping"]]
        columns = list(dict.fromkeys(source for source, _ in mapping))
        position = {name: i for i, name in enumerate(columns)}
        outs = self.plan.out[tile_id]
        target = outs[0][0] if outs else None
        deadline = self.wait_deadline(target) if target is not None else None
        first_batch = True
        while True:
            if not first_batch:
                self.between_steps(f"tile:{tile_id}")
            first_batch = False
            with self.source.connect() as conn:
                batch = next(
                    self.store.ready_batches(
                        conn, compiled.relation, tile_id, columns, now=self.now, size=SYNC_BATCH
                    ),
                    [],
                )
            if not batch:
                return
            items = [
                outbox.OutboxItem(
                    workspace_id=self.plan.workspace_id,
                    destination_id=destination_id,
                    idempotency_key=outbox.idempotency_key(
                        "journey", self.plan.journey_id, tile_id, row["__member_id"], row["__entry_no"]
                    ),
                    payload={to: _jsonable(row[f"f_{position[source]}"]) for source, to in mapping},
                    source_kind="journey_run",
                    source_id=self.run_id,
                )
                for row in batch
            ]
            with self.ctx.transaction(workspace_id=self.plan.workspace_id) as session:
                outbox.enqueue(session, items)
            # Only now, with the messages committed, do the members move past the sync tile.
            in_batch = self.store.in_range(batch[0]["__member_id"], batch[-1]["__member_id"])
            with self.source.begin() as conn:
                if target is None:
                    self.store.complete(
                        conn,
                        self.step(),
                        tile_id,
                        "end_of_path",
                        relation=compiled.relation,
                        extra=in_batch,
                        synced=True,
                    )
                else:
                    self.store.move(
                        conn,
                        self.step(),
                        tile_id,
                        target,
                        deadline,
                        relation=compiled.relation,
                        extra=in_batch,
                        synced=True,
                    )
            if len(batch) < SYNC_BATCH:
                return


def _jsonable(value: Any) -> Any:
    """Profile values as JSON: instants in ISO 8601 UTC, decimals as numbers, the rest as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


# -- outcomes --------------------------------------------------------------------------------------
def _final_counts(ctx: AppContext, run_id: str, plan_or_none: Plan | None, failed: int) -> dict[str, int]:
    if plan_or_none is None:
        return service.counts_from_events({}, failed)
    store = MemberStore(get_source(ctx), plan_or_none.workspace_id, plan_or_none.journey_id)
    try:
        with store.source.connect() as conn:
            events = store.run_counts(conn, run_id) if store.exists(conn) else {}
    except OvertureError:
        events = {}
    return service.counts_from_events(events, failed)


def _plan_of(ctx: AppContext, run_id: str) -> Plan | None:
    with ctx.transaction(write=False) as session:
        run = session.get(JourneyRun, run_id)
        journey = session.get(Journey, run.journey_id) if run is not None else None
        if journey is None:
            return None
        return Plan(
            journey_id=journey.id,
            workspace_id=journey.workspace_id,
            parent_model_id=journey.parent_model_id,
            admits=False,
            tiles={},
            order=[],
            out={},
            entry_tile="",
            reentry="never",
            entry_criteria=None,
            exit_criteria=None,
        )


def _finish(ctx: AppContext, run_id: str, execution: _Execution) -> str:
    counts = _final_counts(ctx, run_id, execution.plan, 0)
    with execution.source.connect() as conn:
        still_active = execution.store.active_count(conn)
    with ctx.transaction(workspace_id=execution.plan.workspace_id) as session:
        run = session.get(JourneyRun, run_id)
        if run is None:
            return "missing"
        run.counts = counts
        if run.status != RunStatus.RUNNING:  # cancelled after its last step: keep the cancellation
            return str(run.status)
        run.status = RunStatus.COMPLETED
        run.finished_at = ctx.clock.now()
        run.step = None
        journey = session.get(Journey, run.journey_id)
        if journey is not None and journey.status == JourneyStatus.DRAINING and still_active == 0:
            service.record_run_outcome(session, journey, JourneyStatus.ARCHIVED)
        return RunStatus.COMPLETED


def _stop(ctx: AppContext, run_id: str, reason: str) -> str:
    counts = _final_counts(ctx, run_id, _plan_of(ctx, run_id), 0)
    with ctx.transaction() as session:
        run = session.get(JourneyRun, run_id)
        if run is None:
            return "missing"
        run.counts = counts
        if run.status in UNFINISHED_RUN:
            run.status = RunStatus.CANCELLED
            run.finished_at = ctx.clock.now()
            run.error = reason
        return str(run.status)


def _fail(ctx: AppContext, run_id: str, message: str, *, needs_human: bool, failed: int) -> str:
    log.warning("journey run %s failed: %s", run_id, message)
    counts = _final_counts(ctx, run_id, _plan_of(ctx, run_id), failed)
    with ctx.transaction() as session:
        run = session.get(JourneyRun, run_id)
        if run is None:
            return "missing"
        run.counts = counts
        if run.status in UNFINISHED_RUN:
            run.status = RunStatus.FAILED
            run.finished_at = ctx.clock.now()
            run.error = message
        if needs_human:
            journey = session.get(Journey, run.journey_id)
            if journey is not None and journey.status in RUNNABLE:
                service.record_run_outcome(session, journey, JourneyStatus.ERROR, message)
        return str(run.status)
