"""Broadcast authoring: templates and proofs, broadcasts (audience, schedule, reach), preflight,
and the moves publish / unschedule / cancel / send-now / retry-failed / archive.

Every function takes the request's session first (`session.workspace_id`, `session.now()`,
`session.ctx`); nothing here commits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from overture.auth.models import Workspace
from overture.broadcasts import audience
from overture.broadcasts import execution as pipeline
from overture.broadcasts.models import Broadcast, Execution, Proof, Recipient, Template
from overture.broadcasts.render import RenderError, check_source, compile_template, has_unsubscribe_link
from overture.broadcasts.schemas import (
    DEFAULT_ADDRESS_FIELD,
    DESTINATION_TYPES,
    BroadcastCreate,
    BroadcastUpdate,
    ProofCreate,
    ScheduleIn,
    TemplateCreate,
    TemplateUpdate,
)
from overture.broadcasts.states import (
    AUTHORING,
    PROOF,
    REACH,
    TEMPLATE,
    AuthoringStatus,
    ExecutionStatus,
    ProofStatus,
    ReachStatus,
)
from overture.core.encode import isoformat_z
from overture.core.schedules import ScheduleError, parse_hhmm, parse_zone, resolve_local
from overture.data.records import get_record
from overture.db.context import AppContext
from overture.db.lookup import get_or_404
from overture.db.session import Session
from overture.delivery.messages import Message
from overture.delivery.models import Destination
from overture.delivery.service import get_destination, send_batch
from overture.errors import Conflict, Invalid, NotFound, OvertureError
from overture.runtime.scheduler import get_schedule, remove_schedule, set_schedule

START_JOB = "broadcasts.start"
#: Recipients whose render the preflight tries.
PREFLIGHT_SAMPLE = 20
MAX_LISTED = 1000


def schedule_owner(broadcast_id: str) -> str:
    return f"broadcast:{broadcast_id}"


# -- templates ------------------------------------------------------------------------------------


def get_template(session: Session, template_id: str, *, field: str | None = None) -> Template:
    return get_or_404(session, Template, template_id, what="template", field=field)


def list_templates(session: Session) -> list[Template]:
    return list(
        session.scalars(sa.select(Template).order_by(Template.created_at, Template.id).limit(MAX_LISTED))
    )


def _check_template(channel: str, subject: str | None, body: str) -> None:
    if channel == "email":
        if not subject:
            raise Invalid("subject: an email template needs a subject", field="subject")
        check_source(subject, "subject")
    elif subject is not None:
        raise Invalid(f"subject: only email templates have a subject, not {channel}", field="subject")
    check_source(body, "body")
    compile_template(channel, subject, body)  # the email's CSS inlining too


def create_template(session: Session, body: TemplateCreate) -> Template:
    _check_template(body.channel, body.subject, body.body)
    template = Template(
        name=body.name, channel=body.channel, subject=body.subject, body=body.body, status="draft"
    )
    if body.status != "draft":
        TEMPLATE.move(template, body.status)
    session.add(template)
    session.flush()
    return template


def update_template(session: Session, template_id: str, body: TemplateUpdate) -> Template:
    template = get_template(session, template_id)
    fields = body.model_fields_set
    subject = body.subject if "subject" in fields else template.subject
    text = body.body if body.body is not None else template.body
    if subject != template.subject or text != template.body:
        _check_template(template.channel, subject, text)
        template.subject, template.body = subject, text
    if body.name is not None:
        template.name = body.name
    if body.status is not None and body.status != template.status:
        TEMPLATE.move(template, body.status)
    session.flush()
    return template


def proof_status(session: Session, template_id: str | None) -> str:
    """The latest proof's status, or `unavailable` when the template has none."""
    if template_id is None:
        return ProofStatus.UNAVAILABLE
    status = session.scalar(
        sa.select(Proof.status)
        .where(Proof.template_id == template_id)
        .order_by(Proof.created_at.desc(), Proof.id.desc())
        .limit(1)
    )
    return str(status or ProofStatus.UNAVAILABLE)


def _proof_destination(session: Session, template: Template, destination_id: str | None) -> Destination:
    if destination_id is None:
        destination_id = session.scalar(
            sa.select(Broadcast.destination_id)
            .where(Broadcast.template_id == template.id, Broadcast.destination_id.is_not(None))
            .order_by(Broadcast.updated_at.desc())
            .limit(1)
        )
        if destination_id is None:
            raise Invalid(
                "destinationId: required (no broadcast using this template names a destination)",
                field="destinationId",
            )
    return _destination(session, template.channel, destination_id)


def _destination(session: Session, channel: str, destination_id: str) -> Destination:
    try:
        destination = get_destination(session, destination_id)
    except NotFound:
        raise Invalid(f"destinationId: destination '{destination_id}' not found", field="destinationId")
    if destination.type not in DESTINATION_TYPES[channel]:
        raise Invalid(
            f"destinationId: a {destination.type} destination cannot carry {channel} "
            f"(use {' or '.join(DESTINATION_TYPES[channel])})",
            field="destinationId",
        )
    return destination


def send_proof(session: Session, template_id: str, body: ProofCreate) -> Proof:
    """Render the template (with a sample customer's profile, or none) and send it to the given
    addresses through the real destination now; the proof is `sent` or `failed` with the reason."""
    template = get_template(session, template_id)
    destination = _proof_destination(session, template, body.destination_id)
    fields: dict[str, Any] = {}
    if body.sample_customer_id is not None:
        fields = _sample_profile(session, template, body.sample_customer_id)
    proof = Proof(
        template_id=template.id,
        destination_id=destination.id,
        recipients=body.recipients,
        sample_customer_id=body.sample_customer_id,
        status=ProofStatus.UNAVAILABLE,
        created_at=session.now(),
    )
    session.add(proof)
    session.flush()
    to_field = str((destination.config or {}).get("to_field") or "to")
    try:
        content = compile_template(template.channel, template.subject, template.body).render(
            {
                **fields,
                "profile": fields,
                "customer_id": body.sample_customer_id,
                "broadcast": {"name": "proof"},
            }
        )
    except RenderError as exc:
        PROOF.move(proof, ProofStatus.FAILED)
        proof.error = f"render error: {exc}"
        return proof
    messages = []
    for i, address in enumerate(body.recipients):
        payload: dict[str, Any] = {
            "proof": True,
            "template_id": template.id,
            "to": address,
            "content": content,
        }
        payload[to_field] = address
        messages.append(Message(f"proof:{proof.id}:{i}", payload))
    outcomes = send_batch(session.ctx, destination, messages)
    errors = [
        f"{m.payload['to']}: {o.error}" for m, o in zip(messages, outcomes, strict=True) if o.status != "sent"
    ]
    PROOF.move(proof, ProofStatus.FAILED if errors else ProofStatus.SENT)
    proof.error = "; ".join(errors)[:2000] or None
    return proof


def _sample_profile(session: Session, template: Template, customer_id: str) -> dict[str, Any]:
    model_id = session.scalar(
        sa.select(Broadcast.model_id)
        .where(Broadcast.template_id == template.id, Broadcast.model_id.is_not(None))
        .order_by(Broadcast.updated_at.desc())
        .limit(1)
    )
    if model_id is None:
        raise Invalid(
            "sampleCustomerId: no broadcast using this template has an audience to read profiles from",
            field="sampleCustomerId",
        )
    try:
        return get_record(session, model_id, customer_id)
    except NotFound:
        raise Invalid(f"sampleCustomerId: no customer '{customer_id}'", field="sampleCustomerId")


def list_proofs(session: Session, template_id: str) -> list[Proof]:
    get_template(session, template_id)
    return list(
        session.scalars(
            sa.select(Proof)
            .where(Proof.template_id == template_id)
            .order_by(Proof.created_at, Proof.id)
            .limit(100)
        )
    )


def approve_proof(session: Session, template_id: str, proof_id: str) -> Proof:
    proof = get_or_404(session, Proof, proof_id, what="proof", template_id=template_id)
    PROOF.move(proof, ProofStatus.APPROVED)
    proof.approved_at = session.now()
    return proof


# -- broadcasts -----------------------------------------------------------------------------------


def get_broadcast(session: Session, broadcast_id: str, *, lock: bool = False) -> Broadcast:
    return get_or_404(session, Broadcast, broadcast_id, what="broadcast", lock=lock)


def list_broadcasts(session: Session) -> list[Broadcast]:
    return list(
        session.scalars(sa.select(Broadcast).order_by(Broadcast.created_at, Broadcast.id).limit(MAX_LISTED))
    )


def create_broadcast(session: Session, body: BroadcastCreate, created_by: str | None) -> Broadcast:
    broadcast = Broadcast(
        name=body.name,
        channel=body.channel,
        address_field=body.address_field or DEFAULT_ADDRESS_FIELD[body.channel],
        audience={"included": [], "excluded": []},
        reach_status=ReachStatus.IDLE,
        scheduled=False,
        authoring_status=AuthoringStatus.DRAFT,
        preflight_status="not_evaluated",
        preflight_checks=[],
        created_by=created_by,
    )
    _apply(session, broadcast, body, body.model_fields_set)
    session.add(broadcast)
    session.flush()
    return broadcast


def update_broadcast(session: Session, broadcast_id: str, body: BroadcastUpdate) -> Broadcast:
    broadcast = get_broadcast(session, broadcast_id, lock=True)
    if broadcast.authoring_status != AuthoringStatus.DRAFT:
        raise Conflict(
            f"broadcast is {broadcast.authoring_status}; unschedule it (back to draft) to change it",
            details={"authoringStatus": broadcast.authoring_status},
        )
    _apply(session, broadcast, body, body.model_fields_set)
    broadcast.updated_at = session.now()
    session.flush()
    return broadcast


def _apply(
    session: Session, broadcast: Broadcast, body: BroadcastCreate | BroadcastUpdate, fields: set[str]
) -> None:
    if body.name is not None:
        broadcast.name = body.name
    if "template_id" in fields:
        if body.template_id is not None:
            template = get_or_404(session, Template, body.template_id, what="template", field="templateId")
            if template.channel != broadcast.channel:
                raise Invalid(
                    f"templateId: the template is for {template.channel}, "
                    f"the broadcast is {broadcast.channel}",
                    field="templateId",
                )
        broadcast.template_id = body.template_id
    if "destination_id" in fields:
        if body.destination_id is not None:
            _destination(session, broadcast.channel, body.destination_id)
        broadcast.destination_id = body.destination_id
    if body.address_field is not None:
        broadcast.address_field = body.address_field
    if body.audience is not None:
        bound = {
            "included": list(dict.fromkeys(body.audience.included)),
            "excluded": list(dict.fromkeys(body.audience.excluded)),
        }
        model_id = audience.audience_model(session, bound)
        broadcast.audience, broadcast.model_id = bound, model_id
        if broadcast.reach_status != ReachStatus.IDLE:
            REACH.move(broadcast, ReachStatus.IDLE, attr="reach_status")
        broadcast.reach_count = broadcast.reach_evaluated_at = broadcast.reach_signature = None
        broadcast.reach_error = None
    if "schedule" in fields:
        broadcast.schedule = (
            None if body.schedule is None else normalize_schedule(session, broadcast.channel, body.schedule)
        )
        broadcast.scheduled = broadcast.schedule is not None
    # Any change invalidates the last preflight.
    broadcast.preflight_status, broadcast.preflight_checks, broadcast.preflight_at = "not_evaluated", [], None


def _zone(session: Session, given: str | None) -> tuple[str, str]:
    """(timezone, timezoneSource): the request's, else the workspace default, else UTC."""
    if given is not None:
        try:
            parse_zone(given, "schedule.timezone")
        except ScheduleError as exc:
            raise Invalid(f"schedule.timezone: {exc.message}", field="schedule.timezone")
        return given, "request"
    workspace = session.get(Workspace, session.workspace_id)
    if workspace is not None and workspace.timezone:
        return workspace.timezone, "tenant_default"
    return "UTC", "utc_fallback"


def normalize_schedule(session: Session, channel: str, given: ScheduleIn) -> dict[str, Any]:
    chosen = [k for k in ("send_at", "batch_date", "local_time") if getattr(given, k) is not None]
    if len(chosen) != 1:
        raise Invalid("schedule: give exactly one of sendAt, batchDate or localTime", field="schedule")
    zone, source = _zone(session, given.timezone)
    tz = ZoneInfo(zone)
    out: dict[str, Any]
    if given.send_at is not None:
        at = given.send_at if given.send_at.tzinfo is not None else resolve_local(given.send_at, tz)
        out = {
            "kind": "digital_send",
            "mode": "at",
            "sendAt": isoformat_z(at.astimezone(UTC)),
            "fireAt": isoformat_z(at),
        }
    elif given.batch_date is not None:
        if channel != "direct_mail":
            raise Invalid(
                "schedule.batchDate: only direct mail is sent as a batch on a date",
                field="schedule.batchDate",
            )
        fire = resolve_local(datetime.combine(given.batch_date, time(0, 0)), tz)
        out = {
            "kind": "direct_mail_batch",
            "mode": "batch_on_date",
            "batchDate": given.batch_date.isoformat(),
            "fireAt": isoformat_z(fire),
        }
    else:
        if channel == "direct_mail":
            raise Invalid("schedule.localTime: direct mail is sent as one batch", field="schedule.localTime")
        try:
            hhmm = parse_hhmm(given.local_time, "schedule.localTime")
        except ScheduleError as exc:
            raise Invalid(f"schedule.localTime: {exc.message}", field="schedule.localTime")
        if given.on_date is None:
            raise Invalid("schedule.date: required with localTime", field="schedule.date")
        # The run starts when the first zone on Earth (UTC+14) reaches the local time.
        fire = resolve_local(datetime.combine(given.on_date, hhmm), ZoneInfo("Etc/GMT-14"))
        out = {
            "kind": "local_time",
            "mode": "recipient_local_time",
            "localTime": given.local_time,
            "date": given.on_date.isoformat(),
            "timezoneField": given.timezone_field or "timezone",
            "fireAt": isoformat_z(fire),
        }
    out.update(timezone=zone, timezoneSource=source)
    if given.max_per_minute is not None:
        out["maxPerMinute"] = given.max_per_minute
    return out


def delete_broadcast(session: Session, broadcast_id: str) -> None:
    broadcast = get_broadcast(session, broadcast_id, lock=True)
    if (
        broadcast.authoring_status != AuthoringStatus.DRAFT
        or latest_execution(session, broadcast.id) is not None
    ):
        raise Conflict("only a draft broadcast that never ran can be deleted; archive it instead")
    remove_schedule(session, schedule_owner(broadcast.id))
    session.delete(broadcast)
    session.flush()


def evaluate_reach(ctx: AppContext, workspace_id: str, broadcast_id: str) -> None:
    """Count the audience now, in transactions of its own (readers see `pending` meanwhile), so it
    takes the context rather than a request's session."""
    audience.evaluate_reach(ctx, workspace_id, broadcast_id)


# -- preflight ------------------------------------------------------------------------------------


def _check(
    checks: list[dict[str, Any]], check_id: str, ok: bool, message: str, *, warn: bool = False
) -> None:
    status = "passed" if ok else ("warning" if warn else "failed")
    checks.append({"id": check_id, "status": status, "message": message})


def run_preflight(session: Session, broadcast_id: str, *, sending_now: bool = False) -> Broadcast:
    """Run and store every check. `sending_now` skips "the schedule is in the future"."""
    broadcast = get_broadcast(session, broadcast_id, lock=True)
    now = session.now()
    checks: list[dict[str, Any]] = []
    included = broadcast.audience.get("included") or []
    try:
        audience.bound_segments(session, broadcast.audience)
        bound = bool(included)
        message = (
            f"{len(included)} segment(s) included, {len(broadcast.audience.get('excluded') or [])} excluded"
        )
    except Invalid as exc:
        bound, message = False, exc.message
    _check(
        checks,
        "audience_bound",
        bound,
        message if bound else (message if included else "no segment is included"),
    )
    stale = audience.is_stale(session, broadcast)
    reach_ok = broadcast.reach_status == ReachStatus.OK and not stale
    _check(
        checks,
        "audience_reach",
        reach_ok,
        f"{broadcast.reach_count} recipients as of {isoformat_z(broadcast.reach_evaluated_at)}"
        if reach_ok and broadcast.reach_evaluated_at
        else f"reach is {broadcast.reach_status}{' and stale' if stale else ''}: evaluate the audience",
    )
    template = session.get(Template, broadcast.template_id) if broadcast.template_id else None
    template_ok = (
        template is not None and template.status == "published" and template.channel == broadcast.channel
    )
    _check(
        checks,
        "template_published",
        template_ok,
        "template is published"
        if template_ok
        else ("no template" if template is None else f"template is {template.status}"),
    )
    try:
        destination = _destination(session, broadcast.channel, broadcast.destination_id or "")
        ready = destination.enabled
        message = f"{destination.type} destination '{destination.name}'" + ("" if ready else " is disabled")
    except Invalid as exc:
        ready, message = False, ("no destination" if not broadcast.destination_id else exc.message)
    _check(checks, "destination_ready", ready, message)
    if not sending_now:
        fire = (broadcast.schedule or {}).get("fireAt")
        future = fire is not None and datetime.fromisoformat(fire) > now
        _check(
            checks,
            "schedule_in_future",
            future,
            f"sends at {fire}" if future else ("no schedule" if fire is None else f"{fire} has passed"),
        )
    if bound:
        _data_checks(session, broadcast, template if template_ok else None, checks)
    if broadcast.channel == "email" and template is not None:
        _check(
            checks,
            "unsubscribe_link",
            has_unsubscribe_link(template.body),
            "the email has an unsubscribe link"
            if has_unsubscribe_link(template.body)
            else "the email body has no unsubscribe link",
        )
    broadcast.preflight_checks = checks
    broadcast.preflight_status = "failed" if any(c["status"] == "failed" for c in checks) else "passed"
    broadcast.preflight_at = now
    session.flush()
    return broadcast


def _data_checks(
    session: Session, broadcast: Broadcast, template: Template | None, checks: list[dict[str, Any]]
) -> None:
    ctx = session.ctx
    try:
        columns = audience.profile_columns(ctx, session, broadcast)
    except OvertureError as exc:
        _check(checks, "address_field", False, exc.message)
        return
    if broadcast.address_field not in columns:
        _check(checks, "address_field", False, f"the model has no column '{broadcast.address_field}'")
        return
    try:
        missing = audience.count_missing(ctx, session, broadcast, broadcast.address_field)
    except OvertureError as exc:
        _check(checks, "address_field", False, exc.message)
        return
    _check(
        checks,
        "recipients_without_address",
        missing == 0,
        f"{missing} recipient(s) have no '{broadcast.address_field}' and will be dropped",
        warn=True,
    )
    if template is None:
        return
    keys = audience.sample_keys(ctx, session, broadcast, PREFLIGHT_SAMPLE)
    profiles = audience.profiles(ctx, session, broadcast, columns, keys=set(keys))
    compiled = compile_template(template.channel, template.subject, template.body)
    errors = []
    for key, fields in profiles.items():
        try:
            compiled.render(
                {**fields, "profile": fields, "customer_id": key, "broadcast": {"name": broadcast.name}}
            )
        except RenderError as exc:
            errors.append(f"{key}: {exc}")
    _check(
        checks,
        "template_renders",
        not errors,
        f"rendered for {len(profiles)} sample recipient(s)"
        if not errors
        else f"{len(errors)} of {len(profiles)} failed: {errors[0]}"[:500],
    )


# -- moves ----------------------------------------------------------------------------------------


def latest_execution(session: Session, broadcast_id: str) -> Execution | None:
    return session.scalar(
        sa.select(Execution)
        .where(Execution.broadcast_id == broadcast_id)
        .order_by(Execution.started_at.desc(), Execution.touchpoint_id.desc())
        .limit(1)
    )


def _running(session: Session, broadcast_id: str) -> Execution | None:
    latest = latest_execution(session, broadcast_id)
    return latest if latest is not None and latest.status == ExecutionStatus.RUNNING else None


def publish(session: Session, broadcast_id: str) -> Broadcast:
    broadcast = get_broadcast(session, broadcast_id, lock=True)
    if broadcast.preflight_status != "passed":
        reason = "was never run" if broadcast.preflight_status == "not_evaluated" else "has failed"
        raise Conflict(
            f"cannot publish: the preflight {reason}", details={"preflight": broadcast.preflight_status}
        )
    AUTHORING.move(broadcast, AuthoringStatus.PUBLISHED, attr="authoring_status")
    schedule = broadcast.schedule or {}
    set_schedule(
        session,
        workspace_id=session.workspace_id,
        owner=schedule_owner(broadcast.id),
        spec={"kind": "once", "send_at": schedule["fireAt"]},
        job_kind=START_JOB,
        payload={"broadcast_id": broadcast.id},
    )
    broadcast.scheduled = True
    broadcast.updated_at = session.now()
    return broadcast


def unschedule(session: Session, broadcast_id: str) -> Broadcast:
    broadcast = get_broadcast(session, broadcast_id, lock=True)
    AUTHORING.move(broadcast, AuthoringStatus.DRAFT, attr="authoring_status")
    remove_schedule(session, schedule_owner(broadcast.id))
    broadcast.scheduled = False
    broadcast.updated_at = session.now()
    return broadcast


def cancel(session: Session, broadcast_id: str) -> Broadcast:
    """Stop the running send (unsent messages cancelled and counted) and/or the pending schedule."""
    broadcast = get_broadcast(session, broadcast_id, lock=True)
    running = _running(session, broadcast.id)
    row = get_schedule(session, schedule_owner(broadcast.id))
    if running is None and (row is None or row.next_fire_at is None):
        raise Conflict("nothing to cancel: no send is running or scheduled")
    if running is not None:
        pipeline.cancel(session, running)
    if row is not None:
        remove_schedule(session, schedule_owner(broadcast.id))
    broadcast.scheduled = False
    broadcast.updated_at = session.now()
    return broadcast


def archive(session: Session, broadcast_id: str) -> Broadcast:
    broadcast = get_broadcast(session, broadcast_id, lock=True)
    if _running(session, broadcast.id) is not None:
        raise Conflict("a send is running; cancel it first")
    AUTHORING.move(broadcast, AuthoringStatus.ARCHIVED, attr="authoring_status")
    remove_schedule(session, schedule_owner(broadcast.id))
    broadcast.scheduled = False
    broadcast.updated_at = session.now()
    return broadcast


def plan_of(session: Session, broadcast: Broadcast) -> dict[str, Any]:
    """Everything an execution needs, frozen when it starts (later edits do not change a send)."""
    template = get_template(session, broadcast.template_id or "")
    destination = get_destination(session, broadcast.destination_id or "")
    compiled = compile_template(template.channel, template.subject, template.body)
    schedule = broadcast.schedule or {}
    needed = compiled.fields() | {broadcast.address_field}
    if schedule.get("timezoneField"):
        needed.add(schedule["timezoneField"])
    if "profile" in needed:  # the whole profile is in use
        needed |= set(audience.profile_columns(session.ctx, session, broadcast))
    return {
        "broadcastId": broadcast.id,
        "name": broadcast.name,
        "channel": broadcast.channel,
        "template": {"id": template.id, "subject": template.subject, "body": template.body},
        "destinationId": destination.id,
        "destinationType": destination.type,
        "toField": (destination.config or {}).get("to_field") if destination.type == "smtp" else None,
        "addressField": broadcast.address_field,
        "schedule": schedule,
        "fields": sorted(needed),
    }


def send_now(session: Session, broadcast_id: str) -> Execution:
    broadcast = run_preflight(session, broadcast_id, sending_now=True)
    if broadcast.preflight_status != "passed":
        raise Conflict(
            "cannot send: the preflight has failed", details={"checks": broadcast.preflight_checks}
        )
    if _running(session, broadcast.id) is not None:
        raise Conflict("a send of this broadcast is already running")
    if broadcast.authoring_status == AuthoringStatus.DRAFT:
        AUTHORING.move(broadcast, AuthoringStatus.PUBLISHED, attr="authoring_status")
    elif broadcast.authoring_status != AuthoringStatus.PUBLISHED:
        raise Conflict(f"broadcast is {broadcast.authoring_status}")
    remove_schedule(session, schedule_owner(broadcast.id))
    broadcast.scheduled = False
    execution = pipeline.start_execution(
        session, plan_of(session, broadcast), broadcast.id, f"send-now:{uuid.uuid4()}"
    )
    return execution


def start_scheduled(session: Session, broadcast_id: str, fire_time: str) -> Execution | None:
    """The scheduler fired the broadcast's slot: start its execution (once per slot)."""
    broadcast = session.get(Broadcast, broadcast_id)
    if (
        broadcast is None
        or broadcast.authoring_status != AuthoringStatus.PUBLISHED
        or not broadcast.scheduled
    ):
        return None
    return pipeline.start_execution(
        session, plan_of(session, broadcast), broadcast.id, f"schedule:{fire_time}"
    )


def retry_failed(session: Session, broadcast_id: str) -> Execution:
    broadcast = get_broadcast(session, broadcast_id, lock=True)
    latest = latest_execution(session, broadcast.id)
    if latest is None:
        raise Conflict("the broadcast has never been sent")
    session.refresh(latest, with_for_update=True)
    pipeline.retry_failed(session, latest)
    return latest


# -- executions -----------------------------------------------------------------------------------


def list_executions(session: Session, broadcast_id: str) -> list[Execution]:
    get_broadcast(session, broadcast_id)
    return list(
        session.scalars(
            sa.select(Execution)
            .where(Execution.broadcast_id == broadcast_id)
            .order_by(Execution.started_at.desc(), Execution.touchpoint_id.desc())
            .limit(MAX_LISTED)
        )
    )


def get_execution(session: Session, broadcast_id: str, execution_id: str) -> Execution:
    return get_or_404(session, Execution, execution_id, what="execution", broadcast_id=broadcast_id)


STAGES = ("scheduled", "hydrated", "composed", "injected")


def list_recipients(
    session: Session, broadcast_id: str, execution_id: str, *, outcome: str | None, after: int, limit: int
) -> tuple[list[Recipient], int | None]:
    """A page of an execution's recipients (dropped ones say why), by row id."""
    get_execution(session, broadcast_id, execution_id)
    if not 1 <= limit <= MAX_LISTED:
        raise Invalid(f"limit: must be between 1 and {MAX_LISTED}", field="limit")
    query = sa.select(Recipient).where(Recipient.execution_id == execution_id, Recipient.id > after)
    if outcome == "pending":
        query = query.where(Recipient.outcome.is_(None))
    elif outcome is not None:
        if outcome not in ("dropped", "cancelled", "sent", "failed"):
            raise Invalid("outcome: one of dropped, cancelled, sent, failed, pending", field="outcome")
        query = query.where(Recipient.outcome == outcome)
    rows = list(session.scalars(query.order_by(Recipient.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
