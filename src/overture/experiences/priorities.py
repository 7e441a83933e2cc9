"""Prioritization records (seed 000): weighted entries ordering a campaign's stages or a stage's
experiences, and the `account_priority` record ordering the workspace's campaigns. Higher weight =
higher priority; an entry missing from a record weighs 0."""

from __future__ import annotations

import sqlalchemy as sa

from overture.db.lookup import get_or_404
from overture.db.session import Session
from overture.errors import Conflict, Invalid
from overture.experiences.changes import changed
from overture.experiences.models import ACCOUNT_PRIORITY, ExperienceGroup, Prioritization
from overture.experiences.schemas import (
    PrioritizationCreate,
    PrioritizationRead,
    PrioritizationUpdate,
    PriorityEntry,
)

__all__ = [
    "DEFAULT_WEIGHT",
    "add_entry",
    "create_prioritization",
    "delete_prioritization",
    "get_prioritization",
    "list_prioritizations",
    "prioritization_read",
    "remove_entry",
    "set_account_priority",
    "update_prioritization",
]

#: The weight publishing gives an experience its stage's record does not list yet.
DEFAULT_WEIGHT = 1.0


def prioritization_read(p: Prioritization) -> PrioritizationRead:
    return PrioritizationRead(
        id=p.id,
        group_id=p.group_id,
        slug=p.slug,
        entries=[PriorityEntry.model_validate(x) for x in p.entries or []],
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


def _entries(entries: list[PriorityEntry], field: str) -> list[dict[str, object]]:
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise Invalid(f"{field}: an id is listed twice", field=field)
    return [{"id": e.id, "weight": e.weight} for e in entries]


def list_prioritizations(session: Session) -> list[Prioritization]:
    return list(
        session.scalars(sa.select(Prioritization).order_by(Prioritization.created_at, Prioritization.id))
    )


def get_prioritization(session: Session, prioritization_id: str) -> Prioritization:
    if prioritization_id == ACCOUNT_PRIORITY:
        return _account(session)
    return get_or_404(session, Prioritization, prioritization_id, what="prioritization")


def _account(session: Session) -> Prioritization:
    """The account_priority record (an empty one is made the first time it is asked for)."""
    record = session.scalar(sa.select(Prioritization).where(Prioritization.slug == ACCOUNT_PRIORITY))
    if record is None:
        record = Prioritization(slug=ACCOUNT_PRIORITY, entries=[])
        session.add(record)
        session.flush()
    return record


def create_prioritization(session: Session, body: PrioritizationCreate) -> Prioritization:
    group = session.get(ExperienceGroup, body.group_id)
    if group is None or group.deleted_at is not None or group.workspace_id != session.workspace_id:
        raise Invalid(
            f"prioritization.groupId: group '{body.group_id}' not found", field="prioritization.groupId"
        )
    if session.scalar(sa.select(Prioritization.id).where(Prioritization.group_id == group.id)) is not None:
        raise Conflict(
            f"prioritization.groupId: group '{group.id}' already has a prioritization; PATCH it",
            field="prioritization.groupId",
        )
    record = Prioritization(group_id=group.id, entries=_entries(body.entries, "prioritization.entries"))
    session.add(record)
    session.flush()
    changed(session)
    return record


def update_prioritization(
    session: Session, prioritization_id: str, body: PrioritizationUpdate
) -> Prioritization:
    record = get_prioritization(session, prioritization_id)
    if body.entries is not None:
        record.entries = _entries(body.entries, "prioritization.entries")
    session.flush()
    changed(session)
    return record


def delete_prioritization(session: Session, prioritization_id: str) -> None:
    record = get_prioritization(session, prioritization_id)
    session.delete(record)
    session.flush()
    changed(session)


def set_account_priority(session: Session, entries: list[PriorityEntry]) -> Prioritization:
    """Order the campaigns: every id must be a live campaign of this workspace."""
    for i, entry in enumerate(entries):
        group = session.get(ExperienceGroup, entry.id)
        if group is None or group.deleted_at is not None or group.workspace_id != session.workspace_id:
            raise Invalid(f"entries[{i}].id: campaign '{entry.id}' not found", field=f"entries[{i}].id")
        if group.parent_id is not None:
            raise Invalid(
                f"entries[{i}].id: '{entry.id}' is a stage, not a campaign", field=f"entries[{i}].id"
            )
    record = _account(session)
    record.entries = _entries(entries, "entries")
    session.flush()
    changed(session)
    return record


def _group_record(session: Session, group_id: str) -> Prioritization | None:
    return session.scalar(sa.select(Prioritization).where(Prioritization.group_id == group_id))


def add_entry(session: Session, group_id: str, child_id: str, weight: float = DEFAULT_WEIGHT) -> None:
    """Add `child_id` to the group's record (made if missing) unless it is listed already."""
    record = _group_record(session, group_id)
    if record is None:
        record = Prioritization(group_id=group_id, entries=[])
        session.add(record)
    if not any(entry.get("id") == child_id for entry in record.entries or []):
        record.entries = [*(record.entries or []), {"id": child_id, "weight": weight}]
    session.flush()


def remove_entry(session: Session, group_id: str, child_id: str) -> None:
    record = _group_record(session, group_id)
    if record is not None and any(entry.get("id") == child_id for entry in record.entries or []):
        record.entries = [entry for entry in record.entries if entry.get("id") != child_id]
        session.flush()


def weights(session: Session) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(campaign id -> weight from account_priority, group id -> {child id -> weight})."""
    account: dict[str, float] = {}
    by_group: dict[str, dict[str, float]] = {}
    for record in session.scalars(sa.select(Prioritization)):
        table = {str(e["id"]): float(e["weight"]) for e in record.entries or []}
        if record.slug == ACCOUNT_PRIORITY:
            account = table
        elif record.group_id is not None:
            by_group[record.group_id] = table
    return account, by_group
