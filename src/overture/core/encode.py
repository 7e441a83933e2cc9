"""The one encoder from a profile value (whatever a data source returns) to JSON and to text.

Records API responses, journey syncs, batch files, broadcast templates and webhook payloads all show
a profile the same way through these two functions:

- instants: ISO 8601 in UTC with `Z`; a naive datetime is UTC (sources store UTC without offset);
- dates and times: ISO 8601; durations: seconds as a number;
- Decimals: an int when integral, else a float (JSON has one number type); NaN/Infinity and
  integers too long to write (over 4000 digits) are not JSON: null; bytes: lowercase hex; UUIDs:
  text; sets: sorted lists; anything else: `str()`.

`to_text` is what a template or a CSV cell shows: "" for null, `true`/`false`, compact JSON for
lists and objects, and otherwise the JSON value written as text."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["isoformat_z", "to_json", "to_text"]

Json = None | bool | int | float | str | list[Any] | dict[str, Any]


def isoformat_z(value: datetime) -> str:
    """ISO 8601 in UTC with a trailing Z (naive means UTC)."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


#: Python refuses to write an int of more than 4300 digits as text (sys.int_info), so JSON cannot carry
#: it: like Infinity it becomes null. (A PostgreSQL NUMERIC holds up to 131072 digits.)
_MAX_INT_DIGITS = 4000
_MAX_INT_BITS = int(_MAX_INT_DIGITS * math.log2(10))


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _integer(value: int) -> int | None:
    return value if value.bit_length() <= _MAX_INT_BITS else None


def to_json(value: Any) -> Json:
    """`value` as a JSON-compatible Python value (see the module docstring for the rules)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return _integer(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, datetime):
        return isoformat_z(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        if value != value.to_integral_value():
            return _number(float(value))
        # adjusted() first: int() of Decimal("1E+999999999") would build a gigabyte-sized int.
        return int(value) if value.adjusted() < _MAX_INT_DIGITS else None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((to_json(v) for v in value), key=_sort_key)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return str(value)


def _sort_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def to_text(value: Any) -> str:
    """`value` as text for a template or a file cell."""
    encoded = to_json(value)
    if encoded is None:
        return ""
    if isinstance(encoded, str):
        return encoded
    if isinstance(encoded, bool):
        return "true" if encoded else "false"
    if isinstance(encoded, int | float):
        return repr(encoded)
    return json.dumps(encoded, separators=(",", ":"), ensure_ascii=False)
