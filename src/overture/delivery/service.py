"""Destinations: CRUD with validated configs and write-only secrets, test sends, and `send_batch`,
the one call the outbox dispatcher makes to deliver messages."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from overture.core.encode import isoformat_z
from overture.db.lookup import get_or_404
from overture.db.session import Session
from overture.delivery.adapters.base import Adapter, Target
from overture.delivery.adapters.file import FileAdapter
from overture.delivery.adapters.log import LogAdapter
from overture.delivery.adapters.smtp import SmtpAdapter
from overture.delivery.adapters.webhook import WebhookAdapter
from overture.delivery.messages import Message, Outcome
from overture.delivery.models import Destination
from overture.delivery.redaction import merge_config, redact, reject_masks
from overture.delivery.schemas import DestinationCreate, DestinationUpdate
from overture.errors import Conflict, Invalid

if TYPE_CHECKING:
    from overture.db.context import AppContext

log = logging.getLogger(__name__)

ADAPTERS: dict[str, Adapter] = {
    a.type: a for a in (WebhookAdapter(), SmtpAdapter(), FileAdapter(), LogAdapter())
}
#: How long a message for a disabled destination waits before the dispatcher asks again.
DISABLED_RETRY_SECONDS = 60.0
MAX_DESTINATIONS_LISTED = 1000


def adapter_for(dest_type: str) -> Adapter:
    adapter = ADAPTERS.get(dest_type)
    if adapter is None:
        raise Invalid(f"unknown destination type '{dest_type}'", field="type")
    return adapter


# -- queries and use cases ------------------------------------------------------------------------


def get_destination(session: Session, destination_id: str) -> Destination:
    """A live destination by id. In a workspace-bound session another workspace's id is NotFound."""
    return get_or_404(session, Destination, destination_id, what="destination", deleted_at=None)


def list_destinations(session: Session) -> list[Destination]:
    stmt = (
        sa.select(Destination)
        .where(Destination.deleted_at.is_(None))
        .order_by(Destination.created_at, Destination.id)
        .limit(MAX_DESTINATIONS_LISTED)
    )
    return list(session.scalars(stmt))


def _check_name_free(session: Session, name: str, except_id: str | None = None) -> None:
    stmt = sa.select(Destination.id).where(Destination.name == name, Destination.deleted_at.is_(None))
    if except_id is not None:
        stmt = stmt.where(Destination.id != except_id)
    if session.scalars(stmt).first() is not None:
        raise Conflict(f"a destination named '{name}' already exists", field="name")


def _flush(session: Session, name: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # a concurrent request took the name between our check and insert
        raise Conflict(f"a destination named '{name}' already exists", field="name")


def create_destination(session: Session, body: DestinationCreate) -> Destination:
    """Validate the config (422 naming the field), refuse forbidden targets (egress, at save), store."""
    ctx = session.ctx
    adapter = adapter_for(body.type)
    reject_masks(body.type, body.config)
    config = adapter.normalize(ctx, body.config)
    adapter.check_egress(ctx, config)
    _check_name_free(session, body.name)
    row = Destination(name=body.name, type=body.type, config=config, enabled=body.enabled)
    session.add(row)
    _flush(session, body.name)
    return row


def update_destination(session: Session, destination_id: str, body: DestinationUpdate) -> Destination:
    row = get_destination(session, destination_id)
    if body.name is not None and body.name != row.name:
        _check_name_free(session, body.name, except_id=row.id)
        row.name = body.name
    if body.config is not None:
        adapter = adapter_for(row.type)
        merged = merge_config(row.type, row.config, body.config)
        config = adapter.normalize(session.ctx, merged)
        adapter.check_egress(session.ctx, config)
        row.config = config
    if body.enabled is not None:
        row.enabled = body.enabled
    _flush(session, row.name)
    return row


def delete_destination(session: Session, destination_id: str) -> None:
    """Soft delete: the id stays resolvable for the ledger; messages still owed to it fail."""
    row = get_destination(session, destination_id)
    row.deleted_at = session.now()
    session.flush()


def to_read(row: Destination) -> dict[str, Any]:
    """The API view of a destination: secrets masked."""
    return {
        "id": row.id,
        "name": row.name,
        "type": row.type,
        "config": redact(row.type, row.config or {}),
        "enabled": row.enabled,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def test_destination(
    ctx: AppContext, workspace_id: str, destination_id: str, payload: dict[str, Any] | None
) -> Outcome:
    """Send one message through the real adapter (egress checked again) and report its outcome.

    The destination is read in a short transaction of its own: the send may take seconds and must
    not hold a database lock meanwhile. A disabled destination can still be tested."""
    with ctx.transaction(write=False, workspace_id=workspace_id) as session:
        target = Target.of(get_destination(session, destination_id))
    adapter = adapter_for(target.type)
    key = f"test-{uuid.uuid4().hex}"
    body = payload if payload is not None else adapter.test_payload(target, isoformat_z(ctx.clock.now()))
    return _send(ctx, adapter, target, [Message(key, body)])[0]


# -- delivery ------------------------------------------------------------------------------------


def send_batch(ctx: AppContext, destination: Destination, messages: Sequence[Message]) -> list[Outcome]:
    """Deliver `messages` to `destination`: one Outcome per message, in the same order.

    Never raises for a per-message problem. Network errors, timeouts, 408/425/429 and 5xx are `retry`
    (with `retry_after` seconds when the receiver sent Retry-After); other 4xx, refused targets
    (egress) and unusable payloads are `failed`. A disabled destination answers `retry` after
    DISABLED_RETRY_SECONDS; a deleted one `failed`. Egress is checked again here, at send time."""
    if not messages:
        return []
    if destination.deleted_at is not None:
        return [Outcome.failed(m.idempotency_key, "destination was deleted") for m in messages]
    if not destination.enabled:
        return [
            Outcome.retry(m.idempotency_key, "destination is disabled", DISABLED_RETRY_SECONDS)
            for m in messages
        ]
    adapter = ADAPTERS.get(destination.type)
    if adapter is None:
        return [Outcome.failed(m.idempotency_key, f"unknown type '{destination.type}'") for m in messages]
    return _send(ctx, adapter, Target.of(destination), messages)


def _send(ctx: AppContext, adapter: Adapter, target: Target, messages: Sequence[Message]) -> list[Outcome]:
    try:
        outcomes = adapter.send_batch(ctx, target, messages)
    except Exception as exc:  # an adapter bug must not lose messages or crash the dispatcher
        log.exception("%s adapter raised for destination %s", target.type, target.id)
        return [
            Outcome.retry(m.idempotency_key, f"unexpected error: {type(exc).__name__}: {exc}")
            for m in messages
        ]
    if len(outcomes) != len(messages):  # defensive: the contract is one outcome per message
        log.error(
            "%s adapter returned %d outcomes for %d messages", target.type, len(outcomes), len(messages)
        )
        by_key = {o.idempotency_key: o for o in outcomes}
        return [
            by_key.get(m.idempotency_key) or Outcome.retry(m.idempotency_key, "no outcome reported")
            for m in messages
        ]
    return outcomes
