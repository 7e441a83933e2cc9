"""The modules whose `@job_handler`s (and retention rules) every job-running process must import.

The runtime cannot import surfaces (layers run one way), so each surface appends its `tasks`
module here, and the app, `overture worker` and `overture serve` call `import_all()` at start."""

from __future__ import annotations

import importlib

TASK_MODULES: list[str] = [
    # e.g. "overture.journeys.tasks" (one line per surface)
    "overture.journeys.tasks",
    "overture.batch.tasks",
    "overture.experiences.tasks",
    "overture.broadcasts.tasks",
    "overture.paywalls.tasks",
]


def import_all() -> None:
    """Import every task module so its handlers are registered (idempotent)."""
    for name in TASK_MODULES:
        importlib.import_module(name)
