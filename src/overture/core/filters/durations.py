"""Relative durations (``"30m"``, ``"7d"``, ``"1h30m"``) shared by filters, journeys and schedules."""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import FilterError

__all__ = ["MAX_DURATION", "format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_WHOLE = re.compile(r"(?:\d{1,9}[smhdw])+")
_PART = re.compile(r"(\d{1,9})([smhdw])")
# A bound keeps `now - duration` far from datetime.min and refuses obvious typos ("7000000d").
MAX_DURATION = timedelta(days=366 * 100)


def parse_duration(text: object, *, path: str = "duration") -> timedelta:
    """``"90s" | "30m" | "12h" | "7d" | "2w"`` (parts may be combined: ``"1d12h"``) -> timedelta.

    Raises FilterError naming `path` for anything else, zero, or more than 100 years."""
    if not isinstance(text, str):
        raise FilterError(path, f"expected a duration string like '7d', got {_describe(text)}")
    compact = text.strip().lower()
    if not _WHOLE.fullmatch(compact):
        raise FilterError(
            path, f"invalid duration {text!r}: use a number and a unit s, m, h, d or w (e.g. '7d')"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(compact))
    if seconds <= 0:
        raise FilterError(path, f"duration {text!r} must be positive")
    result = timedelta(seconds=seconds)
    if result > MAX_DURATION:
        raise FilterError(path, f"duration {text!r} is longer than 100 years")
    return result


def format_duration(value: timedelta) -> str:
    """The shortest canonical text for a duration (inverse of parse_duration for whole seconds)."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _describe(value: object) -> str:
    return "null" if value is None else type(value).__name__
