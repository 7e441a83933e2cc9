"""Runtime tests: a test's context is registered so sessions read its (frozen) clock."""

from __future__ import annotations

import pytest

from overture.runtime.clock import register


@pytest.fixture(autouse=True)
def _registered(request: pytest.FixtureRequest) -> None:
    # Only for tests that use the shared context: the process-level tests bring their own.
    if "ctx" in request.fixturenames:
        register(request.getfixturevalue("ctx"))
