"""The broadcast surface's status machines: template status, authoring status, proof status,
audience reach and execution status. Every move not listed is a 409 naming both states."""

from __future__ import annotations

from enum import StrEnum

from overture.machine import Machine


class TemplateStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"


TEMPLATE = Machine(
    "template",
    TemplateStatus,
    {(TemplateStatus.DRAFT, TemplateStatus.PUBLISHED), (TemplateStatus.PUBLISHED, TemplateStatus.DRAFT)},
)


class AuthoringStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"


AUTHORING = Machine(
    "broadcast",
    AuthoringStatus,
    {
        (AuthoringStatus.DRAFT, AuthoringStatus.PUBLISHED),  # publish, send-now
        (AuthoringStatus.PUBLISHED, AuthoringStatus.DRAFT),  # unschedule
        (AuthoringStatus.DRAFT, AuthoringStatus.ARCHIVED),
        (AuthoringStatus.PUBLISHED, AuthoringStatus.ARCHIVED),
    },
    terminal={AuthoringStatus.ARCHIVED},
)


class ProofStatus(StrEnum):
    """`unavailable` is what a template with no proof shows; a proof row is sent or failed."""

    UNAVAILABLE = "unavailable"
    SENT = "sent"
    FAILED = "failed"
    APPROVED = "approved"


PROOF = Machine(
    "proof",
    ProofStatus,
    {
        (ProofStatus.UNAVAILABLE, ProofStatus.SENT),
        (ProofStatus.UNAVAILABLE, ProofStatus.FAILED),
        (ProofStatus.SENT, ProofStatus.APPROVED),
    },
    terminal={ProofStatus.FAILED, ProofStatus.APPROVED},
)


class ReachStatus(StrEnum):
    IDLE = "idle"
    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"


REACH = Machine(
    "audience reach",
    ReachStatus,
    {
        (ReachStatus.IDLE, ReachStatus.PENDING),
        (ReachStatus.OK, ReachStatus.PENDING),
        (ReachStatus.FAILED, ReachStatus.PENDING),
        (ReachStatus.PENDING, ReachStatus.OK),
        (ReachStatus.PENDING, ReachStatus.FAILED),
        # Binding another audience forgets the last evaluation.
        (ReachStatus.OK, ReachStatus.IDLE),
        (ReachStatus.FAILED, ReachStatus.IDLE),
        (ReachStatus.PENDING, ReachStatus.IDLE),
    },
)


class ExecutionStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


EXECUTION = Machine(
    "execution",
    ExecutionStatus,
    {
        (ExecutionStatus.RUNNING, ExecutionStatus.COMPLETED),
        (ExecutionStatus.RUNNING, ExecutionStatus.FAILED),
        (ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED),
        # retry-failed re-sends the failed recipients of a finished execution.
        (ExecutionStatus.COMPLETED, ExecutionStatus.RUNNING),
        (ExecutionStatus.FAILED, ExecutionStatus.RUNNING),
    },
    terminal={ExecutionStatus.CANCELLED},
)
