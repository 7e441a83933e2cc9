"""Journey, run and member statuses, each a `Machine`: a table of allowed moves (data, not ifs).

Nothing assigns one of these statuses by hand: the journey and run objects move through
`JOURNEY.transition` / `RUN.move`, and the set-based member statements select the rows a move may
leave from with `MEMBER.sources`."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from overture.machine import Machine

__all__ = [
    "ACTION_TARGETS",
    "DELETABLE",
    "JOURNEY",
    "MEMBER",
    "RUN",
    "RUNNABLE",
    "UNFINISHED_RUN",
    "Action",
    "JourneyStatus",
    "MemberStatus",
    "RunStatus",
    "RunTrigger",
    "target_of",
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


class RunTrigger(StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"


class MemberStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    EXITED = "exited"


S = JourneyStatus
#: Every allowed move and the one action that makes it. Any pair not listed is refused with a 409.
JOURNEY: Machine[JourneyStatus] = Machine(
    "journey",
    JourneyStatus,
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
    },
    terminal={S.ARCHIVED},
)

#: Where each endpoint action leads.
ACTION_TARGETS: Mapping[Action, JourneyStatus] = MappingProxyType(
    {Action.ACTIVATE: S.ACTIVE, Action.PAUSE: S.PAUSED, Action.RESUME: S.ACTIVE, Action.DRAIN: S.DRAINING}
)

#: Statuses in which runs may execute (draining runs move members on but admit nobody new).
RUNNABLE = frozenset({S.ACTIVE, S.DRAINING})
#: Statuses a journey may be deleted in: it must not be moving members.
DELETABLE = frozenset({S.DRAFT, S.PAUSED, S.ARCHIVED, S.ERROR})

R = RunStatus
#: A run is created pending; a worker starts it; it ends completed, failed (an error, or its worker
#: lost) or cancelled (by request, or because its journey stopped running) — from pending too.
RUN: Machine[RunStatus] = Machine(
    "run",
    RunStatus,
    {
        (R.PENDING, R.RUNNING),
        (R.RUNNING, R.COMPLETED),
        (R.PENDING, R.FAILED),
        (R.RUNNING, R.FAILED),
        (R.PENDING, R.CANCELLED),
        (R.RUNNING, R.CANCELLED),
    },
    terminal={R.COMPLETED, R.FAILED, R.CANCELLED},
)
#: A run that still blocks its journey (at most one per journey: a partial unique index).
UNFINISHED_RUN = frozenset(set(RunStatus) - RUN.terminal)

M = MemberStatus
#: A membership ends once, completed (exit tile, end of a path) or exited (removed); re-entering
#: creates a new membership, it never reopens one.
MEMBER: Machine[MemberStatus] = Machine(
    "member",
    MemberStatus,
    {(M.ACTIVE, M.COMPLETED), (M.ACTIVE, M.EXITED)},
    terminal={M.COMPLETED, M.EXITED},
)


def target_of(action: Action) -> JourneyStatus:
    return ACTION_TARGETS[action]
