"""The execution pipeline: scheduled -> hydrated -> composed -> injected -> sent | failed.

Every stage is a set of transactions over the execution's recipient rows; each moves rows forward
and adds the same numbers to the execution's counters in the same transaction, so a worker killed
at any instant leaves rows and counters that agree, and the resumed job carries on from the rows:

1. snapshot: the audience (included minus excluded, deduplicated) is frozen as the manifest, one
   row per recipient, with the profile fields the template needs joined on (`hydrated`); a member
   whose profile row is gone by then is dropped with the reason.
2. compose + inject, in chunks: each recipient's message is rendered and owed in the outbox ledger
   with one idempotency key per recipient and attempt, in the transaction that marks its row
   injected (a recipient without a usable address, or whose render fails, drops out here). Direct
   mail to a file destination instead writes the composed rows as one CSV manifest.
3. reconcile, every few seconds until nothing is in flight: rows take the ledger's outcome
   (`sent`/`failed`); the execution completes only when no row is still on its way.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from overture.broadcasts import audience
from overture.broadcasts.compose import compiled_of, compose, throttle_release
from overture.broadcasts.models import COMPOSED, HYDRATED, INJECTED, SCHEDULED, Execution, Recipient
from overture.broadcasts.states import EXECUTION, ExecutionStatus
from overture.core.encode import isoformat_z
from overture.db.context import AppContext
from overture.db.dialects import insert, is_postgres, rowcount
from overture.db.session import Session
from overture.delivery.adapters.file import write_file
from overture.delivery.service import get_destination
from overture.errors import Conflict
from overture.runtime import outbox
from overture.runtime.jobs import JobContext, enqueue_job

log = logging.getLogger(__name__)

SOURCE_KIND = "broadcast"
RUN_JOB, RECONCILE_JOB = "broadcasts.run", "broadcasts.reconcile"
#: Recipients composed and injected per transaction.
CHUNK = 5000
RECONCILE_SECONDS = 2.0
IDLE_RECONCILE_SECONDS = 20.0
_rt: sa.Table = Recipient.__table__  # type: ignore[assignment]


def outbox_key(execution_id: str, attempt: int, entity_id: str) -> str:
    return f"bc:{execution_id}:{attempt}:{entity_id}"


def _key_sql(attempt: Any) -> Any:
    """outbox_key() in SQL, over the row's own columns."""
    return sa.literal("bc:") + _rt.c.execution_id + ":" + sa.cast(attempt, sa.String) + ":" + _rt.c.entity_id


# -- start -----------------------------------------------------------------------------------------


def next_touchpoint(session: Session) -> int:
    """The workspace's next touchpoint id (an atomic upsert: concurrent starts get distinct ids)."""
    from overture.broadcasts.models import TouchpointCounter

    table: sa.Table = TouchpointCounter.__table__  # type: ignore[assignment]
    stmt = (
        insert(session, table)
        .values(workspace_id=session.workspace_id, last_value=1)
        .on_conflict_do_update(index_elements=["workspace_id"], set_={"last_value": table.c.last_value + 1})
        .returning(table.c.last_value)
    )
    return int(session.execute(stmt).scalar_one())


def start_execution(session: Session, plan: dict[str, Any], broadcast_id: str, trigger_key: str) -> Execution:
    """Create the execution (once per trigger: a second start of the same slot gets the first) and
    enqueue its run, in the caller's transaction."""
    existing = session.scalar(
        sa.select(Execution).where(
            Execution.broadcast_id == broadcast_id, Execution.trigger_key == trigger_key
        )
    )
    if existing is not None:
        return existing
    execution = Execution(
        broadcast_id=broadcast_id,
        trigger_key=trigger_key,
        touchpoint_id=next_touchpoint(session),
        status=ExecutionStatus.RUNNING,
        phase="created",
        plan={},
        started_at=session.now(),
    )
    session.add(execution)
    session.flush()
    execution.plan = {
        **plan,
        "executionId": execution.id,
        "touchpointId": execution.touchpoint_id,
        "manifestId": execution.manifest_id,
    }
    enqueue_job(
        session,
        RUN_JOB,
        {"execution_id": execution.id},
        workspace_id=session.workspace_id,
        unique_key=f"broadcast-run:{execution.id}",
        max_attempts=10,
    )
    return execution


def _locked(session: Session, execution_id: str) -> Execution:
    execution = session.scalar(sa.select(Execution).where(Execution.id == execution_id).with_for_update())
    if execution is None:
        raise LookupError(f"execution {execution_id} is gone")
    return execution


# -- the run job -----------------------------------------------------------------------------------


def run(ctx: AppContext, job: JobContext) -> None:
    execution_id = str(job.payload["execution_id"])
    snapshot(ctx, job, execution_id)
    while compose_chunk(ctx, job, execution_id):
        job.check()
    write_manifest_file(ctx, job, execution_id)
    with job.transaction(complete=True) as session:
        execution = _locked(session, execution_id)
        if execution.phase == "composing":
            execution.phase = "injected"
            schedule_reconcile(session, execution)


def snapshot(ctx: AppContext, job: JobContext, execution_id: str) -> None:
    """Freeze the manifest and join the profile fields onto it, in one transaction."""
    with ctx.transaction(workspace_id=job.workspace_id, write=False) as session:
        execution = session.get(Execution, execution_id)
        if execution is None or execution.phase != "created":
            return
        from overture.broadcasts.models import Broadcast

        broadcast = session.get(Broadcast, execution.broadcast_id)
        assert broadcast is not None
        plan = execution.plan
        manifest = [key for chunk in audience.iter_keys(ctx, session, broadcast) for key in chunk]
        columns = set(audience.profile_columns(ctx, session, broadcast))
        wanted = sorted(columns & set(plan["fields"]))
        found = audience.profiles(ctx, session, broadcast, wanted)
    with job.transaction() as session:
        execution = _locked(session, execution_id)
        if execution.phase != "created" or execution.status != ExecutionStatus.RUNNING:
            return
        rows: list[tuple[str, str, int, str | None, str | None, dict[str, Any] | None]] = []
        for key in manifest:
            fields = found.get(key)
            if fields is None:
                rows.append((execution_id, key, SCHEDULED, "dropped", "no profile row", None))
            else:
                rows.append((execution_id, key, HYDRATED, None, None, fields))
        _insert_recipients(session, rows)
        hydrated = sum(1 for r in rows if r[2] == HYDRATED)
        execution.scheduled += len(rows)
        execution.hydrated += hydrated
        execution.dropped += len(rows) - hydrated
        execution.phase = "composing"


def _insert_recipients(session: Session, rows: Sequence[tuple[Any, ...]]) -> None:
    """Many recipient rows through the driver's executemany with JSON serialized once per row
    (SQLAlchemy's per-row bind processing would cost more than the insert; see runtime.outbox)."""
    connection = session.connection()
    postgres = is_postgres(session)
    mark = "%s" if postgres else "?"
    fields_mark = "%s::jsonb" if postgres else "?"
    sql = (
        "INSERT INTO broadcast_recipients (execution_id, entity_id, stage, outcome, reason, fields, attempt) "
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {fields_mark}, 0)"
    )
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, len(rows), 10_000):
            cursor.executemany(
                sql,
                [
                    (e, k, s, o, r, None if f is None else orjson.dumps(f).decode())
                    for e, k, s, o, r, f in rows[start : start + 10_000]
                ],
            )
    finally:
        cursor.close()


def compose_chunk(ctx: AppContext, job: JobContext, execution_id: str) -> bool:
    """Compose and inject the next chunk of hydrated recipients; False when none is left."""
    with job.transaction() as session:
        execution = _locked(session, execution_id)
        if execution.phase != "composing" or execution.status != ExecutionStatus.RUNNING:
            return False
        # The fields as JSON text, parsed by orjson: SQLAlchemy's JSON result processing costs more.
        rows = session.execute(
            sa.select(_rt.c.id, _rt.c.entity_id, sa.cast(_rt.c.fields, sa.Text))
            .where(_rt.c.execution_id == execution_id, _rt.c.stage == HYDRATED, _rt.c.outcome.is_(None))
            .order_by(_rt.c.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            return False
        plan = execution.plan
        _compose_rows(
            session, execution, plan, [(r[0], r[1], orjson.loads(r[2]) if r[2] else {}, 1) for r in rows]
        )
        return len(rows) == CHUNK


def _compose_rows(
    session: Session,
    execution: Execution,
    plan: dict[str, Any],
    rows: Iterable[tuple[int, str, dict[str, Any], int]],
) -> None:
    """Render each row; owe the composed ones in the outbox (or keep them for the file) and drop
    the rest with their reason, all in the caller's transaction."""
    compiled = compiled_of(plan)
    to_file = plan["destinationType"] == "file"
    start = datetime.fromisoformat(plan["releaseFrom"]) if plan.get("releaseFrom") else session.now()
    per_minute = (plan.get("schedule") or {}).get("maxPerMinute")
    dropped: list[dict[str, Any]] = []
    composed: list[dict[str, Any]] = []
    items: list[outbox.OutboxItem] = []
    fallbacks = 0
    for row_id, entity_id, fields, attempt in rows:
        result = compose(plan, compiled, entity_id, fields)
        if result.payload is None:
            dropped.append({"b_id": row_id, "b_reason": result.reason})
            continue
        fallbacks += result.zone_fallback
        if to_file:
            composed.append({"b_id": row_id, "b_content": result.payload})
            continue
        release = result.release_at
        throttled = throttle_release(start, execution.injected + len(items), per_minute)
        if throttled is not None:
            release = max(release, throttled) if release is not None else throttled
        key = outbox_key(execution.id, attempt, entity_id)
        composed.append({"b_id": row_id, "b_key": key, "b_attempt": attempt})
        items.append(
            outbox.OutboxItem(
                workspace_id=execution.workspace_id,
                destination_id=plan["destinationId"],
                idempotency_key=key,
                payload=result.payload,
                source_kind=SOURCE_KIND,
                source_id=execution.id,
                not_before=release,
            )
        )
    by_id: Any = sa.bindparam("b_id")
    if dropped:
        session.execute(
            sa.update(_rt)
            .where(_rt.c.id == by_id)
            .values(outcome="dropped", reason=sa.bindparam("b_reason")),
            dropped,
        )
    if to_file and composed:
        session.execute(
            sa.update(_rt).where(_rt.c.id == by_id).values(stage=COMPOSED, content=sa.bindparam("b_content")),
            composed,
        )
    elif composed:
        outbox.enqueue(session, items)
        session.execute(
            sa.update(_rt)
            .where(_rt.c.id == by_id)
            .values(stage=INJECTED, outbox_key=sa.bindparam("b_key"), attempt=sa.bindparam("b_attempt")),
            composed,
        )
        execution.injected += len(composed)
    execution.composed += len(composed)
    execution.dropped += len(dropped)
    execution.zone_fallbacks += fallbacks


def write_manifest_file(ctx: AppContext, job: JobContext, execution_id: str) -> None:
    """Direct mail to a file destination: the composed rows become one CSV (written whole, under a
    name that depends only on the manifest, so a rewrite after a crash replaces it); its rows are
    the sent count."""
    with ctx.transaction(workspace_id=job.workspace_id, write=False) as session:
        execution = session.get(Execution, execution_id)
        if execution is None or execution.phase != "composing" or execution.plan["destinationType"] != "file":
            return
        if execution.status != ExecutionStatus.RUNNING:
            return
        plan = execution.plan
        destination = get_destination(session, plan["destinationId"])
        session.expunge(destination)
        rows = session.execute(
            sa.select(_rt.c.entity_id, _rt.c.content)
            .where(_rt.c.execution_id == execution_id, _rt.c.stage == COMPOSED, _rt.c.outcome.is_(None))
            .order_by(_rt.c.id)
        ).all()
    name = f"broadcast-{plan['broadcastId']}-{plan['manifestId']}.csv"
    columns = ["entity_id", "address", "text", "touchpoint_id", "idempotency_key"]
    write_file(
        ctx,
        destination,
        (
            {
                "entity_id": r.entity_id,
                "address": (r.content or {}).get("to"),
                "text": ((r.content or {}).get("content") or {}).get("text"),
                "touchpoint_id": plan["touchpointId"],
                "idempotency_key": outbox_key(execution_id, 1, r.entity_id),
            }
            for r in rows
        ),
        name,
        columns=columns,
    )
    with job.transaction() as session:
        execution = _locked(session, execution_id)
        if execution.phase != "composing":
            return
        done = rowcount(
            session.execute(
                sa.update(_rt)
                .where(_rt.c.execution_id == execution_id, _rt.c.stage == COMPOSED, _rt.c.outcome.is_(None))
                .values(stage=INJECTED, outcome="sent", content=None, attempt=1, outbox_key=_key_sql(1))
            )
        )
        execution.injected += done
        execution.sent += done
        execution.phase = "injected"
        schedule_reconcile(session, execution)


# -- reconcile -------------------------------------------------------------------------------------


def schedule_reconcile(session: Session, execution: Execution, delay: float = 0.0) -> None:
    execution.reconcile_round += 1
    enqueue_job(
        session,
        RECONCILE_JOB,
        {"execution_id": execution.id},
        workspace_id=execution.workspace_id,
        unique_key=f"broadcast-reconcile:{execution.id}:{execution.reconcile_round}",
        run_at=session.now() + timedelta(seconds=delay),
        max_attempts=20,
    )


_OUTBOX = sa.table("outbox_messages", sa.column("idempotency_key"), sa.column("status"))


def reconcile(ctx: AppContext, job: JobContext) -> None:
    """Copy the ledger's outcomes onto the rows still in flight (an indexed lookup per such row),
    count them, and complete the execution once nothing is on its way; else look again later."""
    execution_id = str(job.payload["execution_id"])
    with job.transaction(complete=True) as session:
        execution = _locked(session, execution_id)
        if execution.completed_at is not None or execution.phase not in ("injected",):
            return
        moved = apply_outcomes(session, execution)
        in_flight = session.scalar(
            sa.select(_rt.c.id).where(_rt.c.execution_id == execution_id, _rt.c.outcome.is_(None)).limit(1)
        )
        if in_flight is None:
            if execution.status == ExecutionStatus.RUNNING:
                EXECUTION.move(execution, ExecutionStatus.COMPLETED)
            execution.completed_at = session.now()
            return
        # Look again soon while outcomes arrive; less often while everything waits (a local-time
        # send may hold messages for hours).
        schedule_reconcile(session, execution, RECONCILE_SECONDS if moved else IDLE_RECONCILE_SECONDS)


def apply_outcomes(session: Session, execution: Execution) -> int:
    """Copy the ledger's terminal outcomes onto the execution's rows in flight; returns how many."""
    moved = 0
    for status in ("sent", "failed"):
        done = rowcount(
            session.execute(
                sa.update(_rt)
                .where(
                    _rt.c.execution_id == execution.id,
                    _rt.c.stage == INJECTED,
                    _rt.c.outcome.is_(None),
                    sa.exists().where(
                        _OUTBOX.c.idempotency_key == _rt.c.outbox_key, _OUTBOX.c.status == status
                    ),
                )
                .values(outcome=status)
            )
        )
        setattr(execution, status, getattr(execution, status) + done)
        moved += done
    return moved


# -- cancel and retry ------------------------------------------------------------------------------


def cancel(session: Session, execution: Execution) -> int:
    """Stop a running execution: recipients not yet owed and messages still pending in the ledger are
    cancelled (and counted); messages already being sent reach their outcome. Returns how many."""
    EXECUTION.move(execution, ExecutionStatus.CANCELLED)
    before = rowcount(
        session.execute(
            sa.update(_rt)
            .where(_rt.c.execution_id == execution.id, _rt.c.stage < INJECTED, _rt.c.outcome.is_(None))
            .values(outcome="cancelled", reason="cancelled before it was sent")
        )
    )
    keys = outbox.withdraw(session, SOURCE_KIND, execution.id)
    after = 0
    for start in range(0, len(keys), 1000):
        after += rowcount(
            session.execute(
                sa.update(_rt)
                .where(
                    _rt.c.execution_id == execution.id,
                    _rt.c.outcome.is_(None),
                    _rt.c.outbox_key.in_(keys[start : start + 1000]),
                )
                .values(outcome="cancelled", reason="cancelled before it was sent")
            )
        )
    execution.cancelled += before + after
    if execution.phase in ("created", "composing"):
        execution.phase = "injected"  # nothing more will be composed; reconcile finishes it
    schedule_reconcile(session, execution)
    return before + after


def retry_failed(session: Session, execution: Execution) -> int:
    """Owe the failed recipients of a finished execution again, each under a new attempt's key (a
    new message, never a duplicate of one that was delivered)."""
    if (
        execution.status not in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)
        or execution.completed_at is None
    ):
        raise Conflict(f"execution is {execution.status}; only a finished execution can retry its failures")
    if execution.plan["destinationType"] == "file":
        raise Conflict("a direct-mail file has no failed recipients to retry")
    rows = session.execute(
        sa.select(_rt.c.id, _rt.c.entity_id, _rt.c.fields, _rt.c.attempt).where(
            _rt.c.execution_id == execution.id, _rt.c.outcome == "failed"
        )
    ).all()
    if not rows:
        raise Conflict("the execution has no failed recipients")
    EXECUTION.move(execution, ExecutionStatus.RUNNING)
    execution.completed_at = None
    session.execute(
        sa.update(_rt)
        .where(_rt.c.execution_id == execution.id, _rt.c.outcome == "failed")
        .values(outcome=None, stage=HYDRATED)
    )
    execution.failed -= len(rows)
    execution.injected -= len(rows)
    execution.composed -= len(rows)
    execution.retried += len(rows)
    plan = {**execution.plan, "releaseFrom": isoformat_z(session.now())}
    _compose_rows(
        session, execution, plan, [(r.id, r.entity_id, r.fields or {}, r.attempt + 1) for r in rows]
    )
    schedule_reconcile(session, execution)
    return len(rows)


# -- what the rows say -----------------------------------------------------------------------------


def derived_counts(session: Session, execution_id: str) -> dict[str, int]:
    """The execution's counts recomputed from its recipient rows (what the counters must equal)."""
    rows = session.execute(
        sa.select(_rt.c.stage, _rt.c.outcome, sa.func.count())
        .where(_rt.c.execution_id == execution_id)
        .group_by(_rt.c.stage, _rt.c.outcome)
    ).all()
    counts = dict.fromkeys(
        ("scheduled", "hydrated", "composed", "injected", "sent", "failed", "dropped", "cancelled"), 0
    )
    for stage, outcome, n in rows:
        counts["scheduled"] += n
        counts["hydrated"] += n if stage >= HYDRATED else 0
        counts["composed"] += n if stage >= COMPOSED else 0
        counts["injected"] += n if stage >= INJECTED else 0
        if outcome in ("sent", "failed", "dropped", "cancelled"):
            counts[outcome] += n
    return counts


def inconsistency(execution: Execution) -> str | None:
    """Why this execution's stored metadata contradicts itself, or None."""
    chain = [(a, getattr(execution, a)) for a in ("scheduled", "hydrated", "composed", "injected")]
    for name, value in [*chain, ("sent", execution.sent), ("failed", execution.failed)]:
        if value is None or value < 0:
            return f"count '{name}' is {value}"
    for (prev, a), (name, b) in itertools.pairwise(chain):
        if b > a:
            return f"count '{name}' ({b}) is larger than '{prev}' ({a})"
    if execution.sent + execution.failed > execution.injected:
        total = execution.sent + execution.failed
        return f"sent + failed ({total}) is larger than injected ({execution.injected})"
    if execution.status == ExecutionStatus.COMPLETED and execution.completed_at is None:
        return f"execution is {execution.status} but has no completedAt"
    if execution.completed_at is not None and execution.completed_at < execution.started_at:
        return "execution completed before it started"
    return None


def fail(ctx: AppContext, workspace_id: str | None, execution_id: str, error: str) -> None:
    """The run gave up (its last attempt failed): the execution fails, recipients not yet owed are
    cancelled, and what was owed still goes (reconcile records it and the completion time)."""
    with ctx.transaction(workspace_id=workspace_id) as session:
        execution = _locked(session, execution_id)
        if execution.status != ExecutionStatus.RUNNING:
            return
        EXECUTION.move(execution, ExecutionStatus.FAILED)
        execution.error = error[:2000]
        cancelled = rowcount(
            session.execute(
                sa.update(_rt)
                .where(_rt.c.execution_id == execution.id, _rt.c.stage < INJECTED, _rt.c.outcome.is_(None))
                .values(outcome="cancelled", reason="the execution failed before it was sent")
            )
        )
        execution.cancelled += cancelled
        execution.phase = "injected"
        schedule_reconcile(session, execution)
