"""The real-time decision: a workspace's live campaigns compiled into an in-memory table, and
`DecisionTable.decide`, which answers register(placement) without touching the database.

A table maps each live placement name (active campaign, active placement) to its campaign's
audiences in priority order, each with its filter compiled once by `overture.core.filters` and its
possible answers serialized once (orjson bytes). A decision is a dictionary lookup, one predicate
call per audience tried, and at most one hash for the experiment variant. What a decision must
still write (a frequency-cap increment, an exposure) comes back as instructions for the recorder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from typing import Any

import orjson

from overture.core.bucketing import assign_variant, cumulative_bounds, user_seed
from overture.core.filters import All, Condition, FilterError, Node, has_behavioural, parse, to_predicate
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


class Decision:
    """What to answer, and what must be written before answering. A plain slotted class, not a
    dataclass: static answers are built once per table, the others once per call, and a frozen
    dataclass's __init__ costs several times more than this one."""

    __slots__ = ("body", "cap", "capped_body", "exposure")

    def __init__(
        self,
        body: bytes,
        cap: CapSpend | None = None,
        capped_body: bytes | None = None,
        exposure: ExposureRecord | None = None,
    ) -> None:
        #: The answer (JSON bytes) when the cap, if any, allows it.
        self.body = body
        #: Take one from this allowance before showing the paywall.
        self.cap = cap
        #: The answer when the cap is spent.
        self.capped_body = capped_body
        self.exposure = exposure

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
    cap_kind: str | None  # "session" | "day" | "total"
    cap_limit: int
    body: bytes  # the direct paywall's answer, or the holdout answer when there is no paywall
    shows_paywall: bool
    capped_body: bytes
    experiment: _CompiledExperiment | None
    #: The whole decision when it never varies (no cap, no running experiment): built once.
    static: Decision | None = None


#: (predicate, entitlement_check, audience) in priority order: the loop unpacks a tuple per audience.
_Check = tuple[Predicate, "str | None", _CompiledAudience]


@dataclass(slots=True)
class _CompiledPlacement:
    campaign_id: str
    no_match: Decision
    #: Every audience in priority order (with its remaining predicate when it has a guard).
    checks: tuple[_Check, ...]
    #: The guard value of each check (None: no guard), parallel to `checks`.
    guard_values: tuple[str | None, ...] = ()
    #: One predicate per distinct guard value: `field is value`, compiled once for the placement.
    guards: tuple[tuple[Predicate, str], ...] = ()
    #: The checks that can match when exactly that guard holds / when none holds.
    by_value: dict[str, tuple[_Check, ...]] = dataclass_field(default_factory=dict)
    unguarded: tuple[_Check, ...] = ()

    #: The index field's path when its guards are mutually exclusive plain strings (see below).
    index_keys: tuple[str, ...] = ()

    def candidates(self, context: Mapping[str, Any]) -> tuple[_Check, ...]:
        """The checks worth trying for this context, in priority order."""
        if not self.guards:
            return self.checks
        if self.index_keys:
            # `field is "text"` compiles to `value == "text"` for text that is not a timestamp, and a
            # str equals at most one distinct str: one lookup picks the only guard that can hold.
            value: Any = context
            for key in self.index_keys:
                if value.__class__ is not dict and not isinstance(value, Mapping):
                    value = None
                    break
                value = value.get(key)
            if value is None:
                return self.unguarded  # a missing or null field satisfies no `is`
            if value.__class__ is str:
                return self.by_value.get(value, self.unguarded)
        hits = [value for guard, value in self.guards if guard(context)]
        if len(hits) == 1:
            return self.by_value[hits[0]]
        if not hits:
            return self.unguarded
        return tuple(c for c, g in zip(self.checks, self.guard_values, strict=True) if g is None or g in hits)


def _split_guard(node: Node, field: str | None = None) -> tuple[Condition | None, Node]:
    """(`field is "text"` as a top-level conjunct of `node`, the rest of the conjunction) or
    (None, node). The rest is evaluated only for users the guard lets through, and the guard once
    per decision for all the placement's audiences that share its field."""
    children = (node,) if isinstance(node, Condition) else node.children if isinstance(node, All) else ()
    for index, child in enumerate(children):
        if (
            isinstance(child, Condition)
            and child.operator == "is"
            and isinstance(child.value, str)
            and (field is None or child.field == field)
        ):
            rest = children[:index] + children[index + 1 :]
            return child, rest[0] if len(rest) == 1 else All(rest, path=node.path)
    return None, node


def _compile_placement(
    placement: PlacementConfig, nodes: Sequence[Node], now: Callable[[], datetime]
) -> _CompiledPlacement:
    """Audiences in order; when at least two share a top-level `field is "text"` condition on the same
    field, that field becomes the placement's index: its distinct conditions are evaluated once per
    decision and only the audiences they admit are tried. Every test is still an
    `overture.core.filters` predicate, so answers are exactly those of the unindexed loop."""
    no_match = Decision(_body("no_audience_match", placement.name, placement.campaign_id))
    fields = Counter(g.field for g, _ in (_split_guard(n) for n in nodes) if g is not None)
    field, uses = fields.most_common(1)[0] if fields else ("", 0)
    if uses < 2:
        checks = tuple(
            _compile_audience(placement.name, placement.campaign_id, a, to_predicate(n, now=now))
            for a, n in zip(placement.audiences, nodes, strict=True)
        )
        return _CompiledPlacement(placement.campaign_id, no_match, checks)
    guard_nodes: dict[str, Condition] = {}
    checks_list, guard_values = [], []
    for audience, node in zip(placement.audiences, nodes, strict=True):
        guard, rest = _split_guard(node, field)
        checks_list.append(
            _compile_audience(placement.name, placement.campaign_id, audience, to_predicate(rest, now=now))
        )
        value = guard.value if guard is not None else None
        guard_values.append(value if isinstance(value, str) else None)
        if guard is not None and isinstance(guard.value, str):
            guard_nodes.setdefault(guard.value, guard)
    checks = tuple(checks_list)
    plain = not any(_looks_like_instant(v) for v in guard_nodes)
    return _CompiledPlacement(
        campaign_id=placement.campaign_id,
        no_match=no_match,
        checks=checks,
        guard_values=tuple(guard_values),
        guards=tuple((to_predicate(g, now=now), v) for v, g in guard_nodes.items()),
        by_value={
            v: tuple(c for c, g in zip(checks, guard_values, strict=True) if g is None or g == v)
            for v in guard_nodes
        },
        unguarded=tuple(c for c, g in zip(checks, guard_values, strict=True) if g is None),
        index_keys=tuple(field.split(".")) if plain else (),
    )


def _looks_like_instant(text: str) -> bool:
    """Text the filter language also compares as a timestamp (then `is` is not plain equality)."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _cap(spec: str | None) -> tuple[str | None, int]:
    if spec is None:
        return None, 0
    if spec == "once_per_session":
        return "session", 1
    if spec == "once_per_day":
        return "day", 1
    return "total", int(spec.split("_", 1)[0])


def _compile_audience(
    placement: str, campaign_id: str, audience: AudienceConfig, predicate: Predicate
) -> _Check:
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
    compiled = _CompiledAudience(
        id=audience.id,
        cap_kind=cap_kind,
        cap_limit=cap_limit,
        body=answer("paywall", audience.paywall) if audience.paywall else answer("holdout"),
        shows_paywall=audience.paywall is not None,
        capped_body=answer("capped"),
        experiment=experiment,
    )
    if experiment is None and (cap_kind is None or audience.paywall is None):
        compiled.static = Decision(compiled.body)
    elif experiment is not None and experiment.promoted is not None and cap_kind is None:
        compiled.static = Decision(experiment.variant_bodies[experiment.promoted])
    return (predicate, audience.entitlement_check, compiled)


class DecisionTable:
    """One workspace's live placements, compiled. Immutable once built; replaced on any change."""

    def __init__(self, placements: Sequence[PlacementConfig], now: Callable[[], datetime]) -> None:
        self._now = now
        self._placements: dict[str, _CompiledPlacement] = {}
        uses_seed = False
        for placement in placements:
            nodes = [parse(audience.filters, root="filters") for audience in placement.audiences]
            uses_seed = uses_seed or any(f == "user.seed" for n in nodes for f, _ in _field_paths(n))
            self._placements[placement.name] = _compile_placement(placement, nodes, now)
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
        if self._uses_seed and (user is None or user.get("seed") is None):
            user = {**(user or _EMPTY), "seed": user_seed(user_id)}
        context = {"user": user or _EMPTY, "device": device or _EMPTY, "params": params or _EMPTY}
        for predicate, entitlement, audience in entry.candidates(context):
            if entitlement is not None and entitlements and entitlement in entitlements:
                continue  # the user already holds what this audience sells
            if predicate(context):
                return audience.static or self._matched(audience, user_id, session_id)
        return entry.no_match

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
