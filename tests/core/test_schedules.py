"""Schedules: parsing errors name the field; DST rules (gap fires at the jump, fold fires once) hold
as properties over many zones for two years, including 30-minute (Lord_Howe) and midnight
(Santiago, Havana) transitions."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overture.core.schedules import (
    CronSchedule,
    Schedule,
    ScheduleError,
    last_working_day,
    next_local_time,
    parse_schedule,
    resolve_local,
)

ZONES = [
    "UTC",
    "Europe/Paris",
    "Europe/London",
    "America/New_York",
    "America/Santiago",
    "America/Havana",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "Pacific/Chatham",
    "Pacific/Auckland",
    "Asia/Kolkata",
    "Asia/Tehran",
    "Africa/Casablanca",
    "America/Sao_Paulo",
]
zones = st.sampled_from(ZONES)
hhmm = st.tuples(st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59])).map(
    lambda t: f"{t[0]:02d}:{t[1]:02d}"
)
starts = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)
TWO_YEARS = timedelta(days=731)


def _fires(schedule: Schedule, start: datetime, span: timedelta) -> list[datetime]:
    out, t = [], start
    while (t := schedule.next_after(t)) is not None and t <= start + span:  # type: ignore[assignment]
        out.append(t)
    return out


def _is_jump(instant: datetime, tz: ZoneInfo) -> bool:
    return (instant - timedelta(seconds=1)).astimezone(tz).utcoffset() != instant.astimezone(tz).utcoffset()


def _wall_exists(day: date, at: str, tz: ZoneInfo) -> bool:
    wall = datetime.combine(day, datetime.strptime(at, "%H:%M").time())
    return resolve_local(wall, tz).astimezone(tz).replace(tzinfo=None) == wall


def _check_fire(fire: datetime, day: date, at: str, tz: ZoneInfo) -> None:
    """`fire` is the one firing of wall time `at` on local `day`."""
    local = fire.astimezone(tz)
    assert fire.tzinfo is UTC or fire.utcoffset() == timedelta(0)
    if _wall_exists(day, at, tz):
        assert local.date() == day and local.strftime("%H:%M") == at
        assert local.fold == 0, "an ambiguous time fires at its first occurrence"
    else:  # inside a spring-forward gap: fires at the jump, the first instant after the gap
        assert _is_jump(fire, tz)
        wall = datetime.combine(day, datetime.strptime(at, "%H:%M").time())
        assert local.replace(tzinfo=None) > wall


@settings(max_examples=60, deadline=None)
@given(zone=zones, at=hhmm, start=starts)
def test_daily__two_years__once_per_local_day_at_time_or_jump(zone: str, at: str, start: datetime) -> None:
    tz = ZoneInfo(zone)
    fires = _fires(parse_schedule({"kind": "daily", "time": at, "timezone": zone}), start, TWO_YEARS)
    assert all(a < b for a, b in itertools.pairwise(fires)), "strictly increasing"
    days = [f.astimezone(tz).date() for f in fires]
    for fire, day in zip(fires, days, strict=True):
        _check_fire(fire, day, at, tz)
    # one firing per local day, none skipped (a fold never fires twice, a gap never drops a day)
    assert days == [days[0] + timedelta(days=i) for i in range(len(days))]


@settings(max_examples=40, deadline=None)
@given(zone=zones, at=hhmm, start=starts, dow=st.integers(0, 6))
def test_weekly__two_years__right_weekday_every_week(zone: str, at: str, start: datetime, dow: int) -> None:
    tz = ZoneInfo(zone)
    spec = {"kind": "weekly", "day_of_week": dow, "time": at, "timezone": zone}
    fires = _fires(parse_schedule(spec), start, TWO_YEARS)
    assert all(a < b for a, b in itertools.pairwise(fires))
    days = [f.astimezone(tz).date() for f in fires]
    assert all((d.weekday() + 1) % 7 == dow for d in days)  # 0 = Sunday
    assert all((b - a).days == 7 for a, b in itertools.pairwise(days))
    for fire, day in zip(fires, days, strict=True):
        _check_fire(fire, day, at, tz)
    assert 103 <= len(fires) <= 105


@settings(max_examples=40, deadline=None)
@given(zone=zones, at=hhmm, start=starts, dom=st.one_of(st.integers(1, 28), st.just("last_working_day")))
def test_monthly__two_years__one_per_month_on_its_day(
    zone: str, at: str, start: datetime, dom: int | str
) -> None:
    tz = ZoneInfo(zone)
    spec = {"kind": "monthly", "day_of_month": dom, "time": at, "timezone": zone}
    fires = _fires(parse_schedule(spec), start, TWO_YEARS)
    assert all(a < b for a, b in itertools.pairwise(fires))
    days = [f.astimezone(tz).date() for f in fires]
    months = [(d.year, d.month) for d in days]
    assert len(set(months)) == len(months) and 23 <= len(months) <= 25
    for fire, day in zip(fires, days, strict=True):
        _check_fire(fire, day, at, tz)
        if dom == "last_working_day":
            assert day.weekday() < 5 and day == last_working_day(day.year, day.month)
        else:
            assert day.day == dom


@settings(max_examples=8, deadline=None)
@given(zone=zones, start=starts, minute=st.sampled_from([0, 15, 30, 45]), hour=st.integers(0, 3))
def test_cron_daily_in_zone__same_rules_as_calendar(
    zone: str, start: datetime, minute: int, hour: int
) -> None:
    cron = parse_schedule({"kind": "cron", "cron": f"{minute} {hour} * * *", "timezone": zone})
    daily = parse_schedule({"kind": "daily", "time": f"{hour:02d}:{minute:02d}", "timezone": zone})
    assert _fires(cron, start, TWO_YEARS) == _fires(daily, start, TWO_YEARS)


def _transitions(tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    out, t = [], start
    while t < end:
        if (t + timedelta(hours=1)).astimezone(tz).utcoffset() != t.astimezone(tz).utcoffset():
            lo, hi = t, t + timedelta(hours=1)
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (
                    (lo, mid)
                    if mid.astimezone(tz).utcoffset() != lo.astimezone(tz).utcoffset()
                    else (mid, hi)
                )
            out.append(hi)
        t += timedelta(hours=1)
    return out


@pytest.mark.parametrize(
    "zone", ["Australia/Lord_Howe", "America/Santiago", "Europe/Paris", "America/Havana"]
)
def test_cron_every_15_minutes__across_each_transition__no_repeat_no_burst(zone: str) -> None:
    tz = ZoneInfo(zone)
    schedule = CronSchedule(cron="*/15 * * * *", timezone=zone)
    jumps = _transitions(tz, datetime(2026, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC))
    assert len(jumps) == 4  # two years, two changes a year
    for jump in jumps:
        fires = _fires(schedule, jump - timedelta(hours=4), timedelta(hours=8))
        walls = [f.astimezone(tz) for f in fires]
        assert all(a < b for a, b in itertools.pairwise(fires))
        assert len({w.replace(tzinfo=None) for w in walls}) == len(walls), "a wall time fired twice"
        for fire, wall in zip(fires, walls, strict=True):
            assert (wall.minute % 15 == 0 and wall.second == 0 and wall.fold == 0) or _is_jump(fire, tz)


def test_gap__paris_0230__fires_at_0300_new_time() -> None:
    s = parse_schedule({"kind": "daily", "time": "02:30", "timezone": "Europe/Paris"})
    fire = s.next_after(datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert fire == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST, the instant of the jump


def test_fold__new_york_0130__fires_once_first_occurrence() -> None:
    s = parse_schedule({"kind": "daily", "time": "01:30", "timezone": "America/New_York"})
    first = s.next_after(datetime(2026, 11, 1, 0, tzinfo=UTC))
    assert first == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert s.next_after(first) == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)  # next day, not 01:30 EST


def test_lord_howe__half_hour_gap__0215_fires_at_0230() -> None:
    s = parse_schedule({"kind": "daily", "time": "02:15", "timezone": "Australia/Lord_Howe"})
    fire = s.next_after(datetime(2026, 10, 3, 12, tzinfo=UTC))
    assert fire is not None and fire.astimezone(ZoneInfo("Australia/Lord_Howe")).strftime("%H:%M") == "02:30"


def test_next_local_time__wall_clock_in_zone() -> None:
    after = datetime(2026, 6, 1, 10, tzinfo=UTC)  # 12:00 in Paris
    assert next_local_time(after, "09:00", "Europe/Paris") == datetime(2026, 6, 2, 7, tzinfo=UTC)
    assert next_local_time(after, "13:00", "Europe/Paris") == datetime(2026, 6, 1, 11, tzinfo=UTC)


def test_once__fires_once() -> None:
    s = parse_schedule({"kind": "once", "send_at": "2026-05-01T09:00:00.000Z"})
    assert s.next_after(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 5, 1, 9, tzinfo=UTC)
    assert s.next_after(datetime(2026, 5, 1, 9, tzinfo=UTC)) is None


def test_once__naive_send_at__read_in_timezone() -> None:
    s = parse_schedule({"kind": "once", "send_at": "2026-05-01T09:00", "timezone": "America/New_York"})
    assert s.next_after(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 5, 1, 13, tzinfo=UTC)


def test_manual__never_fires() -> None:
    assert parse_schedule({"kind": "manual"}).next_after(datetime(2026, 1, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"kind": "daily", "time": "09:00", "timezone": "Mars/Olympus"}, "timezone"),
        ({"kind": "daily", "time": "09:00"}, "timezone"),
        ({"kind": "daily", "time": "9am", "timezone": "UTC"}, "time"),
        ({"kind": "daily", "time": "24:00", "timezone": "UTC"}, "time"),
        ({"kind": "weekly", "day_of_week": 7, "time": "09:00", "timezone": "UTC"}, "day_of_week"),
        ({"kind": "weekly", "day_of_week": True, "time": "09:00", "timezone": "UTC"}, "day_of_week"),
        ({"kind": "monthly", "day_of_month": 29, "time": "09:00", "timezone": "UTC"}, "day_of_month"),
        ({"kind": "monthly", "day_of_month": "last_day", "time": "09:00", "timezone": "UTC"}, "day_of_month"),
        ({"kind": "hourly"}, "kind"),
        ({"kind": "daily", "time": "09:00", "timezone": "UTC", "extra": 1}, "extra"),
        ({"kind": "once", "send_at": "tomorrow"}, "send_at"),
        ({"kind": "cron", "cron": "0 */6 * * *", "timezone": "Nowhere/Land"}, "timezone"),
        ("not a cron", "cron"),
        ("61 * * * *", "cron"),
        ("0 0 30 2 *", "cron"),
        ("0 0 * * * *", "cron"),
        (42, "schedule"),
    ],
)
def test_parse__bad_input__error_names_field(raw: object, field: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_schedule(raw)  # type: ignore[arg-type]
    assert err.value.field == field


@pytest.mark.parametrize(
    "raw",
    [
        "0 */6 * * *",
        {"kind": "manual"},
        {"kind": "cron", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris"},
        {"kind": "daily", "time": "09:00", "timezone": "Europe/Paris"},
        {"kind": "weekly", "day_of_week": 0, "time": "09:00", "timezone": "UTC"},
        {"kind": "monthly", "day_of_month": "last_working_day", "time": "17:30", "timezone": "Asia/Tokyo"},
        {"kind": "once", "send_at": "2026-05-01T09:00:00Z"},
    ],
)
def test_to_dict__round_trips(raw: object) -> None:
    schedule = parse_schedule(raw)  # type: ignore[arg-type]
    assert parse_schedule(schedule.to_dict()) == schedule


def test_next_after__naive_datetime__refused() -> None:
    with pytest.raises(ValueError):
        parse_schedule("0 * * * *").next_after(datetime(2026, 1, 1))
