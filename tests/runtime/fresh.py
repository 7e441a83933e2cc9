"""A database of one's own for runtime tests that count whole tables or run several processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from overture.config import Settings
from overture.db import migrate
from overture.db.context import AppContext
from tests.conftest import throwaway_pg_database


def fresh_context(home: Path, backend: str, **settings: Any) -> Iterator[AppContext]:
    """A migrated database of its own (PostgreSQL: created here and dropped after)."""
    with ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{home / 'overture.db'}"
        else:
            url = stack.enter_context(throwaway_pg_database("overture_r"))
        ctx = AppContext.from_settings(
            Settings(home=home, database_url=url, data_url=f"duckdb:///{home / 'data.duckdb'}", **settings)
        )
        stack.callback(ctx.close)
        migrate.upgrade(url, ctx.engine)
        yield ctx
