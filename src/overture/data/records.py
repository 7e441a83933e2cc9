"""Profiles in and out: validate a batch of JSON records against a model, upsert it set-based, read one.

An upsert is: validate everything first (all-or-nothing, errors name `records[i].field`), stage the
batch in a temporary table with one statement, then UPDATE ... FROM the stage and INSERT the new keys —
two set-based statements per distinct set of fields, in one transaction of the source."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from overture.core.encode import to_json
from overture.data.models import EntityModel
from overture.data.schemas import MAX_BATCH, RecordsResult
from overture.data.service import COLUMN_NAME, COLUMN_TYPES, get_model, model_columns, relation_for
from overture.data.source import Column, DataSource, TableRef, get_source, parse_table_name, timestamp_aware
from overture.data.temp import temporary_table
from overture.db.session import Session
from overture.errors import Invalid, NotFound, TooLarge

__all__ = ["get_record", "merge_rows", "upsert_records"]

_WRITABLE = frozenset({"string", "integer", "number", "boolean", "timestamp", "date", "json"})


def upsert_records(session: Session, model_id: str, records: Sequence[Any]) -> RecordsResult:
    """Insert or update up to MAX_BATCH records of the model, all or nothing. A record's fields replace
    the stored ones; fields it leaves out keep their values (a new row gets null). On a managed model,
    unknown fields become new columns (type from the values); elsewhere they are a 422. The write goes
    to the data source: `session` (read-only is enough) only finds the model."""
    if len(records) > MAX_BATCH:
        raise TooLarge(f"records: at most {MAX_BATCH} per request, got {len(records)}", field="records")
    model = get_model(session, model_id)
    if model.kind == "sql":
        raise Invalid("records: a SQL model is read-only; write to its tables instead", field="records")
    source = get_source(session.ctx)
    columns = model_columns(session, model)
    rows, added = _validate(records, columns, model)
    if not rows:
        return RecordsResult(upserted=0, inserted=0, updated=0)
    ref = parse_table_name(model.table_name or "")
    with source.begin() as conn:
        for name, kind in added.items():
            column = sa.Column(name, COLUMN_TYPES[kind])
            ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
            table = conn.dialect.identifier_preparer.format_table(ref.table())
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {ddl}")
        all_columns = columns + [Column(n, _sql_type(conn, k), k) for n, k in added.items()]
        by_name = {c.name: c for c in all_columns}
        inserted = updated = 0
        for names, group in _group_by_fields(rows).items():
            ins, upd = merge_rows(source, conn, ref, [by_name[n] for n in names], model.primary_key, group)
            inserted += ins
            updated += upd
    return RecordsResult(upserted=len(rows), inserted=inserted, updated=updated, columns_added=sorted(added))


def merge_rows(
    source: DataSource,
    conn: sa.Connection,
    target: TableRef,
    columns: Sequence[Column],
    primary_key: str,
    rows: Sequence[Mapping[str, Any]],
) -> tuple[int, int]:
    """Upsert JSON-able `rows` (each with every column of `columns`) into `target` by `primary_key`:
    stage, UPDATE ... FROM, INSERT the rest. Works without a unique index, on every engine we support.
    Returns (inserted, updated)."""
    names = [c.name for c in columns]
    t = target.table(names)
    # The stage takes the target's column types, so the rows are parsed as the target stores them.
    with temporary_table(conn, "_ov_stage", like=sa.select(*t.c)) as s:
        source.insert_rows(conn, TableRef(s.name), columns, rows)
        pk_t, pk_s = t.c[primary_key], s.c[primary_key]
        updated = conn.execute(
            sa.select(sa.func.count()).select_from(s).where(sa.exists().where(pk_t == pk_s))
        ).scalar_one()
        others = [n for n in names if n != primary_key]
        if others and updated:
            conn.execute(sa.update(t).values({n: s.c[n] for n in others}).where(pk_t == pk_s))
        new_rows = sa.select(*[s.c[n] for n in names]).where(~sa.exists().where(pk_t == pk_s))
        conn.execute(sa.insert(t).from_select(names, new_rows))
    return len(rows) - int(updated), int(updated)


def get_record(session: Session, model_id: str, key: str) -> dict[str, Any]:
    """One profile by primary key (the path's text is compared as the key column's type); 404 if absent."""
    model = get_model(session, model_id)
    relation, _ = relation_for(session, model)
    pk = relation.c[model.primary_key]
    columns = {c.name: c for c in model_columns(session, model)}
    kind = columns[model.primary_key].kind
    value: Any = key
    if kind == "integer":
        try:
            value = int(key)
        except ValueError:
            raise NotFound("record not found")
    elif kind == "number":
        try:
            value = float(key)
        except ValueError:
            raise NotFound("record not found")
    source = get_source(session.ctx)
    with source.connect() as conn:
        row = conn.execute(sa.select(relation).where(pk == value).limit(1)).mappings().first()
    if row is None:
        raise NotFound("record not found")
    return {k: to_json(v) for k, v in row.items()}


# -- validation --------------------------------------------------------------------------------------
def _validate(
    records: Sequence[Any], columns: Sequence[Column], model: EntityModel
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Check and normalize every record; merge records with the same key (later fields win).
    Returns (rows in key order of first appearance, new columns of a managed model name -> kind)."""
    by_name = {c.name: c for c in columns}
    folded = {c.name.lower(): c for c in columns}
    pk = model.primary_key
    new_kinds: dict[str, str] = {}
    merged: dict[Any, dict[str, Any]] = {}
    for i, record in enumerate(records):
        where = f"records[{i}]"
        if not isinstance(record, Mapping):
            raise Invalid(f"{where}: expected an object", field=where)
        row: dict[str, Any] = {}
        for raw_name, value in record.items():
            column = by_name.get(raw_name) or folded.get(str(raw_name).lower())
            path = f"{where}.{raw_name}"
            if column is None:
                if not model.managed:
                    raise Invalid(f"{path}: model '{model.name}' has no column '{raw_name}'", field=path)
                if not COLUMN_NAME.fullmatch(str(raw_name)):
                    raise Invalid(
                        f"{path}: '{raw_name}' is not a column name (letters, digits, _)", field=path
                    )
                kind = _merge_kind(new_kinds.get(raw_name), _infer_kind(value), path)
                new_kinds[raw_name] = kind
                row[raw_name] = value
                continue
            if column.name in row:
                raise Invalid(f"{path}: field given twice", field=path)
            row[column.name] = _coerce(value, column, path)
        key = row.get(pk)
        if key is None:
            raise Invalid(f"{where}.{pk}: the primary key is required", field=f"{where}.{pk}")
        if key in merged:
            merged[key].update(row)
        else:
            merged[key] = row
    # New columns' values are checked against the kind the whole batch agreed on.
    kinds = {n: (k or "string") for n, k in new_kinds.items()}
    if kinds:
        for i, record in enumerate(records):
            for name, kind in kinds.items():
                if name in record:
                    _coerce(record[name], Column(name, "", kind), f"records[{i}].{name}")
        for row in merged.values():
            for name, kind in kinds.items():
                if name in row:
                    row[name] = _coerce(row[name], Column(name, "timestamptz", kind), name)
    return list(merged.values()), kinds


def _infer_kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "json"


def _merge_kind(seen: str | None, new: str | None, path: str) -> Any:
    if seen is None or new is None or seen == new:
        return seen or new
    if {seen, new} == {"integer", "number"}:
        return "number"
    raise Invalid(f"{path}: expected a {seen} like the batch's other values of this new field", field=path)


def _coerce(value: Any, column: Column, path: str) -> Any:
    """The JSON value to stage for `column`, or Invalid naming `path`."""
    if value is None:
        return None
    kind = column.kind
    if kind not in _WRITABLE:
        raise Invalid(f"{path}: column type {column.sql_type} cannot be written through records", field=path)
    if kind == "string":
        if not isinstance(value, str):
            raise Invalid(f"{path}: expected a string", field=path)
        if "\x00" in value:
            raise Invalid(f"{path}: strings may not contain NUL characters", field=path)
        return value
    if kind == "integer":
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(f"{path}: expected an integer", field=path)
        if not -(2**63) <= value < 2**63:
            raise Invalid(f"{path}: integer out of range", field=path)
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"{path}: expected a number", field=path)
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid(f"{path}: expected a finite number", field=path)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise Invalid(f"{path}: expected true or false", field=path)
        return value
    if kind == "timestamp":
        instant = _instant(value)
        if instant is None:
            raise Invalid(f"{path}: expected an ISO 8601 timestamp", field=path)
        if not timestamp_aware(column.sql_type):
            return instant.replace(tzinfo=None).isoformat()  # naive columns hold UTC wall time
        return instant.isoformat()
    if kind == "date":
        try:
            return date.fromisoformat(value).isoformat() if isinstance(value, str) else _bad_date(path)
        except ValueError:
            return _bad_date(path)
    return value  # json: any JSON value


def _bad_date(path: str) -> Any:
    raise Invalid(f"{path}: expected a date (YYYY-MM-DD)", field=path)


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _group_by_fields(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Rows grouped by the set of fields they carry: one UPDATE per group leaves absent fields alone."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return groups


def _sql_type(conn: sa.Connection, kind: str) -> str:
    """The source's name of a managed column type (what the stage should parse it as)."""
    return str(COLUMN_TYPES[kind].compile(dialect=conn.dialect))
