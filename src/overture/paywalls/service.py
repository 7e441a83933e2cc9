"""Paywall campaign configuration: paywalls, campaigns, placements, audiences and the experiment an
audience runs (its settings and variants; results and promotion are in service_experiments).

Every function takes the request's workspace-bound Session (queries see only that workspace) and
flushes, never commits. Every configuration change announces itself on the `paywalls` topic when
the transaction commits, which drops the workspace's compiled decision table in every process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from overture.core import stats
from overture.core.filters import FilterError
from overture.db.lookup import get_or_404
from overture.db.session import Session
from overture.errors import Conflict, Invalid, NotFound, TooLarge, invalid_filter
from overture.paywalls.decisions import parse_audience_filters
from overture.paywalls.models import (
    STANDARD_PLACEMENTS,
    Audience,
    Campaign,
    Experiment,
    Exposure,
    Paywall,
    Placement,
    Variant,
)
from overture.paywalls.queries import (
    delete_audience_records,
    delete_experiment_records,
    experiments_of,
    variants_of,
)
from overture.paywalls.schemas import (
    MAX_AUDIENCES_PER_CAMPAIGN,
    AudienceCreate,
    AudienceRead,
    AudienceUpdate,
    CampaignCreate,
    CampaignDetail,
    CampaignRead,
    CampaignUpdate,
    ExperimentIn,
    ExperimentRead,
    PaywallCreate,
    PaywallUpdate,
    PlacementCreate,
    PlacementRead,
    PlacementUpdate,
    VariantRead,
)
from overture.paywalls.states import CAMPAIGN, PLACEMENT, CampaignStatus, ExperimentState
from overture.paywalls.tables import changed

MAX_CONFIG_BYTES = 64 * 1024


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
    # Not get_or_404: a paywall's key is (workspace_id, id), so ids are the client's per workspace.
    paywall = session.get(Paywall, {"workspace_id": session.workspace_id, "id": paywall_id})
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
    changed(session)
    return paywall


def update_paywall(session: Session, paywall_id: str, body: PaywallUpdate) -> Paywall:
    paywall = get_paywall(session, paywall_id)
    if body.name is not None:
        paywall.name = body.name
    if body.config is not None:
        _check_config_size(body.config)
        paywall.config = body.config
    session.flush()
    changed(session)
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
    changed(session)


def _paywall_exists(session: Session, paywall_id: str) -> bool:
    return session.scalars(sa.select(Paywall.id).where(Paywall.id == paywall_id)).first() is not None


def _require_paywall(session: Session, paywall_id: str, field: str) -> None:
    if not _paywall_exists(session, paywall_id):
        raise Invalid(f"{field}: unknown paywall '{paywall_id}'", field=field)


# -- campaigns --------------------------------------------------------------------------------------


def get_campaign(session: Session, campaign_id: str) -> Campaign:
    return get_or_404(session, Campaign, campaign_id, what="campaign")


def list_campaigns(session: Session, status: str | None = None) -> list[Campaign]:
    query = sa.select(Campaign).order_by(Campaign.created_at, Campaign.id)
    if status is not None:
        query = query.where(Campaign.status == status)
    return list(session.scalars(query))


def create_campaign(session: Session, body: CampaignCreate) -> Campaign:
    campaign = Campaign(name=body.name, status=body.status)
    session.add(campaign)
    session.flush()
    changed(session)
    return campaign


def update_campaign(session: Session, campaign_id: str, body: CampaignUpdate) -> Campaign:
    campaign = get_campaign(session, campaign_id)
    if body.name is not None:
        campaign.name = body.name
    if body.status is not None and body.status != campaign.status:
        leaving = campaign.status
        placements = _placements_of(session, campaign_id)
        if CAMPAIGN.move(campaign, body.status) is CampaignStatus.ARCHIVED:
            for placement in placements:
                placement.claim = None  # an archived campaign frees its placement names
        elif leaving == CampaignStatus.ARCHIVED:
            for placement in placements:
                _check_claim(session, placement.name, campaign_id, field="status")
                placement.claim = placement.name
    _flush_or_conflict(session, "a placement of this campaign belongs to another campaign", "status")
    changed(session)
    return campaign


def delete_campaign(session: Session, campaign_id: str) -> None:
    campaign = get_campaign(session, campaign_id)
    audience_ids = list(session.scalars(sa.select(Audience.id).where(Audience.campaign_id == campaign_id)))
    delete_audience_records(session, audience_ids)
    # Placements, audiences, experiments and variants go with it (ON DELETE CASCADE).
    session.execute(sa.delete(Placement).where(Placement.campaign_id == campaign_id))
    session.execute(sa.delete(Audience).where(Audience.campaign_id == campaign_id))
    session.delete(campaign)
    session.flush()
    changed(session)


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
    """404 naming the campaign when it does not exist, else the placement when it is not its."""
    get_campaign(session, campaign_id)
    return _placement(session, campaign_id, placement_id)


def _placement(session: Session, campaign_id: str, placement_id: str) -> Placement:
    return get_or_404(session, Placement, placement_id, what="placement", campaign_id=campaign_id)


def list_placements(session: Session, campaign_id: str) -> list[Placement]:
    get_campaign(session, campaign_id)
    return _placements_of(session, campaign_id)


def create_placement(session: Session, campaign_id: str, body: PlacementCreate) -> Placement:
    campaign = get_campaign(session, campaign_id)
    _check_standard(body.name, body.type)
    live = campaign.status != CampaignStatus.ARCHIVED
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
    changed(session)
    return placement


def update_placement(
    session: Session, campaign_id: str, placement_id: str, body: PlacementUpdate
) -> Placement:
    campaign = get_campaign(session, campaign_id)
    placement = _placement(session, campaign_id, placement_id)
    name = body.name if body.name is not None else placement.name
    type_ = body.type if body.type is not None else placement.type
    _check_standard(name, type_)
    if name != placement.name:
        if campaign.status != CampaignStatus.ARCHIVED:
            _check_claim(session, name, campaign_id)
            placement.claim = name
        placement.name = name
    placement.type = type_
    if body.status is not None and body.status != placement.status:
        PLACEMENT.move(placement, body.status)
    _flush_or_conflict(session, f"placement '{name}' already belongs to a campaign", "name")
    changed(session)
    return placement


def delete_placement(session: Session, campaign_id: str, placement_id: str) -> None:
    session.delete(get_placement(session, campaign_id, placement_id))
    session.flush()
    changed(session)


# -- audiences and experiments ----------------------------------------------------------------------


def _validated_filters(raw: Any) -> Any:
    try:
        parse_audience_filters(raw)
    except FilterError as exc:
        raise invalid_filter(exc)
    return raw


def get_audience(session: Session, campaign_id: str, audience_id: str) -> Audience:
    """404 naming the campaign when it does not exist, else the audience when it is not its."""
    get_campaign(session, campaign_id)
    return get_or_404(session, Audience, audience_id, what="audience", campaign_id=campaign_id)


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
        state=ExperimentState.RUNNING.value,
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
    changed(session)
    return audience


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
    experiment = experiments_of(session, [audience.id]).get(audience.id)
    if "experiment" in given:
        experiment = _replace_experiment(session, audience.id, experiment, body.experiment)
    if audience.paywall_id is not None and experiment is not None:
        raise Invalid("paywall_id: give either paywall_id or an experiment, not both", field="paywall_id")
    session.flush()
    changed(session)
    return audience


def _replace_experiment(
    session: Session, audience_id: str, current: Experiment | None, body: ExperimentIn | None
) -> Experiment | None:
    """`experiment: null` removes it with its data; the same variants update its settings in place;
    other variants replace them, unless users were already exposed (that would corrupt the results:
    remove the experiment first)."""
    if body is None:
        if current is not None:
            delete_experiment_records(session, [current.id])
            session.delete(current)
        return None
    _check_experiment_paywalls(session, body)
    if current is None:
        return _create_experiment(session, audience_id, body)
    variants = variants_of(session, [current.id])[current.id]
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
    delete_audience_records(session, [audience.id])
    session.delete(audience)
    session.flush()
    for position, remaining in enumerate(_audiences_of(session, campaign_id)):
        remaining.position = position
    session.flush()
    changed(session)


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
    changed(session)
    return [by_id[a] for a in order]


def audience_views(session: Session, audiences: Sequence[Audience]) -> list[AudienceRead]:
    """Audiences with their experiments, in two queries whatever their number."""
    experiments = experiments_of(session, [a.id for a in audiences])
    variants = variants_of(session, [e.id for e in experiments.values()])
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


def campaign_detail(session: Session, campaign_id: str) -> CampaignDetail:
    """The campaign with its placements and its audiences in priority order."""
    campaign = get_campaign(session, campaign_id)
    return CampaignDetail.model_validate(
        {
            **CampaignRead.model_validate(campaign).model_dump(),
            "placements": [PlacementRead.model_validate(p) for p in _placements_of(session, campaign_id)],
            "audiences": audience_views(session, _audiences_of(session, campaign_id)),
        }
    )


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
