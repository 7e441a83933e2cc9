"""`overture.core.encode`: the one encoder from a profile value to JSON and to text, property-tested."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overture.core.encode import isoformat_z, to_json, to_text

ZONES = st.sampled_from(
    ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham"]
).map(ZoneInfo) | st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))

NAIVE = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30))
AWARE = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES)
DECIMALS = st.decimals(allow_nan=True, allow_infinity=True, places=None) | st.sampled_from(
    [Decimal("NaN"), Decimal("sNaN"), Decimal("-Infinity"), Decimal("1E+400"), Decimal("-0"), Decimal("2.50")]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | NAIVE
    | AWARE
    | st.dates()
    | st.times()
    | st.timedeltas()
    | DECIMALS
    | st.binary(max_size=16)
    | st.uuids()
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
        | st.sets(st.integers() | st.text(max_size=5), max_size=4)
        | st.frozensets(st.integers(), max_size=4)
    ),
    max_leaves=12,
)


def _is_json_value(value: Any) -> bool:
    """Only the types json.loads produces (int, not bool, where both are possible: bool passes as itself)."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_value(v) for k, v in value.items())
    return False


@given(VALUES)
def test_to_json__any_value__strict_json_that_round_trips(value: Any) -> None:
    encoded = to_json(value)
    assert _is_json_value(encoded)
    text = json.dumps(encoded, allow_nan=False)
    assert json.loads(text) == encoded


@given(VALUES)
def test_to_json__idempotent(value: Any) -> None:
    once = to_json(value)
    assert to_json(once) == once


@given(NAIVE)
def test_naive_datetime__same_wall_time_as_utc(value: datetime) -> None:
    encoded = to_json(value)
    assert encoded == to_json(value.replace(tzinfo=UTC))
    assert isinstance(encoded, str) and encoded.endswith("Z") and "+" not in encoded
    assert datetime.fromisoformat(encoded) == value.replace(tzinfo=UTC)


@given(AWARE)
def test_aware_datetime_in_any_zone__same_instant_with_z(value: datetime) -> None:
    encoded = to_json(value)
    assert isinstance(encoded, str) and encoded.endswith("Z")
    back = datetime.fromisoformat(encoded)
    assert back.utcoffset() == timedelta(0)
    assert back == value.astimezone(UTC)  # the same instant (== across zones is never true in a fold)
    assert encoded == isoformat_z(value.astimezone(UTC))


def test_datetime__examples() -> None:
    paris = datetime(2026, 7, 1, 14, 30, tzinfo=ZoneInfo("Europe/Paris"))
    assert to_json(paris) == "2026-07-01T12:30:00Z"
    assert to_json(datetime(2026, 7, 1, 12, 30, 0, 250)) == "2026-07-01T12:30:00.000250Z"
    assert isoformat_z(datetime(2026, 1, 1)) == "2026-01-01T00:00:00Z"
    assert to_json(date(2026, 2, 3)) == "2026-02-03"
    assert to_json(time(9, 5)) == "09:05:00"
    assert to_json(timedelta(hours=1, milliseconds=500)) == 3600.5


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal__integral_int_fractional_float(value: Decimal) -> None:
    encoded = to_json(value)
    if value == value.to_integral_value():
        assert type(encoded) is int and encoded == value
    elif math.isfinite(float(value)):
        assert type(encoded) is float and encoded == float(value)
    else:  # a fraction beyond float range is not JSON
        assert encoded is None


def test_decimal__examples() -> None:
    assert to_json(Decimal("10")) == 10 and type(to_json(Decimal("10"))) is int
    assert to_json(Decimal("10.000")) == 10 and type(to_json(Decimal("10.000"))) is int
    assert to_json(Decimal("1E+3")) == 1000
    assert to_json(Decimal("2.5")) == 2.5
    assert to_json(Decimal("-0.125")) == -0.125


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
    ],
)
def test_non_finite__null(value: Any) -> None:
    assert to_json(value) is None
    assert to_text(value) == ""


@given(st.binary())
def test_bytes__lowercase_hex(value: bytes) -> None:
    assert to_json(value) == value.hex()
    assert to_json(bytearray(value)) == value.hex()
    assert to_json(memoryview(value)) == value.hex()
    assert bytes.fromhex(str(to_json(value))) == value


def test_nested_containers__encoded_all_the_way_down() -> None:
    value = {
        "when": datetime(2026, 1, 1, 1, 0, tzinfo=ZoneInfo("Europe/Paris")),
        "list": [Decimal("1.0"), b"\x00\xff", (float("nan"), {"x": {1, 3, 2}})],
        3: uuid.UUID(int=1),
        "tags": frozenset({"b", "a"}),
    }
    assert to_json(value) == {
        "when": "2026-01-01T00:00:00Z",
        "list": [1, "00ff", [None, {"x": [1, 2, 3]}]],
        "3": "00000000-0000-0000-0000-000000000001",
        "tags": ["a", "b"],
    }


@given(st.sets(st.integers() | st.text(max_size=3) | st.none() | st.booleans(), max_size=6))
def test_set__deterministic_order(value: set[Any]) -> None:
    encoded = to_json(value)
    assert isinstance(encoded, list) and len(encoded) == len(value)
    assert to_json(set(reversed(list(value)))) == encoded
    assert to_json(frozenset(value)) == encoded


def test_unknown_type__str() -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing!"

    assert to_json(Thing()) == "thing!"
    assert to_json({"t": Thing()}) == {"t": "thing!"}


def test_to_text__examples() -> None:
    assert to_text(None) == ""
    assert to_text(True) == "true" and to_text(False) == "false"
    assert to_text(0) == "0" and to_text(-7) == "-7"
    assert to_text(1.5) == "1.5"
    assert to_text(Decimal("3.00")) == "3"
    assert to_text("héllo") == "héllo"
    assert to_text("") == ""
    assert to_text({"a": [1, None], "b": "é"}) == '{"a":[1,null],"b":"é"}'
    assert to_text([1, "x", True]) == '[1,"x",true]'
    assert to_text(datetime(2026, 1, 1, 12)) == "2026-01-01T12:00:00Z"
    assert to_text(b"\x01") == "01"


@given(VALUES)
def test_to_text__idempotent_through_json(value: Any) -> None:
    text = to_text(value)
    assert isinstance(text, str)
    assert text == to_text(to_json(value))
    assert text == to_text(json.loads(json.dumps(to_json(value))))


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5) | st.none(), max_size=4))
def test_to_text__objects_are_compact_json(value: dict[str, Any]) -> None:
    text = to_text(value)
    assert json.loads(text) == value
    assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@given(st.integers() | st.floats(allow_nan=False, allow_infinity=False))
def test_to_text__numbers_read_back_equal(value: float) -> None:
    assert json.loads(to_text(value)) == value


@pytest.mark.parametrize(
    "value",
    [10**5000, -(10**5000), Decimal("1E+5000"), Decimal("-1E+4001"), Decimal("1E+999999999")],
    ids=["int", "-int", "decimal", "-decimal", "decimal-1e9-digits"],
)
def test_integers_too_long_to_write__null_not_an_error(value: Any) -> None:
    # Python refuses to write an int of over 4300 digits; a PostgreSQL NUMERIC can hold one.
    assert to_json(value) is None
    assert to_text([value]) == "[null]"


@pytest.mark.parametrize(
    "value",
    [10**3999, -(10**3999), Decimal("1E+3999"), Decimal(10**400)],
    ids=["int", "-int", "decimal", "decimal-400"],
)
def test_long_integers_that_can_be_written__kept_exact(value: Any) -> None:
    encoded = to_json(value)
    assert type(encoded) is int and encoded == value
    assert json.loads(json.dumps(encoded)) == value
