"""Value rules both compilers share: what counts as a number, how text becomes an instant."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal

__all__ = ["as_instant", "is_number", "parse_instant", "string_instants"]


def is_number(value: object) -> bool:
    """int, float or Decimal, never bool (True is not 1 in this language)."""
    return value.__class__ in (int, float, Decimal)


def parse_instant(text: str) -> datetime | None:
    """An ISO 8601 timestamp or date as an aware UTC datetime (naive means UTC); None if it is not one."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        return None


def as_instant(value: object) -> datetime | None:
    """A record value as an instant: datetimes (naive = UTC), dates (their midnight, UTC) and ISO
    strings; anything else is None."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:
            return None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        return parse_instant(value)
    return None


def string_instants(values: Iterable[object]) -> tuple[datetime, ...]:
    """The instants named by the string values that are ISO timestamps (they match timestamp fields)."""
    found = []
    for value in values:
        if isinstance(value, str):
            instant = parse_instant(value)
            if instant is not None:
                found.append(instant)
    return tuple(found)


def is_finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
