"""The values that cross the delivery boundary: a message owed to a destination and its outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Message", "Outcome", "OutcomeStatus"]

OutcomeStatus = Literal["sent", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class Message:
    """One message for one destination. `idempotency_key` is stable across retries (the receiver
    deduplicates on it); `possible_duplicate` marks a resend after a crash that may have delivered."""

    idempotency_key: str
    payload: dict[str, Any] = field(hash=False)
    possible_duplicate: bool = False
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one message: `sent`; `retry` (transient: network error, 429, 5xx), with
    `retry_after` seconds when the receiver asked for it; or `failed` (permanent for this message)."""

    idempotency_key: str
    status: OutcomeStatus
    error: str | None = None
    retry_after: float | None = None

    @classmethod
    def sent(cls, key: str) -> Outcome:
        return cls(key, "sent")

    @classmethod
    def retry(cls, key: str, error: str, retry_after: float | None = None) -> Outcome:
        return cls(key, "retry", error, retry_after)

    @classmethod
    def failed(cls, key: str, error: str) -> Outcome:
        return cls(key, "failed", error)
