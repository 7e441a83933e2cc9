"""Runtime tests: the context is registered so sessions read its (frozen) clock."""

from __future__ import annotations

import pytest

from overture.db.context import AppContext
from overture.runtime.clock import register


@pytest.fixture(autouse=True)
def _registered(ctx: AppContext) -> None:
    register(ctx)
