"""Candidates and decisions (seed 000, and beyond it): the published experiences of a workspace
compiled once into a table — ordered by campaign, stage and experience weight, with each campaign's
audience compiled to a predicate — and served from memory.

The table is dropped when any experience, group or prioritization of the workspace changes (the
change bus: at once in this process, through PostgreSQL NOTIFY in others), so a publish, unpublish,
delete or priority change shows on the next request. Metrics (6 hours of impressions and conversions,
one aggregate over the event stream) are at most `METRICS_TTL` old. Date windows are honoured to the
instant: a view knows the next start or end among its candidates and is rebuilt when it passes.

`decide` ranks the candidates for one user: eligible when in the experience's target segment — the
campaign's audience predicate over the profile (read once by primary key) and no conversion on a
sibling stage's experience (events read once) — within its dates; it returns the winners and, for
every other candidate, why not: `outside_dates`, `not_in_target`, `converted_in_sibling_stage`,
`lower_priority`. The work per decision is per campaign and per stage, not per candidate: the
entries of the answer are built when the view is."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from overture.core.encode import isoformat_z, to_json
from overture.core.filters import EVENTS_KEY, EventCondition, Predicate, column_kind, parse, to_predicate
from overture.core.filters.walk import walk
from overture.data import service as data
from overture.data.source import get_source
from overture.db.cache import WorkspaceCache
from overture.db.context import AppContext
from overture.db.session import Session
from overture.experiences import events as experience_events
from overture.experiences import priorities
from overture.experiences.changes import TOPIC
from overture.experiences.models import Experience, ExperienceGroup
from overture.experiences.schemas import DecideBody
from overture.experiences.states import ExperienceStatus
from overture.segments import service as segments
from overture.segments.models import Segment

__all__ = ["METRICS_TTL", "CandidateTables", "DecisionTable", "build_table", "decide_for", "tables"]

METRICS_TTL = timedelta(seconds=60)
CONVERSION_PREFIX = "experience.conversion."
FAR_FUTURE = datetime.max


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return override if override is not None else base


@dataclass
class _Candidate:
    id: str
    campaign_id: str
    stage_id: str
    provider_id: str | None
    provider_slug: str | None
    channel: str | None
    start: datetime | None
    end: datetime | None
    doc: dict[str, Any]


@dataclass
class _Campaign:
    id: str
    model_id: str
    predicate: Predicate


@dataclass
class _StageBlock:
    id: str
    docs: list[dict[str, Any]]
    outside: list[dict[str, str]]
    not_in_target: list[dict[str, str]]
    converted: list[dict[str, str]]
    lower: list[dict[str, str]]


@dataclass
class _CampaignBlock:
    campaign: _Campaign
    stages: list[_StageBlock]
    #: The whole campaign when its audience refuses the user, or when nothing is left to win.
    refused: list[dict[str, str]] = field(default_factory=list)
    beaten: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _View:
    valid_from: datetime | None
    valid_until: datetime | None
    generated_at: datetime
    body: bytes
    blocks: list[_CampaignBlock]

    def valid(self, now: datetime) -> bool:
        return (self.valid_from is None or now >= self.valid_from) and (
            self.valid_until is None or now < self.valid_until
        )


@dataclass
class _ModelReader:
    relation: sa.FromClause
    key: sa.ColumnElement[Any]
    key_kind: str
    json_columns: tuple[str, ...]


class DecisionTable:
    """One workspace's compiled candidates (immutable but for its caches)."""

    def __init__(
        self,
        workspace_id: str,
        candidates: list[_Candidate],
        campaigns: dict[str, _Campaign],
        stage_of: dict[str, tuple[str, str]],
        event_names: frozenset[str],
        built_at: datetime,
    ) -> None:
        self.workspace_id = workspace_id
        self.candidates = candidates
        self.campaigns = campaigns
        #: experience id -> (campaign id, stage id), for every live experience in a live stage
        self.stage_of = stage_of
        #: How to read a profile of each model the campaigns target (built at the first decision: the
        #: candidates list never touches the data source's catalog).
        self.readers: dict[str, _ModelReader] = {}
        #: generic event names the campaigns' audiences count (read with the user's events)
        self.event_names = event_names
        self.built_at = built_at
        self.metrics: experience_events.Metrics = {}
        self.metrics_at: datetime | None = None
        self._views: dict[tuple[str | None, str | None], _View] = {}
        self._lock = threading.Lock()

    # -- views -----------------------------------------------------------------------------------------
    def cached_view(self, now: datetime, vehicle: str | None, channel: str | None) -> _View | None:
        """The view if it needs no work (metrics fresh, date window unchanged): the fast path."""
        metrics_at = self.metrics_at
        if metrics_at is None or not metrics_at <= now < metrics_at + METRICS_TTL:
            return None
        view = self._views.get((vehicle, channel))
        return view if view is not None and view.valid(now) else None

    def view(self, ctx: AppContext, now: datetime, vehicle: str | None, channel: str | None) -> _View:
        if self.metrics_at is None or now - self.metrics_at >= METRICS_TTL or now < self.metrics_at:
            with self._lock:
                if self.metrics_at is None or now - self.metrics_at >= METRICS_TTL or now < self.metrics_at:
                    self.metrics = experience_events.metrics_since(ctx, self.workspace_id, now)
                    self.metrics_at = now
                    self._views = {}
        key = (vehicle, channel)
        view = self._views.get(key)
        if view is None or not view.valid(now):
            view = self._build_view(now, vehicle, channel)
            self._views[key] = view
        return view

    def _build_view(self, now: datetime, vehicle: str | None, channel: str | None) -> _View:
        matching = [
            c
            for c in self.candidates
            if (vehicle is None or vehicle in (c.provider_id, c.provider_slug))
            and (channel is None or c.channel == channel)
        ]
        valid_from: datetime | None = None
        valid_until: datetime | None = None
        for c in matching:
            for bound in (c.start, c.end):
                if bound is None:
                    continue
                if bound <= now:
                    valid_from = bound if valid_from is None else max(valid_from, bound)
                else:
                    valid_until = bound if valid_until is None else min(valid_until, bound)
        docs: dict[str, dict[str, Any]] = {}
        inside: dict[str, bool] = {}
        for c in matching:
            docs[c.id] = {**c.doc, "metrics": experience_events.as_dict(self.metrics.get(c.id, (0, 0)))}
            inside[c.id] = (c.start is None or c.start <= now) and (c.end is None or now < c.end)
        blocks: list[_CampaignBlock] = []
        for c in matching:
            if not blocks or blocks[-1].campaign.id != c.campaign_id:
                blocks.append(_CampaignBlock(self.campaigns[c.campaign_id], []))
            block = blocks[-1]
            if not block.stages or block.stages[-1].id != c.stage_id:
                block.stages.append(_StageBlock(c.stage_id, [], [], [], [], []))
            stage = block.stages[-1]
            if inside[c.id]:
                stage.docs.append(docs[c.id])
                stage.not_in_target.append({"experienceId": c.id, "reason": "not_in_target"})
                stage.converted.append({"experienceId": c.id, "reason": "converted_in_sibling_stage"})
                stage.lower.append({"experienceId": c.id, "reason": "lower_priority"})
            else:
                stage.outside.append({"experienceId": c.id, "reason": "outside_dates"})
        for block in blocks:
            for stage in block.stages:
                block.refused += stage.outside + stage.not_in_target
                block.beaten += stage.outside + stage.lower
        # A list is a bare JSON array (the API's rule); each candidate says when the list was computed
        # (also in the X-Generated-At header).
        generated = isoformat_z(now)
        listed = [{**docs[c.id], "generatedAt": generated} for c in matching if inside[c.id]]
        body = orjson.dumps(listed)
        return _View(valid_from, valid_until, now, body, blocks)

    # -- decisions -------------------------------------------------------------------------------------
    def decide(
        self,
        view: _View,
        records: Mapping[str, Mapping[str, Any]],
        converted: Mapping[str, set[str]],
        limit: int,
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """(winners in priority order, excluded with reasons). `records` are the user's profile per
        model id (with events under "$events"); `converted` the stages, per campaign, of the
        experiences the user converted on. The profile read is not in here (see `load_user`)."""
        decisions: list[dict[str, Any]] = []
        excluded: list[dict[str, str]] = []
        remaining = limit
        for block in view.blocks:
            campaign = block.campaign
            record = records.get(campaign.model_id)
            if record is None or not campaign.predicate(record):
                excluded += block.refused
                continue
            stages = converted.get(campaign.id)
            if not stages and not remaining:
                excluded += block.beaten
                continue
            for stage in block.stages:
                excluded += stage.outside
                if stages and (len(stages) > 1 or stage.id not in stages):
                    excluded += stage.converted
                elif remaining:
                    won = stage.docs[:remaining]
                    decisions += won
                    remaining -= len(won)
                    excluded += stage.lower[len(won) :]
                else:
                    excluded += stage.lower
        return decisions, excluded

    def converted_stages(self, events: list[dict[str, Any]]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        for event in events:
            name = event.get("event")
            if isinstance(name, str) and name.startswith(CONVERSION_PREFIX):
                where = self.stage_of.get(name[len(CONVERSION_PREFIX) :])
                if where is not None:
                    out[where[0]].add(where[1])
        return out

    # -- the user's data (one read per model by primary key, one read of events) -----------------------
    def load_user(
        self, ctx: AppContext, user_id: str, context: Mapping[str, Any] | None
    ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
        models = {c.model_id for c in self.campaigns.values()}
        if not models <= set(self.readers):
            with ctx.transaction(write=False, workspace_id=self.workspace_id) as session:
                for model_id in models - set(self.readers):
                    self.readers[model_id] = _reader(session, model_id)
        source = get_source(ctx)
        ev = source.events_table()
        names = sa.or_(
            ev.c.event.like(f"{CONVERSION_PREFIX}%"),
            *([ev.c.event.in_(sorted(self.event_names))] if self.event_names else []),
        )
        records: dict[str, dict[str, Any]] = {}
        with source.connect() as conn:
            events = [
                {"event": name, "timestamp": at, "properties": _json(props)}
                for name, at, props in conn.execute(
                    sa.select(ev.c.event, ev.c.timestamp, ev.c.properties).where(
                        ev.c.workspace_id == self.workspace_id, ev.c.entity_id == user_id, names
                    )
                )
            ]
            for model_id, reader in self.readers.items():
                key = _key(user_id, reader.key_kind)
                if key is None:
                    continue
                row = (
                    conn.execute(sa.select(reader.relation).where(reader.key == key).limit(1))
                    .mappings()
                    .first()
                )
                if row is None:
                    continue
                record = {
                    k: (_json(v) if k in reader.json_columns else v) for k, v in row.items() if v is not None
                }
                if context:
                    record.update(context)
                record[EVENTS_KEY] = events
                records[model_id] = record
        return records, events


def _reader(session: Session, model_id: str) -> _ModelReader:
    model = data.get_model(session, model_id)
    relation, sql_model = data.relation_for(session, model)
    kinds = {name: _kind(column) for name, column in sql_model.columns.items()}
    return _ModelReader(
        relation=relation,
        key=relation.c[model.primary_key],
        key_kind=kinds.get(model.primary_key, "string"),
        json_columns=tuple(name for name, kind in kinds.items() if kind == "json"),
    )


def _kind(column: sa.ColumnElement[Any]) -> str:
    kind = column_kind(column.type)
    if kind == "number" and isinstance(column.type, sa.Integer):
        return "integer"
    return kind or "other"


def _json(value: Any) -> Any:
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _key(user_id: str, kind: str) -> Any:
    try:
        if kind == "integer":
            return int(user_id)
        if kind == "number":
            return float(user_id)
    except ValueError:
        return None
    return user_id


# -- building a table -----------------------------------------------------------------------------------
def build_table(session: Session, now: Callable[[], datetime]) -> DecisionTable:
    """Read the workspace's live hierarchy once and compile it."""
    groups = {
        g.id: g
        for g in session.scalars(sa.select(ExperienceGroup).where(ExperienceGroup.deleted_at.is_(None)))
    }
    experiences = list(
        session.scalars(
            sa.select(Experience).where(Experience.deleted_at.is_(None), Experience.parent_id.is_not(None))
        )
    )
    account, weights = priorities.weights(session)
    stage_of: dict[str, tuple[str, str]] = {}
    published: list[tuple[Experience, ExperienceGroup, ExperienceGroup]] = []
    for e in experiences:
        stage = groups.get(e.parent_id or "")
        campaign = groups.get(stage.parent_id or "") if stage is not None else None
        if stage is None or campaign is None:
            continue
        stage_of[e.id] = (campaign.id, stage.id)
        if e.status == ExperienceStatus.PUBLISHED and campaign.segment_id:
            published.append((e, stage, campaign))
    audiences = {
        s.id: s
        for s in session.scalars(
            sa.select(Segment).where(Segment.id.in_({c.segment_id for _, _, c in published if c.segment_id}))
        )
    }
    campaigns: dict[str, _Campaign] = {}
    event_names: set[str] = set()
    for _, _, campaign in published:
        if campaign.id in campaigns or campaign.segment_id not in audiences:
            continue
        audience = audiences[campaign.segment_id]
        tree = parse({"segment": audience.id})
        resolver = segments.segment_resolver(session, audience.model_id)
        predicate = to_predicate(tree, now=now, segments=resolver)
        event_names |= {
            n.event
            for n in walk(parse(segments.resolved_filter(session, audience.model_id, audience.filter)))
            if isinstance(n, EventCondition)
        }
        campaigns[campaign.id] = _Campaign(campaign.id, audience.model_id, predicate)
    ranked = []
    for e, stage, campaign in published:
        if campaign.id not in campaigns:
            continue
        w = (
            account.get(campaign.id, 0.0),
            weights.get(campaign.id, {}).get(stage.id, 0.0),
            weights.get(stage.id, {}).get(e.id, 0.0),
        )
        order = (
            -w[0],
            campaign.created_at,
            campaign.id,
            -w[1],
            stage.position,
            stage.created_at,
            stage.id,
            -w[2],
            e.position,
            e.created_at,
            e.id,
        )
        ranked.append((order, _candidate(e, stage, campaign, w)))
    ranked.sort(key=lambda pair: pair[0])
    return DecisionTable(
        session.workspace_id,
        [c for _, c in ranked],
        campaigns,
        stage_of,
        frozenset(event_names),
        session.now(),
    )


def _candidate(
    e: Experience, stage: ExperienceGroup, campaign: ExperienceGroup, w: tuple[float, float, float]
) -> _Candidate:
    vehicle = {
        "providerId": e.provider_id,
        "providerSlug": e.provider_slug,
        "providerChannel": e.provider_channel,
        "tactic": e.tactic,
        "aggression": e.aggression,
        "externalId": e.external_id,
        "detail": to_json(_merge(e.detail, e.detail_override)),
    }
    doc = {
        "experienceId": e.id,
        "name": e.name,
        "ancestorIds": [campaign.id, stage.id],
        "priority": {"campaign": w[0], "stage": w[1], "experience": w[2]},
        **vehicle,
        "vehicle": vehicle,
        "segments": {
            "fixed": e.fixed_segment_id,
            "target": e.target_segment_id,
            "decision": e.decision_segment_id,
        },
        "dates": {
            "startDate": isoformat_z(e.start_date) if e.start_date else None,
            "endDate": isoformat_z(e.end_date) if e.end_date else None,
        },
    }
    return _Candidate(
        id=e.id,
        campaign_id=campaign.id,
        stage_id=stage.id,
        provider_id=e.provider_id,
        provider_slug=e.provider_slug,
        channel=e.provider_channel,
        start=e.start_date,
        end=e.end_date,
        doc=doc,
    )


# -- the per-process cache -------------------------------------------------------------------------------
class CandidateTables(WorkspaceCache[DecisionTable]):
    """One compiled table per workspace, dropped on every change (see the module docstring)."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx, TOPIC, lambda session: build_table(session, self.now))


def tables(ctx: AppContext) -> CandidateTables:
    cache: CandidateTables = ctx.service("experiences.tables", CandidateTables)
    return cache


def decide_for(ctx: AppContext, workspace_id: str, body: DecideBody) -> dict[str, Any]:
    """The HTTP decision: the table (cached), the user's profile and events (one read each), the
    ranking, and — with `record` — the winners' deliveries into the event stream."""
    cache = tables(ctx)
    table = cache.get(workspace_id) or cache.load(workspace_id)
    now = cache.now()
    view = table.view(ctx, now, body.vehicle, body.channel)
    records, user_events = table.load_user(ctx, body.user_id, body.context)
    won, excluded = table.decide(view, records, table.converted_stages(user_events), body.limit)
    if body.record and won:
        experience_events.record_deliveries(ctx, workspace_id, body.user_id, [d["experienceId"] for d in won])
    return {
        "userId": body.user_id,
        "generatedAt": isoformat_z(view.generated_at),
        "decisions": won,
        "excluded": excluded,
    }
