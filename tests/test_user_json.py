"""Free-form JSON from users is checked in one place (`overture.schemas.JsonCheck`, `check_json`):
storable text, 64-bit integers, finite numbers, bounded depth and size. The structural test keeps
the class closed: every free-form field of every request model must carry the check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, get_args, get_origin

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from overture.schemas import MAX_JSON_DEPTH, JsonCheck, JsonObject, JsonValueError, Strict, check_json


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "where", "reason"),
    [
        ({"n": 2**63}, ["n"], "integers must fit in 64 bits"),
        ({"n": [-(2**63) - 1]}, ["n", 0], "integers must fit in 64 bits"),
        ({"n": float("nan")}, ["n"], "numbers must be finite"),
        ([float("inf")], [0], "numbers must be finite"),
        ({"s": "ok \ud800"}, ["s"], "lone surrogate"),
        ({"k": {"\udfff": 1}}, ["k"], "a key may not contain a lone surrogate"),
        ({"s": "a\x00b"}, ["s"], "NUL"),
        ({"o": {1: "x"}}, ["o"], "keys must be text"),
        ({"t": (1, 2)}, ["t"], "a tuple is not a JSON value"),
        (_nested(MAX_JSON_DEPTH + 1), ["a"] * MAX_JSON_DEPTH, f"deeper than {MAX_JSON_DEPTH}"),
        ({"s": "x" * 2000}, [], "larger than 1 KiB"),
    ],
)
def test_check_json__refuses__saying_where(value: Any, where: list[str | int], reason: str) -> None:
    with pytest.raises(JsonValueError) as exc:
        check_json(value, max_bytes=1024)
    assert exc.value.path == where
    assert reason in exc.value.reason


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"n": 2**63 - 1, "m": -(2**63), "f": 1.5e308, "s": "caf\u00e9 \U0001f600", "b": True, "l": []},
        _nested(MAX_JSON_DEPTH),
        [[]] * 10,
    ],
)
def test_check_json__accepts_json(value: Any) -> None:
    check_json(value)


def test_json_object__pydantic_error_carries_the_inner_path() -> None:
    class Body(Strict):
        config: JsonObject

    with pytest.raises(ValidationError) as exc:
        Body.model_validate({"config": {"a": [1, 10**20]}})
    (error,) = exc.value.errors()
    assert error["loc"] == ("config",) and error["type"] == "json_invalid_value"
    assert error["ctx"]["json_path"] == ["a", 1]


# -- the class stays closed ---------------------------------------------------------------------------


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes)


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _models_in(tp: Any) -> Iterator[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
    for arg in get_args(tp):
        yield from _models_in(arg)


def _closure(roots: list[type[BaseModel]]) -> set[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    todo = list(roots)
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for field in model.model_fields.values():
            todo.extend(_models_in(field.annotation))
    return seen


def _unchecked(tp: Any, checked: bool) -> bool:
    """True if `tp` lets free-form JSON (Any, object, bare dict/list) through without JsonCheck."""
    if get_origin(tp) is Annotated:
        base, *meta = get_args(tp)
        return _unchecked(base, checked or any(isinstance(m, JsonCheck) for m in meta))
    if tp is Any or tp is object or tp is dict or tp is list:
        return not checked
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return False  # checked field by field as a model of its own
    if get_origin(tp) is None:
        return False
    # Unions, containers: any member; Literal values and `...` are not types.
    return any(
        _unchecked(a, checked) for a in get_args(tp) if not isinstance(a, str | int | bool | type(...))
    )


def _field_unchecked(field: FieldInfo) -> bool:
    return _unchecked(field.annotation, any(isinstance(m, JsonCheck) for m in field.metadata))


def test_every_free_form_request_field__uses_the_one_json_check(app: FastAPI) -> None:
    """Request models: the bodies of every route, and every Strict model (the request base class)
    that no route only answers with (register and the events endpoints validate their bodies
    themselves). A new `dict[str, Any]` or `Any` in a request without `UserJson`/`JsonObject` fails."""
    routes = list(_api_routes(app.router.routes))
    assert len(routes) > 80
    bodies: list[type[BaseModel]] = []
    failures: list[str] = []
    for route in routes:
        for param in route.dependant.body_params:
            bodies.extend(_models_in(param.field_info.annotation))
            if _field_unchecked(param.field_info):
                failures.append(f"{route.path} {route.name}: body parameter '{param.name}'")
    answers = _closure(
        [
            m
            for r in routes
            for tp in (r.response_model, *(v.get("model") for v in r.responses.values()))
            for m in _models_in(tp)
        ]
    )
    requests = _closure(bodies) | (_closure(list(_subclasses(Strict))) - answers)
    assert len(requests) > 60
    for model in sorted(requests, key=lambda m: f"{m.__module__}.{m.__qualname__}"):
        for name, field in model.model_fields.items():
            if _field_unchecked(field):
                failures.append(f"{model.__module__}.{model.__qualname__}.{name}: {field.annotation}")
    assert not failures, "free-form JSON without UserJson/JsonObject:\n" + "\n".join(failures)


def test_the_structural_check__sees_an_unchecked_field() -> None:
    class Loose(Strict):
        a: dict[str, Any] | None = None
        b: list[Annotated[Any, "x"]] = []
        c: JsonObject | None = None

    assert [n for n, f in Loose.model_fields.items() if _field_unchecked(f)] == ["a", "b"]
