"""Offers, batch channels and decision flows: CRUD and the checks that need the database.

Every use case takes the request's (or job's) workspace-bound Session first; nothing commits here.
Campaigns and runs are in `service_campaigns`; the run itself in `engine` and `runner`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from overture.batch.models import BatchCampaign, BatchChannel, DecisionFlow, Offer
from overture.batch.schemas import (
    BATCH_MODES,
    ChannelCreate,
    ChannelRead,
    ChannelUpdate,
    FlowCreate,
    FlowRead,
    FlowUpdate,
    OfferCreate,
    OfferRead,
    OfferUpdate,
)
from overture.core.filters import FilterError, parse
from overture.data import service as data
from overture.data.models import EntityModel
from overture.db.lookup import get_or_404
from overture.db.session import Session
from overture.delivery.service import get_destination
from overture.errors import Conflict, Invalid, NotFound, invalid_filter

__all__ = [
    "check_offers_against",
    "create_channel",
    "create_flow",
    "create_offer",
    "delete_channel",
    "delete_flow",
    "delete_offer",
    "flow_model",
    "update_channel",
    "update_flow",
    "update_offer",
]

LISTED = 1000
NUMERIC_KINDS = ("integer", "number", "boolean")


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _check_filter_syntax(raw: Any, field: str) -> None:
    try:
        parse(raw, root=field)
    except FilterError as exc:
        raise invalid_filter(exc)


# -- offers ----------------------------------------------------------------------------------------
def offer_read(offer: Offer) -> OfferRead:
    return OfferRead(
        id=offer.id,
        name=offer.name,
        category=offer.category,
        priority=offer.priority,
        channels=list(offer.channels),
        creatives=list(offer.creatives),
        eligibility=offer.eligibility,
        propensity=dict(offer.propensity),
        start_date=offer.start_date,
        end_date=offer.end_date,
        status=offer.status,
        created_at=offer.created_at,
        updated_at=offer.updated_at,
    )


def get_offer(session: Session, offer_id: str) -> Offer:
    return get_or_404(session, Offer, offer_id, what="offer")


def list_offers(session: Session) -> list[Offer]:
    return list(session.scalars(sa.select(Offer).order_by(Offer.created_at, Offer.id).limit(LISTED)))


def _check_channels(session: Session, channel_ids: Sequence[str], field: str) -> list[BatchChannel]:
    found = {
        c.id: c for c in session.scalars(sa.select(BatchChannel).where(BatchChannel.id.in_(channel_ids)))
    }
    seen: set[str] = set()
    for i, cid in enumerate(channel_ids):
        if cid not in found:
            raise Invalid(f"{field}[{i}]: batch channel '{cid}' not found", field=f"{field}[{i}]")
        if cid in seen:
            raise Invalid(f"{field}[{i}]: batch channel '{cid}' is listed twice", field=f"{field}[{i}]")
        seen.add(cid)
    return [found[c] for c in channel_ids]


def _check_offer(session: Session, offer: Offer) -> None:
    _check_channels(session, offer.channels, "channels")
    for i, creative in enumerate(offer.creatives):
        cid = creative.get("channelId")
        if cid is not None and cid not in offer.channels and offer.channels:
            raise Invalid(
                f"creatives[{i}].channelId: channel '{cid}' is not one of the offer's channels",
                field=f"creatives[{i}].channelId",
            )
        if cid is not None and not offer.channels:
            _check_channels(session, [cid], f"creatives[{i}].channelId")
    _check_filter_syntax(offer.eligibility, "eligibility")
    if offer.start_date and offer.end_date and offer.end_date < offer.start_date:
        raise Invalid("endDate: must not be before startDate", field="endDate")


def create_offer(session: Session, body: OfferCreate) -> Offer:
    offer = Offer(
        name=body.name,
        category=body.category,
        priority=body.priority,
        channels=list(body.channels),
        creatives=[c.model_dump(by_alias=True) for c in body.creatives],
        eligibility=body.eligibility,
        propensity=body.propensity.model_dump(by_alias=True),
        start_date=_aware(body.start_date),
        end_date=_aware(body.end_date),
        status=body.status,
    )
    _check_offer(session, offer)
    session.add(offer)
    session.flush()
    return offer


def update_offer(session: Session, offer_id: str, body: OfferUpdate) -> Offer:
    offer = get_offer(session, offer_id)
    fields = body.model_fields_set
    for name in ("name", "priority", "status"):
        if getattr(body, name) is not None:
            setattr(offer, name, getattr(body, name))
    if "category" in fields:
        offer.category = body.category
    if body.channels is not None:
        offer.channels = list(body.channels)
    if body.creatives is not None:
        offer.creatives = [c.model_dump(by_alias=True) for c in body.creatives]
    if "eligibility" in fields:
        offer.eligibility = body.eligibility
    if body.propensity is not None:
        offer.propensity = body.propensity.model_dump(by_alias=True)
    if "start_date" in fields:
        offer.start_date = _aware(body.start_date)
    if "end_date" in fields:
        offer.end_date = _aware(body.end_date)
    _check_offer(session, offer)
    for flow in session.scalars(sa.select(DecisionFlow)):
        if offer.id in flow.offer_ids:
            check_offers_against(session, flow_model(session, flow.model_id), [offer], root="")
    session.flush()
    return offer


def _refuse_if_listed(session: Session, model: Any, column: str, ref: str, what: str, user: str) -> None:
    """409 while a row of `model` lists `ref` in its JSON id list `column` (the lists are small and
    per workspace; JSON containment differs by dialect, so the check reads them)."""
    for row in session.scalars(sa.select(model)):
        if ref in getattr(row, column):
            raise Conflict(f"{what} is used by {user} '{row.name}'; remove it there first")


def delete_offer(session: Session, offer_id: str) -> None:
    """409 while a decision flow lists the offer (an empty list means "every active offer": no tie)."""
    offer = get_offer(session, offer_id)
    _refuse_if_listed(session, DecisionFlow, "offer_ids", offer.id, "offer", "decision flow")
    session.delete(offer)
    session.flush()


# -- channels --------------------------------------------------------------------------------------
def channel_read(channel: BatchChannel) -> ChannelRead:
    return ChannelRead(
        id=channel.id,
        name=channel.name,
        delivery_mode=channel.delivery_mode,
        destination_id=channel.destination_id,
        batch_compatible=channel.delivery_mode in BATCH_MODES,
        created_at=channel.created_at,
        updated_at=channel.updated_at,
    )


def get_channel(session: Session, channel_id: str) -> BatchChannel:
    return get_or_404(session, BatchChannel, channel_id, what="batch channel")


def list_channels(session: Session) -> list[BatchChannel]:
    return list(
        session.scalars(
            sa.select(BatchChannel).order_by(BatchChannel.created_at, BatchChannel.id).limit(LISTED)
        )
    )


def _check_destination(session: Session, destination_id: str | None) -> None:
    if destination_id is None:
        return
    try:
        destination = get_destination(session, destination_id)
    except NotFound:
        raise Invalid(f"destinationId: destination '{destination_id}' not found", field="destinationId")
    if destination.type != "file":
        raise Invalid(
            f"destinationId: destination '{destination.name}' is a {destination.type} destination; "
            "batch channels deliver files (use a file destination: a local directory or s3://)",
            field="destinationId",
        )


def create_channel(session: Session, body: ChannelCreate) -> BatchChannel:
    _check_destination(session, body.destination_id)
    channel = BatchChannel(
        name=body.name, delivery_mode=body.delivery_mode, destination_id=body.destination_id
    )
    session.add(channel)
    session.flush()
    return channel


def update_channel(session: Session, channel_id: str, body: ChannelUpdate) -> BatchChannel:
    channel = get_channel(session, channel_id)
    if body.name is not None:
        channel.name = body.name
    if "destination_id" in body.model_fields_set:
        _check_destination(session, body.destination_id)
        channel.destination_id = body.destination_id
    if body.delivery_mode is not None and body.delivery_mode != channel.delivery_mode:
        if body.delivery_mode not in BATCH_MODES:
            for campaign in session.scalars(sa.select(BatchCampaign)):
                if channel.id in campaign.channel_ids:
                    raise Conflict(
                        f"deliveryMode: campaign '{campaign.name}' delivers on this channel; an api channel "
                        "cannot take part in batch campaigns",
                        field="deliveryMode",
                    )
        channel.delivery_mode = body.delivery_mode
    session.flush()
    return channel


def delete_channel(session: Session, channel_id: str) -> None:
    channel = get_channel(session, channel_id)
    _refuse_if_listed(session, BatchCampaign, "channel_ids", channel.id, "batch channel", "campaign")
    _refuse_if_listed(session, Offer, "channels", channel.id, "batch channel", "offer")
    session.delete(channel)
    session.flush()


# -- decision flows --------------------------------------------------------------------------------
def flow_read(flow: DecisionFlow) -> FlowRead:
    return FlowRead(
        id=flow.id,
        name=flow.name,
        model_id=flow.model_id,
        offer_ids=list(flow.offer_ids),
        eligibility=flow.eligibility,
        ranking=flow.ranking,
        max_offers_per_customer=flow.max_offers_per_customer,
        one_offer_per_category=flow.one_offer_per_category,
        created_at=flow.created_at,
        updated_at=flow.updated_at,
    )


def get_flow(session: Session, flow_id: str) -> DecisionFlow:
    return get_or_404(session, DecisionFlow, flow_id, what="decision flow")


def list_flows(session: Session) -> list[DecisionFlow]:
    return list(
        session.scalars(
            sa.select(DecisionFlow).order_by(DecisionFlow.created_at, DecisionFlow.id).limit(LISTED)
        )
    )


def flow_model(session: Session, model_id: str, field: str = "modelId") -> EntityModel:
    try:
        return data.get_model(session, model_id)
    except NotFound:
        raise Invalid(f"{field}: model '{model_id}' not found", field=field)


def check_offers_against(session: Session, model: EntityModel, offers: Sequence[Offer], *, root: str) -> None:
    """Each offer's eligibility and propensity must fit the model: known columns, numeric features."""
    _, sql_model = data.relation_for(session, model)
    kinds = {name: _kind_of(col) for name, col in sql_model.columns.items()}
    for offer in offers:
        where = f"{root}offer '{offer.name}'"
        try:
            data.compile_against(session, sql_model, offer.eligibility, root="eligibility")
        except Invalid as exc:
            raise Invalid(f"{where}: {exc.message}", field=exc.field)
        p = offer.propensity
        columns = [p["column"]] if p.get("type") == "column" else list((p.get("weights") or {}).keys())
        for column in columns:
            if column not in kinds:
                raise Invalid(
                    f"{where}: propensity column '{column}' is not a column of model '{model.name}'",
                    field="propensity",
                )
            if kinds[column] not in NUMERIC_KINDS:
                raise Invalid(
                    f"{where}: propensity column '{column}' is {kinds[column]}, not a number",
                    field="propensity",
                )


def _kind_of(column: Any) -> str:
    type_ = getattr(column, "type", None)
    if isinstance(type_, sa.Boolean):
        return "boolean"
    if isinstance(type_, sa.Integer):
        return "integer"
    if isinstance(type_, sa.Float | sa.Numeric):
        return "number"
    return "other"


def _check_flow(session: Session, flow: DecisionFlow) -> None:
    model = flow_model(session, flow.model_id)
    try:
        data.compile_filter(session, model, flow.eligibility, root="eligibility")
    except Invalid as exc:
        raise Invalid(exc.message, field=exc.field or "eligibility")
    if len(set(flow.offer_ids)) != len(flow.offer_ids):
        raise Invalid("offerIds: an offer is listed twice", field="offerIds")
    offers = {o.id: o for o in session.scalars(sa.select(Offer).where(Offer.id.in_(flow.offer_ids)))}
    for i, oid in enumerate(flow.offer_ids):
        if oid not in offers:
            raise Invalid(f"offerIds[{i}]: offer '{oid}' not found", field=f"offerIds[{i}]")
    check_offers_against(session, model, [offers[o] for o in flow.offer_ids], root="offerIds: ")


def create_flow(session: Session, body: FlowCreate) -> DecisionFlow:
    flow = DecisionFlow(
        name=body.name,
        model_id=body.model_id,
        offer_ids=list(body.offer_ids),
        eligibility=body.eligibility,
        ranking=body.ranking,
        max_offers_per_customer=body.max_offers_per_customer,
        one_offer_per_category=body.one_offer_per_category,
    )
    _check_flow(session, flow)
    session.add(flow)
    session.flush()
    return flow


def update_flow(session: Session, flow_id: str, body: FlowUpdate) -> DecisionFlow:
    flow = get_flow(session, flow_id)
    for name in ("name", "model_id", "ranking", "max_offers_per_customer", "one_offer_per_category"):
        if getattr(body, name) is not None:
            setattr(flow, name, getattr(body, name))
    if body.offer_ids is not None:
        flow.offer_ids = list(body.offer_ids)
    if "eligibility" in body.model_fields_set:
        flow.eligibility = body.eligibility
    _check_flow(session, flow)
    session.flush()
    return flow


def delete_flow(session: Session, flow_id: str) -> None:
    flow = get_flow(session, flow_id)
    session.delete(flow)
    try:
        with session.begin_nested():
            session.flush()
    except sa.exc.IntegrityError:
        raise Conflict("decision flow is used by a batch campaign; delete or change that first")
