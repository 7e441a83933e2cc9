"""The profile data source: one SQLAlchemy engine per process, column discovery and bulk row transfer.

Audience SQL runs *inside* the source (DuckDB by default, PostgreSQL, or any SQLAlchemy URL); this
module owns everything that depends on which engine that is, side by side, so the rest of
`overture.data` stays dialect-neutral."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from overture.db.context import AppContext
from overture.errors import Conflict, Invalid, OvertureError, Unavailable

__all__ = [
    "EVENTS_TABLE",
    "Column",
    "DataSource",
    "SourceError",
    "TableRef",
    "column_kind",
    "get_source",
    "parse_table_name",
    "timestamp_aware",
    "workspace_prefix",
]

#: How long a DuckDB writer waits for this process's other writers before answering 503.
WRITE_WAIT_SECONDS = 60.0
#: The one events table of a source; every row carries its workspace_id.
EVENTS_TABLE = "overture_events"

_IDENT = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_TABLE_NAME = re.compile(rf"({_IDENT})(?:\.({_IDENT}))?")
#: Overture-managed profile tables are `ws_<12 hex of the workspace id>_<slug>`.
_MANAGED_PREFIX = re.compile(r"ws_([0-9a-f]{12})_", re.IGNORECASE)


class SourceError(OvertureError):
    """The data source answered a query with an error (a dropped table, a broken model SQL...)."""

    status_code = 502
    code = "source_error"


@dataclass(frozen=True, slots=True)
class Column:
    """A discovered column: its name as the source spells it, the source's type, and our kind."""

    name: str
    sql_type: str
    kind: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.kind, "sql_type": self.sql_type}


@dataclass(frozen=True, slots=True)
class TableRef:
    name: str
    schema: str | None = None

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def table(self, columns: Sequence[str] = ()) -> sa.TableClause:
        """A Core table clause: SQLAlchemy quotes every part, nothing is spliced."""
        return sa.table(self.name, *[sa.column(c) for c in columns], schema=self.schema)


# Kinds are what filters and record validation reason about; the source's own type is kept alongside.
_KIND_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("boolean", re.compile(r"^(boolean|bool)$")),
    (
        "integer",
        re.compile(
            r"^(u?(tiny|small|big|huge)?int(eger)?|int[248]|u?int(8|16|32|64|128)|(big|small)?serial)$"
        ),
    ),
    ("number", re.compile(r"^(double( precision)?|real|float[48]?|decimal|numeric|money)(\(.*\))?$")),
    (
        "timestamp",
        re.compile(r"^(timestamp|datetime|timestamptz)(\(\d+\))?( with(out)? time zone)?(_[smun]s)?$"),
    ),
    ("date", re.compile(r"^date$")),
    ("json", re.compile(r"^jsonb?$")),
    (
        "string",
        re.compile(
            r"^(varchar|text|string|char|bpchar|character( varying)?|nvarchar|uuid|enum|user-defined|citext)"
        ),
    ),
)


def column_kind(sql_type: str) -> str:
    """Our kind of a source type: string, integer, number, boolean, timestamp, date, json or other."""
    t = sql_type.strip().lower()
    for kind, pattern in _KIND_PATTERNS:
        if pattern.match(t):
            return kind
    return "other"


def timestamp_aware(sql_type: str) -> bool:
    """Whether a timestamp type holds instants (with time zone) rather than UTC wall times."""
    t = sql_type.strip().lower()
    return t in ("timestamptz", "") or ("with time zone" in t and "without" not in t)


def parse_table_name(text: str, *, field: str = "table") -> TableRef:
    """`name` or `schema.name`, each an identifier of the strict grammar (letters, digits, _ and $)."""
    m = _TABLE_NAME.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise Invalid(
            f"{field}: {text!r} is not a table name (use name or schema.name; letters, digits, _ and $)",
            field=field,
        )
    first, second = m.group(1), m.group(2)
    return TableRef(second, first) if second else TableRef(first)


def workspace_prefix(workspace_id: str) -> str:
    """The physical-name prefix of a workspace's Overture-managed tables."""
    return f"ws_{workspace_id.replace('-', '').lower()[:12]}_"


def foreign_namespace(name: str, workspace_id: str) -> bool:
    """True when `name` is the events table or another workspace's managed table: never modelled."""
    lowered = name.lower()
    if lowered == EVENTS_TABLE:
        return True
    m = _MANAGED_PREFIX.match(lowered)
    return bool(m) and lowered.startswith(workspace_prefix(workspace_id)) is False


class DataSource:
    """One engine for the process. DuckDB allows one writing process per file, so every thread of this
    process shares this engine (and so one DuckDB instance); see docs/data.md for the file lock."""

    def __init__(self, url: str) -> None:
        self.url = url
        backend = make_url(url).get_backend_name()
        self.dialect = backend
        kwargs: dict[str, Any] = {}
        if backend == "postgresql":
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10)
        elif backend == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = sa.create_engine(url, **kwargs)
        if backend == "duckdb":
            # Instants come back in UTC whatever the machine's zone (ICU is loaded by then, not at config).
            sa.event.listen(self.engine, "connect", _duckdb_utc)
        self._events_ready = False
        self._lock = threading.Lock()
        # DuckDB runs one writer at a time and aborts the loser of two overlapping write transactions;
        # queueing this process's writes turns that abort into a short wait.
        self._write_lock: threading.RLock | None = threading.RLock() if backend == "duckdb" else None

    # -- dialect facts -------------------------------------------------------------------------------
    @property
    def is_duckdb(self) -> bool:
        return self.dialect == "duckdb"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def describe(self) -> str:
        """The URL without its password, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    # -- connections ---------------------------------------------------------------------------------
    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A connection for reads; source failures surface as SourceError/Unavailable, not 500s.
        On PostgreSQL the transaction is READ ONLY, so a model's SQL can never write."""
        with self._translate():
            conn = self.engine.connect()
            try:
                if self.is_postgres:
                    conn = conn.execution_options(postgresql_readonly=True)
                yield conn
            finally:
                conn.close()

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A writing transaction: commits on success, rolls back on any error. On DuckDB, writers of
        this process take turns (see __init__)."""
        lock = self._write_lock
        if lock is not None and not lock.acquire(timeout=WRITE_WAIT_SECONDS):
            raise Unavailable("the data source is busy with another write; retry")
        try:
            with self._translate(), self.engine.begin() as conn:
                yield conn
        finally:
            if lock is not None:
                lock.release()

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except OvertureError:
            raise
        except sa.exc.DBAPIError as exc:
            raise self.error(exc) from exc

    def error(self, exc: BaseException) -> OvertureError:
        """Map a driver error to what a user can act on (the DuckDB file lock gets its own words)."""
        text = str(getattr(exc, "orig", None) or exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        if "Could not set lock on file" in text or "Conflicting lock" in text:
            return Unavailable(
                "the DuckDB data file is in use by another process (probably `overture serve`): stop "
                "it and retry, or send records over HTTP "
                "(POST /api/v1/workspaces/{id}/models/{model_id}/records)"
            )
        if "TransactionContext Error" in text or "could not serialize access" in text:
            return Conflict(f"a concurrent write touched the same rows; retry ({first})")
        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
            return Unavailable(f"data source unreachable: {first}")
        if isinstance(exc, sa.exc.OperationalError) and not self.is_duckdb and not self.is_sqlite:
            return Unavailable(f"data source unreachable: {first}")
        return SourceError(f"data source error: {first}")

    def close(self) -> None:
        self.engine.dispose()

    # -- discovery -----------------------------------------------------------------------------------
    def table_columns(self, conn: sa.Connection, ref: TableRef) -> list[Column] | None:
        """Columns of a table or view, in order; None when it does not exist. (SQLAlchemy reflection
        does not work on duckdb-engine, so we ask information_schema / pragma directly.)"""
        if self.is_sqlite:
            rows = conn.execute(
                sa.text("SELECT name, type FROM pragma_table_info(:t) ORDER BY cid"), {"t": ref.name}
            ).all()
        else:
            schema_expr = ":s" if ref.schema else "current_schema()"
            rows = conn.execute(
                sa.text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    f"WHERE table_schema = {schema_expr} AND table_name = :t ORDER BY ordinal_position"
                ),
                {"t": ref.name, **({"s": ref.schema} if ref.schema else {})},
            ).all()
        if not rows:
            return None
        return [Column(str(name), str(t or ""), column_kind(str(t or ""))) for name, t in rows]

    def query_columns(self, conn: sa.Connection, sql: str) -> list[Column]:
        """Columns a SELECT returns, found without running it over the data (LIMIT 0 / DESCRIBE)."""
        wrapped = sql_subquery(sql, ())
        if self.is_duckdb:
            probe = sa.select(sa.text("*")).select_from(wrapped)
            compiled = probe.compile(dialect=conn.dialect)
            rows = conn.exec_driver_sql(f"DESCRIBE {compiled}").all()
            return [Column(str(r[0]), str(r[1]), column_kind(str(r[1]))) for r in rows]
        result = conn.execute(sa.select(sa.text("*")).select_from(wrapped).limit(0))
        description = result.cursor.description if result.cursor is not None else None
        result.close()
        names = [d[0] for d in description or ()]
        types: dict[Any, str] = {}
        if self.is_postgres and description:
            oids = sorted({int(d[1]) for d in description if d[1] is not None})  # type: ignore[call-overload]
            types = dict(
                conn.execute(
                    sa.text("SELECT oid::int, format_type(oid, NULL) FROM pg_type WHERE oid = ANY(:oids)"),
                    {"oids": oids},
                ).all()
            )
            sql_types = [types.get(d[1], "unknown") for d in description]
        else:
            sql_types = ["unknown" for _ in names]
        return [Column(n, t, column_kind(t)) for n, t in zip(names, sql_types, strict=True)]

    # -- bulk transfer -------------------------------------------------------------------------------
    def insert_rows(
        self,
        conn: sa.Connection,
        target: TableRef,
        columns: Sequence[Column],
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        """INSERT many JSON-able rows in one set-based statement: DuckDB parses one JSON document
        (`from_json`), PostgreSQL one jsonb (`jsonb_populate_recordset` into the target's row type);
        other engines get multi-row VALUES in chunks. 10,000 rows take milliseconds, not seconds."""
        if not rows:
            return
        names = [c.name for c in columns]
        table = target.table(names)
        payload = json.dumps([{n: r.get(n) for n in names} for r in rows], separators=(",", ":"))
        if self.is_duckdb:
            structure = json.dumps([{c.name: _duck_json_type(c.sql_type) for c in columns}])
            source = sa.text(
                "(SELECT unnest(from_json(CAST(:payload AS JSON), :structure), recursive := true))"
            ).bindparams(payload=payload, structure=structure)
            stage_rel: Any = sa.select(*[sa.column(n) for n in names]).select_from(
                source.columns().subquery("r")
            )
            conn.execute(sa.insert(table).from_select(names, stage_rel))
        elif self.is_postgres:
            row_type = conn.dialect.identifier_preparer.format_table(target.table())
            source = sa.text(
                f"jsonb_populate_recordset(NULL::{row_type}, CAST(:payload AS jsonb))"
            ).bindparams(payload=payload)
            rel: Any = sa.select(*[sa.column(n) for n in names]).select_from(source)
            conn.execute(sa.insert(table).from_select(names, rel))
        else:
            chunk = max(1, 30_000 // max(1, len(names)))
            for start in range(0, len(rows), chunk):
                batch = [{n: _plain(r.get(n)) for n in names} for r in rows[start : start + chunk]]
                conn.execute(sa.insert(table).values(batch))

    # -- events --------------------------------------------------------------------------------------
    def events_table(self) -> sa.Table:
        return _events_table(self.dialect)

    def ensure_events_table(self) -> None:
        """Create the events table on first use (once per process)."""
        if self._events_ready:
            return
        with self._lock:
            if self._events_ready:
                return
            table = self.events_table()
            with self.begin() as conn:
                table.create(conn, checkfirst=True)
                if self.is_postgres:
                    conn.exec_driver_sql(
                        f"CREATE INDEX IF NOT EXISTS ix_{EVENTS_TABLE}_entity ON {EVENTS_TABLE} "
                        "(workspace_id, entity_id, event, timestamp)"
                    )
            self._events_ready = True


def _duckdb_utc(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("SET TimeZone = 'UTC'")


def sql_subquery(sql: str, columns: Sequence[str | sa.ColumnClause[Any]], name: str = "m") -> sa.Subquery:
    """A model's SQL as a FROM-able subquery. Colons are escaped so `'10:30'` is not a bind param."""
    body = sql.strip().rstrip(";").replace(":", r"\:")
    cols = [sa.column(c) if isinstance(c, str) else c for c in columns]
    return sa.text(body).columns(*cols).subquery(name)


def _duck_json_type(sql_type: str) -> str:
    """The type from_json should parse a column as: the column's own when simple, else VARCHAR
    (the INSERT then casts, e.g. to an ENUM)."""
    kind = column_kind(sql_type)
    if kind in {
        "string",
        "integer",
        "number",
        "boolean",
        "timestamp",
        "date",
        "json",
    } and not sql_type.lower().startswith("enum"):
        return sql_type
    return "VARCHAR"


def _plain(value: Any) -> Any:
    """JSON column values for drivers that take them as text (SQLite)."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


_EVENTS_TABLES: dict[str, sa.Table] = {}


def _events_table(dialect: str) -> sa.Table:
    existing = _EVENTS_TABLES.get(dialect)
    if existing is not None:
        return existing
    json_type: sa.types.TypeEngine[Any]
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        json_type = JSONB()
    else:
        json_type = sa.JSON()
    table = sa.Table(
        EVENTS_TABLE,
        sa.MetaData(),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("entity_id", sa.String(200), nullable=False),
        sa.Column("event", sa.String(200), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("properties", json_type, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    _EVENTS_TABLES[dialect] = table
    return table


def get_source(ctx: AppContext) -> DataSource:
    """The process-wide data source of `ctx` (built once; its engine is disposed when ctx closes)."""

    def build(c: AppContext) -> DataSource:
        source = DataSource(c.settings.resolved_data_url)
        c.closers.append(source.close)
        return source

    source: DataSource = ctx.service("data_source", build)
    return source
