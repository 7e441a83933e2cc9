"""The paywall statuses that change, as machines (see overture.machine).

- A campaign's status is the operator's choice: any status may follow any other (archiving frees
  the campaign's placement names, leaving the archive claims them again: see the service).
- A placement is paused and resumed.
- An experiment runs until auto-promotion promotes a variant; promotion is final (removing the
  experiment is how to start over)."""

from __future__ import annotations

from enum import StrEnum
from itertools import permutations

from overture.machine import Machine


class CampaignStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    ARCHIVED = "archived"


class PlacementStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class ExperimentState(StrEnum):
    RUNNING = "running"
    PROMOTED = "promoted"


CAMPAIGN = Machine("campaign", CampaignStatus, permutations(CampaignStatus, 2))
PLACEMENT = Machine(
    "placement",
    PlacementStatus,
    {(PlacementStatus.ACTIVE, PlacementStatus.PAUSED), (PlacementStatus.PAUSED, PlacementStatus.ACTIVE)},
)
EXPERIMENT = Machine(
    "experiment",
    ExperimentState,
    {(ExperimentState.RUNNING, ExperimentState.PROMOTED)},
    terminal={ExperimentState.PROMOTED},
)
