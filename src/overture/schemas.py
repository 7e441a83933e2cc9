"""Base classes and types for every request and response body, so each rule is written once.

- `Strict`: unknown fields are a 422 naming them (every request body of every surface); text fields
  refuse lone surrogates (`"\\ud800"`), which PostgreSQL cannot store and SQLite would.
- `Camel`: a `Strict` model whose JSON names are camelCase (`startDate`) while requests also accept
  the snake_case spelling (`start_date`); responses are written in camelCase. Seeds 000, 002 and 003
  speak camelCase; Python code keeps snake_case attribute names.
- `UserJson` / `JsonObject`: the one type of every free-form JSON value a user sends (a paywall's
  config, event properties, records, filter trees...). `check_json` is the same check for paths that
  do not go through Pydantic (file imports)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError, core_schema

from overture.errors import field_path

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_TEXT_LENGTH",
    "Camel",
    "JsonCheck",
    "JsonObject",
    "JsonValueError",
    "Strict",
    "UserJson",
    "check_json",
]

#: Containers nested deeper than this are refused (filter trees and configs need a handful of levels;
#: orjson and the databases' JSON parsers stop at a few hundred, Python's at ~1000).
MAX_JSON_DEPTH = 32
#: One free-form value, encoded, at most this large (whole request bodies have their own limit).
MAX_JSON_BYTES = 1024 * 1024
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class JsonValueError(ValueError):
    """Why a JSON value is refused, and where inside it (`path`, a pydantic-style location)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str | int] = []  # innermost first while the walk unwinds, then reversed

    def __str__(self) -> str:
        where = field_path(self.path)
        return f"{where}: {self.reason}" if where else self.reason


def _text(value: str, what: str = "text") -> None:
    if "\x00" in value:
        raise JsonValueError(f"{what} may not contain NUL (\\u0000)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonValueError(f"{what} may not contain a lone surrogate (\\ud800-\\udfff)")


def _key(key: Any) -> None:
    # A bad key is not put in the path: the error answer quoting it must be encodable itself.
    if type(key) is not str:
        raise JsonValueError("object keys must be text")
    _text(key, "a key")


def _walk(container: dict[Any, Any] | list[Any], depth: int) -> None:
    # Scalars are checked inline (no call per value): register runs this on every request.
    if depth >= MAX_JSON_DEPTH:
        raise JsonValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    is_dict = type(container) is dict
    items = container.items() if is_dict else enumerate(container)  # type: ignore[union-attr]
    for key, item in items:
        if is_dict and (type(key) is not str or not key.isascii() or "\x00" in key):
            _key(key)
        kind = type(item)
        try:
            if kind is str:
                if not item.isascii() or "\x00" in item:
                    _text(item)
            elif kind is int:
                if not _INT64_MIN <= item <= _INT64_MAX:
                    raise JsonValueError("integers must fit in 64 bits (-2^63 to 2^63-1)")
            elif kind is float:
                if item - item != 0.0:  # NaN or an infinity: Python's parser reads them, JSON has none
                    raise JsonValueError("numbers must be finite")
            elif kind is dict or kind is list:
                _walk(item, depth + 1)
            elif item is not None and kind is not bool:
                raise JsonValueError(f"a {kind.__name__} is not a JSON value")
        except JsonValueError as refused:
            refused.path.append(key)
            raise


def check_json(value: Any, *, max_bytes: int | None = MAX_JSON_BYTES) -> None:
    """Raise JsonValueError (a ValueError saying where inside `value`) unless `value` is JSON that
    orjson and every store take: str keys, text without lone surrogates or NUL, integers within
    signed 64 bits, finite numbers, at most MAX_JSON_DEPTH levels and, encoded, at most `max_bytes`."""
    container = type(value) is dict or type(value) is list
    try:
        _walk(value, 0) if container else _walk([value], -1)
    except JsonValueError as refused:
        if not container:
            refused.path.pop()  # the wrapping list's index
        refused.path.reverse()
        raise
    if max_bytes is not None and len(orjson.dumps(value)) > max_bytes:
        raise JsonValueError(f"larger than {max_bytes // 1024} KiB encoded")


@dataclass(frozen=True, slots=True)
class JsonCheck:
    """Pydantic metadata: run `check_json` after the type's own validation. The JSON schema is the
    type's own (free-form). `tests/test_user_json.py` requires it on every free-form request field."""

    max_bytes: int | None = MAX_JSON_BYTES

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        max_bytes = self.max_bytes

        def check(value: Any) -> Any:
            try:
                check_json(value, max_bytes=max_bytes)
            except JsonValueError as exc:
                # The API's error handler appends `json_path` to the field's location.
                raise PydanticCustomError("json_invalid_value", exc.reason, {"json_path": exc.path}) from None
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))


#: Any JSON value from a user.
UserJson = Annotated[Any, JsonCheck()]
#: A JSON object from a user.
JsonObject = Annotated[dict[str, Any], JsonCheck()]


#: The longest text any field takes unless it says less (bodies have their own byte limit).
MAX_TEXT_LENGTH = 16 * 1024 * 1024


class Strict(BaseModel):
    # A length bound on every `str` makes pydantic-core read the text as Unicode, in Rust: a lone
    # surrogate (`"\\ud800"`, which PostgreSQL refuses and SQLite would keep) is then a 422 naming
    # the field, at no Python cost per field. (A plain `str` would pass it through as given.)
    model_config = ConfigDict(extra="forbid", str_max_length=MAX_TEXT_LENGTH)


class Camel(Strict):
    model_config = ConfigDict(
        extra="forbid",
        str_max_length=MAX_TEXT_LENGTH,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )
