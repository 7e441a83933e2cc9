"""Schedules: cron expressions, calendar specs and one-shot sends, with defined DST behaviour.

Every schedule is evaluated on the local *wall clock* of its timezone and then resolved to an
instant with two rules, the same for every kind:

* a local time that does not exist (inside a spring-forward gap) fires at the instant of the jump,
  i.e. right after it (02:30 on a 02:00->03:00 night fires at 03:00 new time);
* a local time that exists twice (inside an autumn fold) fires once, at its first occurrence.

Resolution is monotone in wall-clock time, so `next_after` is strictly increasing. Pure: the
caller passes every instant in; nothing here reads a clock.
"""

from __future__ import annotations

import calendar
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

from overture.core.encode import isoformat_z

__all__ = [
    "KINDS",
    "CronSchedule",
    "DailySchedule",
    "ManualSchedule",
    "MonthlySchedule",
    "OnceSchedule",
    "Schedule",
    "ScheduleError",
    "WeeklySchedule",
    "last_working_day",
    "next_local_time",
    "parse_hhmm",
    "parse_schedule",
    "parse_zone",
    "resolve_local",
]

# ASCII digits only, and the whole string (`$` would let a trailing newline through).
_TIME_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
LAST_WORKING_DAY = "last_working_day"
#: Upper bound on wall-clock candidates examined per call; reached only by specs that never fire.
_MAX_CANDIDATES = 100_000


class ScheduleError(ValueError):
    """A schedule that cannot be parsed; `field` names the offending key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_zone(name: object, field: str = "timezone") -> ZoneInfo:
    """An IANA zone; ScheduleError naming `field` otherwise."""
    if not isinstance(name, str) or not name:
        raise ScheduleError(field, "must be an IANA timezone name such as Europe/Paris")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(field, f"unknown timezone {name!r}")


def _require_aware(t: datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("schedules work on timezone-aware datetimes")


def resolve_local(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant a naive local wall-clock time fires at (gap: the jump; fold: first occurrence)."""
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    off_first, off_second = first.utcoffset(), second.utcoffset()
    assert off_first is not None and off_second is not None
    if off_first == off_second:
        return first.astimezone(UTC)
    u_first, u_second = first.astimezone(UTC), second.astimezone(UTC)
    if u_first.astimezone(tz).replace(tzinfo=None) == wall:
        return min(u_first, u_second)  # exists twice: the first occurrence
    # A gap: the wall time never shows. The jump lies between the two readings; find it to the second.
    lo, hi = min(u_first, u_second), max(u_first, u_second)
    after = hi.astimezone(tz).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            mid = lo + timedelta(seconds=1)
        if mid.astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi


class Schedule(ABC):
    """A rule producing fire instants. `next_after(t)` is the first instant strictly after `t`."""

    kind: str

    @abstractmethod
    def next_after(self, t: datetime) -> datetime | None:
        """First fire instant strictly after `t` (tz-aware; returned in UTC), or None if none is left."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON form; `parse_schedule(s.to_dict()) == s`."""

    @property
    def recurring(self) -> bool:
        return True


class _WallClockSchedule(Schedule):
    """Schedules defined by local wall-clock candidates in a timezone."""

    timezone: str

    @abstractmethod
    def _candidates(self, start: datetime) -> Iterator[datetime]:
        """Increasing naive local wall-clock times, the first at or before `start`'s successors."""

    def next_after(self, t: datetime) -> datetime | None:
        _require_aware(t)
        tz = ZoneInfo(self.timezone)
        # Resolution is monotone and maps t's own wall time to t or earlier (fold: first
        # occurrence), so no wall time before t's can resolve after t: start there.
        start = t.astimezone(tz).replace(tzinfo=None)
        for n, wall in enumerate(self._candidates(start)):
            instant = resolve_local(wall, tz)
            if instant > t:
                return instant
            if n > _MAX_CANDIDATES:
                break
        return None


def parse_hhmm(raw: object, field: str = "time") -> time:
    """A 24-hour `HH:MM` wall time; ScheduleError naming `field` otherwise."""
    if not isinstance(raw, str) or not _TIME_RE.fullmatch(raw):
        raise ScheduleError(field, "must be a 24-hour time HH:MM, e.g. 09:00")
    hours, minutes = raw.split(":")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class ManualSchedule(Schedule):
    """Runs only when triggered by hand; never fires on its own."""

    kind = "manual"

    def next_after(self, t: datetime) -> datetime | None:
        _require_aware(t)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @property
    def recurring(self) -> bool:
        return False


@dataclass(frozen=True)
class OnceSchedule(Schedule):
    """A one-shot send at an instant."""

    send_at: datetime
    kind = "once"

    def next_after(self, t: datetime) -> datetime | None:
        _require_aware(t)
        return self.send_at if self.send_at > t else None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "send_at": isoformat_z(self.send_at)}

    @property
    def recurring(self) -> bool:
        return False


@dataclass(frozen=True)
class CronSchedule(_WallClockSchedule):
    """A five-field cron expression evaluated on the wall clock of `timezone`."""

    cron: str
    timezone: str = "UTC"
    kind = "cron"

    def _candidates(self, start: datetime) -> Iterator[datetime]:
        it = croniter(self.cron, start)
        while True:
            try:
                yield it.get_next(datetime)
            except CroniterBadDateError:
                return

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "cron": self.cron, "timezone": self.timezone}


@dataclass(frozen=True)
class DailySchedule(_WallClockSchedule):
    time: str
    timezone: str
    kind = "daily"

    def _candidates(self, start: datetime) -> Iterator[datetime]:
        at = parse_hhmm(self.time)
        day = start.date()
        while True:
            yield datetime.combine(day, at)
            day += timedelta(days=1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "time": self.time, "timezone": self.timezone}


@dataclass(frozen=True)
class WeeklySchedule(_WallClockSchedule):
    """Once a week; `day_of_week` counts from Sunday (0=Sun .. 6=Sat)."""

    day_of_week: int
    time: str
    timezone: str
    kind = "weekly"

    def _candidates(self, start: datetime) -> Iterator[datetime]:
        at = parse_hhmm(self.time)
        day = start.date()
        # Python's weekday() is 0=Mon; ours is 0=Sun.
        day += timedelta(days=(self.day_of_week - (day.weekday() + 1) % 7) % 7)
        while True:
            yield datetime.combine(day, at)
            day += timedelta(days=7)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "day_of_week": self.day_of_week,
            "time": self.time,
            "timezone": self.timezone,
        }


def last_working_day(year: int, month: int) -> date:
    """The last Monday-Friday of the month (public holidays are not modelled)."""
    day = date(year, month, calendar.monthrange(year, month)[1])
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


@dataclass(frozen=True)
class MonthlySchedule(_WallClockSchedule):
    """Once a month on `day_of_month` (1-28, so every month has it) or the last working day."""

    day_of_month: int | str
    time: str
    timezone: str
    kind = "monthly"

    def _candidates(self, start: datetime) -> Iterator[datetime]:
        at = parse_hhmm(self.time)
        year, month = start.year, start.month
        while True:
            if self.day_of_month == LAST_WORKING_DAY:
                day = last_working_day(year, month)
            else:
                assert isinstance(self.day_of_month, int)
                day = date(year, month, self.day_of_month)
            yield datetime.combine(day, at)
            month += 1
            if month == 13:
                year, month = year + 1, 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "day_of_month": self.day_of_month,
            "time": self.time,
            "timezone": self.timezone,
        }


KINDS = ("manual", "once", "cron", "daily", "weekly", "monthly")

_ALLOWED_KEYS: dict[str, frozenset[str]] = {
    "manual": frozenset({"kind"}),
    "once": frozenset({"kind", "send_at", "timezone"}),
    "cron": frozenset({"kind", "cron", "timezone"}),
    "daily": frozenset({"kind", "time", "timezone"}),
    "weekly": frozenset({"kind", "day_of_week", "time", "timezone"}),
    "monthly": frozenset({"kind", "day_of_month", "time", "timezone"}),
}


def _parse_cron(expr: object, timezone: object) -> CronSchedule:
    if not isinstance(expr, str) or not expr.strip():
        raise ScheduleError("cron", "must be a cron expression such as '0 */6 * * *'")
    expr = " ".join(expr.split())
    if not expr.startswith("@") and len(expr.split(" ")) != 5:
        raise ScheduleError("cron", "must have five fields: minute hour day-of-month month day-of-week")
    try:
        valid = croniter.is_valid(expr)
    except (CroniterBadCronError, CroniterNotAlphaError, ValueError):
        valid = False
    if not valid:
        raise ScheduleError("cron", f"invalid cron expression {expr!r}")
    tz_name = "UTC" if timezone is None else timezone
    parse_zone(tz_name)
    schedule = CronSchedule(cron=expr, timezone=str(tz_name))
    try:  # "0 0 30 2 *" parses but never fires: refuse it at save, not at run time.
        croniter(expr, datetime(2000, 1, 1)).get_next(datetime)
    except (CroniterBadDateError, CroniterBadCronError, ValueError):
        raise ScheduleError("cron", f"cron expression {expr!r} never fires")
    return schedule


def _parse_send_at(raw: object, timezone: object) -> datetime:
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ScheduleError("send_at", "must be an ISO-8601 date-time, e.g. 2026-05-01T09:00:00Z")
    else:
        raise ScheduleError("send_at", "is required: an ISO-8601 date-time")
    if value.tzinfo is None:
        # A wall-clock send_at reads in its timezone (UTC when none is given), with the DST rules.
        tz = parse_zone(timezone) if timezone is not None else ZoneInfo("UTC")
        return resolve_local(value, tz)
    if timezone is not None:
        parse_zone(timezone)
    return value.astimezone(UTC)


def _day_of_week(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 6:
        raise ScheduleError("day_of_week", "must be an integer 0 (Sunday) to 6 (Saturday)")
    return raw


def _day_of_month(raw: object) -> int | str:
    if raw == LAST_WORKING_DAY:
        return LAST_WORKING_DAY
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 28:
        raise ScheduleError("day_of_month", "must be an integer 1-28 or 'last_working_day'")
    return raw


def parse_schedule(raw: str | Mapping[str, Any]) -> Schedule:
    """Parse a cron string or a calendar spec (see the module doc); raises ScheduleError."""
    if isinstance(raw, str):
        return _parse_cron(raw, None)
    if not isinstance(raw, Mapping):
        raise ScheduleError("schedule", "must be a cron string or an object with a 'kind'")
    kind = raw.get("kind")
    if kind not in _ALLOWED_KEYS:
        raise ScheduleError("kind", f"must be one of {', '.join(KINDS)}")
    unknown = sorted(set(raw) - _ALLOWED_KEYS[kind])
    if unknown:
        raise ScheduleError(unknown[0], f"is not a field of a {kind} schedule")
    timezone = raw.get("timezone")
    if kind == "manual":
        return ManualSchedule()
    if kind == "once":
        return OnceSchedule(send_at=_parse_send_at(raw.get("send_at"), timezone))
    if kind == "cron":
        return _parse_cron(raw.get("cron"), timezone)
    parse_hhmm(raw.get("time"))
    parse_zone(timezone)
    assert isinstance(timezone, str)
    when = str(raw["time"])
    if kind == "daily":
        return DailySchedule(time=when, timezone=timezone)
    if kind == "weekly":
        return WeeklySchedule(day_of_week=_day_of_week(raw.get("day_of_week")), time=when, timezone=timezone)
    return MonthlySchedule(day_of_month=_day_of_month(raw.get("day_of_month")), time=when, timezone=timezone)


def next_local_time(after: datetime, hhmm: str, tz: str) -> datetime:
    """The next instant after `after` at which the wall clock in `tz` reads `hhmm` (DST rules apply)."""
    parse_hhmm(hhmm)
    parse_zone(tz)
    result = DailySchedule(time=hhmm, timezone=tz).next_after(after)
    assert result is not None  # a daily time always comes round again
    return result
