"""Paywall campaign use cases: configuration CRUD, the configuration snapshot the decision table is
compiled from, experiment results and auto-promotion, and conversion attribution of events.

Every function takes the request's workspace-bound Session (queries see only that workspace) and
flushes, never commits. Every configuration change announces itself on the `paywalls` topic when
the transaction commits, which drops the workspace's compiled decision table in every process."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from overture.core import stats
from overture.core.filters import FilterError
from overture.db.notify import bus
from overture.errors import Conflict, Invalid, NotFound, TooLarge
from overture.paywalls.decisions import (
    AudienceConfig,
    ExperimentConfig,
    PaywallConfig,
    PlacementConfig,
    VariantConfig,
    parse_audience_filters,
)
from overture.paywalls.models import (
    HOLDOUT,
    STANDARD_PLACEMENTS,
    Audience,
    Campaign,
    CapCounter,
    Conversion,
    Experiment,
    Exposure,
    Paywall,
    Placement,
    Variant,
)
from overture.paywalls.schemas import (
    MAX_AUDIENCES_PER_CAMPAIGN,
    ArmFigures,
    AudienceCreate,
    AudienceRead,
    AudienceUpdate,
    CampaignCreate,
    CampaignUpdate,
    EventIn,
    ExperimentIn,
    ExperimentRead,
    ExperimentResults,
    PaywallCreate,
    PaywallUpdate,
    PlacementCreate,
    PlacementUpdate,
    VariantFigures,
    VariantRead,
)

TOPIC = "paywalls"
CONVERSION_EVENT = "transaction_complete"
MAX_CONFIG_BYTES = 64 * 1024
_IN_CHUNK = 500


def _workspace(session: Session) -> str:
    workspace_id: str = session.info["workspace_id"]
    return workspace_id


def _changed(session: Session) -> None:
    """The workspace's decision table is stale once this transaction commits."""
    bus.publish_on_commit(session, TOPIC, _workspace(session))


def _flush_or_conflict(session: Session, message: str, field: str | None = None) -> None:
    """A unique constraint the pre-check could not see (a concurrent writer) is a 409 too."""
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(message, field=field)


# -- paywalls ---------------------------------------------------------------------------------------


def _check_config_size(config: dict[str, Any]) -> None:
    if len(orjson.dumps(config)) > MAX_CONFIG_BYTES:
        raise TooLarge(f"config is larger than {MAX_CONFIG_BYTES // 1024} KiB", field="config")


def get_paywall(session: Session, paywall_id: str) -> Paywall:
    paywall = session.scalars(sa.select(Paywall).where(Paywall.id == paywall_id)).one_or_none()
    if paywall is None:
        raise NotFound("paywall not found")
    return paywall


def list_paywalls(session: Session) -> list[Paywall]:
    return list(session.scalars(sa.select(Paywall).order_by(Paywall.created_at, Paywall.id)))


def create_paywall(session: Session, body: PaywallCreate) -> Paywall:
    _check_config_size(body.config)
    if body.id is not None and _paywall_exists(session, body.id):
        raise Conflict(f"a paywall with id '{body.id}' already exists", field="id")
    paywall = Paywall(name=body.name, config=body.config)
    if body.id is not None:
        paywall.id = body.id
    session.add(paywall)
    _flush_or_conflict(session, f"a paywall with id '{body.id}' already exists", "id")
    _changed(session)
    return paywall


def update_paywall(session: Session, paywall_id: str, body: PaywallUpdate) -> Paywall:
    paywall = get_paywall(session, paywall_id)
    if body.name is not None:
        paywall.name = body.name
    if body.config is not None:
        _check_config_size(body.config)
        paywall.config = body.config
    session.flush()
    _changed(session)
    return paywall


def delete_paywall(session: Session, paywall_id: str) -> None:
    paywall = get_paywall(session, paywall_id)
    users = list(session.scalars(sa.select(Audience.id).where(Audience.paywall_id == paywall_id)))
    users += list(
        session.scalars(
            sa.select(Experiment.audience_id)
            .join(Variant, Variant.experiment_id == Experiment.id)
            .where(Variant.paywall_id == paywall_id)
        )
    )
    if users:
        raise Conflict(
            f"paywall '{paywall_id}' is in use by audience(s) {', '.join(sorted(set(users)))}",
            details={"audience_ids": sorted(set(users))},
        )
    session.delete(paywall)
    session.flush()
    _changed(session)


def _paywall_exists(session: Session, paywall_id: str) -> bool:
    return session.scalars(sa.select(Paywall.id).where(Paywall.id == paywall_id)).first() is not None


def _require_paywall(session: Session, paywall_id: str, field: str) -> None:
    if not _paywall_exists(session, paywall_id):
        raise Invalid(f"{field}: unknown paywall '{paywall_id}'", field=field)


# -- campaigns --------------------------------------------------------------------------------------


def get_campaign(session: Session, campaign_id: str) -> Campaign:
    campaign = session.scalars(sa.select(Campaign).where(Campaign.id == campaign_id)).one_or_none()
    if campaign is None:
        raise NotFound("campaign not found")
    return campaign


def list_campaigns(session: Session, status: str | None = None) -> list[Campaign]:
    query = sa.select(Campaign).order_by(Campaign.created_at, Campaign.id)
    if status is not None:
        query = query.where(Campaign.status == status)
    return list(session.scalars(query))


def create_campaign(session: Session, body: CampaignCreate) -> Campaign:
    campaign = Campaign(name=body.name, status=body.status)
    session.add(campaign)
    session.flush()
    _changed(session)
    return campaign


def update_campaign(session: Session, campaign_id: str, body: CampaignUpdate) -> Campaign:
    campaign = get_campaign(session, campaign_id)
    if body.name is not None:
        campaign.name = body.name
    if body.status is not None and body.status != campaign.status:
        placements = _placements_of(session, campaign_id)
        if body.status == "archived":
            for placement in placements:
                placement.claim = None  # an archived campaign frees its placement names
        elif campaign.status == "archived":
            for placement in placements:
                _check_claim(session, placement.name, campaign_id, field="status")
                placement.claim = placement.name
        campaign.status = body.status
    _flush_or_conflict(session, "a placement of this campaign belongs to another campaign", "status")
    _changed(session)
    return campaign


def delete_campaign(session: Session, campaign_id: str) -> None:
    campaign = get_campaign(session, campaign_id)
    audience_ids = list(session.scalars(sa.select(Audience.id).where(Audience.campaign_id == campaign_id)))
    _delete_audience_records(session, audience_ids)
    # Placements, audiences, experiments and variants go with it (ON DELETE CASCADE).
    session.execute(sa.delete(Placement).where(Placement.campaign_id == campaign_id))
    session.execute(sa.delete(Audience).where(Audience.campaign_id == campaign_id))
    session.delete(campaign)
    session.flush()
    _changed(session)


# -- placements -------------------------------------------------------------------------------------


def _placements_of(session: Session, campaign_id: str) -> list[Placement]:
    return list(
        session.scalars(
            sa.select(Placement)
            .where(Placement.campaign_id == campaign_id)
            .order_by(Placement.created_at, Placement.id)
        )
    )


def _check_claim(session: Session, name: str, campaign_id: str, field: str = "name") -> None:
    """A placement name belongs to at most one non-archived campaign of the project."""
    holder = session.scalars(
        sa.select(Placement.campaign_id).where(Placement.claim == name, Placement.campaign_id != campaign_id)
    ).first()
    if holder is not None:
        raise Conflict(f"placement '{name}' already belongs to campaign {holder}", field=field)
    same = session.scalars(
        sa.select(Placement.id).where(Placement.claim == name, Placement.campaign_id == campaign_id)
    ).first()
    if same is not None:
        raise Conflict(f"this campaign already has a placement '{name}'", field=field)


def _check_standard(name: str, type_: str) -> None:
    if type_ == "standard" and name not in STANDARD_PLACEMENTS:
        raise Invalid(
            f"name: '{name}' is not a standard placement; standard placements are "
            f"{', '.join(STANDARD_PLACEMENTS)}",
            field="name",
        )


def get_placement(session: Session, campaign_id: str, placement_id: str) -> Placement:
    placement = session.scalars(
        sa.select(Placement).where(Placement.id == placement_id, Placement.campaign_id == campaign_id)
    ).one_or_none()
    if placement is None:
        raise NotFound("placement not found")
    return placement


def list_placements(session: Session, campaign_id: str) -> list[Placement]:
    get_campaign(session, campaign_id)
    return _placements_of(session, campaign_id)


def create_placement(session: Session, campaign_id: str, body: PlacementCreate) -> Placement:
    campaign = get_campaign(session, campaign_id)
    _check_standard(body.name, body.type)
    live = campaign.status != "archived"
    if live:
        _check_claim(session, body.name, campaign_id)
    placement = Placement(
        campaign_id=campaign_id,
        name=body.name,
        type=body.type,
        status=body.status,
        claim=body.name if live else None,
    )
    session.add(placement)
    _flush_or_conflict(session, f"placement '{body.name}' already belongs to a campaign", "name")
    _changed(session)
    return placement


def update_placement(
    session: Session, campaign_id: str, placement_id: str, body: PlacementUpdate
) -> Placement:
    campaign = get_campaign(session, campaign_id)
    placement = get_placement(session, campaign_id, placement_id)
    name = body.name if body.name is not None else placement.name
    type_ = body.type if body.type is not None else placement.type
    _check_standard(name, type_)
    if name != placement.name:
        if campaign.status != "archived":
            _check_claim(session, name, campaign_id)
            placement.claim = name
        placement.name = name
    placement.type = type_
    if body.status is not None:
        placement.status = body.status
    _flush_or_conflict(session, f"placement '{name}' already belongs to a campaign", "name")
    _changed(session)
    return placement


def delete_placement(session: Session, campaign_id: str, placement_id: str) -> None:
    get_campaign(session, campaign_id)
    session.delete(get_placement(session, campaign_id, placement_id))
    session.flush()
    _changed(session)


# -- audiences and experiments ----------------------------------------------------------------------


def _validated_filters(raw: Any) -> Any:
    try:
        parse_audience_filters(raw)
    except FilterError as exc:
        raise Invalid(f"{exc.path}: {exc.message}", field=exc.path)
    return raw


def get_audience(session: Session, campaign_id: str, audience_id: str) -> Audience:
    audience = session.scalars(
        sa.select(Audience).where(Audience.id == audience_id, Audience.campaign_id == campaign_id)
    ).one_or_none()
    if audience is None:
        raise NotFound("audience not found")
    return audience


def _audiences_of(session: Session, campaign_id: str) -> list[Audience]:
    return list(
        session.scalars(
            sa.select(Audience)
            .where(Audience.campaign_id == campaign_id)
            .order_by(Audience.position, Audience.created_at, Audience.id)
        )
    )


def list_audiences(session: Session, campaign_id: str) -> list[Audience]:
    get_campaign(session, campaign_id)
    return _audiences_of(session, campaign_id)


def _check_experiment_paywalls(session: Session, experiment: ExperimentIn) -> None:
    for index, variant in enumerate(experiment.variants):
        _require_paywall(session, variant.paywall_id, f"experiment.variants[{index}].paywall_id")


def _add_variants(session: Session, experiment: Experiment, body: ExperimentIn) -> None:
    for position, variant in enumerate(body.variants):
        session.add(
            Variant(
                experiment_id=experiment.id,
                position=position,
                paywall_id=variant.paywall_id,
                traffic_percentage=variant.traffic_percentage,
            )
        )


def _create_experiment(session: Session, audience_id: str, body: ExperimentIn) -> Experiment:
    experiment = Experiment(
        audience_id=audience_id,
        confidence_threshold=body.confidence_threshold,
        auto_promote=body.auto_promote,
        state="running",
        next_look=stats.next_look(0),
    )
    session.add(experiment)
    session.flush()
    _add_variants(session, experiment, body)
    return experiment


def create_audience(session: Session, campaign_id: str, body: AudienceCreate) -> Audience:
    get_campaign(session, campaign_id)
    filters = _validated_filters(body.filters)
    if body.paywall_id is not None and body.experiment is not None:
        raise Invalid("paywall_id: give either paywall_id or an experiment, not both", field="paywall_id")
    if body.paywall_id is not None:
        _require_paywall(session, body.paywall_id, "paywall_id")
    if body.experiment is not None:
        _check_experiment_paywalls(session, body.experiment)
    count = session.scalar(
        sa.select(sa.func.count()).select_from(Audience).where(Audience.campaign_id == campaign_id)
    )
    if (count or 0) >= MAX_AUDIENCES_PER_CAMPAIGN:
        raise Invalid(f"a campaign holds at most {MAX_AUDIENCES_PER_CAMPAIGN} audiences", field="name")
    position = session.scalar(
        sa.select(sa.func.coalesce(sa.func.max(Audience.position) + 1, 0)).where(
            Audience.campaign_id == campaign_id
        )
    )
    audience = Audience(
        campaign_id=campaign_id,
        name=body.name,
        position=position or 0,
        filters=filters,
        entitlement_check=body.entitlement_check,
        frequency_cap=body.frequency_cap,
        paywall_id=body.paywall_id,
    )
    session.add(audience)
    session.flush()
    if body.experiment is not None:
        _create_experiment(session, audience.id, body.experiment)
        session.flush()
    _changed(session)
    return audience


def _experiment_of(session: Session, audience_id: str) -> Experiment | None:
    return session.scalars(sa.select(Experiment).where(Experiment.audience_id == audience_id)).one_or_none()


def _variants_of(session: Session, experiment_ids: Sequence[str]) -> dict[str, list[Variant]]:
    found: dict[str, list[Variant]] = defaultdict(list)
    for chunk in _chunks(experiment_ids):
        for variant in session.scalars(
            sa.select(Variant).where(Variant.experiment_id.in_(chunk)).order_by(Variant.position)
        ):
            found[variant.experiment_id].append(variant)
    return found


def update_audience(session: Session, campaign_id: str, audience_id: str, body: AudienceUpdate) -> Audience:
    audience = get_audience(session, campaign_id, audience_id)
    given = body.model_fields_set
    if "name" in given:
        if body.name is None:
            raise Invalid("name: cannot be null", field="name")
        audience.name = body.name
    if "filters" in given:
        if body.filters is None:
            raise Invalid("filters: cannot be null (use [] to match everyone)", field="filters")
        audience.filters = _validated_filters(body.filters)
    if "entitlement_check" in given:
        audience.entitlement_check = body.entitlement_check
    if "frequency_cap" in given:
        audience.frequency_cap = body.frequency_cap
    if "paywall_id" in given:
        if body.paywall_id is not None:
            _require_paywall(session, body.paywall_id, "paywall_id")
        audience.paywall_id = body.paywall_id
    experiment = _experiment_of(session, audience.id)
    if "experiment" in given:
        experiment = _replace_experiment(session, audience.id, experiment, body.experiment)
    if audience.paywall_id is not None and experiment is not None:
        raise Invalid("paywall_id: give either paywall_id or an experiment, not both", field="paywall_id")
    session.flush()
    _changed(session)
    return audience


def _replace_experiment(
    session: Session, audience_id: str, current: Experiment | None, body: ExperimentIn | None
) -> Experiment | None:
    """`experiment: null` removes it with its data; the same variants update its settings in place;
    other variants replace them, unless users were already exposed (that would corrupt the results:
    remove the experiment first)."""
    if body is None:
        if current is not None:
            _delete_experiment_records(session, [current.id])
            session.delete(current)
        return None
    _check_experiment_paywalls(session, body)
    if current is None:
        return _create_experiment(session, audience_id, body)
    variants = _variants_of(session, [current.id])[current.id]
    same = [(v.paywall_id, v.traffic_percentage) for v in variants] == [
        (v.paywall_id, v.traffic_percentage) for v in body.variants
    ]
    if not same:
        exposed = session.scalars(
            sa.select(Exposure.user_id).where(Exposure.experiment_id == current.id)
        ).first()
        if exposed is not None:
            raise Conflict(
                "experiment.variants: users were already exposed to this experiment; remove it "
                "(experiment: null) before changing its variants",
                field="experiment.variants",
            )
        for variant in variants:
            session.delete(variant)
        session.flush()
        _add_variants(session, current, body)
    current.confidence_threshold = body.confidence_threshold
    current.auto_promote = body.auto_promote
    return current


def delete_audience(session: Session, campaign_id: str, audience_id: str) -> None:
    audience = get_audience(session, campaign_id, audience_id)
    _delete_audience_records(session, [audience.id])
    session.delete(audience)
    session.flush()
    for position, remaining in enumerate(_audiences_of(session, campaign_id)):
        remaining.position = position
    session.flush()
    _changed(session)


def reorder_audiences(session: Session, campaign_id: str, order: list[str]) -> list[Audience]:
    get_campaign(session, campaign_id)
    audiences = _audiences_of(session, campaign_id)
    by_id = {a.id: a for a in audiences}
    duplicates = sorted({a for a in order if order.count(a) > 1})
    unknown = [a for a in order if a not in by_id]
    missing = [a for a in by_id if a not in order]
    if duplicates or unknown or missing:
        problems = []
        if duplicates:
            problems.append(f"repeats {', '.join(duplicates)}")
        if unknown:
            problems.append(f"names audiences not in this campaign: {', '.join(unknown)}")
        if missing:
            problems.append(f"leaves out {', '.join(missing)}")
        raise Invalid(
            "order must list every audience of the campaign exactly once; it " + "; ".join(problems),
            field="order",
        )
    for position, audience_id in enumerate(order):
        by_id[audience_id].position = position
    session.flush()
    _changed(session)
    return [by_id[a] for a in order]


def _delete_audience_records(session: Session, audience_ids: Sequence[str]) -> None:
    """The decision path's records have no foreign keys (see models); delete them with their owner."""
    for chunk in _chunks(audience_ids):
        session.execute(sa.delete(CapCounter).where(CapCounter.audience_id.in_(chunk)))
        experiment_ids = list(
            session.scalars(sa.select(Experiment.id).where(Experiment.audience_id.in_(chunk)))
        )
        _delete_experiment_records(session, experiment_ids)


def _delete_experiment_records(session: Session, experiment_ids: Sequence[str]) -> None:
    for chunk in _chunks(experiment_ids):
        session.execute(sa.delete(Exposure).where(Exposure.experiment_id.in_(chunk)))
        session.execute(sa.delete(Conversion).where(Conversion.experiment_id.in_(chunk)))


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def audience_views(session: Session, audiences: Sequence[Audience]) -> list[AudienceRead]:
    """Audiences with their experiments, in two queries whatever their number."""
    experiments: dict[str, Experiment] = {}
    for chunk in _chunks([a.id for a in audiences]):
        for experiment in session.scalars(sa.select(Experiment).where(Experiment.audience_id.in_(chunk))):
            experiments[experiment.audience_id] = experiment
    variants = _variants_of(session, [e.id for e in experiments.values()])
    views = []
    for audience in audiences:
        found = experiments.get(audience.id)
        views.append(
            AudienceRead(
                id=audience.id,
                campaign_id=audience.campaign_id,
                name=audience.name,
                priority=audience.position,
                filters=audience.filters,
                entitlement_check=audience.entitlement_check,
                frequency_cap=audience.frequency_cap,
                paywall_id=audience.paywall_id,
                experiment=_experiment_view(found, variants[found.id]) if found else None,
                created_at=audience.created_at,
                updated_at=audience.updated_at,
            )
        )
    return views


def _experiment_view(experiment: Experiment, variants: list[Variant]) -> ExperimentRead:
    return ExperimentRead(
        id=experiment.id,
        variants=[VariantRead.model_validate(v) for v in variants],
        holdout_percentage=max(0.0, round(100.0 - sum(v.traffic_percentage for v in variants), 9)),
        confidence_threshold=experiment.confidence_threshold,
        auto_promote=experiment.auto_promote,
        state=experiment.state,
        promoted_variant_id=experiment.promoted_variant_id,
        promoted_at=experiment.promoted_at,
    )


# -- the decision table's input ---------------------------------------------------------------------


def load_snapshot(session: Session) -> list[PlacementConfig]:
    """Everything the workspace's decisions need, in five queries: live placements (active
    campaign, active placement) with their campaign's audiences, paywalls and experiments."""
    rows = session.execute(
        sa.select(Placement.name, Placement.campaign_id)
        .join(Campaign, Campaign.id == Placement.campaign_id)
        .where(Campaign.status == "active", Placement.status == "active")
    ).all()
    campaign_ids = sorted({r.campaign_id for r in rows})
    audiences: dict[str, list[Audience]] = defaultdict(list)
    for chunk in _chunks(campaign_ids):
        for audience in session.scalars(
            sa.select(Audience)
            .where(Audience.campaign_id.in_(chunk))
            .order_by(Audience.position, Audience.created_at, Audience.id)
        ):
            audiences[audience.campaign_id].append(audience)
    paywalls = {
        p.id: PaywallConfig(p.id, p.name, dict(p.config)) for p in session.scalars(sa.select(Paywall))
    }
    audience_ids = [a.id for group in audiences.values() for a in group]
    experiments: dict[str, Experiment] = {}
    for chunk in _chunks(audience_ids):
        for experiment in session.scalars(sa.select(Experiment).where(Experiment.audience_id.in_(chunk))):
            experiments[experiment.audience_id] = experiment
    variants = _variants_of(session, [e.id for e in experiments.values()])

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
    get_campaign(session, campaign_id)
    audience = get_audience(session, campaign_id, audience_id)
    experiment = _experiment_of(session, audience.id)
    if experiment is None:
        raise NotFound("this audience has no experiment")
    variants = _variants_of(session, [experiment.id])[experiment.id]
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
        if experiment.state == "running" and experiment.auto_promote
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


def _evaluate_promotion(session: Session, experiment: Experiment, now: datetime) -> bool:
    """One auto-promotion checkpoint, if one is due (see overture.core.stats). True if promoted."""
    variants = _variants_of(session, [experiment.id])[experiment.id]
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
    if promote and leader is not None:
        analysed = stats.analyze(arms)
        values.update(
            state="promoted",
            promoted_variant_id=ids[leader],
            promoted_at=now,
            promotion={
                "variant_id": ids[leader],
                "decided_at": now.isoformat().replace("+00:00", "Z"),
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
    # Conditional on the look we read: two concurrent evaluations cannot both take it.
    updated = session.execute(
        sa.update(Experiment)
        .where(
            Experiment.id == experiment.id,
            Experiment.state == "running",
            Experiment.next_look == experiment.next_look,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount and promote:  # type: ignore[attr-defined]
        _changed(session)
        return True
    return False


# -- events -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    conversions: int
    promoted: list[str]


def attribute_conversions(session: Session, events: Sequence[EventIn], now: datetime) -> IngestResult:
    """Record each `transaction_complete` of an exposed user as a conversion of the variant they saw
    (their first exposure in that experiment at or before the event), then run any auto-promotion
    checkpoint that became due."""
    purchases = [e for e in events if e.event == CONVERSION_EVENT]
    if not purchases:
        return IngestResult(len(events), 0, [])
    users = sorted({e.user_id for e in purchases})
    exposures: dict[str, list[Exposure]] = defaultdict(list)
    for chunk in _chunks(users):
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
    for chunk in _chunks(sorted(touched)):
        for experiment in session.scalars(
            sa.select(Experiment).where(
                Experiment.id.in_(chunk), Experiment.auto_promote.is_(True), Experiment.state == "running"
            )
        ):
            if _evaluate_promotion(session, experiment, now):
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
