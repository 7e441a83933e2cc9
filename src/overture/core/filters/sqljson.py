"""Dialect-specific SQL pieces the filter compiler needs, each one construct with a rendering per dialect.

JSON fields are dynamically typed, so every view checks the JSON type per row and is NULL on a value of
another type; keys and values always travel as bound parameters."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from .model import Scalar

__all__ = [
    "BinaryOrder",
    "JsonArrayHas",
    "JsonBoolean",
    "JsonNumber",
    "JsonPath",
    "JsonPresent",
    "JsonString",
    "LikePattern",
    "TextMatch",
    "json_path_params",
]

_LIKE_ESCAPE = "/"


class JsonPath(sa.types.TypeDecorator[Any]):
    """A bound JSON path given as its keys; each dialect receives the form it reads (a JSONPath string
    for SQLite and DuckDB, a text array for PostgreSQL's #>). Keys match the field grammar (no quotes)."""

    impl = sa.String()
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        keys = tuple(value)
        if dialect.name == "postgresql":
            return list(keys)
        return "$" + "".join(f'."{key}"' for key in keys)


class LikePattern(sa.types.TypeDecorator[Any]):
    """A bound string for contains/starts_with/ends_with: a LIKE pattern with `%`, `_` and the escape
    character escaped, except on SQLite, which matches the raw text with instr/substr."""

    impl = sa.String()
    cache_ok = True

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if dialect.name == "sqlite" or value is None:
            return value
        escaped = str(value).replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
        escaped = escaped.replace("%", _LIKE_ESCAPE + "%").replace("_", _LIKE_ESCAPE + "_")
        return {"contains": f"%{escaped}%", "starts_with": f"{escaped}%", "ends_with": f"%{escaped}"}[
            self.mode
        ]


def json_path_params(keys: tuple[str, ...]) -> tuple[BindParameter[Any]]:
    return (sa.bindparam(None, keys, type_=JsonPath(), unique=True),)


def _args(compiler: SQLCompiler, element: FunctionElement[Any], **kw: Any) -> list[str]:
    return [compiler.process(clause, **kw) for clause in element.clauses]


def _unsupported(element: Any, compiler: SQLCompiler, **kw: Any) -> str:
    raise sa.exc.CompileError(
        f"filters on JSON fields are not supported on the {compiler.dialect.name} dialect "
        "(supported: sqlite, postgresql, duckdb)"
    )


class _JsonView(FunctionElement[Any]):
    """(document, path) -> the value at the path if it has this view's JSON type."""

    inherit_cache = True


class JsonString(_JsonView):
    type = sa.String()
    inherit_cache = True


class JsonNumber(_JsonView):
    type = sa.Float()
    inherit_cache = True


class JsonBoolean(_JsonView):
    type = sa.Boolean()
    inherit_cache = True


class JsonPresent(_JsonView):
    """TRUE when the path holds a non-null JSON value, else FALSE (never NULL)."""

    type = sa.Boolean()
    inherit_cache = True


compiles(_JsonView)(_unsupported)


def _pg_value(compiler: SQLCompiler, element: FunctionElement[Any], **kw: Any) -> str:
    document, path = _args(compiler, element, **kw)[:2]
    return f"(CAST({document} AS JSONB) #> CAST({path} AS TEXT[]))"


@compiles(JsonString, "sqlite")
def _sqlite_string(element: JsonString, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(compiler, element, **kw)
    return f"(CASE WHEN json_type({doc}, {path}) = 'text' THEN json_extract({doc}, {path}) END)"


@compiles(JsonNumber, "sqlite")
def _sqlite_number(element: JsonNumber, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(compiler, element, **kw)
    return f"(CASE WHEN json_type({doc}, {path}) IN ('integer', 'real') THEN json_extract({doc}, {path}) END)"


@compiles(JsonBoolean, "sqlite")
def _sqlite_boolean(element: JsonBoolean, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(compiler, element, **kw)
    return f"(CASE json_type({doc}, {path}) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)"


@compiles(JsonPresent, "sqlite")
def _sqlite_present(element: JsonPresent, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(compiler, element, **kw)
    return f"(coalesce(json_type({doc}, {path}) <> 'null', 0) = 1)"


@compiles(JsonString, "postgresql")
def _pg_string(element: JsonString, compiler: SQLCompiler, **kw: Any) -> str:
    value = _pg_value(compiler, element, **kw)
    return f"(CASE WHEN jsonb_typeof({value}) = 'string' THEN {value} #>> '{{}}' END)"


def _pg_double(value: str) -> str:
    """A jsonb number as a double, as Python's json module reads it. JSON allows 1e400, which PostgreSQL
    refuses to cast (an event posted with a public key must not break every segment), so numbers beyond
    the double range become +-Infinity and ones too small for it become 0."""
    number = f"CAST({value} #>> '{{}}' AS NUMERIC)"
    return (
        f"(CASE WHEN {number} >= 1.7976931348623158079e308 THEN CAST('Infinity' AS DOUBLE PRECISION) "
        f"WHEN {number} <= -1.7976931348623158079e308 THEN CAST('-Infinity' AS DOUBLE PRECISION) "
        f"WHEN abs({number}) < 2.4703282292062328e-324 THEN CAST(0 AS DOUBLE PRECISION) "
        f"ELSE CAST({number} AS DOUBLE PRECISION) END)"
    )


@compiles(JsonNumber, "postgresql")
def _pg_number(element: JsonNumber, compiler: SQLCompiler, **kw: Any) -> str:
    value = _pg_value(compiler, element, **kw)
    return f"(CASE WHEN jsonb_typeof({value}) = 'number' THEN {_pg_double(value)} END)"


@compiles(JsonBoolean, "postgresql")
def _pg_boolean(element: JsonBoolean, compiler: SQLCompiler, **kw: Any) -> str:
    value = _pg_value(compiler, element, **kw)
    return f"(CASE WHEN jsonb_typeof({value}) = 'boolean' THEN CAST({value} #>> '{{}}' AS BOOLEAN) END)"


@compiles(JsonPresent, "postgresql")
def _pg_present(element: JsonPresent, compiler: SQLCompiler, **kw: Any) -> str:
    value = _pg_value(compiler, element, **kw)
    return f"coalesce(jsonb_typeof({value}) <> 'null', false)"


_DUCKDB_NUMBERS = "('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT', 'UHUGEINT')"


@compiles(JsonString, "duckdb")
def _duckdb_string(element: JsonString, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(compiler, element, **kw)
    return f"(CASE WHEN json_type({doc}, {path}) = 'VARCHAR' THEN json_extract_string({doc}, {path}) END)"


@compiles(JsonNumber, "duckdb")
def _duckdb_number(element: JsonNumber, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(compiler, element, **kw)
    return (
        f"(CASE WHEN json_type({doc}, {path}) IN {_DUCKDB_NUMBERS} "
        f"THEN TRY_CAST(json_extract_string({doc}, {path}) AS DOUBLE) END)"
    )


@compiles(JsonBoolean, "duckdb")
def _duckdb_boolean(element: JsonBoolean, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(compiler, element, **kw)
    return (
        f"(CASE WHEN json_type({doc}, {path}) = 'BOOLEAN' "
        f"THEN json_extract_string({doc}, {path}) = 'true' END)"
    )


@compiles(JsonPresent, "duckdb")
def _duckdb_present(element: JsonPresent, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(compiler, element, **kw)
    return f"coalesce(json_type({doc}, {path}) <> 'NULL', false)"


class JsonArrayHas(FunctionElement[Any]):
    """(document, path, value) -> TRUE when the path holds a JSON array with an
    element equal to the value under the language's typing (a string equals a string, a number a number,
    a boolean a boolean), else FALSE."""

    type = sa.Boolean()
    inherit_cache = True
    kind = "string"

    @classmethod
    def for_value(cls, document: ColumnElement[Any], keys: tuple[str, ...], value: Scalar) -> JsonArrayHas:
        sub = (
            _ArrayHasBoolean
            if isinstance(value, bool)
            else _ArrayHasString
            if isinstance(value, str)
            else _ArrayHasNumber
        )
        value_type: sa.types.TypeEngine[Any] = sa.String() if isinstance(value, str | bool) else sa.Float()
        literal = ("true" if value else "false") if isinstance(value, bool) else value
        return sub(
            document,
            *json_path_params(keys),
            sa.bindparam(None, literal, type_=value_type, unique=True),
        )


class _ArrayHasString(JsonArrayHas):
    inherit_cache = True
    kind = "string"


class _ArrayHasNumber(JsonArrayHas):
    inherit_cache = True
    kind = "number"


class _ArrayHasBoolean(JsonArrayHas):
    inherit_cache = True
    kind = "boolean"


compiles(JsonArrayHas)(_unsupported)

_SQLITE_ELEMENT = {
    "string": "je.type = 'text' AND je.value = {v}",
    "number": "je.type IN ('integer', 'real') AND je.value = {v}",
    "boolean": "je.type = {v}",
}


@compiles(JsonArrayHas, "sqlite")
def _sqlite_array_has(element: JsonArrayHas, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path, value = _args(compiler, element, **kw)
    match = _SQLITE_ELEMENT[element.kind].format(v=value)
    return (
        f"(json_type({doc}, {path}) IS 'array' AND "
        f"EXISTS (SELECT 1 FROM json_each({doc}, {path}) AS je WHERE {match}))"
    )


_PG_ELEMENT = {
    "string": "jsonb_typeof(je.v) = 'string' AND je.v #>> '{{}}' = {v}",
    # CASE, not AND: PostgreSQL may evaluate either side of an AND first, and the cast raises on text.
    "number": (
        "CASE WHEN jsonb_typeof(je.v) = 'number' THEN "
        + _pg_double("je.v").replace("{", "{{").replace("}", "}}")
        + " = {v} ELSE false END"
    ),
    "boolean": "jsonb_typeof(je.v) = 'boolean' AND je.v #>> '{{}}' = {v}",
}


@compiles(JsonArrayHas, "postgresql")
def _pg_array_has(element: JsonArrayHas, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path, bound = _args(compiler, element, **kw)
    value = f"(CAST({doc} AS JSONB) #> CAST({path} AS TEXT[]))"
    match = _PG_ELEMENT[element.kind].format(v=bound)
    # CASE keeps jsonb_array_elements away from non-arrays (it raises on them).
    return (
        f"(CASE WHEN jsonb_typeof({value}) = 'array' THEN EXISTS "
        f"(SELECT 1 FROM jsonb_array_elements({value}) AS je(v) WHERE {match}) ELSE false END)"
    )


_DUCKDB_ELEMENT = {
    "string": "json_type(je) = 'VARCHAR' AND json_extract_string(je, '$') = {v}",
    "number": f"json_type(je) IN {_DUCKDB_NUMBERS} "
    "AND TRY_CAST(json_extract_string(je, '$') AS DOUBLE) = {v}",
    "boolean": "json_type(je) = 'BOOLEAN' AND json_extract_string(je, '$') = {v}",
}


@compiles(JsonArrayHas, "duckdb")
def _duckdb_array_has(element: JsonArrayHas, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path, value = _args(compiler, element, **kw)
    match = _DUCKDB_ELEMENT[element.kind].format(v=value)
    return (
        f"coalesce(json_type({doc}, {path}) = 'ARRAY' AND "
        f"len(list_filter(TRY_CAST(json_extract({doc}, {path}) AS JSON[]), lambda je: {match})) > 0, false)"
    )


class TextMatch(FunctionElement[Any]):
    """(text, value) -> case-sensitive contains / starts_with / ends_with.

    LIKE with an escaped pattern and an explicit ESCAPE everywhere except SQLite, whose LIKE ignores
    ASCII case; there it is instr/substr on the raw value."""

    type = sa.Boolean()
    inherit_cache = True
    mode = "contains"

    @staticmethod
    def build(text: ColumnElement[Any], value: str, mode: str) -> TextMatch:
        cls = {"contains": _Contains, "starts_with": _StartsWith, "ends_with": _EndsWith}[mode]
        return cls(text, sa.bindparam(None, value, type_=LikePattern(mode), unique=True))


class _Contains(TextMatch):
    inherit_cache = True
    mode = "contains"


class _StartsWith(TextMatch):
    inherit_cache = True
    mode = "starts_with"


class _EndsWith(TextMatch):
    inherit_cache = True
    mode = "ends_with"


@compiles(TextMatch)
def _like(element: TextMatch, compiler: SQLCompiler, **kw: Any) -> str:
    text, pattern = _args(compiler, element, **kw)
    return f"({text} LIKE {pattern} ESCAPE '{_LIKE_ESCAPE}')"


@compiles(TextMatch, "sqlite")
def _sqlite_text_match(element: TextMatch, compiler: SQLCompiler, **kw: Any) -> str:
    text, raw = _args(compiler, element, **kw)
    if element.mode == "contains":
        return f"(instr({text}, {raw}) > 0)"
    if element.mode == "starts_with":
        return f"(substr({text}, 1, length({raw})) = {raw})"
    return f"(length({text}) >= length({raw}) AND substr({text}, length({text}) - length({raw}) + 1) = {raw})"


class BinaryOrder(FunctionElement[Any]):
    """A text expression ordered by code point, like Python's str comparison: PostgreSQL's default
    collation is locale-aware, so it gets COLLATE "C"; SQLite and DuckDB already compare bytes."""

    type = sa.String()
    inherit_cache = True


@compiles(BinaryOrder)
def _binary_order(element: BinaryOrder, compiler: SQLCompiler, **kw: Any) -> str:
    (text,) = _args(compiler, element, **kw)
    return text


@compiles(BinaryOrder, "postgresql")
def _pg_binary_order(element: BinaryOrder, compiler: SQLCompiler, **kw: Any) -> str:
    (text,) = _args(compiler, element, **kw)
    return f'({text} COLLATE "C")'
