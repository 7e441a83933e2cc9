"""Alembic, driven from code: `overture migrate`, start-up, tests and readiness all use these."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, engine: sa.Engine | None = None) -> None:
    """Apply every migration (all heads: each surface keeps its own branch)."""
    cfg = alembic_config(url)
    if engine is not None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
    else:
        command.upgrade(cfg, "heads")


def head_revisions(url: str) -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config(url)).get_heads())


def current_revisions(conn: sa.Connection) -> set[str]:
    return set(MigrationContext.configure(conn).get_current_heads())


def _as_tuple(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def applied_revisions(script: ScriptDirectory, current: set[str]) -> set[str]:
    """Every revision the database holds: its stamped heads and all they descend from, following
    `depends_on` too (Alembic stamps only the newest revision of branches joined that way)."""
    seen: set[str] = set()
    todo = list(current)
    while todo:
        rev = script.get_revision(todo.pop())
        if rev is None or rev.revision in seen:
            continue
        seen.add(rev.revision)
        todo.extend(_as_tuple(rev.down_revision))
        todo.extend(_as_tuple(rev.dependencies))
    return seen


def is_current(engine: sa.Engine) -> bool:
    script = ScriptDirectory.from_config(alembic_config(engine.url.render_as_string(hide_password=False)))
    with engine.connect() as conn:
        current = current_revisions(conn)
    return set(script.get_heads()) <= applied_revisions(script, current)
