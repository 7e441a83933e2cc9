"""The temporary-table context manager on every engine a data source can be: DuckDB, SQLite, PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from overture.data.temp import temporary_table

ENGINES = ["duckdb", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Connection]:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_database")
    else:
        url = f"{request.param}:///{tmp_path / 'data.db'}"
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE people (id INTEGER, name VARCHAR(40), score DOUBLE PRECISION)"
        )
        connection.exec_driver_sql("INSERT INTO people VALUES (1, 'ada', 2.5)")
        connection.commit()
        yield connection
        connection.rollback()
        connection.exec_driver_sql("DROP TABLE people")
        connection.commit()
    engine.dispose()


_CATALOG = {
    "duckdb": "SELECT count(*) FROM duckdb_tables() WHERE table_name = :name",
    "sqlite": "SELECT count(*) FROM sqlite_temp_master WHERE name = :name",
    "postgresql": "SELECT count(*) FROM pg_class WHERE oid = to_regclass(:name)",
}


def _exists(conn: sa.Connection, name: str) -> bool:
    """Whether this connection sees a table `name` (asked of the catalog: a failed read would abort
    the transaction on PostgreSQL and DuckDB)."""
    return bool(conn.execute(sa.text(_CATALOG[conn.dialect.name]), {"name": name}).scalar())


def test_columns__created_usable_then_dropped(conn: sa.Connection) -> None:
    columns = [sa.Column("id", sa.Integer(), nullable=False), sa.Column("label", sa.String())]
    with temporary_table(conn, "tt", columns) as table:
        assert table.name.startswith("tt_") and _exists(conn, table.name)
        conn.execute(sa.insert(table), [{"id": 1, "label": "a"}, {"id": 2, "label": None}])
        assert conn.execute(sa.select(table.c.label).order_by(table.c.id)).scalars().all() == ["a", None]
    assert not _exists(conn, table.name)
    with pytest.raises(sa.exc.DBAPIError), temporary_table(conn, "tt", columns) as table:
        conn.execute(sa.insert(table).values(id=None))  # nullability is kept
    conn.rollback()


def test_like__copies_columns_and_types_not_rows(conn: sa.Connection) -> None:
    people = sa.table("people", sa.column("id"), sa.column("name"), sa.column("score"))
    with temporary_table(conn, "stage", like=sa.select(people.c.id, people.c.score)) as stage:
        assert list(stage.c.keys()) == ["id", "score"]
        assert conn.execute(sa.select(sa.func.count()).select_from(stage)).scalar() == 0
        conn.execute(sa.text(f'INSERT INTO "{stage.name}" VALUES (7, 1.25)'))
        assert conn.execute(sa.select(stage.c.id, stage.c.score)).one() == (7, 1.25)
    assert not _exists(conn, stage.name)


def test_error_in_block__original_error_raised_and_table_gone(conn: sa.Connection) -> None:
    columns = [sa.Column("id", sa.Integer())]
    with pytest.raises(KeyError, match="boom"), temporary_table(conn, "tt", columns) as table:
        raise KeyError("boom")
    assert not _exists(conn, table.name)


def test_failed_statement_in_block__that_error_not_hidden_by_the_drop(conn: sa.Connection) -> None:
    # On PostgreSQL the failed statement aborts the transaction, so the drop fails as well: the
    # caller must still see the first error (its transaction then rolls back, table included).
    columns = [sa.Column("id", sa.Integer())]
    with pytest.raises(sa.exc.DBAPIError, match="no_such_table"), temporary_table(conn, "tt", columns):
        conn.exec_driver_sql("SELECT * FROM no_such_table")
    conn.rollback()


def test_columns_and_like__exactly_one_required(conn: sa.Connection) -> None:
    with pytest.raises(ValueError, match="not both"), temporary_table(conn, "tt"):
        pass
    like = sa.select(sa.table("people", sa.column("id")).c.id)
    with (
        pytest.raises(ValueError, match="not both"),
        temporary_table(conn, "tt", [sa.Column("id")], like=like),
    ):
        pass
