"""Paywall experiments after they start: their results, auto-promotion, and the events that feed them
(`transaction_complete` events of exposed users count as conversions of the variant they saw).

Every function takes the request's workspace-bound Session and flushes, never commits."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from overture.core import stats
from overture.core.encode import isoformat_z
from overture.data.events import EventIn as StreamEvent
from overture.data.events import event_ids, first_seen, record_events
from overture.db.dialects import rowcount
from overture.db.session import Session
from overture.errors import Invalid, NotFound
from overture.paywalls.models import HOLDOUT, Conversion, Experiment, Exposure
from overture.paywalls.queries import chunks, experiments_of, variants_of
from overture.paywalls.schemas import ArmFigures, EventIn, ExperimentResults, VariantFigures
from overture.paywalls.service import get_audience
from overture.paywalls.states import EXPERIMENT, ExperimentState
from overture.paywalls.tables import changed

CONVERSION_EVENT = "transaction_complete"

# -- experiment results and auto-promotion ----------------------------------------------------------


@dataclass
class _Counts:
    exposures: dict[str, int]
    conversions: dict[str, int]
    revenue: dict[str, float]

    def arm(self, variant_id: str) -> stats.Arm:
        return stats.Arm(
            self.exposures.get(variant_id, 0),
            self.conversions.get(variant_id, 0),
            self.revenue.get(variant_id, 0.0),
        )


def _counts(session: Session, experiment_id: str) -> _Counts:
    exposures = dict(
        session.execute(
            sa.select(Exposure.variant_id, sa.func.count())
            .where(Exposure.experiment_id == experiment_id)
            .group_by(Exposure.variant_id)
        ).all()
    )
    conversions: dict[str, int] = {}
    revenue: dict[str, float] = {}
    for variant_id, users, total in session.execute(
        sa.select(
            Conversion.variant_id,
            sa.func.count(sa.distinct(Conversion.user_id)),
            sa.func.sum(Conversion.revenue),
        )
        .where(Conversion.experiment_id == experiment_id)
        .group_by(Conversion.variant_id)
    ):
        conversions[variant_id] = users
        revenue[variant_id] = float(total or 0.0)
    return _Counts(exposures, conversions, revenue)


def _figures(arm: stats.Arm, result: stats.ArmResult) -> dict[str, Any]:
    return {
        "users_exposed": arm.exposures,
        "conversions": arm.conversions,
        "conversion_rate": result.conversion_rate,
        "revenue": arm.revenue,
        "revenue_per_user": result.revenue_per_user,
        "conversion_rate_interval": result.rate_interval,
    }


def experiment_results(session: Session, campaign_id: str, audience_id: str) -> ExperimentResults:
    audience = get_audience(session, campaign_id, audience_id)
    experiment = experiments_of(session, [audience.id]).get(audience.id)
    if experiment is None:
        raise NotFound("this audience has no experiment")
    variants = variants_of(session, [experiment.id])[experiment.id]
    counts = _counts(session, experiment.id)
    arms = [counts.arm(v.id) for v in variants]
    analysed = stats.analyze(arms)
    holdout_pct = 100.0 - sum(v.traffic_percentage for v in variants)
    holdout_arm = counts.arm(HOLDOUT)
    holdout = None
    if holdout_pct > 1e-9 or holdout_arm.exposures:
        holdout = ArmFigures(**_figures(holdout_arm, stats.analyze([holdout_arm])[0]))
    return ExperimentResults(
        experiment_id=experiment.id,
        campaign_id=campaign_id,
        audience_id=audience.id,
        state=experiment.state,
        confidence_threshold=experiment.confidence_threshold,
        auto_promote=experiment.auto_promote,
        conversion_event=CONVERSION_EVENT,
        min_exposures_per_arm=stats.MIN_EXPOSURES_PER_ARM,
        min_conversions_per_arm=stats.MIN_CONVERSIONS_PER_ARM,
        next_look_at_exposures=experiment.next_look
        if experiment.state == ExperimentState.RUNNING and experiment.auto_promote
        else None,
        variants=[
            VariantFigures(
                variant_id=v.id,
                paywall_id=v.paywall_id,
                traffic_percentage=v.traffic_percentage,
                control=index == 0,
                chance_to_beat_control=result.chance_to_beat_control,
                uplift_interval=result.uplift_interval,
                **_figures(arm, result),
            )
            for index, (v, arm, result) in enumerate(zip(variants, arms, analysed, strict=True))
        ],
        holdout=holdout,
        promoted_variant_id=experiment.promoted_variant_id,
        promoted_at=experiment.promoted_at,
        promotion=experiment.promotion,
    )


def _evaluate_promotion(session: Session, experiment: Experiment) -> bool:
    """One auto-promotion checkpoint, if one is due (see overture.core.stats). True if promoted."""
    variants = variants_of(session, [experiment.id])[experiment.id]
    counts = _counts(session, experiment.id)
    arms = [counts.arm(v.id) for v in variants]
    smallest = min((a.exposures for a in arms), default=0)
    if smallest < experiment.next_look or not stats.has_minimum_sample(arms):
        return False
    ids = [v.id for v in variants]
    previous = ids.index(experiment.leader_variant_id) if experiment.leader_variant_id in ids else None
    leader, promote = stats.look_verdict(arms, experiment.confidence_threshold, previous)
    values: dict[str, Any] = {
        "next_look": stats.next_look(smallest),
        "leader_variant_id": ids[leader] if leader is not None else None,
    }
    promote = promote and leader is not None
    if promote and leader is not None:
        now = session.now()
        analysed = stats.analyze(arms)
        values.update(
            state=EXPERIMENT.transition(experiment.state, ExperimentState.PROMOTED).value,
            promoted_variant_id=ids[leader],
            promoted_at=now,
            promotion={
                "variant_id": ids[leader],
                "decided_at": isoformat_z(now),
                "confidence_threshold": experiment.confidence_threshold,
                "look_at_exposures": experiment.next_look,
                "variants": [
                    {
                        "variant_id": v.id,
                        "paywall_id": v.paywall_id,
                        "users_exposed": arm.exposures,
                        "conversions": arm.conversions,
                        "conversion_rate": result.conversion_rate,
                        "revenue_per_user": result.revenue_per_user,
                        "chance_to_beat_control": result.chance_to_beat_control,
                    }
                    for v, arm, result in zip(variants, arms, analysed, strict=True)
                ],
            },
        )
    # Conditional on the state and the look we read: two concurrent evaluations cannot both take it.
    updated = session.execute(
        sa.update(Experiment)
        .where(
            Experiment.id == experiment.id,
            Experiment.state == experiment.state,
            Experiment.next_look == experiment.next_look,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if rowcount(updated) and promote:
        changed(session)
        return True
    return False


# -- events -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    conversions: int
    promoted: list[str]
    duplicates: int = 0


def ingest_events(session: Session, events: Sequence[EventIn], batch_id: str | None = None) -> IngestResult:
    """Store a batch of events in the event stream (a missing timestamp is now) and attribute its
    purchases to experiment variants, all or nothing. An event whose `event_id` (or
    `<batch_id>:<index>`) was seen before is neither stored nor counted again (`duplicates`)."""
    check_events(events)
    now = session.now()
    keep = first_seen(session, event_ids([e.event_id for e in events], batch_id))
    fresh = [
        e if e.timestamp else e.model_copy(update={"timestamp": now})
        for e, new in zip(events, keep, strict=True)
        if new
    ]
    result = attribute_conversions(session, fresh)
    # Written after the conversions are flushed and before they commit: if the event stream refuses
    # the batch, nothing of it is kept anywhere.
    record_events(
        session.ctx,
        session.workspace_id,
        [
            StreamEvent(
                entity_id=e.user_id, event=e.event, timestamp=e.timestamp, properties=e.properties or {}
            )
            for e in fresh
        ],
    )
    return IngestResult(result.accepted, result.conversions, result.promoted, len(events) - len(fresh))


def attribute_conversions(session: Session, events: Sequence[EventIn]) -> IngestResult:
    """Record each `transaction_complete` of an exposed user as a conversion of the variant they saw
    (their first exposure in that experiment at or before the event), then run any auto-promotion
    checkpoint that became due."""
    purchases = [e for e in events if e.event == CONVERSION_EVENT]
    if not purchases:
        return IngestResult(len(events), 0, [])
    now = session.now()
    users = sorted({e.user_id for e in purchases})
    exposures: dict[str, list[Exposure]] = defaultdict(list)
    for chunk in chunks(users):
        for exposure in session.scalars(
            sa.select(Exposure).where(Exposure.user_id.in_(chunk)).order_by(Exposure.exposed_at)
        ):
            exposures[exposure.user_id].append(exposure)
    touched: set[str] = set()
    rows = 0
    for event in purchases:
        at = event.timestamp or now
        first_seen: dict[str, Exposure] = {}
        for exposure in exposures.get(event.user_id, ()):
            if exposure.exposed_at <= at and exposure.experiment_id not in first_seen:
                first_seen[exposure.experiment_id] = exposure
        for exposure in first_seen.values():
            session.add(
                Conversion(
                    experiment_id=exposure.experiment_id,
                    variant_id=exposure.variant_id,
                    user_id=event.user_id,
                    revenue=revenue_of(event),
                    occurred_at=at,
                )
            )
            touched.add(exposure.experiment_id)
            rows += 1
    session.flush()
    promoted = []
    promotable = [s.value for s in EXPERIMENT.sources(ExperimentState.PROMOTED)]
    for chunk in chunks(sorted(touched)):
        for experiment in session.scalars(
            sa.select(Experiment).where(
                Experiment.id.in_(chunk),
                Experiment.auto_promote.is_(True),
                Experiment.state.in_(promotable),
            )
        ):
            if _evaluate_promotion(session, experiment):
                promoted.append(experiment.id)
    return IngestResult(len(events), rows, promoted)


def revenue_of(event: EventIn) -> float:
    value = (event.properties or {}).get("revenue", 0.0)
    return float(value)


def check_events(events: Sequence[EventIn]) -> None:
    """`transaction_complete` carries `properties.revenue`, a finite number."""
    for index, event in enumerate(events):
        if event.event != CONVERSION_EVENT:
            continue
        value = (event.properties or {}).get("revenue")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value != value
            or abs(value) == float("inf")
        ):
            raise Invalid(
                f"events[{index}].properties.revenue: a transaction_complete event needs a numeric revenue",
                field=f"events[{index}].properties.revenue",
            )


# -- history (the dashboard's chart of the chance to beat control over time) -------------------------


@dataclass(frozen=True)
class HistoryPoint:
    at: datetime
    #: Per non-control variant id: its chance to beat the control with the data known at `at`.
    chance_to_beat_control: dict[str, float]
    exposures: dict[str, int]


def experiment_history(
    session: Session, campaign_id: str, audience_id: str, points: int = 12
) -> list[HistoryPoint]:
    """The chance to beat control at `points` evenly spaced instants from the first exposure to now,
    from two grouped queries (one column per instant), so the cost does not grow with the traffic."""
    audience = get_audience(session, campaign_id, audience_id)
    experiment = experiments_of(session, [audience.id]).get(audience.id)
    if experiment is None:
        raise NotFound("this audience has no experiment")
    variants = variants_of(session, [experiment.id])[experiment.id]
    first = session.scalar(
        sa.select(sa.func.min(Exposure.exposed_at)).where(Exposure.experiment_id == experiment.id)
    )
    if first is None or len(variants) < 2:
        return []
    first = first if first.tzinfo else first.replace(tzinfo=UTC)
    now = session.now()
    span = max(now - first, timedelta(0))
    steps = max(1, min(points, 60)) if span > timedelta(0) else 1
    cutoffs = [first + span * (i + 1) / steps for i in range(steps)]
    exposed = session.execute(
        sa.select(
            Exposure.variant_id,
            *(sa.func.sum(sa.case((Exposure.exposed_at <= t, 1), else_=0)) for t in cutoffs),
        )
        .where(Exposure.experiment_id == experiment.id)
        .group_by(Exposure.variant_id)
    ).all()
    converted = session.execute(
        sa.select(
            Conversion.variant_id,
            *(
                sa.func.count(sa.distinct(sa.case((Conversion.occurred_at <= t, Conversion.user_id))))
                for t in cutoffs
            ),
        )
        .where(Conversion.experiment_id == experiment.id)
        .group_by(Conversion.variant_id)
    ).all()
    exposures = {row[0]: [int(v or 0) for v in row[1:]] for row in exposed}
    conversions = {row[0]: [int(v or 0) for v in row[1:]] for row in converted}
    zeros = [0] * steps
    history = []
    for i, at in enumerate(cutoffs):
        arms = {
            v.id: stats.Arm(exposures.get(v.id, zeros)[i], conversions.get(v.id, zeros)[i], 0.0)
            for v in variants
        }
        control = arms[variants[0].id]
        history.append(
            HistoryPoint(
                at=at,
                chance_to_beat_control={
                    v.id: stats.chance_to_beat(control, arms[v.id]) for v in variants[1:]
                },
                exposures={v.id: arms[v.id].exposures for v in variants},
            )
        )
    return history
