"""Segment reach as a status machine (seed 002): idle -> pending -> ok | failed, and back to pending
for the next evaluation. Any other move is a 409 naming both states."""

from __future__ import annotations

from enum import StrEnum

from overture.machine import Machine

__all__ = ["REACH", "ReachStatus"]


class ReachStatus(StrEnum):
    IDLE = "idle"  # never evaluated
    PENDING = "pending"  # an evaluation is counting
    OK = "ok"  # the count is current as of evaluated_at
    FAILED = "failed"  # the last evaluation failed; the count is the prior successful one


_R = ReachStatus
REACH: Machine[ReachStatus] = Machine(
    "reach",
    ReachStatus,
    {
        (_R.IDLE, _R.PENDING),
        (_R.OK, _R.PENDING),
        (_R.FAILED, _R.PENDING),
        (_R.PENDING, _R.OK),
        (_R.PENDING, _R.FAILED),  # the count failed, or its process died (lease expired)
    },
)
