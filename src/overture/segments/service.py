"""Segments: CRUD, reach evaluation (`states.REACH`: idle -> pending -> ok | failed), member pages and
previews.

Public functions for other surfaces (stable; the session is bound to the caller's workspace):
    get_segment(session, segment_id) -> Segment
    segment_members_select(session, segment, *, model=None) -> sa.Select   (one column `entity_id`)
    count_select(session, select) -> int
    evaluate_segment(ctx, workspace_id, segment_id) -> Segment
    reach_of(segment) -> Reach
    resolved_filter(session, model_id, raw_filter) -> Any   (segment references expanded)
    segment_resolver(session, model_id) -> Resolver          (for to_predicate/to_sql)
    save_generated(session, segment, *, name, model_id, filter) -> Segment
    delete_generated(session, segment_ids) -> None

`evaluate_segment` alone takes the context instead of a session: it commits `pending` before the
count runs and the result after, so it opens its own transactions (like a task).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from overture.core import encode
from overture.core.filters import FilterError, Node, Resolver, expand, parse, segments_of, to_json
from overture.data import service as data
from overture.data.models import EntityModel
from overture.data.source import get_source
from overture.db.context import AppContext
from overture.db.lookup import get_or_404
from overture.db.session import Session
from overture.errors import Conflict, Invalid, NotFound, OvertureError, invalid_filter
from overture.segments.models import Segment
from overture.segments.schemas import (
    MembersPage,
    PreviewIn,
    PreviewRead,
    Reach,
    SegmentCreate,
    SegmentRead,
    SegmentUpdate,
)
from overture.segments.states import REACH, ReachStatus

__all__ = [
    "MAX_PAGE",
    "count_select",
    "create_segment",
    "delete_generated",
    "delete_segment",
    "evaluate_segment",
    "get_segment",
    "list_segments",
    "members_page",
    "preview",
    "reach_of",
    "resolved_filter",
    "save_generated",
    "segment_members_select",
    "segment_read",
    "segment_resolver",
    "update_segment",
]

log = logging.getLogger(__name__)

MAX_PAGE = 1000
#: A `pending` evaluation older than this is presumed dead (its process crashed) and may be retaken.
PENDING_LEASE = timedelta(minutes=10)


def reach_of(segment: Segment) -> Reach:
    return Reach(
        status=segment.reach_status,
        evaluated_count=segment.evaluated_count,
        evaluated_at=segment.evaluated_at,
        is_stale=segment.is_stale,
        error=segment.last_error if segment.reach_status == ReachStatus.FAILED else None,
    )


def segment_read(segment: Segment) -> SegmentRead:
    return SegmentRead(
        id=segment.id,
        workspace_id=segment.workspace_id,
        name=segment.name,
        model_id=segment.model_id,
        filter=segment.filter,
        reach=reach_of(segment),
        generated=segment.generated,
        created_at=segment.created_at,
        updated_at=segment.updated_at,
    )


# -- CRUD ------------------------------------------------------------------------------------------
def get_segment(session: Session, segment_id: str) -> Segment:
    """The live segment in the session's workspace; NotFound (404) otherwise."""
    return get_or_404(session, Segment, segment_id, what="segment", deleted_at=None)


def list_segments(session: Session) -> list[Segment]:
    query = sa.select(Segment).where(Segment.deleted_at.is_(None))
    return list(session.scalars(query.order_by(Segment.created_at, Segment.id)))


# -- references between segments ({"segment": "<id>"} in a filter) --------------------------------
def segment_resolver(session: Session, model_id: str, overrides: dict[str, Any] | None = None) -> Resolver:
    """Resolve segment ids to their parsed filters for `expand`: only live segments of this workspace
    over the same model. `overrides` stands in for definitions not saved yet (an update being checked,
    so a reference back to it is seen as the cycle it would be)."""
    pending = dict(overrides or {})

    def resolve(segment_id: str) -> Node:
        if segment_id in pending:
            return parse(pending[segment_id])
        segment = session.get(Segment, segment_id)
        if (
            segment is None
            or segment.deleted_at is not None
            or session.bound_workspace not in (None, segment.workspace_id)
        ):
            raise LookupError(f"segment '{segment_id}' not found")
        if segment.model_id != model_id:
            raise LookupError(f"segment '{segment_id}' is over another model")
        return parse(segment.filter)

    return resolve


def resolved_filter(session: Session, model_id: str, raw_filter: Any, *, self_id: str | None = None) -> Any:
    """`raw_filter` with every segment reference replaced by the referenced filter (JSON), ready to
    compile; unchanged when it has none. Unknown or foreign segments and cycles are a 422 naming the
    reference's path."""
    try:
        node = parse(raw_filter)
        if not segments_of(node):
            return raw_filter
        overrides = {self_id: raw_filter} if self_id is not None else None
        return to_json(expand(node, segment_resolver(session, model_id, overrides)))
    except FilterError as exc:
        raise invalid_filter(exc)


def _referrers(session: Session, segment_id: str) -> list[Segment]:
    """Live segments whose filter refers to `segment_id` directly."""
    out = []
    for other in list_segments(session):
        try:
            if segment_id in segments_of(parse(other.filter)):
                out.append(other)
        except FilterError:
            continue
    return out


def save_generated(
    session: Session, segment: Segment | None, *, name: str, model_id: str, filter: Any
) -> Segment:
    """Create or update a generated segment (a surface's own, read-only through the segments API). A
    changed definition bumps `definition_version`, so the last reach reads as stale."""
    resolved_filter(session, model_id, filter, self_id=segment.id if segment is not None else None)
    if segment is None:
        segment = Segment(
            name=name,
            model_id=model_id,
            filter=filter,
            definition_version=1,
            reach_status=ReachStatus.IDLE,
            generated=True,
        )
        session.add(segment)
    else:
        segment.name = name
        if segment.model_id != model_id or segment.filter != filter:
            segment.model_id, segment.filter = model_id, filter
            segment.definition_version += 1
    session.flush()
    return segment


def delete_generated(session: Session, segment_ids: list[str]) -> None:
    """Soft-delete generated segments (their owner went away)."""
    if segment_ids:
        session.execute(
            sa.update(Segment)
            .where(Segment.id.in_(segment_ids), Segment.generated.is_(True), Segment.deleted_at.is_(None))
            .values(deleted_at=session.now())
        )


def _model_for(session: Session, model_id: str) -> EntityModel:
    try:
        return data.get_model(session, model_id)
    except NotFound:
        raise Invalid(f"model_id: model '{model_id}' not found", field="model_id")


def create_segment(session: Session, body: SegmentCreate) -> Segment:
    model = _model_for(session, body.model_id)
    # 422 naming the path if it does not fit the model or refers to an unknown segment
    data.compile_filter(session, model, resolved_filter(session, model.id, body.filter))
    segment = Segment(
        workspace_id=session.workspace_id,
        name=body.name,
        model_id=model.id,
        filter=body.filter,
        definition_version=1,
        reach_status=ReachStatus.IDLE,
    )
    session.add(segment)
    session.flush()
    return segment


def update_segment(session: Session, segment_id: str, body: SegmentUpdate) -> Segment:
    segment = get_segment(session, segment_id)
    _refuse_generated(segment)
    fields = body.model_fields_set
    if body.name is not None:
        segment.name = body.name
    model_id = body.model_id if body.model_id is not None else segment.model_id
    new_filter = body.filter if "filter" in fields else segment.filter
    if model_id != segment.model_id or ("filter" in fields and new_filter != segment.filter):
        model = _model_for(session, model_id)
        data.compile_filter(
            session, model, resolved_filter(session, model.id, new_filter, self_id=segment.id)
        )
        segment.model_id, segment.filter = model.id, new_filter
        segment.definition_version += 1
    segment.updated_at = session.now()
    session.flush()
    return segment


def _refuse_generated(segment: Segment) -> None:
    if segment.generated:
        raise Conflict(
            "this segment is generated (by an experience) and kept current by it; change that instead"
        )


def delete_segment(session: Session, segment_id: str) -> None:
    segment = get_segment(session, segment_id)
    _refuse_generated(segment)
    referrers = _referrers(session, segment.id)
    if referrers:
        raise Conflict(f"segment is in use: segment '{referrers[0].id}' refers to it; remove that first")
    session.delete(segment)
    try:
        session.flush()
    except sa.exc.IntegrityError:
        raise Conflict("segment is in use (a campaign or journey refers to it); remove that first")


# -- membership ------------------------------------------------------------------------------------
def _clause(
    session: Session, model: EntityModel, raw_filter: Any
) -> tuple[sa.FromClause, sa.ColumnElement[Any], sa.ColumnElement[bool]]:
    relation, sql_model = data.relation_for(session, model)
    where = data.compile_against(session, sql_model, resolved_filter(session, model.id, raw_filter))
    return relation, relation.c[model.primary_key], where


def _count(session: Session, relation: sa.FromClause, where: sa.ColumnElement[bool]) -> int:
    """COUNT(*) of the rows of `relation` matching `where`, run in the data source."""
    with get_source(session.ctx).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(relation).where(where)).scalar_one())


def segment_members_select(
    session: Session, segment: Segment, *, model: EntityModel | None = None
) -> sa.Select[Any]:
    """SELECT of the segment's members' primary keys (one column, `entity_id`), to run in the data source
    or embed in a larger statement (`... WHERE x IN (select)`, `INSERT ... SELECT`). Set-based: nothing
    is fetched here. Relative times in the filter are anchored at `session.now()`."""
    if model is None:
        model = data.get_model(session, segment.model_id)
    relation, pk, where = _clause(session, model, segment.filter)
    return sa.select(pk.label("entity_id")).select_from(relation).where(where)


def count_select(session: Session, select: sa.Select[Any]) -> int:
    """COUNT(*) of a members select, run in the data source."""
    with get_source(session.ctx).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(select.subquery())).scalar_one())


def preview(session: Session, body: PreviewIn) -> PreviewRead:
    """Count an unsaved filter over a model."""
    model = _model_for(session, body.model_id)
    relation, _, where = _clause(session, model, body.filter)
    return PreviewRead(model_id=model.id, count=_count(session, relation, where))


def _encode_cursor(key: Any) -> str:
    raw = json.dumps({"after": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(doc, dict) or "after" not in doc or not isinstance(doc["after"], str | int | float):
            raise ValueError
        return doc["after"]
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("cursor: not a cursor this endpoint returned", field="cursor")


def members_page(session: Session, segment_id: str, *, limit: int, cursor: str | None) -> MembersPage:
    """One page of member keys in primary key order (keyset pagination: each page starts strictly
    after the last key of the one before, so pages never repeat or skip a stable member)."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit: must be between 1 and {MAX_PAGE}", field="limit")
    segment = get_segment(session, segment_id)
    model = data.get_model(session, segment.model_id)
    relation, pk, where = _clause(session, model, segment.filter)
    query = sa.select(pk).select_from(relation).where(where, pk.is_not(None))
    if cursor:
        query = query.where(pk > _decode_cursor(cursor))
    query = query.order_by(pk).limit(limit + 1)
    with get_source(session.ctx).connect() as conn:
        keys = [encode.to_json(row[0]) for row in conn.execute(query)]
    more = len(keys) > limit
    keys = keys[:limit]
    return MembersPage(
        segment_id=segment.id,
        primary_key=model.primary_key,
        members=keys,
        next_cursor=_encode_cursor(keys[-1]) if more and keys else None,
    )


# -- reach -----------------------------------------------------------------------------------------
def evaluate_segment(ctx: AppContext, workspace_id: str, segment_id: str) -> Segment:
    """Count the segment's members now: commit `pending`, COUNT(*) in the data source, then commit `ok`
    with the count, or `failed` with the error (keeping the prior count). Runs inline; each state change
    is its own transaction, so readers see `pending` while the count runs. 409 while another evaluation
    of the same segment is pending (unless that one is older than PENDING_LEASE: presumed dead)."""
    with ctx.transaction(workspace_id=workspace_id) as session:
        now = session.now()
        segment = get_segment(session, segment_id)
        if segment.reach_status == ReachStatus.PENDING:
            started = segment.evaluation_started_at
            if started is not None and now - started < PENDING_LEASE:
                raise Conflict("segment is already being evaluated (reach is 'pending')")
            # The dead evaluation ends as failed before the new one starts.
            REACH.move(segment, ReachStatus.FAILED, attr="reach_status")
        REACH.move(segment, ReachStatus.PENDING, attr="reach_status")
        segment.evaluating_version = segment.definition_version
        segment.evaluation_started_at = now
        version = segment.definition_version
        model = data.get_model(session, segment.model_id)
        raw_filter = segment.filter
    count: int | None = None
    error: str | None = None
    try:
        # A read-only session of its own: the count may take long and must hold no write transaction.
        with ctx.transaction(write=False, workspace_id=workspace_id) as session:
            relation, _, where = _clause(session, model, raw_filter)
            count = _count(session, relation, where)
    except OvertureError as exc:
        error = exc.message
    except Exception as exc:  # record the failure, then let the bug surface as a 500
        _finish(ctx, workspace_id, segment_id, version, None, f"internal error: {type(exc).__name__}")
        raise
    return _finish(ctx, workspace_id, segment_id, version, count, error)


def _finish(
    ctx: AppContext, workspace_id: str, segment_id: str, version: int, count: int | None, error: str | None
) -> Segment:
    with ctx.transaction(workspace_id=workspace_id) as session:
        segment = get_segment(session, segment_id)
        if segment.reach_status != ReachStatus.PENDING or segment.evaluating_version != version:
            return segment  # a newer evaluation took over (lease expiry); its result wins
        if error is None:
            REACH.move(segment, ReachStatus.OK, attr="reach_status")
            segment.evaluated_count = count
            segment.evaluated_at = session.now()
            segment.evaluated_version = version
            segment.last_error = None
        else:
            log.warning("segment %s evaluation failed: %s", segment_id, error)
            REACH.move(segment, ReachStatus.FAILED, attr="reach_status")
            segment.last_error = error[:2000]
        session.flush()
        return segment
