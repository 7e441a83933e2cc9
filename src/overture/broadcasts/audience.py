"""A broadcast's audience in the profile data source: included segments minus excluded ones,
deduplicated, as one SQL statement; its reach (idle -> pending -> ok | failed) and its members."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from overture.broadcasts.models import Broadcast
from overture.broadcasts.states import REACH, ReachStatus
from overture.core.encode import to_json
from overture.data import service as data
from overture.data.models import EntityModel
from overture.data.source import get_source
from overture.db.context import AppContext
from overture.db.session import Session
from overture.errors import Invalid, NotFound, OvertureError
from overture.segments.models import Segment
from overture.segments.service import get_segment, segment_members_select

log = logging.getLogger(__name__)

#: Rows fetched from the data source per round trip while snapshotting.
FETCH_CHUNK = 50_000


def bound_segments(session: Session, audience: dict[str, Any]) -> tuple[list[Segment], list[Segment]]:
    """The audience's segments; 422 naming `audience.included[i]` for one that does not exist."""
    found: dict[str, list[Segment]] = {"included": [], "excluded": []}
    for part in ("included", "excluded"):
        for i, segment_id in enumerate(audience.get(part) or []):
            try:
                found[part].append(get_segment(session, segment_id))
            except NotFound:
                raise Invalid(
                    f"audience.{part}[{i}]: segment '{segment_id}' not found", field=f"audience.{part}[{i}]"
                )
    return found["included"], found["excluded"]


def audience_model(session: Session, audience: dict[str, Any]) -> str | None:
    """The one entity model every segment of the audience is over (422 when they differ)."""
    included, excluded = bound_segments(session, audience)
    model_id: str | None = None
    for part, segments in (("included", included), ("excluded", excluded)):
        for i, segment in enumerate(segments):
            if model_id is None:
                model_id = segment.model_id
            elif segment.model_id != model_id:
                raise Invalid(
                    f"audience.{part}[{i}]: every segment of an audience must be over the same model",
                    field=f"audience.{part}[{i}]",
                )
    return model_id


def signature(session: Session, broadcast: Broadcast) -> str:
    """What the audience means now: its segment ids and their definition versions. Reach is stale
    when this differs from the signature its last evaluation counted."""
    included, excluded = bound_segments(session, broadcast.audience)
    parts = [f"+{s.id}:{s.definition_version}" for s in included] + [
        f"-{s.id}:{s.definition_version}" for s in excluded
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def is_stale(session: Session, broadcast: Broadcast) -> bool:
    if broadcast.reach_signature is None:
        return False
    try:
        return signature(session, broadcast) != broadcast.reach_signature
    except Invalid:  # a segment was deleted under the audience
        return True


def _model(session: Session, broadcast: Broadcast) -> EntityModel:
    if broadcast.model_id is None:
        raise Invalid("audience: no segment is bound to this broadcast", field="audience.included")
    try:
        return data.get_model(session, broadcast.model_id)
    except NotFound:
        raise Invalid("audience: the model of its segments no longer exists", field="audience")


def members_select(ctx: AppContext, session: Session, broadcast: Broadcast) -> sa.Select[Any]:
    """SELECT entity_id of included minus excluded, deduplicated (one statement in the source)."""
    included, excluded = bound_segments(session, broadcast.audience)
    if not included:
        raise Invalid("audience.included: bind at least one segment", field="audience.included")
    model = _model(session, broadcast)
    inc = [segment_members_select(session, s, model=model) for s in included]
    query: Any = inc[0] if len(inc) == 1 else sa.union(*inc)  # a model's keys are unique; UNION dedups
    if excluded:
        query = sa.except_(query, *[segment_members_select(session, s, model=model) for s in excluded])
    return query  # type: ignore[no-any-return]


def count_members(ctx: AppContext, session: Session, broadcast: Broadcast) -> int:
    query = members_select(ctx, session, broadcast)
    with get_source(ctx).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one())


def evaluate_reach(ctx: AppContext, workspace_id: str, broadcast_id: str) -> None:
    """Count the audience now: commit `pending`, count in the source, commit `ok` with the count (or
    `failed` keeping the prior count). Each state change is its own transaction."""
    with ctx.transaction(workspace_id=workspace_id) as session:
        broadcast = session.get(Broadcast, broadcast_id)
        if broadcast is None:
            raise NotFound("broadcast not found")
        REACH.move(broadcast, ReachStatus.PENDING, attr="reach_status")
        sig = signature(session, broadcast)
        try:
            count: int | None = count_members(ctx, session, broadcast)
            error = None
        except OvertureError as exc:
            count, error = None, exc.message
    with ctx.transaction(workspace_id=workspace_id) as session:
        broadcast = session.get(Broadcast, broadcast_id)
        if broadcast is None or broadcast.reach_status != ReachStatus.PENDING:
            return  # the audience was rebound meanwhile: this count is of another audience
        if error is None:
            REACH.move(broadcast, ReachStatus.OK, attr="reach_status")
            broadcast.reach_count = count
            broadcast.reach_evaluated_at = session.now()
            broadcast.reach_signature = sig
            broadcast.reach_error = None
        else:
            log.warning("broadcast %s reach evaluation failed: %s", broadcast_id, error)
            REACH.move(broadcast, ReachStatus.FAILED, attr="reach_status")
            broadcast.reach_error = error[:2000]


def profile_columns(ctx: AppContext, session: Session, broadcast: Broadcast) -> list[str]:
    return [c.name for c in data.model_columns(session, _model(session, broadcast))]


def primary_key(session: Session, broadcast: Broadcast) -> str:
    return _model(session, broadcast).primary_key


def iter_keys(ctx: AppContext, session: Session, broadcast: Broadcast) -> Iterator[list[str]]:
    """The audience's keys as text, in chunks (the manifest to freeze)."""
    query = members_select(ctx, session, broadcast)
    with get_source(ctx).connect() as conn:
        result = conn.execution_options(stream_results=True).execute(query)
        while rows := result.fetchmany(FETCH_CHUNK):
            yield [str(r[0]) for r in rows]


def profiles(
    ctx: AppContext,
    session: Session,
    broadcast: Broadcast,
    columns: Sequence[str],
    keys: set[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Profile fields of the audience's members now, by key (JSON values). With `keys`, only those
    members (a sample); without, every current member (joined onto the frozen manifest by the caller)."""
    model = _model(session, broadcast)
    relation, _ = data.relation_for(session, model)
    pk = relation.c[model.primary_key]
    wanted = [relation.c[c] for c in columns if c != model.primary_key]
    query = sa.select(pk, *wanted).where(pk.in_(members_select(ctx, session, broadcast)))
    if keys is not None:
        query = query.where(sa.cast(pk, sa.String).in_(sorted(keys)))
    names = [c.name for c in wanted]
    with_key = model.primary_key in columns
    out: dict[str, dict[str, Any]] = {}
    with get_source(ctx).connect() as conn:
        result = conn.execution_options(stream_results=True).execute(query)
        while rows := result.fetchmany(FETCH_CHUNK):
            for row in rows:
                fields = {n: to_json(v) for n, v in zip(names, row[1:], strict=True)}
                if with_key:
                    fields[model.primary_key] = to_json(row[0])
                out[str(row[0])] = fields
    return out


def count_missing(ctx: AppContext, session: Session, broadcast: Broadcast, column: str) -> int:
    """Members whose address column is null or blank (they will be dropped at composition)."""
    model = _model(session, broadcast)
    relation, _ = data.relation_for(session, model)
    pk, value = relation.c[model.primary_key], relation.c[column]
    query = (
        sa.select(sa.func.count())
        .select_from(relation)
        .where(
            pk.in_(members_select(ctx, session, broadcast)),
            sa.or_(value.is_(None), sa.func.trim(sa.cast(value, sa.String)) == ""),
        )
    )
    with get_source(ctx).connect() as conn:
        return int(conn.execute(query).scalar_one())


def sample_keys(ctx: AppContext, session: Session, broadcast: Broadcast, n: int) -> list[str]:
    query = members_select(ctx, session, broadcast).subquery()
    with get_source(ctx).connect() as conn:
        return [str(r[0]) for r in conn.execute(sa.select(query.c.entity_id).limit(n))]
