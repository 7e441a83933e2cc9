"""The run's file, written by the engine from the results table joined with the offers table: DuckDB
`COPY`, PostgreSQL `COPY ... TO STDOUT` streamed in chunks, other engines a server-side cursor in
chunks — never the whole result in Python memory."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from overture.batch.engine import RunPlan, offers_table, results_ref, sql_string
from overture.core.encode import to_json, to_text
from overture.data.source import DataSource

__all__ = ["output_select", "write_output"]

_CHUNK = 10_000


def output_select(plan: RunPlan, *, json_personalization: bool) -> sa.Select[Any]:
    """The file's rows: recommendations in customer order, then rank; columns as configured."""
    t = results_ref(plan.table)
    t.append_column(sa.column("personalization", sa.String()))
    o = offers_table(plan.table)
    exprs: dict[str, Any] = {
        "customer_id": t.c.customer_id,
        "offer_name": o.c.offer_name,
        "offer_id": o.c.offer_id,
        "channel": o.c.channel,
        "creative": o.c.creative,
        "score": t.c.score,
        "rank": t.c.rank,
        "category": o.c.category,
        "priority": o.c.priority,
    }
    if "personalization" in plan.columns:
        exprs["personalization"] = (
            sa.cast(t.c.personalization, sa.JSON()) if json_personalization else t.c.personalization
        )
    return (
        sa.select(*[exprs[c].label(c) for c in plan.columns])
        .select_from(t.join(o, o.c.offer_idx == t.c.offer_idx))
        .where(t.c.rank.is_not(None))
        .order_by(t.c.customer_id, t.c.rank)
    )


def write_output(source: DataSource, plan: RunPlan, path: Path) -> None:
    """Write the run's file to `path` with the engine (never the whole result in Python memory)."""
    if source.is_duckdb:
        select = output_select(plan, json_personalization=plan.format == "json")
        with source.connect() as conn:
            sql = str(select.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
            options = "FORMAT JSON, ARRAY true" if plan.format == "json" else "FORMAT CSV, HEADER true"
            conn.exec_driver_sql(f"COPY ({sql}) TO {sql_string(str(path))} ({options})")
        return
    select = output_select(plan, json_personalization=False)
    with source.connect() as conn, path.open("wb") as fh:
        if source.is_postgres and plan.format == "csv":
            sql = str(select.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
            raw = conn.connection.driver_connection
            assert raw is not None
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)") as copy,
            ):
                for chunk in copy:
                    fh.write(bytes(chunk))
            return
        result = conn.execution_options(stream_results=True, yield_per=_CHUNK).execute(select)
        _stream(fh, result, list(plan.columns), plan.format)


def _stream(fh: IO[bytes], result: Any, columns: Sequence[str], fmt: str) -> None:
    """Rows from a server-side cursor, written chunk by chunk (engines without a bulk writer)."""
    if fmt == "json":
        fh.write(b"[")
        first = True
        for chunk in result.partitions(_CHUNK):
            parts = []
            for row in chunk:
                record = dict(zip(columns, row, strict=True))
                if "personalization" in record and isinstance(record["personalization"], str):
                    record["personalization"] = json.loads(record["personalization"])
                parts.append(json.dumps({k: to_json(v) for k, v in record.items()}, separators=(",", ":")))
            if parts:
                fh.write((("" if first else ",\n") + ",\n".join(parts)).encode())
                first = False
        fh.write(b"]\n")
        return
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for chunk in result.partitions(_CHUNK):
        writer.writerows([to_text(v) for v in row] for row in chunk)
    text.flush()
    text.detach()
