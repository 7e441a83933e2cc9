"""The decision table's input: a workspace's live configuration read in one transaction, as the plain
data `overture.paywalls.decisions.DecisionTable` compiles (see tables.py for when it is read)."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.orm import Session

from overture.paywalls.decisions import (
    AudienceConfig,
    ExperimentConfig,
    PaywallConfig,
    PlacementConfig,
    VariantConfig,
)
from overture.paywalls.models import Audience, Campaign, Paywall, Placement
from overture.paywalls.queries import chunks, experiments_of, variants_of
from overture.paywalls.states import CampaignStatus, PlacementStatus


def load_snapshot(session: Session) -> list[PlacementConfig]:
    """Everything the workspace's decisions need, in five queries: live placements (active
    campaign, active placement) with their campaign's audiences, paywalls and experiments."""
    rows = session.execute(
        sa.select(Placement.name, Placement.campaign_id)
        .join(Campaign, Campaign.id == Placement.campaign_id)
        .where(
            Campaign.status == CampaignStatus.ACTIVE.value,
            Placement.status == PlacementStatus.ACTIVE.value,
        )
    ).all()
    campaign_ids = sorted({r.campaign_id for r in rows})
    audiences: dict[str, list[Audience]] = defaultdict(list)
    for chunk in chunks(campaign_ids):
        for audience in session.scalars(
            sa.select(Audience)
            .where(Audience.campaign_id.in_(chunk))
            .order_by(Audience.position, Audience.created_at, Audience.id)
        ):
            audiences[audience.campaign_id].append(audience)
    paywalls = {
        p.id: PaywallConfig(p.id, p.name, dict(p.config)) for p in session.scalars(sa.select(Paywall))
    }
    experiments = experiments_of(session, [a.id for group in audiences.values() for a in group])
    variants = variants_of(session, [e.id for e in experiments.values()])

    def experiment_config(audience_id: str) -> ExperimentConfig | None:
        experiment = experiments.get(audience_id)
        if experiment is None:
            return None
        return ExperimentConfig(
            id=experiment.id,
            state=experiment.state,
            promoted_variant_id=experiment.promoted_variant_id,
            variants=tuple(
                VariantConfig(v.id, paywalls[v.paywall_id], v.traffic_percentage)
                for v in variants[experiment.id]
            ),
        )

    return [
        PlacementConfig(
            name=row.name,
            campaign_id=row.campaign_id,
            audiences=tuple(
                AudienceConfig(
                    id=a.id,
                    filters=a.filters,
                    entitlement_check=a.entitlement_check,
                    frequency_cap=a.frequency_cap,
                    paywall=paywalls[a.paywall_id] if a.paywall_id else None,
                    experiment=experiment_config(a.id),
                )
                for a in audiences[row.campaign_id]
            ),
        )
        for row in rows
    ]
