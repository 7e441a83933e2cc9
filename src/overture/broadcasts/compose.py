"""Composition: one recipient's message from the frozen plan and their profile fields, and when it
may leave (their local time, the throttle)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from overture.broadcasts.render import Compiled, RenderError, compile_template
from overture.core.encode import to_text
from overture.core.schedules import ScheduleError, parse_zone, resolve_local


@dataclass(frozen=True)
class Composed:
    payload: dict[str, Any] | None
    #: Why the recipient cannot go on (no usable address, a render error); None when composed.
    reason: str | None = None
    #: Released at the workspace default because their own zone was missing or invalid.
    zone_fallback: bool = False
    release_at: datetime | None = None


def compiled_of(plan: dict[str, Any]) -> Compiled:
    template = plan["template"]
    return compile_template(plan["channel"], template.get("subject"), template["body"])


def _place(payload: dict[str, Any], path: str, value: Any) -> None:
    """Put `value` at a dotted path of nested objects (where the SMTP destination reads the address)."""
    parts = path.split(".")
    node = payload
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


#: One plain address: what an SMTP server takes as a single recipient (no display name, no list).
_EMAIL = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\".]+$")


def _usable(channel: str, address: str) -> bool:
    if channel == "email":
        return _EMAIL.match(address) is not None
    return bool(address.strip())


def local_release(plan: dict[str, Any], fields: dict[str, Any]) -> tuple[datetime | None, bool]:
    """When a local-time send reaches this recipient: `date` at `localTime` in their zone (the
    profile's `timezoneField`), or in the workspace default when theirs is missing or invalid."""
    schedule = plan.get("schedule") or {}
    if not schedule.get("localTime"):
        return None, False
    wall = datetime.combine(date.fromisoformat(schedule["date"]), time.fromisoformat(schedule["localTime"]))
    fallback = False
    raw = fields.get(schedule.get("timezoneField") or "timezone")
    try:
        zone = parse_zone(raw)
    except ScheduleError:
        zone, fallback = parse_zone(schedule["timezone"]), True
    return resolve_local(wall, zone), fallback


def compose(plan: dict[str, Any], compiled: Compiled, entity_id: str, fields: dict[str, Any]) -> Composed:
    channel = plan["channel"]
    address = to_text(fields.get(plan["addressField"]))
    if not _usable(channel, address):
        return Composed(None, f"no usable address in '{plan['addressField']}'")
    context = {**fields, "profile": fields, "customer_id": entity_id, "broadcast": {"name": plan["name"]}}
    try:
        content = compiled.render(context)
    except RenderError as exc:
        return Composed(None, f"render error: {exc}"[:300])
    payload: dict[str, Any] = {
        "broadcast_id": plan["broadcastId"],
        "execution_id": plan["executionId"],
        "touchpoint_id": plan["touchpointId"],
        "channel": channel,
        "entity_id": entity_id,
        "to": address,
        "content": content,
    }
    if plan.get("toField") and plan["toField"] != "to":
        _place(payload, plan["toField"], address)
    release, fallback = local_release(plan, fields)
    return Composed(payload, None, fallback, release)


def throttle_release(start: datetime, index: int, per_minute: int | None) -> datetime | None:
    """The `index`-th message of a throttled send leaves no earlier than start + index/rate minutes:
    the ledger holds the release times, so every dispatcher in every process honours the rate."""
    if not per_minute:
        return None
    return start + timedelta(minutes=index / per_minute)
