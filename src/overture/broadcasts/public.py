"""The public campaign API's views (seed 002): a redacted summary, the status and the metrics of a
broadcast, assembled from the broadcast row, its schedule row and its latest execution's counters
(never a scan of the ledger). Errors carry the seed's codes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from overture.broadcasts import audience
from overture.broadcasts.execution import inconsistency
from overture.broadcasts.models import COUNTS, Broadcast, Execution, Template
from overture.broadcasts.service import latest_execution, proof_status, schedule_owner
from overture.broadcasts.states import ExecutionStatus
from overture.campaigns import campaign_type
from overture.db.session import Session
from overture.runtime.models import ScheduleRow
from overture.runtime.scheduler import get_schedule

log = logging.getLogger(__name__)

NOT_FOUND = "JOURNEY_API.PUBLIC.CAMPAIGNS.NOT_FOUND"
TYPE_UNSUPPORTED = "JOURNEY_API.PUBLIC.CAMPAIGNS.TYPE_UNSUPPORTED"
STATUS_INCONSISTENT = "JOURNEY_API.PUBLIC.CAMPAIGNS.STATUS_INCONSISTENT"
INSUFFICIENT_SCOPE = "JOURNEY_API.AUTH.INSUFFICIENT_SCOPE"
UNAUTHENTICATED = "JOURNEY_API.AUTH.UNAUTHENTICATED"


class PublicError(Exception):
    """An error of the public API: its HTTP status, the seed's code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def ms(value: datetime | None) -> str | None:
    """The seed's instants: UTC with milliseconds and Z (`2026-05-01T09:00:00.000Z`)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _ms_text(value: str | None) -> str | None:
    return None if value is None else ms(datetime.fromisoformat(value))


def _broadcast(session: Session, campaign_id: str, operation: str) -> Broadcast:
    kind = campaign_type(session, campaign_id)
    if kind is None:
        raise PublicError(404, NOT_FOUND, f"Campaign {campaign_id} not found.")
    if kind != "broadcast":
        raise PublicError(
            409, TYPE_UNSUPPORTED, f"Campaign type '{kind}' is not supported by the public {operation} yet."
        )
    broadcast = session.get(Broadcast, campaign_id)
    if broadcast is None:  # the registry says broadcast, the table disagrees
        raise _inconsistent(campaign_id, "registered as a broadcast but has no broadcast row")
    return broadcast


def _inconsistent(campaign_id: str, why: str) -> PublicError:
    log.error("campaign %s: status cannot be assembled: %s", campaign_id, why)
    return PublicError(
        500, STATUS_INCONSISTENT, "Status cannot be assembled because execution metadata is inconsistent."
    )


def _latest(session: Session, broadcast: Broadcast) -> Execution | None:
    latest = latest_execution(session, broadcast.id)
    if latest is not None:
        why = inconsistency(latest)
        if why is not None:
            raise _inconsistent(broadcast.id, f"execution {latest.id}: {why}")
    return latest


def _counts(execution: Execution | None) -> dict[str, int]:
    return {name: (0 if execution is None else int(getattr(execution, name))) for name in COUNTS}


def _state(session: Session, broadcast: Broadcast, latest: Execution | None, row: ScheduleRow | None) -> str:
    """execution.state: running, scheduled, pending_or_overdue, completed, failed or not_scheduled."""
    if latest is not None and (latest.status == ExecutionStatus.RUNNING or latest.completed_at is None):
        return "running"
    fire = (broadcast.schedule or {}).get("fireAt")
    if row is not None and row.enabled and fire is not None:
        fire_at = datetime.fromisoformat(fire)
        if fire_at > session.now():
            return "scheduled"
        if latest is None or latest.started_at < fire_at:
            return "pending_or_overdue"
    if latest is not None:
        return "failed" if latest.status == ExecutionStatus.FAILED else "completed"
    return "not_scheduled"


def summary(session: Session, campaign_id: str) -> dict[str, Any]:
    broadcast = _broadcast(session, campaign_id, "summary")
    latest = _latest(session, broadcast)
    template = session.get(Template, broadcast.template_id) if broadcast.template_id else None
    members = [
        {"id": segment_id, "name": None, "type": "segment", "memberCount": None}
        for segment_id in broadcast.audience.get("included") or []
    ]
    excluded = [
        {"id": segment_id, "name": None, "type": "segment", "memberCount": None}
        for segment_id in broadcast.audience.get("excluded") or []
    ]
    return {
        "campaignId": broadcast.id,
        "name": broadcast.name,
        "campaignType": "broadcast",
        "channel": broadcast.channel,
        "authoringStatus": broadcast.authoring_status,
        "createdAt": ms(broadcast.created_at),
        "updatedAt": ms(broadcast.updated_at),
        "schedule": _summary_schedule(broadcast),
        "audience": {
            "included": members,
            "excluded": excluded,
            "reach": {
                "status": broadcast.reach_status,
                "evaluatedCount": broadcast.reach_count,
                "evaluatedAt": ms(broadcast.reach_evaluated_at),
                "isStale": audience.is_stale(session, broadcast),
            },
        },
        "content": {
            "template": None
            if template is None
            else {
                "id": template.id,
                "name": template.name,
                "status": template.status,
                "channel": template.channel,
            },
            "proofStatus": proof_status(session, broadcast.template_id),
        },
        # Check ids and outcomes only: their messages name internal objects (destinations...).
        "preflight": {
            "status": broadcast.preflight_status,
            "checks": [{"id": c["id"], "status": c["status"]} for c in broadcast.preflight_checks],
        },
        "latestExecution": {
            "status": _state(session, broadcast, latest, get_schedule(session, schedule_owner(broadcast.id))),
            "lastExecutionAt": ms(latest.started_at) if latest is not None else None,
            "counts": _counts(latest) if latest is not None else None,
        },
        "links": {"self": f"/public/v1/campaigns/{broadcast.id}/summary"},
    }


def _summary_schedule(broadcast: Broadcast) -> dict[str, Any] | None:
    schedule = broadcast.schedule
    if schedule is None:
        return None
    kind = schedule["kind"]
    if kind == "digital_send":
        return {
            "kind": kind,
            "mode": schedule["mode"],
            "sendAt": _ms_text(schedule["sendAt"]),
            "timezone": schedule["timezone"],
            "scheduled": broadcast.scheduled,
        }
    if kind == "direct_mail_batch":
        return {
            "kind": kind,
            "mode": schedule["mode"],
            "batchDate": schedule["batchDate"],
            "timezone": schedule["timezone"],
            "timezoneSource": schedule["timezoneSource"],
            "scheduled": broadcast.scheduled,
        }
    return {
        "kind": kind,
        "mode": schedule["mode"],
        "localTime": schedule["localTime"],
        "date": schedule["date"],
        "timezone": schedule["timezone"],
        "timezoneSource": schedule["timezoneSource"],
        "scheduled": broadcast.scheduled,
    }


def status(session: Session, campaign_id: str) -> dict[str, Any]:
    broadcast = _broadcast(session, campaign_id, "status")
    latest = _latest(session, broadcast)
    out: dict[str, Any] = {
        "campaignId": broadcast.id,
        "name": broadcast.name,
        "authoringStatus": broadcast.authoring_status,
    }
    row = get_schedule(session, schedule_owner(broadcast.id))
    schedule = broadcast.schedule or {}
    if row is not None:
        out["schedule"] = {
            "scheduleId": row.id,
            "sendAt": _ms_text(schedule.get("sendAt") or schedule.get("fireAt")),
            "timezone": schedule.get("timezone"),
            "active": bool(row.enabled),
        }
    out["execution"] = {
        "state": _state(session, broadcast, latest, row),
        "touchpointId": latest.touchpoint_id if latest is not None else None,
        "manifestId": latest.manifest_id if latest is not None else None,
        "channel": broadcast.channel,
        "lastExecution": None
        if latest is None
        else {
            "executionId": latest.id,
            "startedAt": ms(latest.started_at),
            "completedAt": ms(latest.completed_at),
            "status": latest.status,
            "counts": _counts(latest),
        },
    }
    return out


def metrics(session: Session, campaign_id: str) -> tuple[dict[str, Any], Execution | None]:
    """The latest execution's counts (zeros when it never ran), and that execution (the basis)."""
    broadcast = _broadcast(session, campaign_id, "metrics")
    latest = _latest(session, broadcast)
    return {"campaignId": broadcast.id, "counts": _counts(latest)}, latest
