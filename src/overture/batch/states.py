"""Batch campaign and run statuses (seed 003) as tables of allowed moves."""

from __future__ import annotations

from enum import StrEnum

from overture.machine import Machine

__all__ = ["CAMPAIGN", "RUN", "CampaignStatus", "RunStatus", "RunTrigger"]


class CampaignStatus(StrEnum):
    DRAFT = "draft"  # created, not yet active
    ACTIVE = "active"  # live: scheduled runs execute
    PAUSED = "paused"  # temporarily disabled: no scheduled runs
    ARCHIVED = "archived"  # retired, kept for history


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"


class RunTrigger(StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"


C = CampaignStatus
CAMPAIGN = Machine(
    "campaign",
    CampaignStatus,
    {
        (C.DRAFT, C.ACTIVE),
        (C.DRAFT, C.ARCHIVED),
        (C.ACTIVE, C.PAUSED),
        (C.ACTIVE, C.ARCHIVED),
        (C.PAUSED, C.ACTIVE),
        (C.PAUSED, C.ARCHIVED),
    },
    terminal={C.ARCHIVED},
)

R = RunStatus
RUN = Machine(
    "run",
    RunStatus,
    {
        (R.PENDING, R.RUNNING),
        (R.PENDING, R.FAILED),  # its worker was lost before it started, or its campaign cannot run
        (R.RUNNING, R.COMPLETED),
        (R.RUNNING, R.COMPLETED_WITH_ERRORS),  # the file was written, a delivery (S3 upload) failed
        (R.RUNNING, R.FAILED),
    },
    terminal={R.COMPLETED, R.COMPLETED_WITH_ERRORS, R.FAILED},
)

#: Runs that have not reached an outcome yet.
OPEN_RUNS = frozenset({R.PENDING, R.RUNNING})
