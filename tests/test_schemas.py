"""`overture.schemas`: Strict refuses unknown fields; Camel reads both spellings and writes camelCase.
Also the `core.schedules` parsers every surface shares, whose errors must name the request field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from overture.core.schedules import ScheduleError, parse_hhmm, parse_zone
from overture.schemas import Camel, Strict


class Offer(Strict):
    name: str
    max_uses: int | None = None


class Window(Camel):
    start_date: date
    send_time_local: str | None = None
    max_uses: int = 1


def test_strict__unknown_field__refused_naming_it() -> None:
    assert Offer.model_validate({"name": "a", "max_uses": 2}).max_uses == 2
    with pytest.raises(ValidationError) as exc:
        Offer.model_validate({"name": "a", "maxUses": 2, "colour": "red"})
    errors = {(e["loc"], e["type"]) for e in exc.value.errors()}
    assert errors == {(("maxUses",), "extra_forbidden"), (("colour",), "extra_forbidden")}


def test_strict__from_json__refused_too() -> None:
    with pytest.raises(ValidationError, match="colour"):
        Offer.model_validate_json('{"name": "a", "colour": "red"}')


@pytest.mark.parametrize(
    "body",
    [
        {"startDate": "2026-01-02", "sendTimeLocal": "09:00", "maxUses": 3},
        {"start_date": "2026-01-02", "send_time_local": "09:00", "max_uses": 3},
        {"startDate": "2026-01-02", "send_time_local": "09:00", "maxUses": 3},
    ],
)
def test_camel__camel_and_snake_case__both_accepted(body: dict[str, object]) -> None:
    window = Window.model_validate(body)
    assert (window.start_date, window.send_time_local, window.max_uses) == (date(2026, 1, 2), "09:00", 3)


def test_camel__dumps_camel_case() -> None:
    window = Window(start_date=date(2026, 1, 2), max_uses=2)
    assert window.model_dump(mode="json") == {"startDate": "2026-01-02", "sendTimeLocal": None, "maxUses": 2}
    assert window.model_dump_json() == '{"startDate":"2026-01-02","sendTimeLocal":null,"maxUses":2}'
    assert Window.model_validate(window.model_dump()) == window


def test_camel__unknown_field__refused() -> None:
    with pytest.raises(ValidationError) as exc:
        Window.model_validate({"startDate": "2026-01-02", "StartDate": "x", "start-date": "y"})
    assert {e["loc"] for e in exc.value.errors() if e["type"] == "extra_forbidden"} == {
        ("StartDate",),
        ("start-date",),
    }


def test_camel__through_fastapi__request_in_either_spelling_response_in_camel_case() -> None:
    app = FastAPI()

    @app.post("/w", response_model=Window)
    def echo(body: Window) -> Window:
        return body

    with TestClient(app) as client:
        for spelled in ({"startDate": "2026-03-04"}, {"start_date": "2026-03-04"}):
            r = client.post("/w", json=spelled)
            assert r.status_code == 200, r.text
            assert r.json() == {"startDate": "2026-03-04", "sendTimeLocal": None, "maxUses": 1}
        r = client.post("/w", json={"startDate": "2026-03-04", "bogus": 1})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "bogus"]


# -- core.schedules parsers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [("00:00", time(0, 0)), ("09:05", time(9, 5)), ("23:59", time(23, 59))]
)
def test_parse_hhmm__valid(raw: str, expected: time) -> None:
    assert parse_hhmm(raw) == expected


@pytest.mark.parametrize("name", ["Europe/Paris", "UTC", "America/Argentina/Buenos_Aires"])
def test_parse_zone__valid(name: str) -> None:
    assert parse_zone(name).key == name


BAD_HHMM = [
    *["24:00", "9:00", "09:60", "0900", "09:00:00", " 09:00", "09:00\n", "", None, 900, "ab:cd"],
    "1\u0669:0\u0665",  # Arabic-Indic digits: int() reads them, HH:MM must not
]
BAD_ZONES = ["Mars/Olympus", "", None, 3, "../../etc/passwd", "Europe/Paris\x00", "/UTC"]


@pytest.mark.parametrize(
    ("parser", "default_field", "raw"),
    [(parse_hhmm, "time", raw) for raw in BAD_HHMM] + [(parse_zone, "timezone", raw) for raw in BAD_ZONES],
)
def test_parse_hhmm_and_zone__invalid__error_names_the_field(
    parser: Callable[..., object], default_field: str, raw: object
) -> None:
    with pytest.raises(ScheduleError) as exc:
        parser(raw, "sendTime.at")
    assert exc.value.field == "sendTime.at"
    assert str(exc.value).startswith("sendTime.at: ")
    with pytest.raises(ScheduleError) as default:
        parser(raw)
    assert default.value.field == default_field
