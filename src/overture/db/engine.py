"""Engines and sessions for the application database (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import ORMExecuteState, sessionmaker, with_loader_criteria
from sqlalchemy.orm import Session as _OrmSession

from overture.db.base import WorkspaceScoped
from overture.db.session import Session

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_app_engine(url: str, **kwargs: Any) -> sa.Engine:
    """Create the engine. SQLite gets WAL, a busy timeout, foreign keys, and explicit BEGIN so a
    writer can take the write lock up front (`BEGIN IMMEDIATE`) instead of failing on upgrade."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite's is broken)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return sa.create_engine(url, **kwargs)


def make_session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, class_=Session, expire_on_commit=False, autoflush=True)


@event.listens_for(_OrmSession, "do_orm_execute")
def _scope_to_workspace(state: ORMExecuteState) -> None:
    """Every ORM query in a workspace-bound session sees only that workspace's rows."""
    workspace_id = state.session.info.get("workspace_id")
    if workspace_id is None or not state.is_select or state.execution_options.get("all_workspaces"):
        return
    state.statement = state.statement.options(
        with_loader_criteria(
            WorkspaceScoped,
            lambda cls: cls.workspace_id == workspace_id,
            include_aliases=True,
        )
    )


@event.listens_for(_OrmSession, "before_flush")
def _stamp_workspace(session: _OrmSession, _ctx: Any, _instances: Any) -> None:
    """New rows in a workspace-bound session belong to that workspace, and only to it."""
    workspace_id = session.info.get("workspace_id")
    if workspace_id is None:
        return
    for obj in session.new:
        if isinstance(obj, WorkspaceScoped):
            current = getattr(obj, "workspace_id", None)
            if current is None:
                obj.workspace_id = workspace_id
            elif current != workspace_id:
                raise PermissionError("refusing to write a row of another workspace")


def bind_workspace(session: _OrmSession, workspace_id: str) -> _OrmSession:
    session.info["workspace_id"] = workspace_id
    return session


@contextmanager
def transaction(
    factory: sessionmaker[Session], *, write: bool = True, workspace_id: str | None = None
) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error. On SQLite a writing unit takes the
    write lock at BEGIN, so concurrent writers queue on the busy timeout instead of failing."""
    session = factory()
    if write:
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    if workspace_id is not None:
        bind_workspace(session, workspace_id)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
