"""The demo objects a first run adds beside the demo customers, so the dashboard opens populated:
three segments (evaluated), a log destination, a journey (active, one run queued, its
upsell path syncing to the log), a paywall campaign whose first
audience runs an experiment with simulated traffic. Everything goes through the surfaces' services
and the real decision path (decide, record exposures, attribute conversions)."""

from __future__ import annotations

from datetime import datetime, timedelta

from overture.data.service import get_model_by_name
from overture.db.context import AppContext
from overture.delivery import service as destinations
from overture.delivery.schemas import DestinationCreate
from overture.journeys import service as journeys
from overture.journeys.lifecycle import Action, RunTrigger
from overture.journeys.schemas import JourneyCreate
from overture.paywalls import service as paywalls
from overture.paywalls import service_experiments as experiments
from overture.paywalls.schemas import (
    AudienceCreate,
    CampaignCreate,
    EventIn,
    PaywallCreate,
    PlacementCreate,
)
from overture.paywalls.tables import decision_recorder, decision_tables
from overture.segments import service as segments
from overture.segments.schemas import SegmentCreate

SEGMENTS = [
    ("Free plan", {"field": "plan", "operator": "is", "value": "free"}),
    ("High value (LTV over 100)", {"field": "ltv", "operator": "gt", "value": 100}),
    (
        "iOS power users",
        {
            "all": [
                {"field": "platform", "operator": "is", "value": "ios"},
                {"field": "session_count", "operator": "gte", "value": 20},
            ]
        },
    ),
]


def journey_tiles(destination_id: str) -> list[dict[str, object]]:
    return [
        {"id": "entry", "type": "entry", "name": "Free users", "position": {"x": 220, "y": 0}},
        {
            "id": "valuable",
            "type": "filter",
            "name": "Spent anything?",
            "position": {"x": 220, "y": 130},
            "config": {"criteria": {"field": "ltv", "operator": "gt", "value": 0}},
        },
        {
            "id": "upsell",
            "type": "sync",
            "name": "Send upsell",
            "position": {"x": 0, "y": 260},
            "config": {
                "destination_id": destination_id,
                "field_mapping": [{"from": "email", "to": "email"}, {"from": "plan", "to": "plan"}],
            },
        },
        {"id": "upsold", "type": "exit", "name": "Upsold", "position": {"x": 0, "y": 390}},
        {
            "id": "nurture",
            "type": "wait",
            "name": "Wait 3 days",
            "position": {"x": 440, "y": 260},
            "config": {"duration": 3, "unit": "days"},
        },
        {"id": "done", "type": "exit", "name": "Done", "position": {"x": 440, "y": 390}},
    ]


JOURNEY_EDGES = [
    {"from": "entry", "to": "valuable"},
    {"from": "valuable", "to": "upsell", "branch": "match"},
    {"from": "valuable", "to": "nurture", "branch": "no_match"},
    {"from": "upsell", "to": "upsold"},
    {"from": "nurture", "to": "done"},
]
SIMULATED_USERS = 3000
PAYWALLS = (("pw_demo_original", "Original"), ("pw_demo_discount", "20% off first year"))


def seed_demo(ctx: AppContext, workspace_id: str, simulated_users: int = SIMULATED_USERS) -> None:
    """Create the demo objects (call once, on a workspace holding the demo `customers` model)."""
    with ctx.transaction(workspace_id=workspace_id) as session:
        model = get_model_by_name(session, "customers")
        if model is None:
            return
        segment_ids = [
            segments.create_segment(session, SegmentCreate(name=name, model_id=model.id, filter=tree)).id
            for name, tree in SEGMENTS
        ]
        destination = destinations.create_destination(
            session, DestinationCreate(name="Demo log", type="log", config={"level": "info"})
        )
        journey = journeys.create_journey(
            session,
            None,
            JourneyCreate.model_validate(
                {
                    "name": "Welcome series",
                    "description": "Free users who spent anything get an upsell (synced to the log); "
                    "the rest wait and leave.",
                    "parent_model_id": model.id,
                    "entry_criteria": {"field": "plan", "operator": "is", "value": "free"},
                    "tiles": journey_tiles(destination.id),
                    "edges": JOURNEY_EDGES,
                }
            ),
        )
        journeys.change_status(session, journey.id, Action.ACTIVATE)
        journeys.trigger_run(session, journey.id, RunTrigger.MANUAL)
        for paywall_id, name in PAYWALLS:
            paywalls.create_paywall(session, PaywallCreate(id=paywall_id, name=name, config={"title": name}))
        campaign = paywalls.create_campaign(session, CampaignCreate(name="Upgrade prompts"))
        paywalls.create_placement(session, campaign.id, PlacementCreate(name="onboarding"))
        paywalls.create_audience(
            session,
            campaign.id,
            AudienceCreate.model_validate(
                {
                    "name": "Free users on iOS",
                    "filters": [
                        {"field": "user.plan", "operator": "is", "value": "free", "conjunction": "and"},
                        {"field": "device.platform", "operator": "is", "value": "ios"},
                    ],
                    "experiment": {
                        "variants": [
                            {"paywall_id": "pw_demo_original", "traffic_percentage": 50},
                            {"paywall_id": "pw_demo_discount", "traffic_percentage": 50},
                        ]
                    },
                }
            ),
        )
        paywalls.create_audience(
            session, campaign.id, AudienceCreate(name="Everyone else", filters=[], paywall_id=PAYWALLS[0][0])
        )
    for segment_id in segment_ids:
        segments.evaluate_segment(ctx, workspace_id, segment_id)
    simulate_traffic(ctx, workspace_id, "onboarding", simulated_users)


class _SteppedClock:
    """A clock the simulation moves by hand, so the simulated traffic spreads over past days."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def simulate_traffic(ctx: AppContext, workspace_id: str, placement: str, users: int, days: int = 6) -> None:
    """Register `users` free iOS users on the placement over the last `days` days, through the real
    decision table and recorder, then convert a share of them an hour after their exposure (the
    discount converts better) through conversion attribution."""
    tables = decision_tables(ctx)
    recorder = decision_recorder(ctx)
    table = tables.get(workspace_id) or tables.load(workspace_id)
    real_clock = ctx.clock
    end = real_clock.now()
    start = end - timedelta(days=days)
    clock = _SteppedClock(start)
    pending = []
    seen: dict[str, tuple[str, datetime]] = {}
    ctx.clock = clock
    try:
        for i in range(users):
            clock.at = start + (end - start) * i / max(users, 1)
            user_id = f"demo-user-{i:05d}"
            decision = table.decide(placement, user_id, user={"plan": "free"}, device={"platform": "ios"})
            future = recorder.submit(workspace_id, decision)
            if future is not None:
                pending.append(future)
            if decision.exposure is not None:
                seen[user_id] = (decision.exposure.variant_id, clock.at)
        for future in pending:
            future.result(timeout=60)
    finally:
        ctx.clock = real_clock
    variants = sorted({variant for variant, _ in seen.values()})
    events = []
    for n, (user_id, (variant_id, exposed_at)) in enumerate(seen.items()):
        # A deterministic ~6% / ~9% conversion split so the chart has something to show.
        rate = 6 if variants.index(variant_id) == 0 else 9
        if (n * 37) % 100 < rate:
            events.append(
                EventIn(
                    user_id=user_id,
                    event=experiments.CONVERSION_EVENT,
                    timestamp=min(exposed_at + timedelta(hours=1), end),
                    properties={"revenue": 39.99},
                )
            )
    with ctx.transaction(workspace_id=workspace_id) as session:
        experiments.attribute_conversions(session, events)
