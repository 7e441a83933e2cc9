"""Journeys use cases: definitions (CRUD, validation), the lifecycle, runs, stats and member paths.

Every function takes the request's (or job's) workspace-bound Session and flushes; the caller's
unit of work commits. Member state lives in the data source (`overture.journeys.members`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from overture.auth.models import Workspace
from overture.core.schedules import ScheduleError, parse_schedule
from overture.data.models import EntityModel
from overture.data.service import compile_against, get_model, relation_for
from overture.data.source import get_source
from overture.db.context import AppContext
from overture.db.lookup import get_or_404
from overture.db.session import Session
from overture.delivery.service import get_destination
from overture.errors import Conflict, Invalid, NotFound, OvertureError
from overture.journeys import validation
from overture.journeys.lifecycle import (
    DELETABLE,
    JOURNEY,
    RUN,
    RUNNABLE,
    UNFINISHED_RUN,
    Action,
    JourneyStatus,
    MemberStatus,
    RunStatus,
    RunTrigger,
    target_of,
)
from overture.journeys.members import reads
from overture.journeys.members.tables import STEP_COUNTS, MemberStore, aware, parse_events
from overture.journeys.models import Journey, JourneyRun
from overture.journeys.schemas import (
    JourneyCreate,
    JourneyUpdate,
    MemberCounts,
    MemberRead,
    PathStep,
    RunCounts,
    StatsRead,
)
from overture.runtime import deliveries, jobs, scheduler
from overture.runtime.models import Job, JobStatus

log = logging.getLogger(__name__)

RUN_JOB = "journeys.run"
SCHEDULED_JOB = "journeys.scheduled"
DROP_TABLES_JOB = "journeys.drop_member_tables"
RUNS_LISTED = 50
#: The outbox `source_kind` of the messages a run's sync tiles owe (their `source_id` is the run).
SYNC_SOURCE = "journey_run"


class InvalidJourney(Invalid):
    """A journey that fails validation where it must be valid (activation, editing a live journey):
    a 422 carrying every sentence `validate` would return."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__(f"Journey is not valid: {errors[0]}", details={"errors": list(errors)})
        self.errors = list(errors)


def schedule_owner(journey_id: str) -> str:
    return f"journey:{journey_id}"


def member_store(ctx: AppContext, journey: Journey) -> MemberStore:
    return MemberStore(get_source(ctx), journey.workspace_id, journey.id)


def end_run(session: Session, run: JourneyRun, status: RunStatus, error: str | None) -> bool:
    """Move an unfinished run to its end (`status`: completed, failed or cancelled) at the session's
    now; a run already over keeps its outcome. True if it moved."""
    if run.status not in UNFINISHED_RUN:
        return False
    RUN.move(run, status)
    run.finished_at = session.now()
    run.error = error
    return True


# -- definition checks -----------------------------------------------------------------------------
class _ModelView:
    """The parent model as checks need it: columns and a criteria compiler, or why it is unusable."""

    def __init__(self, session: Session, model_id: str) -> None:
        self.session = session
        self.model: EntityModel | None = None
        self.error: str | None = None
        self.columns: set[str] | None = None
        self._sql_model: Any = None
        try:
            self.model = get_model(session, model_id)
        except NotFound:
            self.error = f"Parent model '{model_id}' does not exist"
            return
        try:
            _, self._sql_model = relation_for(session, self.model)
        except OvertureError as exc:
            self.error = f"Parent model '{self.model.name}' cannot be read: {exc.message}"
            return
        self.columns = set(self._sql_model.columns)

    def check(self, raw: Any, root: str) -> tuple[str, str] | None:
        if self._sql_model is None:
            return None
        try:
            compile_against(self.session, self._sql_model, raw, root=root)
        except Invalid as exc:
            return (exc.field or root, exc.message)
        return None


def _check_at_save(session: Session, journey: Journey) -> None:
    """Refuse (422, naming the field) what is malformed; incomplete drafts pass (see validation)."""
    view = _ModelView(session, journey.parent_model_id)
    if view.model is None:
        raise Invalid(
            f"parent_model_id: no entity model '{journey.parent_model_id}' in this workspace",
            field="parent_model_id",
        )
    if view.error is not None:
        raise Invalid(f"parent_model_id: {view.error}", field="parent_model_id")
    for name in ("entry_criteria", "exit_criteria"):
        problem = view.check(getattr(journey, name), name)
        if problem is not None:
            field, message = problem
            raise Invalid(message, field=field)
    if journey.schedule is not None:
        try:
            parse_schedule(journey.schedule)
        except ScheduleError as exc:
            raise Invalid(f"schedule: {exc.message}", field="schedule")
    malformed = [
        p
        for p in validation.config_problems(journey.tiles, columns=view.columns, check_criteria=view.check)
        if p.malformed
    ]
    if malformed:
        raise Invalid(
            malformed[0].message,
            field=malformed[0].field,
            details={"errors": [{"field": p.field, "message": p.message} for p in malformed]},
        )


def validation_errors(session: Session, journey: Journey) -> list[str]:
    """Every reason the journey cannot run, as sentences: graph, model, criteria, tiles, destinations."""
    errors = validation.graph_errors(journey.tiles, journey.edges)
    view = _ModelView(session, journey.parent_model_id)
    if view.error is not None:
        errors.append(view.error)
    for name, label in (("entry_criteria", "Entry criteria"), ("exit_criteria", "Exit criteria")):
        problem = view.check(getattr(journey, name), name)
        if problem is not None:
            errors.append(f"{label}: {problem[1]}")
    problems = validation.config_problems(journey.tiles, columns=view.columns, check_criteria=view.check)
    errors.extend(p.message for p in problems)
    for tile in journey.tiles:
        if tile.get("type") != "sync":
            continue
        destination_id = (tile.get("config") or {}).get("destination_id")
        if not isinstance(destination_id, str) or not destination_id:
            continue
        try:
            get_destination(session, destination_id)
        except NotFound:
            errors.append(f"Tile '{tile.get('id')}' (sync) sends to unknown destination '{destination_id}'")
    return errors


# -- CRUD ------------------------------------------------------------------------------------------
def list_journeys(session: Session) -> list[Journey]:
    return list(session.scalars(sa.select(Journey).order_by(Journey.created_at, Journey.id)))


def get_journey(session: Session, journey_id: str, *, lock: bool = False) -> Journey:
    return get_or_404(session, Journey, journey_id, what="journey", lock=lock)


def create_journey(session: Session, created_by: str | None, body: JourneyCreate) -> Journey:
    now = session.now()
    journey = Journey(
        workspace_id=session.workspace_id,
        name=body.name,
        description=body.description,
        parent_model_id=body.parent_model_id,
        entry_criteria=body.entry_criteria if body.entry_criteria is not None else {},
        exit_criteria=body.exit_criteria if body.exit_criteria is not None else {},
        tiles=[t.stored() for t in body.tiles],
        edges=[e.stored() for e in body.edges],
        schedule=_schedule_text(body.schedule),
        status=JourneyStatus.DRAFT,
        status_error="",
        created_by=created_by,
        version=1,
        created_at=now,
        updated_at=now,
    )
    _check_at_save(session, journey)
    session.add(journey)
    session.flush()
    return journey


def _schedule_text(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value.strip()


def update_journey(session: Session, journey_id: str, body: JourneyUpdate) -> Journey:
    """Replace the fields sent. On a live journey the new definition must be valid and takes effect
    at the next run (members on removed tiles then leave with reason tile_removed)."""
    journey = get_journey(session, journey_id, lock=True)
    if journey.status == JourneyStatus.ARCHIVED:
        raise Conflict("Journey is archived; create a new one instead")
    sent = body.model_fields_set
    for name in ("name", "description", "parent_model_id"):
        if name in sent:
            value = getattr(body, name)
            if value is None:
                raise Invalid(f"{name}: may not be null", field=name)
            setattr(journey, name, value)
    for name in ("entry_criteria", "exit_criteria"):
        if name in sent:
            value = getattr(body, name)
            setattr(journey, name, value if value is not None else {})
    if "tiles" in sent:
        journey.tiles = [t.stored() for t in body.tiles or []]
    if "edges" in sent:
        journey.edges = [e.stored() for e in body.edges or []]
    if "schedule" in sent:
        journey.schedule = _schedule_text(body.schedule)
    # The checks query (the model, destinations): an autoflush would send an unknown
    # parent_model_id to the database first, where the foreign key refuses it (a 500, not a 422).
    with session.no_autoflush:
        _check_at_save(session, journey)
        if journey.status in (JourneyStatus.ACTIVE, JourneyStatus.DRAINING, JourneyStatus.PAUSED):
            errors = validation_errors(session, journey)
            if errors:
                raise InvalidJourney(errors)
    journey.version += 1
    journey.updated_at = session.now()
    _sync_schedule(session, journey)
    session.flush()
    return journey


def delete_journey(session: Session, journey_id: str) -> None:
    """Delete a journey that moves nobody (409 while active or draining: pause it first). Its open
    runs are cancelled and its member tables dropped by a job once this commits."""
    journey = get_journey(session, journey_id, lock=True)
    if journey.status not in DELETABLE:
        raise Conflict(
            f"Journey is {journey.status}; pause it first",
            details={"status": journey.status},
        )
    for run in session.scalars(
        sa.select(JourneyRun).where(
            JourneyRun.journey_id == journey.id, JourneyRun.status.in_(UNFINISHED_RUN)
        )
    ):
        _cancel_job_of(session, run.id)
    # Messages its syncs still owe are not sent for a journey that no longer exists.
    runs = sa.select(JourneyRun.id).where(JourneyRun.journey_id == journey.id)
    deliveries.cancel_owed(
        session, source_kind=SYNC_SOURCE, source_ids=runs, reason="the journey was deleted"
    )
    scheduler.remove_schedule(session, schedule_owner(journey.id))
    jobs.enqueue_job(
        session,
        DROP_TABLES_JOB,
        {"workspace_id": journey.workspace_id, "journey_id": journey.id},
        workspace_id=journey.workspace_id,
        unique_key=f"journey-drop:{journey.id}",
    )
    session.execute(sa.delete(JourneyRun).where(JourneyRun.journey_id == journey.id))
    session.delete(journey)
    session.flush()


# -- lifecycle -------------------------------------------------------------------------------------
def change_status(session: Session, journey_id: str, action: Action) -> Journey:
    """Apply a lifecycle endpoint. The move must be in the transition table (409 naming both states);
    activation also requires a valid journey (422 with every error)."""
    journey = get_journey(session, journey_id, lock=True)
    new_status = JOURNEY.transition(journey.status, target_of(action), action)
    if action == Action.ACTIVATE:
        errors = validation_errors(session, journey)
        if errors:
            raise InvalidJourney(errors)
    journey.status = new_status
    journey.status_error = ""
    journey.updated_at = session.now()
    _sync_schedule(session, journey)
    session.flush()
    return journey


def _workspace_timezone(session: Session, workspace_id: str) -> str:
    ws = session.get(Workspace, workspace_id)
    return ws.timezone if ws is not None and ws.timezone else "UTC"


def _sync_schedule(session: Session, journey: Journey) -> None:
    """The cron schedule fires while the journey runs (active or draining); otherwise it is removed."""
    owner = schedule_owner(journey.id)
    if journey.schedule and journey.status in RUNNABLE:
        scheduler.set_schedule(
            session,
            workspace_id=journey.workspace_id,
            owner=owner,
            spec={
                "kind": "cron",
                "cron": journey.schedule,
                "timezone": _workspace_timezone(session, journey.workspace_id),
            },
            job_kind=SCHEDULED_JOB,
            payload={"journey_id": journey.id},
            enabled=True,
        )
    else:
        scheduler.remove_schedule(session, owner)


def record_run_outcome(
    session: Session, journey: Journey, action_target: JourneyStatus, error: str = ""
) -> None:
    """A run's automatic move (draining -> archived, active -> error), through the same table."""
    journey.status = JOURNEY.transition(journey.status, action_target, Action.RUN)
    journey.status_error = error
    _sync_schedule(session, journey)


# -- runs ------------------------------------------------------------------------------------------
def _job_key(run_id: str) -> str:
    return f"journey-run:{run_id}"


def _cancel_job_of(session: Session, run_id: str) -> None:
    job_id = session.scalar(sa.select(Job.id).where(Job.unique_key == _job_key(run_id)))
    if job_id is not None:
        jobs.cancel_job(session, job_id)


def _reap_if_lost(session: Session, run: JourneyRun) -> bool:
    """An open run whose job is over (its worker died on the last attempt, or it was cancelled
    around us) is failed, so it no longer blocks the journey. True if it was reaped."""
    status = session.scalar(sa.select(Job.status).where(Job.unique_key == _job_key(run.id)))
    if status is None or status not in JobStatus.FINISHED:
        return False
    end_run(session, run, RunStatus.FAILED, run.error or "the worker executing this run was lost")
    session.flush()
    return True


def open_run(session: Session, journey_id: str) -> JourneyRun | None:
    run = session.scalars(
        sa.select(JourneyRun).where(
            JourneyRun.journey_id == journey_id, JourneyRun.status.in_(UNFINISHED_RUN)
        )
    ).one_or_none()
    if run is not None and _reap_if_lost(session, run):
        return None
    return run


def trigger_run(session: Session, journey_id: str, trigger: RunTrigger) -> tuple[JourneyRun, bool]:
    """Create a run and enqueue its job, or return the journey's open run (created=False): one run of
    a journey at a time, guarded by a partial unique index against concurrent triggers."""
    journey = get_journey(session, journey_id, lock=True)
    if journey.status not in RUNNABLE:
        raise Conflict(
            f"Journey is {journey.status}; only active or draining journeys run",
            details={"status": journey.status},
        )
    existing = open_run(session, journey.id)
    if existing is not None:
        return existing, False
    run = JourneyRun(
        workspace_id=journey.workspace_id,
        journey_id=journey.id,
        status=RunStatus.PENDING,
        trigger=trigger,
        created_at=session.now(),
        counts=RunCounts().model_dump(),
    )
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except sa.exc.IntegrityError:
        existing = open_run(session, journey.id)
        if existing is None:
            raise Conflict("another run of this journey is starting; retry")
        return existing, False
    jobs.enqueue_job(
        session, RUN_JOB, {"run_id": run.id}, workspace_id=journey.workspace_id, unique_key=_job_key(run.id)
    )
    return run, True


def list_runs(session: Session, journey_id: str) -> list[JourneyRun]:
    get_journey(session, journey_id)
    return list(
        session.scalars(
            sa.select(JourneyRun)
            .where(JourneyRun.journey_id == journey_id)
            .order_by(JourneyRun.created_at.desc(), JourneyRun.id.desc())
            .limit(RUNS_LISTED)
        )
    )


def get_run(session: Session, journey_id: str, run_id: str) -> JourneyRun:
    get_journey(session, journey_id)
    return get_or_404(session, JourneyRun, run_id, what="run", journey_id=journey_id)


def cancel_run(session: Session, journey_id: str, run_id: str) -> JourneyRun:
    """Cancel a pending or running run. A running one stops before its next step (each step is one
    transaction, so every member stands on a consistent tile); a finished one is a 409 naming both
    states."""
    run = get_run(session, journey_id, run_id)
    RUN.transition(run.status, RunStatus.CANCELLED)  # the 409 for a run already over
    end_run(session, run, RunStatus.CANCELLED, "cancelled by request")
    _cancel_job_of(session, run.id)
    session.flush()
    return run


# -- stats and members -----------------------------------------------------------------------------
def stats(session: Session, journey_id: str) -> StatsRead:
    """Members by tile and status (a member is counted where it stands, or where it finished)."""
    journey = get_journey(session, journey_id)
    tiles: dict[str, MemberCounts] = {str(t.get("id")): MemberCounts() for t in journey.tiles}
    total = MemberCounts()
    store = member_store(session.ctx, journey)
    source = store.source
    with source.connect() as conn:
        rows = reads.stats(store, conn) if store.exists(conn) else []
    for tile_id, status, count in rows:
        counts = tiles.setdefault(tile_id, MemberCounts())
        if status in tuple(MemberStatus):
            setattr(counts, status, getattr(counts, status) + count)
            setattr(total, status, getattr(total, status) + count)
    return StatsRead(tiles=tiles, total=total)


def member_path(session: Session, journey_id: str, member_id: str) -> MemberRead:
    """A member's latest membership and every event of every membership, oldest first."""
    journey = get_journey(session, journey_id)
    store = member_store(session.ctx, journey)
    with store.source.connect() as conn:
        if not store.exists(conn):
            raise NotFound("member not found in this journey")
        key: Any = member_id
        if reads.member_id_kind(store, conn) == "integer":
            try:
                key = int(member_id)
            except ValueError:
                raise NotFound("member not found in this journey")
        memberships, rows = reads.member(store, conn, key)
    if not memberships:
        raise NotFound("member not found in this journey")
    latest = memberships[-1]
    path: list[PathStep] = []
    for row in rows:
        events = parse_events(row["events"] or "")
        for event, tile in events:
            path.append(
                PathStep(
                    entry_number=int(row["entry_no"]),
                    tile_id=tile,
                    event=event,
                    at=_aware(row["occurred_at"]),
                    run_id=row["run_id"],
                    # The step's reason belongs to how it ended (exited / completed).
                    detail=row["detail"] if event in ("exited", "completed") else None,
                )
            )
    mine = [step for step in path if step.entry_number == int(latest["entry_no"])]
    arrivals = [step.at for step in mine if step.event in ("entered", "arrived")]
    return MemberRead(
        member_id=str(latest["member_id"]),
        status=latest["status"],
        tile_id=latest["tile_id"],
        entry_number=int(latest["entry_no"]),
        entered_at=arrivals[0] if arrivals else _aware(latest["updated_at"]),
        tile_entered_at=arrivals[-1] if arrivals else _aware(latest["updated_at"]),
        wait_until=aware(latest["wait_until"]),
        finished_at=None if latest["status"] == "active" else _aware(latest["updated_at"]),
        reason=latest["reason"],
        path=path,
    )


def _aware(value: datetime) -> datetime:
    result = aware(value)
    assert result is not None
    return result


def run_counts(steps: Mapping[str, int], failed: int = 0) -> dict[str, int]:
    """A run's counts from the step rows it wrote in the data source (exact: each step row commits
    with the moves it counts, also across a crash and a resumed attempt)."""
    return RunCounts(**{k: int(steps.get(k, 0)) for k in STEP_COUNTS}, failed=failed).model_dump()
