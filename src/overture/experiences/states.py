"""The experience lifecycle (seed 000): draft -> published -> unpublished -> published ..."""

from __future__ import annotations

from enum import StrEnum

from overture.machine import Machine

__all__ = ["LIFECYCLE", "ExperienceStatus", "GroupClass"]


class ExperienceStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    UNPUBLISHED = "unpublished"


class GroupClass(StrEnum):
    CAMPAIGN = "campaign"
    STAGE = "stage"


_D, _P, _U = ExperienceStatus.DRAFT, ExperienceStatus.PUBLISHED, ExperienceStatus.UNPUBLISHED
LIFECYCLE = Machine("experience", ExperienceStatus, {(_D, _P), (_P, _U), (_U, _P)})
