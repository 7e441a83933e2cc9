"""The runtime's status machines: jobs and outbox messages, as tables of allowed moves.

Jobs and ledger rows change status in set-based, fenced UPDATEs (never one ORM object at a time), so
the code does not call `move()` on them: each UPDATE takes its target from `JOB.transition(from, to)`
or its `WHERE status IN` from `sources(to)`, computed once at import. A move missing from a table
fails when the module loads, not in production.

Jobs::

    queued ──claim──> running ──ok──> succeeded
      ^   \\             │ ├─error, attempts left / interrupted / released──> queued
      │    cancel       │ ├─error, none left / Permanent / lease lost on the last attempt──> dead
      │      v          │ └─cancel requested──> cancelled
      │   cancelled     └─lease expired──> running (claimed again by another worker: attempt + 1)

Outbox messages::

    pending ──claim──> sending ──sent──> sent                      (terminal)
       ^                  │ ├──failed (4xx, bad config, out of attempts, too many crashes)──> failed
       │                  │ ├──retry (429, 5xx, network) / released unsent──> pending
       │                  │ └──claim lease expired (dispatcher died) / released unsent──> unknown
       └──────────── unknown ──claim (resent with possible_duplicate = true)──> sending
"""

from __future__ import annotations

from enum import StrEnum, nonmember

from overture.machine import Machine

__all__ = ["JOB", "OUTBOX", "JobStatus", "OutboxStatus"]


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"
    #: The terminal states (equal to `JOB.terminal`), for reads such as `status IN FINISHED`.
    FINISHED = nonmember(frozenset({"succeeded", "dead", "cancelled"}))


_J = JobStatus
JOB: Machine[JobStatus] = Machine(
    "job",
    JobStatus,
    {
        (_J.QUEUED, _J.RUNNING),  # claimed
        (_J.QUEUED, _J.CANCELLED),  # cancelled before it ran
        (_J.RUNNING, _J.SUCCEEDED),
        (_J.RUNNING, _J.QUEUED),  # retry with backoff; worker shutting down; claimed but never started
        (_J.RUNNING, _J.DEAD),
        (_J.RUNNING, _J.CANCELLED),  # the handler saw cancel_requested
        (_J.RUNNING, _J.RUNNING),  # lease expired: another worker claims it again (attempt + 1)
    },
    terminal={_J.SUCCEEDED, _J.DEAD, _J.CANCELLED},
)


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    #: The terminal states (equal to `OUTBOX.terminal`).
    TERMINAL = nonmember(frozenset({"sent", "failed"}))


_O = OutboxStatus
OUTBOX: Machine[OutboxStatus] = Machine(
    "outbox message",
    OutboxStatus,
    {
        (_O.PENDING, _O.SENDING),  # claimed
        (_O.UNKNOWN, _O.SENDING),  # a crash survivor claimed again (possible_duplicate)
        (_O.SENDING, _O.SENT),
        (_O.SENDING, _O.FAILED),
        (_O.SENDING, _O.PENDING),  # retry later, or given back unsent (destination paused)
        (_O.SENDING, _O.UNKNOWN),  # the claim expired (dispatcher died), or a survivor given back unsent
    },
    terminal={_O.SENT, _O.FAILED},
)
