"""Entity models: create/read/update/delete, column discovery, and the relation + compiled filter other
surfaces (segments, journeys, batch, broadcasts) evaluate audiences with.

Public functions for other surfaces (stable; the session is bound to the caller's workspace and
carries the context and the clock):
    get_model(session, model_id) -> EntityModel
    get_model_by_name(session, name) -> EntityModel | None
    model_columns(session, model) -> list[Column]
    relation_for(session, model) -> (sa.FromClause, SqlModel)
    compile_filter(session, model, raw_filter) -> sa.ColumnElement[bool]
    compile_against(session, sql_model, raw_filter) -> sa.ColumnElement[bool]
    primary_key_column(session, model) -> (sa.FromClause, sa.ColumnElement)
    events_relation(ctx, workspace_id) -> sa.Subquery   (data source only, no session needed)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from overture.core.filters import EventsTable, FilterError, SqlModel, parse, to_sql
from overture.data.models import EntityModel
from overture.data.schemas import ColumnSpec, ModelCreate, ModelRead, ModelUpdate
from overture.data.source import (
    Column,
    DataSource,
    SourceError,
    TableRef,
    foreign_namespace,
    get_source,
    parse_table_name,
    sql_subquery,
    timestamp_aware,
    workspace_prefix,
)
from overture.db.context import AppContext
from overture.db.lookup import get_or_404
from overture.db.session import Session
from overture.errors import Conflict, Invalid, OvertureError, invalid_filter

Expr = sa.ColumnElement[bool]

__all__ = [
    "COLUMN_TYPES",
    "compile_against",
    "compile_filter",
    "create_model",
    "delete_model",
    "ensure_managed_model",
    "events_relation",
    "get_model",
    "get_model_by_name",
    "list_models",
    "model_columns",
    "model_read",
    "primary_key_column",
    "relation_for",
    "update_model",
]

#: Column kinds of managed models and the SQLAlchemy type each becomes in the source.
COLUMN_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "string": sa.String(),
    "integer": sa.BigInteger(),
    "number": sa.Float(precision=53),
    "boolean": sa.Boolean(),
    "timestamp": sa.DateTime(timezone=True),
    "date": sa.Date(),
    "json": sa.JSON(),
}
COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# Table functions a model's SQL may call on DuckDB; the rest read files or the catalog.
_SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
_CATALOG_SCHEMAS = frozenset({"information_schema", "pg_catalog"})
_FOREIGN_WORD = re.compile(r"\b(ws_[0-9a-f]{12}_\w*|overture_events)\b", re.IGNORECASE)


# -- lookups ---------------------------------------------------------------------------------------
def get_model(session: Session, model_id: str) -> EntityModel:
    """The model with this id in the session's workspace; NotFound (404) otherwise. Surfaces that take
    a model id in a body turn the NotFound into an Invalid (422) naming their field."""
    return get_or_404(session, EntityModel, model_id, what="model")


def get_model_by_name(session: Session, name: str) -> EntityModel | None:
    return session.scalar(sa.select(EntityModel).where(EntityModel.name == name))


def list_models(session: Session) -> list[EntityModel]:
    return list(session.scalars(sa.select(EntityModel).order_by(EntityModel.created_at, EntityModel.id)))


# -- discovery -------------------------------------------------------------------------------------
def _discover(source: DataSource, conn: sa.Connection, model: EntityModel) -> list[Column]:
    if model.kind == "sql":
        return source.query_columns(conn, model.sql or "")
    ref = parse_table_name(model.table_name or "")
    cols = source.table_columns(conn, ref)
    if cols is None:
        raise SourceError(f"data source error: table {ref} of model '{model.name}' does not exist")
    return cols


def model_columns(session: Session, model: EntityModel) -> list[Column]:
    """The model's columns as the source has them now (one catalog query; SourceError if gone)."""
    source = get_source(session.ctx)
    with source.connect() as conn:
        return _discover(source, conn, model)


def model_read(session: Session, model: EntityModel) -> ModelRead:
    """The API shape of a model, with live columns (or the reason they could not be read)."""
    columns: list[Column] = []
    error = None
    try:
        columns = model_columns(session, model)
    except OvertureError as exc:
        error = exc.message
    return ModelRead(
        id=model.id,
        workspace_id=model.workspace_id,
        name=model.name,
        primary_key=model.primary_key,
        kind=model.kind,
        table=model.table_name,
        sql=model.sql,
        columns=[c.as_dict() for c in columns],
        columns_error=error,
        created_at=model.created_at,
        updated_at=model.updated_at,
    )


def _match_column(columns: Sequence[Column], name: str, *, field: str, what: str) -> str:
    """The column's name as the source spells it: exact match, else the one case-insensitive match."""
    for c in columns:
        if c.name == name:
            return c.name
    folded = [c.name for c in columns if c.name.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    known = ", ".join(c.name for c in columns[:20])
    raise Invalid(f"{field}: {what} has no column '{name}' (columns: {known})", field=field)


def _check_sql(source: DataSource, conn: sa.Connection, sql: str, workspace_id: str) -> None:
    """A model's SQL is one SELECT that reads no other workspace's tables, no events table, no files.
    On DuckDB this is checked on the parsed statement; elsewhere by a name check plus a READ ONLY
    transaction (see docs/data.md: on a shared warehouse, grant the source user only what it may read)."""
    body = sql.strip().rstrip(";")
    if source.is_duckdb:
        # json_serialize_sql parses without binding: it refuses anything but SELECT, lists statements.
        raw = conn.execute(sa.text("SELECT json_serialize_sql(:q)"), {"q": body}).scalar_one()
        tree = json.loads(raw) if isinstance(raw, str | bytes) else raw
        if tree.get("error"):
            message = str(tree.get("error_message") or "does not parse")
            if "Only SELECT" in message:
                message = "must be exactly one SELECT statement"
            raise Invalid(f"sql: {message}", field="sql")
        if len(tree.get("statements") or ()) != 1:
            raise Invalid("sql: must be exactly one SELECT statement", field="sql")
        for node in _walk(tree):
            kind = node.get("type")
            if kind == "BASE_TABLE":
                name, schema = str(node.get("table_name", "")), str(node.get("schema_name", ""))
                if foreign_namespace(name, workspace_id) or schema.lower() in _CATALOG_SCHEMAS:
                    raise Invalid(f"sql: table '{name}' is not available to models", field="sql")
            elif kind == "TABLE_FUNCTION":
                fn = node.get("function") or {}
                fname = str(fn.get("function_name", "")).lower()
                if fname not in _SAFE_TABLE_FUNCTIONS:
                    raise Invalid(f"sql: table function '{fname}' is not allowed in models", field="sql")
        return
    if ";" in body:
        raise Invalid("sql: must be exactly one SELECT statement (no ';')", field="sql")
    for m in _FOREIGN_WORD.finditer(body):
        word = m.group(1)
        if foreign_namespace(word, workspace_id):
            raise Invalid(f"sql: table '{word}' is not available to models", field="sql")


def _walk(node: Any) -> Iterable[dict[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _resolve_definition(
    ctx: AppContext,
    workspace_id: str,
    *,
    primary_key: str,
    table: str | None,
    sql: str | None,
) -> tuple[str, str | None, str | None, list[Column]]:
    """Check a table/sql definition against the source: (primary key as spelled, table, sql, columns)."""
    source = get_source(ctx)
    with source.connect() as conn:
        if table is not None:
            ref = parse_table_name(table)
            if foreign_namespace(ref.name, workspace_id):
                raise Invalid(f"table: table '{ref}' not found in the data source", field="table")
            cols = source.table_columns(conn, ref)
            if cols is None:
                raise Invalid(f"table: table '{ref}' not found in the data source", field="table")
            pk = _match_column(cols, primary_key, field="primary_key", what=f"table {ref}")
            return pk, str(ref), None, cols
        assert sql is not None
        _check_sql(source, conn, sql, workspace_id)
        try:
            cols = source.query_columns(conn, sql)
        except sa.exc.DBAPIError as exc:
            raise Invalid(
                f"sql: {source.error(exc).message.removeprefix('data source error: ')}", field="sql"
            )
        except SourceError as exc:
            raise Invalid(f"sql: {exc.message}", field="sql")
        pk = _match_column(cols, primary_key, field="primary_key", what="the query")
        return pk, None, sql.strip().rstrip(";"), cols


# -- managed tables --------------------------------------------------------------------------------
def managed_table_name(workspace_id: str, name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40] or "model"
    return workspace_prefix(workspace_id) + slug


def create_managed_table(
    source: DataSource, conn: sa.Connection, table: str, primary_key: str, columns: Sequence[ColumnSpec]
) -> None:
    """CREATE TABLE with a PRIMARY KEY (so upserts find rows by index); columns from `columns`, the
    primary key a string unless declared."""
    specs = {c.name: c.type for c in columns}
    specs.setdefault(primary_key, "string")
    for name in specs:
        if not COLUMN_NAME.fullmatch(name):
            raise Invalid(f"columns: '{name}' is not a column name (letters, digits, _)", field="columns")
    sa_cols = [
        sa.Column(
            name,
            COLUMN_TYPES[kind],
            primary_key=(name == primary_key),
            nullable=(name != primary_key),
            autoincrement=False,
        )
        for name, kind in specs.items()
    ]
    sa.Table(table, sa.MetaData(), *sa_cols).create(conn)


def _unique_managed_table(source: DataSource, conn: sa.Connection, workspace_id: str, name: str) -> str:
    base = managed_table_name(workspace_id, name)
    candidate, n = base, 1
    while source.table_columns(conn, TableRef(candidate)) is not None:
        n += 1
        candidate = f"{base}_{n}"
    return candidate


# -- CRUD ------------------------------------------------------------------------------------------
def create_model(session: Session, body: ModelCreate) -> EntityModel:
    ctx, workspace_id = session.ctx, session.workspace_id
    if body.table is not None and body.sql is not None:
        raise Invalid("give exactly one of table or sql (or neither for a managed table)", field="sql")
    if get_model_by_name(session, body.name) is not None:
        raise Conflict(f"name: a model named '{body.name}' already exists", field="name")
    if body.table is None and body.sql is None:
        return _create_managed(session, body.name, body.primary_key, body.columns or [])
    if body.columns is not None:
        raise Invalid("columns: only managed models (no table, no sql) declare columns", field="columns")
    pk, table, sql, _ = _resolve_definition(
        ctx, workspace_id, primary_key=body.primary_key, table=body.table, sql=body.sql
    )
    model = EntityModel(
        workspace_id=workspace_id,
        name=body.name,
        primary_key=pk,
        kind="table" if table is not None else "sql",
        table_name=table,
        sql=sql,
    )
    session.add(model)
    session.flush()
    return model


def _create_managed(
    session: Session, name: str, primary_key: str, columns: Sequence[ColumnSpec]
) -> EntityModel:
    workspace_id = session.workspace_id
    if not COLUMN_NAME.fullmatch(primary_key):
        raise Invalid(
            f"primary_key: '{primary_key}' is not a column name (letters, digits, _)", field="primary_key"
        )
    seen: set[str] = set()
    for c in columns:
        if c.name.lower() in seen:
            raise Invalid(f"columns: '{c.name}' is given twice", field="columns")
        seen.add(c.name.lower())
    source = get_source(session.ctx)
    model = EntityModel(workspace_id=workspace_id, name=name, primary_key=primary_key, kind="managed")
    session.add(model)
    session.flush()  # the unique name is claimed before the source is touched
    with source.begin() as conn:
        table = _unique_managed_table(source, conn, workspace_id, name)
        create_managed_table(source, conn, table, primary_key, columns)
    model.table_name = table
    session.flush()
    return model


def ensure_managed_model(session: Session, name: str, primary_key: str) -> tuple[EntityModel, bool]:
    """The managed model `name`, created (without a physical table: the caller creates it from the data
    it loads) when absent. Returns (model, created). Used by import and demo."""
    model = get_model_by_name(session, name)
    if model is not None:
        return model, False
    workspace_id = session.workspace_id
    source = get_source(session.ctx)
    model = EntityModel(workspace_id=workspace_id, name=name, primary_key=primary_key, kind="managed")
    session.add(model)
    session.flush()
    with source.connect() as conn:
        model.table_name = _unique_managed_table(source, conn, workspace_id, name)
    session.flush()
    return model, True


def update_model(session: Session, model_id: str, body: ModelUpdate) -> EntityModel:
    model = get_model(session, model_id)
    fields = body.model_fields_set
    if body.name is not None and body.name != model.name:
        if get_model_by_name(session, body.name) is not None:
            raise Conflict(f"name: a model named '{body.name}' already exists", field="name")
        model.name = body.name
    if "table" in fields and "sql" in fields and body.table is not None and body.sql is not None:
        raise Invalid("give exactly one of table or sql", field="sql")
    if model.managed and (("table" in fields and body.table is not None) or ("sql" in fields and body.sql)):
        raise Invalid(
            "table: a managed model's table is Overture's; create a new model instead", field="table"
        )
    changes_definition = bool({"table", "sql", "primary_key"} & fields) and not (
        body.primary_key is None and body.table is None and body.sql is None
    )
    if changes_definition:
        table = model.table_name if model.kind == "table" else None
        sql = model.sql
        if "table" in fields and body.table is not None:
            table, sql = body.table, None
        elif "sql" in fields and body.sql is not None:
            table, sql = None, body.sql
        pk_name = body.primary_key or model.primary_key
        if model.managed:
            cols = model_columns(session, model)
            model.primary_key = _match_column(
                cols, pk_name, field="primary_key", what=f"table {model.table_name}"
            )
        else:
            pk, table, sql, _ = _resolve_definition(
                session.ctx, model.workspace_id, primary_key=pk_name, table=table, sql=sql
            )
            model.primary_key, model.table_name, model.sql = pk, table, sql
            model.kind = "table" if table is not None else "sql"
    model.updated_at = session.now()
    session.flush()
    return model


def delete_model(session: Session, model_id: str) -> None:
    """Delete a model (409 while segments or journeys use it). A managed model's table is dropped."""
    model = get_model(session, model_id)
    session.delete(model)
    try:
        session.flush()
    except sa.exc.IntegrityError:
        raise Conflict("model is in use (segments or journeys refer to it); delete those first")
    if model.managed and model.table_name:
        source = get_source(session.ctx)
        with source.begin() as conn:
            sa.Table(model.table_name, sa.MetaData()).drop(conn, checkfirst=True)


# -- audiences over a model --------------------------------------------------------------------------
def events_relation(ctx: AppContext, workspace_id: str) -> sa.Subquery:
    """The workspace's events (entity_id, event, timestamp, properties) as a subquery."""
    source = get_source(ctx)
    source.ensure_events_table()
    ev = source.events_table()
    return (
        sa.select(ev.c.entity_id, ev.c.event, ev.c.timestamp, ev.c.properties)
        .where(ev.c.workspace_id == workspace_id)
        .subquery("ev")
    )


_SA_TYPES: dict[str, type[sa.types.TypeEngine[Any]]] = {
    "string": sa.String,
    "integer": sa.BigInteger,
    "number": sa.Float,
    "boolean": sa.Boolean,
    "date": sa.Date,
    "json": sa.JSON,
}


def _typed_column(column: Column) -> sa.ColumnClause[Any]:
    """A Core column typed by the kind we discovered, so the filter compiler knows how to compare it."""
    if column.kind == "timestamp":
        return sa.column(column.name, sa.DateTime(timezone=timestamp_aware(column.sql_type)))
    type_cls = _SA_TYPES.get(column.kind)
    return sa.column(column.name, type_cls() if type_cls else sa.types.NullType())


def relation_for(session: Session, model: EntityModel) -> tuple[sa.FromClause, SqlModel]:
    """The model's rows as a FROM-able relation (alias `m`) and the SqlModel `to_sql` compiles against:
    typed columns, the entity key, and this workspace's events for behavioural conditions."""
    columns = model_columns(session, model)
    typed = [_typed_column(c) for c in columns]
    if model.kind == "sql":
        relation: sa.FromClause = sql_subquery(model.sql or "", typed, name="m")
    else:
        ref = parse_table_name(model.table_name or "")
        relation = sa.table(ref.name, *typed, schema=ref.schema).alias("m")
    key: sa.ColumnElement[Any] = relation.c[model.primary_key]
    if next(c.kind for c in columns if c.name == model.primary_key) != "string":
        key = sa.cast(key, sa.String)  # event entity ids are text
    source = get_source(session.ctx)
    source.ensure_events_table()
    ev = source.events_table()
    events = EventsTable(
        entity_id=ev.c.entity_id,
        event=ev.c.event,
        timestamp=ev.c.timestamp,
        properties=ev.c.properties,
        scope=((ev.c.workspace_id, model.workspace_id),),
    )
    fields = {c.name: relation.c[c.name] for c in columns}
    return relation, SqlModel(columns=fields, entity_key=key, events=events)


def compile_filter(session: Session, model: EntityModel, raw_filter: Any, *, root: str = "filter") -> Expr:
    """Parse `raw_filter`, check every field against the model, and compile it to one boolean
    expression over `relation_for(session, model)[0]`, with relative times anchored at `session.now()`.
    Bad filters raise Invalid (422) whose `field` is the path in the input (``filter.all[2].field``)."""
    _, sql_model = relation_for(session, model)
    return compile_against(session, sql_model, raw_filter, root=root)


def compile_against(session: Session, sql_model: SqlModel, raw_filter: Any, *, root: str = "filter") -> Expr:
    """compile_filter for a SqlModel already built (saves a discovery query when compiling several)."""
    try:
        return to_sql(parse(raw_filter, root=root), sql_model, now=session.now())
    except FilterError as exc:
        raise invalid_filter(exc)


def primary_key_column(session: Session, model: EntityModel) -> tuple[sa.FromClause, sa.ColumnElement[Any]]:
    """The model's relation and its primary key column on it."""
    relation, _ = relation_for(session, model)
    return relation, relation.c[model.primary_key]
