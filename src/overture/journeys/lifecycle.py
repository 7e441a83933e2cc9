"""Journey and run statuses, and the journey lifecycle as a table of allowed transitions (data, not ifs)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from overture.errors import Conflict

__all__ = [
    "ACTION_TARGETS",
    "DELETABLE",
    "RUNNABLE",
    "TRANSITIONS",
    "Action",
    "JourneyStatus",
    "MemberStatus",
    "RunStatus",
    "RunTrigger",
    "target_of",
    "transition",
]


class JourneyStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    DRAINING = "draining"
    ARCHIVED = "archived"
    ERROR = "error"


class Action(StrEnum):
    """What moves a journey: the four lifecycle endpoints, and the end of a run (automatic)."""

    ACTIVATE = "activate"
    PAUSE = "pause"
    RESUME = "resume"
    DRAIN = "drain"
    RUN = "run"


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


UNFINISHED_RUN = frozenset({RunStatus.PENDING, RunStatus.RUNNING})


class RunTrigger(StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"


class MemberStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    EXITED = "exited"


S = JourneyStatus
#: Every allowed move and the one action that makes it. Any pair not listed is refused with a 409.
TRANSITIONS: Mapping[tuple[JourneyStatus, JourneyStatus], Action] = MappingProxyType(
    {
        (S.DRAFT, S.ACTIVE): Action.ACTIVATE,
        (S.ERROR, S.ACTIVE): Action.ACTIVATE,  # after a human fixed what broke the run
        (S.ACTIVE, S.PAUSED): Action.PAUSE,
        (S.DRAINING, S.PAUSED): Action.PAUSE,  # so a draining journey can be stopped and deleted
        (S.PAUSED, S.ACTIVE): Action.RESUME,
        (S.ACTIVE, S.DRAINING): Action.DRAIN,
        (S.PAUSED, S.DRAINING): Action.DRAIN,
        (S.DRAINING, S.ARCHIVED): Action.RUN,  # a run ended with no active member left
        (S.ACTIVE, S.ERROR): Action.RUN,  # a run failed in a way that needs a human
        (S.DRAINING, S.ERROR): Action.RUN,
    }
)

#: Where each endpoint action leads.
ACTION_TARGETS: Mapping[Action, JourneyStatus] = MappingProxyType(
    {Action.ACTIVATE: S.ACTIVE, Action.PAUSE: S.PAUSED, Action.RESUME: S.ACTIVE, Action.DRAIN: S.DRAINING}
)

#: Statuses in which runs may execute (draining runs move members on but admit nobody new).
RUNNABLE = frozenset({S.ACTIVE, S.DRAINING})
#: Statuses a journey may be deleted in: it must not be moving members.
DELETABLE = frozenset({S.DRAFT, S.PAUSED, S.ARCHIVED, S.ERROR})


def target_of(action: Action) -> JourneyStatus:
    return ACTION_TARGETS[action]


def transition(current: str, target: str, action: Action) -> JourneyStatus:
    """The new status if `action` may move a journey from `current` to `target`; 409 otherwise,
    naming both states."""
    try:
        pair = (JourneyStatus(current), JourneyStatus(target))
    except ValueError:
        raise Conflict(f"Cannot move journey from '{current}' to '{target}'")
    if TRANSITIONS.get(pair) != action:
        raise Conflict(
            f"Cannot move journey from '{current}' to '{target}'",
            details={"from": current, "to": target, "action": str(action)},
        )
    return pair[1]
