"""`overture.db.dialects`: one INSERT with ON CONFLICT and one rowcount, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from overture.db import dialects
from overture.db.context import AppContext


def test_dialect_name__engine_connection_and_session_agree(ctx: AppContext) -> None:
    expected = ctx.engine.dialect.name
    assert expected in ("sqlite", "postgresql")
    with ctx.engine.connect() as conn, ctx.transaction(write=False) as session:
        assert dialects.dialect_name(ctx.engine) == dialects.dialect_name(conn) == expected
        assert dialects.dialect_name(session) == expected
        assert dialects.is_sqlite(session) == (expected == "sqlite")
        assert dialects.is_postgres(session) == (expected == "postgresql")


def test_insert_on_conflict_and_rowcount__both_backends(ctx: AppContext) -> None:
    table = sa.Table(
        f"t_dialects_{uuid.uuid4().hex[:8]}",
        sa.MetaData(),
        sa.Column("k", sa.String(10), primary_key=True),
        sa.Column("v", sa.Integer, nullable=False),
    )
    table.create(ctx.engine)
    try:
        with ctx.transaction() as session:
            insert = dialects.insert(session, table)
            session.execute(insert.values([{"k": "a", "v": 1}, {"k": "b", "v": 2}]))
            session.execute(
                dialects.insert(session, table)
                .values(k="a", v=9)
                .on_conflict_do_nothing(index_elements=["k"])
            )
            upsert = dialects.insert(session, table).values(k="b", v=5)
            session.execute(upsert.on_conflict_do_update(index_elements=["k"], set_={"v": upsert.excluded.v}))
            assert dict(session.execute(sa.select(table.c.k, table.c.v)).all()) == {"a": 1, "b": 5}
            matched = session.execute(sa.update(table).where(table.c.v > 0).values(v=table.c.v + 1))
            assert dialects.rowcount(matched) == 2
            missed = session.execute(sa.delete(table).where(table.c.k == "zz"))
            assert dialects.rowcount(missed) == 0
    finally:
        table.drop(ctx.engine)
