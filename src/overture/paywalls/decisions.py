"""The real-time decision: a workspace's live campaigns compiled into an in-memory table, and
`DecisionTable.decide`, which answers register(placement) without touching the database.

A table maps each live placement name (active campaign, active placement) to its campaign's
audiences in priority order, each with its filter compiled once by `overture.core.filters` and its
possible answers serialized once (orjson bytes). A decision is a dictionary lookup, one predicate
call per audience tried, and at most one hash for the experiment variant. What a decision must
still write (a frequency-cap increment, an exposure) comes back as instructions for the recorder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from overture.core.bucketing import assign_variant, cumulative_bounds, user_seed
from overture.core.filters import FilterError, has_behavioural, parse, to_predicate
from overture.errors import Invalid
from overture.paywalls.models import HOLDOUT

Predicate = Callable[[Mapping[str, Any]], bool]
_EMPTY: Mapping[str, Any] = {}

# -- configuration snapshot (plain data, loaded by the service in one read) ------------------------


@dataclass(frozen=True)
class PaywallConfig:
    id: str
    name: str
    config: dict[str, Any]


@dataclass(frozen=True)
class VariantConfig:
    id: str
    paywall: PaywallConfig
    traffic_percentage: float


@dataclass(frozen=True)
class ExperimentConfig:
    id: str
    state: str
    promoted_variant_id: str | None
    variants: tuple[VariantConfig, ...]


@dataclass(frozen=True)
class AudienceConfig:
    id: str
    filters: Any
    entitlement_check: str | None
    frequency_cap: str | None
    paywall: PaywallConfig | None
    experiment: ExperimentConfig | None


@dataclass(frozen=True)
class PlacementConfig:
    name: str
    campaign_id: str
    audiences: tuple[AudienceConfig, ...]


# -- what a decision asks the recorder to write ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapSpend:
    """Take one from the user's allowance for this audience and period, if any is left."""

    audience_id: str
    user_id: str
    period: str
    limit: int


@dataclass(frozen=True, slots=True)
class ExposureRecord:
    experiment_id: str
    variant_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class Decision:
    #: The answer (JSON bytes) when the cap, if any, allows it.
    body: bytes
    cap: CapSpend | None = None
    #: The answer when the cap is spent.
    capped_body: bytes | None = None
    exposure: ExposureRecord | None = None

    def as_dict(self, *, capped: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(self.capped_body if capped and self.capped_body else self.body)
        return data


# -- compilation --------------------------------------------------------------------------------------

FILTER_ROOTS = ("user", "device", "params")


def parse_audience_filters(raw: Any) -> Any:
    """Parse and check filters for the real-time context: fields live under user., device. or params.;
    behavioural (event) conditions need the event stream and are refused here. Raises FilterError."""
    node = parse(raw, root="filters")
    if has_behavioural(node):
        raise FilterError(
            "filters", "behavioural (event) conditions are not available in real-time decisions"
        )
    for field, path in _field_paths(node):
        if field.split(".", 1)[0] not in FILTER_ROOTS or "." not in field:
            raise FilterError(
                f"{path}.field",
                f"field {field!r} must start with user., device. or params. (the register context)",
            )
    return node


def _field_paths(node: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    stack = [node]
    while stack:
        current = stack.pop()
        field = getattr(current, "field", None)
        if isinstance(field, str):
            found.append((field, current.path))
        stack.extend(getattr(current, "children", ()))
        child = getattr(current, "child", None)
        if child is not None:
            stack.append(child)
    return found


def _body(
    result: str,
    placement: str,
    campaign_id: str | None = None,
    audience_id: str | None = None,
    paywall: PaywallConfig | None = None,
    experiment_id: str | None = None,
    variant_id: str | None = None,
) -> bytes:
    return orjson.dumps(
        {
            "result": result,
            "campaign_id": campaign_id,
            "placement": placement,
            "audience_id": audience_id,
            "paywall_id": paywall.id if paywall else None,
            "paywall": {"id": paywall.id, "name": paywall.name, "config": paywall.config}
            if paywall
            else None,
            "experiment_id": experiment_id,
            "variant_id": variant_id,
        }
    )


@dataclass(slots=True)
class _CompiledExperiment:
    id: str
    bounds: tuple[float, ...]
    variant_ids: tuple[str, ...]
    variant_bodies: tuple[bytes, ...]
    holdout_body: bytes
    #: Once promoted, every matching user gets this variant.
    promoted: int | None


@dataclass(slots=True)
class _CompiledAudience:
    id: str
    predicate: Predicate
    entitlement: str | None
    cap_kind: str | None  # "session" | "day" | "total"
    cap_limit: int
    body: bytes  # the direct paywall's answer, or the holdout answer when there is no paywall
    shows_paywall: bool
    capped_body: bytes
    experiment: _CompiledExperiment | None


@dataclass(slots=True)
class _CompiledPlacement:
    campaign_id: str
    no_match_body: bytes
    audiences: tuple[_CompiledAudience, ...]


def _cap(spec: str | None) -> tuple[str | None, int]:
    if spec is None:
        return None, 0
    if spec == "once_per_session":
        return "session", 1
    if spec == "once_per_day":
        return "day", 1
    return "total", int(spec.split("_", 1)[0])


def _compile_audience(
    placement: str, campaign_id: str, audience: AudienceConfig, node: Any, now: Callable[[], datetime]
) -> _CompiledAudience:
    predicate = to_predicate(node, now=now)
    cap_kind, cap_limit = _cap(audience.frequency_cap)

    def answer(
        result: str,
        paywall: PaywallConfig | None = None,
        experiment_id: str | None = None,
        variant_id: str | None = None,
    ) -> bytes:
        return _body(result, placement, campaign_id, audience.id, paywall, experiment_id, variant_id)

    experiment = None
    exp = audience.experiment
    if exp is not None:
        variant_ids = tuple(v.id for v in exp.variants)
        promoted = (
            variant_ids.index(exp.promoted_variant_id) if exp.promoted_variant_id in variant_ids else None
        )
        experiment = _CompiledExperiment(
            id=exp.id,
            bounds=cumulative_bounds([v.traffic_percentage for v in exp.variants]),
            variant_ids=variant_ids,
            variant_bodies=tuple(answer("paywall", v.paywall, exp.id, v.id) for v in exp.variants),
            holdout_body=answer("holdout", experiment_id=exp.id),
            promoted=promoted if exp.state == "promoted" else None,
        )
    return _CompiledAudience(
        id=audience.id,
        predicate=predicate,
        entitlement=audience.entitlement_check,
        cap_kind=cap_kind,
        cap_limit=cap_limit,
        body=answer("paywall", audience.paywall) if audience.paywall else answer("holdout"),
        shows_paywall=audience.paywall is not None,
        capped_body=answer("capped"),
        experiment=experiment,
    )


class DecisionTable:
    """One workspace's live placements, compiled. Immutable once built; replaced on any change."""

    def __init__(self, placements: Sequence[PlacementConfig], now: Callable[[], datetime]) -> None:
        self._now = now
        self._placements: dict[str, _CompiledPlacement] = {}
        uses_seed = False
        for placement in placements:
            audiences = []
            for audience in placement.audiences:
                node = parse(audience.filters, root="filters")
                uses_seed = uses_seed or any(field == "user.seed" for field, _ in _field_paths(node))
                audiences.append(
                    _compile_audience(placement.name, placement.campaign_id, audience, node, now)
                )
            self._placements[placement.name] = _CompiledPlacement(
                campaign_id=placement.campaign_id,
                no_match_body=_body("no_audience_match", placement.name, placement.campaign_id),
                audiences=tuple(audiences),
            )
        #: Only compute the seed hash when some filter reads user.seed.
        self._uses_seed = uses_seed

    @property
    def placements(self) -> frozenset[str]:
        return frozenset(self._placements)

    def decide(
        self,
        placement: str,
        user_id: str,
        *,
        session_id: str | None = None,
        user: Mapping[str, Any] | None = None,
        device: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        entitlements: Sequence[str] | None = None,
    ) -> Decision:
        entry = self._placements.get(placement)
        if entry is None:
            return Decision(_body("placement_not_found", placement))
        if user is None:
            user = _EMPTY
        if self._uses_seed and user.get("seed") is None:
            user = {**user, "seed": user_seed(user_id)}
        context = {"user": user, "device": device or _EMPTY, "params": params or _EMPTY}
        for audience in entry.audiences:
            if audience.entitlement is not None and entitlements and audience.entitlement in entitlements:
                continue
            if audience.predicate(context):
                return self._matched(audience, user_id, session_id)
        return Decision(entry.no_match_body)

    def _matched(self, audience: _CompiledAudience, user_id: str, session_id: str | None) -> Decision:
        exp = audience.experiment
        exposure = None
        if exp is None:
            if not audience.shows_paywall:
                return Decision(audience.body)  # an audience without a paywall holds its users out
            body = audience.body
        elif exp.promoted is not None:
            body = exp.variant_bodies[exp.promoted]  # promoted: 100% of the audience, no longer measured
        else:
            index = assign_variant(exp.id, user_id, exp.bounds)
            if index is None:
                return Decision(exp.holdout_body, exposure=ExposureRecord(exp.id, HOLDOUT, user_id))
            body = exp.variant_bodies[index]
            exposure = ExposureRecord(exp.id, exp.variant_ids[index], user_id)
        if audience.cap_kind is None:
            return Decision(body, exposure=exposure)
        return Decision(
            body,
            cap=CapSpend(audience.id, user_id, self._period(audience, session_id), audience.cap_limit),
            capped_body=audience.capped_body,
            exposure=exposure,
        )

    def _period(self, audience: _CompiledAudience, session_id: str | None) -> str:
        if audience.cap_kind == "session":
            if session_id is None:
                raise Invalid(
                    f"session_id is required: audience {audience.id} is capped once_per_session",
                    field="session_id",
                )
            return "session:" + session_id
        if audience.cap_kind == "day":
            return "day:" + self._now().date().isoformat()
        return "total"
