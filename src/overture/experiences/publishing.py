"""What publishing sets in motion (seed 000): the three generated segments of an experience, kept
current on every change of its campaign; its entry in its stage's prioritization; the export job of
an external provider; and the change notice that drops candidate caches in every process.

The generated segments are real segments (`overture.segments`), over the campaign segment's model:
    fixed(E)    = {"segment": campaign.segmentId}
    target(E)   = {"all": [{"segment": fixed(E)}, {"not": converted on a sibling stage's experience}]}
    decision(E) = delivered E
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from overture.db.session import Session
from overture.errors import Invalid
from overture.experiences import priorities, providers
from overture.experiences.changes import TOPIC, changed
from overture.experiences.models import Experience, ExperienceGroup
from overture.experiences.states import ExperienceStatus
from overture.runtime.jobs import enqueue_job
from overture.segments import service as segments
from overture.segments.models import Segment

__all__ = [
    "EVALUATE_JOB",
    "EXPORT_JOB",
    "TOPIC",
    "changed",
    "check_publishable",
    "decision_filter",
    "fixed_filter",
    "forget",
    "on_published",
    "published_in",
    "refresh_campaign",
    "refresh_orphan",
    "target_filter",
]

EXPORT_JOB = "experiences.export"
EVALUATE_JOB = "experiences.evaluate_segments"
#: A filter that matches no one (an orphan's fixed and target segments).
NOBODY: dict[str, Any] = {"any": []}


def fixed_filter(campaign_segment_id: str) -> dict[str, Any]:
    return {"segment": campaign_segment_id}


def target_filter(fixed_segment_id: str, sibling_experience_ids: list[str]) -> dict[str, Any]:
    converted = {"experience_event": "conversion", "experiences": sibling_experience_ids}
    return {"all": [{"segment": fixed_segment_id}, {"not": converted}]}


def decision_filter(experience_id: str) -> dict[str, Any]:
    return {"experience_event": "delivery", "experiences": [experience_id]}


def _campaign(session: Session, e: Experience) -> ExperienceGroup | None:
    if e.parent_id is None:
        return None
    stage = session.get(ExperienceGroup, e.parent_id)
    if stage is None or stage.deleted_at is not None or stage.parent_id is None:
        return None
    campaign = session.get(ExperienceGroup, stage.parent_id)
    return None if campaign is None or campaign.deleted_at is not None else campaign


def check_publishable(session: Session, e: Experience) -> None:
    """422 saying what is missing: a parent stage, its campaign's segmentId, a vehicle provider."""
    if e.parent_id is None:
        raise Invalid("experience.parentId: publishing needs a parent stage", field="experience.parentId")
    campaign = _campaign(session, e)
    if campaign is None:
        raise Invalid("experience.parentId: the parent stage has no campaign", field="experience.parentId")
    if campaign.segment_id is None:
        raise Invalid(
            f"segmentId: campaign '{campaign.id}' has no segmentId (its primary audience); set it first",
            field="segmentId",
        )
    if not e.provider_id and not e.provider_slug:
        raise Invalid(
            "experience.vehicle.providerId: publishing needs a vehicle provider (providerId or providerSlug)",
            field="experience.vehicle.providerId",
        )
    providers.check_exportable(session, e)


def on_published(session: Session, e: Experience) -> None:
    """Stage prioritization entry (default weight), export job for an external provider."""
    e.publish_count += 1
    assert e.parent_id is not None
    priorities.add_entry(session, e.parent_id, e.id)
    if providers.is_external(e.provider_slug):
        enqueue_job(
            session,
            EXPORT_JOB,
            {"experience_id": e.id, "publish": e.publish_count},
            workspace_id=session.workspace_id,
            unique_key=f"experience-export:{e.id}:{e.publish_count}",
        )


def published_in(session: Session, campaign_id: str) -> bool:
    stages = sa.select(ExperienceGroup.id).where(ExperienceGroup.parent_id == campaign_id)
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Experience)
            .where(
                Experience.parent_id.in_(stages),
                Experience.deleted_at.is_(None),
                Experience.status == ExperienceStatus.PUBLISHED,
            )
        )
        or 0
    ) > 0


def _save(
    session: Session, current_id: str | None, *, name: str, model_id: str, flt: Any, changed: list[str]
) -> str:
    """Create or update a generated segment; an unchanged one is left alone (no write, no new reach)."""
    segment = session.get(Segment, current_id) if current_id else None
    if segment is not None and (segment.name, segment.model_id, segment.filter) == (name, model_id, flt):
        return segment.id
    saved = segments.save_generated(session, segment, name=name, model_id=model_id, filter=flt)
    changed.append(saved.id)
    return saved.id


def refresh_campaign(session: Session, campaign_id: str) -> None:
    """Regenerate the segments of every experience in the campaign that has been published: the
    campaign's audience or its stages' membership may have changed. Set-based over the campaign
    (one read of its stages and experiences), one segment write per changed definition."""
    campaign = session.get(ExperienceGroup, campaign_id)
    if campaign is None:
        return
    stages = list(
        session.scalars(
            sa.select(ExperienceGroup).where(
                ExperienceGroup.parent_id == campaign.id, ExperienceGroup.deleted_at.is_(None)
            )
        )
    )
    members: dict[str, list[Experience]] = {s.id: [] for s in stages}
    if stages:
        for e in session.scalars(
            sa.select(Experience)
            .where(Experience.parent_id.in_(list(members)), Experience.deleted_at.is_(None))
            .order_by(Experience.created_at, Experience.id)
        ):
            members[e.parent_id or ""].append(e)
    if campaign.deleted_at is not None or campaign.segment_id is None:
        for stage_members in members.values():
            for e in stage_members:
                refresh_orphan(session, e)
        return
    audience = session.get(Segment, campaign.segment_id)
    if audience is None:
        return
    # One read brings every generated segment of the campaign into the session (no get per segment);
    # `held` keeps them there (the identity map holds objects weakly).
    owned = [
        s
        for es in members.values()
        for e in es
        for s in (e.fixed_segment_id, e.target_segment_id, e.decision_segment_id)
        if s
    ]
    held = list(session.scalars(sa.select(Segment).where(Segment.id.in_(owned)))) if owned else []
    touched: list[str] = []
    for stage_id, stage_members in members.items():
        siblings = sorted(e.id for other, es in members.items() if other != stage_id for e in es)
        for e in stage_members:
            if e.status == ExperienceStatus.DRAFT and e.fixed_segment_id is None:
                continue  # never published: no segments yet
            e.fixed_segment_id = _save(
                session,
                e.fixed_segment_id,
                name=f"{e.name} · fixed",
                model_id=audience.model_id,
                flt=fixed_filter(audience.id),
                changed=touched,
            )
            e.target_segment_id = _save(
                session,
                e.target_segment_id,
                name=f"{e.name} · target",
                model_id=audience.model_id,
                flt=target_filter(e.fixed_segment_id, siblings),
                changed=touched,
            )
            e.decision_segment_id = _save(
                session,
                e.decision_segment_id,
                name=f"{e.name} · decision",
                model_id=audience.model_id,
                flt=decision_filter(e.id),
                changed=touched,
            )
    session.flush()
    del held
    _evaluate_later(session, touched)


def refresh_orphan(session: Session, e: Experience) -> None:
    """An experience without a campaign targets no one (its decision segment keeps its history)."""
    if e.fixed_segment_id is None:
        return
    fixed = session.get(Segment, e.fixed_segment_id)
    if fixed is None:
        return
    touched: list[str] = []
    for current, name in ((e.fixed_segment_id, "fixed"), (e.target_segment_id, "target")):
        if current is not None:
            _save(
                session,
                current,
                name=f"{e.name} · {name}",
                model_id=fixed.model_id,
                flt=NOBODY,
                changed=touched,
            )
    session.flush()
    _evaluate_later(session, touched)


def forget(session: Session, e: Experience) -> None:
    """A deleted experience's generated segments are soft-deleted with it; it leaves its stage's
    prioritization."""
    segments.delete_generated(
        session, [s for s in (e.fixed_segment_id, e.target_segment_id, e.decision_segment_id) if s]
    )
    if e.parent_id is not None:
        priorities.remove_entry(session, e.parent_id, e.id)


def _evaluate_later(session: Session, segment_ids: list[str]) -> None:
    """Reach of the generated segments is counted by a job (publishing stays fast); one job per
    definition version, so a burst of changes counts once per version."""
    if not segment_ids:
        return
    versions = session.execute(
        sa.select(Segment.id, Segment.definition_version).where(Segment.id.in_(segment_ids))
    ).all()
    key = ",".join(f"{sid}@{v}" for sid, v in sorted(versions))
    enqueue_job(
        session,
        EVALUATE_JOB,
        {"segment_ids": sorted(set(segment_ids))},
        workspace_id=session.workspace_id,
        unique_key=f"experience-segments:{_digest(key)}",
    )


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:40]
