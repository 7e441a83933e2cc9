"""Bulk loads into managed models: `overture import FILE` (CSV/Parquet) and `overture demo`.

Both describe their rows as one DuckDB SELECT (`read_csv_auto`, `read_parquet`, or a generator over
`range()` with seeded hashes). On the embedded DuckDB source that SELECT runs inside the source and the
rows never pass through Python; on another source (PostgreSQL...) an in-memory DuckDB runs it and the
rows move in chunks of set-based upserts. Either way the load is one source transaction: all or nothing.

Public functions (stable):
    import_file(ctx, workspace_id, path, model_name, primary_key=None, progress=None) -> LoadResult

The demo data set (`overture demo`) is `overture.data.demo`, built on the same transfer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from overture.core.encode import to_json
from overture.data.models import EntityModel
from overture.data.records import merge_rows
from overture.data.service import COLUMN_NAME, COLUMN_TYPES, ensure_managed_model, get_model_by_name
from overture.data.source import Column, DataSource, TableRef, column_kind, get_source
from overture.db.context import AppContext
from overture.errors import Invalid
from overture.schemas import JsonValueError, check_json

__all__ = ["LoadResult", "Progress", "create_table", "duck_reader", "import_file", "transfer"]

#: progress(stage, done, total): stage is a short label; total may be None while unknown.
Progress = Callable[[str, int, int | None], None]
CHUNK = 50_000
_SIMPLE_DUCK_TYPES = re.compile(
    r"^(BOOLEAN|TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|FLOAT|DOUBLE|"
    r"DECIMAL\(\d+,\d+\)|VARCHAR|DATE|TIMESTAMP|TIMESTAMP WITH TIME ZONE|UUID|JSON)$"
)


@dataclass
class LoadResult:
    model_id: str
    model: str
    table: str
    rows: int
    inserted: int
    updated: int
    created: bool
    columns_added: list[str] = field(default_factory=list)
    #: The type inferred for each column this load created (a new model's, or an added one).
    column_types: dict[str, str] = field(default_factory=dict)
    #: New columns stored as text although most values had another type (--allow-text-fallback),
    #: with the rows (1 = the first data row) whose values forced it.
    text_fallbacks: dict[str, list[int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def noop(stage: str, done: int, total: int | None) -> None:
    return None


# -- import ------------------------------------------------------------------------------------------
def _reader(path: Path, fmt: str | None) -> str:
    kind = (fmt or "").lower() or _format_of(path)
    if kind == "csv":
        # all_varchar off: types inferred; an empty cell is NULL (DuckDB's default for CSV).
        return "read_csv_auto(:path, header = true)"
    if kind == "parquet":
        return "read_parquet(:path)"
    raise Invalid(
        f"file: cannot tell the format of {path.name}; use .csv or .parquet (or --format)", field="file"
    )


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return ""


def _portable_select(described: Sequence[tuple[str, str]], reader: str) -> tuple[str, list[Column]]:
    """SELECT the file's columns with types every target can hold: simple types as they are, nested
    ones as JSON, anything else as text. Names are quoted, never spliced raw."""
    parts, columns = [], []
    for name, duck_type in described:
        quoted = '"' + name.replace('"', '""') + '"'
        t = duck_type.upper()
        if _SIMPLE_DUCK_TYPES.match(t):
            parts.append(quoted)
            kind = column_kind(t)
            columns.append(Column(name, t, kind))
        elif t.endswith("]") or t.startswith(("STRUCT", "MAP", "LIST", "UNION")):
            parts.append(f"CAST({quoted} AS JSON) AS {quoted}")
            columns.append(Column(name, "JSON", "json"))
        else:
            parts.append(f"CAST({quoted} AS VARCHAR) AS {quoted}")
            columns.append(Column(name, "VARCHAR", "string"))
    return f"SELECT {', '.join(parts)} FROM {reader}", columns


def import_file(
    ctx: AppContext,
    workspace_id: str,
    path: Path,
    model_name: str,
    primary_key: str | None = None,
    *,
    fmt: str | None = None,
    progress: Progress | None = None,
    allow_text_fallback: bool = False,
) -> LoadResult:
    """Load a CSV/Parquet file into model `model_name`, creating the managed model and its table on
    first use (types inferred by DuckDB) and upserting by primary key afterwards. A model that is a
    user's table also works (its columns must already exist); a SQL model is read-only."""
    progress = progress or noop
    path = path.expanduser().resolve()
    if not path.is_file():
        raise Invalid(f"file: {path} does not exist", field="file")
    reader = _reader(path, fmt)
    params = {"path": str(path)}
    with duck_reader(ctx) as duck:
        try:
            described = [
                (str(r[0]), str(r[1]))
                for r in duck.execute(sa.text(f"DESCRIBE SELECT * FROM {reader}"), params)
            ]
        except sa.exc.DBAPIError as exc:
            raise Invalid(f"file: {str(exc.orig).splitlines()[0]}", field="file")
    select_sql, columns = _portable_select(described, reader)
    return _load(
        ctx, workspace_id, model_name, primary_key, select_sql, params, columns, progress, allow_text_fallback
    )


def _load(
    ctx: AppContext,
    workspace_id: str,
    model_name: str,
    primary_key: str | None,
    select_sql: str,
    params: dict[str, Any],
    columns: list[Column],
    progress: Progress,
    allow_text_fallback: bool = False,
) -> LoadResult:
    source = get_source(ctx)
    by_name = {c.name: c for c in columns}
    with ctx.transaction(workspace_id=workspace_id) as session:
        existing = get_model_by_name(session, model_name)
        if existing is None:
            if not primary_key:
                raise Invalid(
                    "primary_key: --primary-key is required when the model is new", field="primary_key"
                )
            if primary_key not in by_name:
                raise Invalid(f"primary_key: the file has no column '{primary_key}'", field="primary_key")
            for c in columns:
                if not COLUMN_NAME.fullmatch(c.name):
                    raise Invalid(
                        f"file: column '{c.name}' is not a column name (letters, digits, _)", field="file"
                    )
        elif existing.kind == "sql":
            raise Invalid(f"model: '{model_name}' is a SQL model, which is read-only", field="model")
        elif primary_key and primary_key != existing.primary_key:
            raise Invalid(
                f"primary_key: model '{model_name}' is keyed by '{existing.primary_key}'", field="primary_key"
            )
        model, created = ensure_managed_model(session, model_name, primary_key or "")
        pk = model.primary_key
        if pk not in by_name:
            raise Invalid(f"file: the file has no column '{pk}' (the model's primary key)", field="file")
        ref = TableRef(model.table_name or "") if model.managed else _table_ref(model)
        with source.begin() as conn:
            target_cols = source.table_columns(conn, ref)
            added: list[str] = []
            known = {c.name.lower(): c for c in target_cols or ()}
            new = [c for c in columns if c.name.lower() not in known]
            with duck_reader(ctx) if not source.is_duckdb else nullcontext(conn) as duck:
                # Nothing is guessed silently: a value that does not fit its column names its row,
                # and a new column that only text can hold because of a few rows is refused.
                _check_values_fit(duck, select_sql, params, columns, known)
                fallbacks = _text_fallbacks(duck, select_sql, params, new, allow_text_fallback)
            if target_cols is None:
                create_table(conn, ref, columns, pk)
            else:
                if new and not model.managed:
                    raise Invalid(f"file: table {ref} has no column '{new[0].name}'", field="file")
                for c in new:
                    _add_column(conn, ref, c)
                    added.append(c.name)
            inserted, updated, total = transfer(
                source, conn, ref, columns, pk, select_sql, params, progress, ctx
            )
        result = LoadResult(
            model_id=model.id,
            model=model.name,
            table=str(ref),
            rows=total,
            inserted=inserted,
            updated=updated,
            created=created,
            columns_added=added,
            column_types={c.name: c.kind for c in new},
            text_fallbacks=fallbacks,
        )
    return result


#: How a value is tested against a column kind, in DuckDB (NULL always fits).
_FITS = {
    "integer": "TRY_CAST({c} AS DOUBLE) = floor(TRY_CAST({c} AS DOUBLE))",
    "number": "TRY_CAST({c} AS DOUBLE) IS NOT NULL",
    "boolean": "TRY_CAST({c} AS BOOLEAN) IS NOT NULL",
    "timestamp": "TRY_CAST({c} AS TIMESTAMPTZ) IS NOT NULL",
    "date": "TRY_CAST({c} AS DATE) IS NOT NULL",
}
#: What a text value must look like to count as another kind when a new column's type is judged
#: (stricter than DuckDB's casts: `y` and `1` are not booleans here).
_LOOKS = {
    "number": _FITS["number"],
    "boolean": "lower(CAST({c} AS VARCHAR)) IN ('true', 'false')",
    "timestamp": "TRY_CAST({c} AS TIMESTAMPTZ) IS NOT NULL",
}
_KIND_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "timestamp": "a timestamp",
    "date": "a date",
}


def _numbered(select_sql: str) -> str:
    return f"(SELECT row_number() OVER () AS _ov_row, * FROM ({select_sql}))"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _check_values_fit(
    duck: sa.Connection,
    select_sql: str,
    params: dict[str, Any],
    columns: Sequence[Column],
    target: dict[str, Column],
) -> None:
    """Every value of a column the model already has must fit its type as it is: the first one that
    does not is a 422 naming its row, column and value (`1.5` is not stored in an integer column as
    `2`, `abc` not reported as a failed write)."""
    for column in columns:
        existing = target.get(column.name.lower())
        if existing is None or existing.kind not in _FITS:
            continue
        q = _quote(column.name)
        bad = duck.execute(
            sa.text(
                f"SELECT _ov_row, CAST({q} AS VARCHAR) FROM {_numbered(select_sql)} "
                f"WHERE {q} IS NOT NULL AND NOT coalesce({_FITS[existing.kind].format(c=q)}, false) "
                "ORDER BY _ov_row LIMIT 1"
            ),
            params,
        ).first()
        if bad is not None:
            raise Invalid(
                f"file: row {bad[0]}, column '{column.name}': {bad[1]!r} is not {_KIND_WORDS[existing.kind]} "
                f"(the model's column is {existing.kind}); nothing was written",
                field="file",
            )


def _text_fallbacks(
    duck: sa.Connection,
    select_sql: str,
    params: dict[str, Any],
    new: Sequence[Column],
    allowed: bool,
) -> dict[str, list[int]]:
    """A new column inferred as text although most of its values are numbers, booleans or timestamps
    was forced to text by a few rows: refuse, naming them (unless `allowed`: then report them)."""
    found: dict[str, list[int]] = {}
    for column in new:
        if column.kind != "string":
            continue
        q = _quote(column.name)
        kinds = ("number", "boolean", "timestamp")
        counts = duck.execute(
            sa.text(
                f"SELECT count({q}), "
                + ", ".join(f"count(*) FILTER (WHERE {_LOOKS[k].format(c=q)})" for k in kinds)
                + f" FROM ({select_sql})"
            ),
            params,
        ).one()
        present = int(counts[0])
        for kind, fits in zip(kinds, counts[1:], strict=True):
            # Most values (three in four, at least two) look like `kind`, and some do not.
            if int(fits) >= 2 and int(fits) * 4 >= present * 3 and int(fits) < present:
                rows = duck.execute(
                    sa.text(
                        f"SELECT _ov_row, CAST({q} AS VARCHAR) FROM {_numbered(select_sql)} "
                        f"WHERE {q} IS NOT NULL AND NOT coalesce({_LOOKS[kind].format(c=q)}, false) "
                        "ORDER BY _ov_row LIMIT 5"
                    ),
                    params,
                ).all()
                if not allowed:
                    shown = ", ".join(f"row {n} ({v!r})" for n, v in rows)
                    raise Invalid(
                        f"file: new column '{column.name}' would be stored as text: its values are "
                        f"{kind}s except {present - int(fits)} of them, e.g. {shown}; fix those rows, or "
                        "pass --allow-text-fallback to store the column as text",
                        field="file",
                    )
                found[column.name] = [int(n) for n, _ in rows]
                break
    return found


def _table_ref(model: EntityModel) -> TableRef:
    from overture.data.source import parse_table_name

    return parse_table_name(model.table_name or "")


def _sa_type(column: Column) -> sa.types.TypeEngine[Any]:
    t = column.sql_type.upper()
    if column.kind == "timestamp":
        return sa.DateTime(timezone="TIME ZONE" in t)
    if t.startswith("DECIMAL"):
        p, s = (int(x) for x in t[t.index("(") + 1 : -1].split(","))
        return sa.Numeric(p, s)
    if column.kind in COLUMN_TYPES:
        return COLUMN_TYPES[column.kind]
    return sa.String()


def create_table(conn: sa.Connection, ref: TableRef, columns: Sequence[Column], pk: str) -> None:
    cols = [
        sa.Column(
            c.name, _sa_type(c), primary_key=(c.name == pk), nullable=(c.name != pk), autoincrement=False
        )
        for c in columns
    ]
    sa.Table(ref.name, sa.MetaData(), *cols, schema=ref.schema).create(conn)


def _add_column(conn: sa.Connection, ref: TableRef, column: Column) -> None:
    ddl = sa.schema.CreateColumn(sa.Column(column.name, _sa_type(column))).compile(dialect=conn.dialect)
    table = conn.dialect.identifier_preparer.format_table(ref.table())
    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {ddl}")


def transfer(
    source: DataSource,
    conn: sa.Connection,
    ref: TableRef,
    columns: Sequence[Column],
    pk: str,
    select_sql: str,
    params: dict[str, Any],
    progress: Progress,
    ctx: AppContext,
) -> tuple[int, int, int]:
    """Move the SELECT's rows into `ref` by upsert; returns (inserted, updated, rows)."""
    if source.is_duckdb:
        return _transfer_in_duckdb(conn, ref, columns, pk, select_sql, params, progress)
    inserted = updated = total = 0
    with duck_reader(ctx) as duck:
        _check_keys(duck, select_sql, params, pk)
        total_rows = int(duck.execute(sa.text(f"SELECT count(*) FROM ({select_sql})"), params).scalar_one())
        result = duck.execute(sa.text(select_sql), params)
        names = list(result.keys())
        json_cols = {c.name for c in columns if c.kind == "json"}
        while True:
            batch = result.fetchmany(10_000)
            if not batch:
                break
            rows = [
                {
                    n: _json_cell(v, total + i + 1, n) if n in json_cols else to_json(v)
                    for n, v in zip(names, r, strict=True)
                }
                for i, r in enumerate(batch)
            ]
            ins, upd = merge_rows(source, conn, ref, columns, pk, rows)
            inserted, updated, total = inserted + ins, updated + upd, total + len(rows)
            progress("loading", total, total_rows)
    return inserted, updated, total


def _json_cell(cell: Any, row: int, column: str) -> Any:
    """A nested cell of the file as the API would take it: DuckDB's JSON admits what the API
    refuses (integers beyond 64 bits from a DECIMAL(38), deep nesting)."""
    value = json.loads(cell) if isinstance(cell, str) else to_json(cell)
    try:
        check_json(value)
    except JsonValueError as exc:
        raise Invalid(f"file: row {row}, column '{column}': {exc}", field="file")
    return value


def _check_keys(conn: sa.Connection, select_sql: str, params: dict[str, Any], pk: str) -> None:
    q = '"' + pk.replace('"', '""') + '"'
    nulls, dupes, example = conn.execute(
        sa.text(
            f"SELECT count(*) FILTER (WHERE {q} IS NULL), count({q}) - count(DISTINCT {q}), "
            f"(SELECT CAST({q} AS VARCHAR) FROM ({select_sql}) GROUP BY {q} HAVING count(*) > 1 LIMIT 1) "
            f"FROM ({select_sql})"
        ),
        params,
    ).one()
    if nulls:
        raise Invalid(f"file: {nulls} rows have no '{pk}' (the primary key)", field="file")
    if dupes:
        raise Invalid(f"file: '{pk}' repeats ({dupes} duplicates, e.g. {example!r})", field="file")


def _transfer_in_duckdb(
    conn: sa.Connection,
    ref: TableRef,
    columns: Sequence[Column],
    pk: str,
    select_sql: str,
    params: dict[str, Any],
    progress: Progress,
) -> tuple[int, int, int]:
    """Stage the SELECT inside the source, then UPDATE ... FROM / INSERT in chunks of CHUNK rows so the
    progress bar moves; every statement is set-based and the whole load one transaction."""
    _check_keys(conn, select_sql, params, pk)
    names = [c.name for c in columns]
    preparer = conn.dialect.identifier_preparer
    stage = "_ov_import_stage"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {stage}")
    conn.execute(
        sa.text(
            f"CREATE TEMPORARY TABLE {stage} AS SELECT row_number() OVER () AS _ov_row, * FROM ({select_sql})"
        ),
        params,
    )
    try:
        total = int(conn.exec_driver_sql(f"SELECT count(*) FROM {stage}").scalar_one())
        progress("loading", 0, total)
        t = ref.table(names)
        s = sa.table(stage, sa.column("_ov_row"), *[sa.column(n) for n in names])
        pk_t, pk_s = t.c[pk], s.c[pk]
        others = [n for n in names if n != pk]
        updated = int(
            conn.execute(
                sa.select(sa.func.count()).select_from(s).where(sa.exists().where(pk_t == pk_s))
            ).scalar_one()
        )
        for start in range(0, max(total, 1), CHUNK):
            window = s.c._ov_row.between(start + 1, start + CHUNK)
            if others and updated:
                conn.execute(sa.update(t).values({n: s.c[n] for n in others}).where(pk_t == pk_s, window))
            new_rows = sa.select(*[s.c[n] for n in names]).where(window, ~sa.exists().where(pk_t == pk_s))
            conn.execute(sa.insert(t).from_select(names, new_rows))
            progress("loading", min(total, start + CHUNK), total)
        _ = preparer
    finally:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {stage}")
    return total - updated, updated, total


class duck_reader:
    """A DuckDB connection that can read files and run generators: the source itself when it is DuckDB
    (same instance: one process may hold the file), else a private in-memory database."""

    def __init__(self, ctx: AppContext) -> None:
        self.source = get_source(ctx)
        self._engine: sa.Engine | None = None
        self._conn: sa.Connection | None = None

    def __enter__(self) -> sa.Connection:
        if self.source.is_duckdb:
            try:
                self._conn = self.source.engine.connect()
            except sa.exc.DBAPIError as exc:
                raise self.source.error(exc) from exc
        else:
            self._engine = sa.create_engine("duckdb:///:memory:")
            self._conn = self._engine.connect()
            self._conn.exec_driver_sql("SET TimeZone = 'UTC'")
        return self._conn

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._engine is not None:
            self._engine.dispose()
