"""Queries the paywall use cases share: configuration CRUD (service), experiment results and
attribution (service_experiments) and the decision snapshot (snapshot), and the deletion of the
decision path's records with their owner. Set-based: a list of ids is read in `IN (...)` chunks,
never one query per row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from overture.paywalls.models import CapCounter, Conversion, Experiment, Exposure, Variant

#: Ids per `IN (...)`: well under every driver's bound-parameter limit.
IN_CHUNK = 500


def chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def experiments_of(session: Session, audience_ids: Sequence[str]) -> dict[str, Experiment]:
    """audience id -> its experiment, for the audiences that have one."""
    found: dict[str, Experiment] = {}
    for chunk in chunks(audience_ids):
        for experiment in session.scalars(sa.select(Experiment).where(Experiment.audience_id.in_(chunk))):
            found[experiment.audience_id] = experiment
    return found


def variants_of(session: Session, experiment_ids: Sequence[str]) -> dict[str, list[Variant]]:
    """experiment id -> its variants in order (the first is the control)."""
    found: dict[str, list[Variant]] = defaultdict(list)
    for chunk in chunks(experiment_ids):
        for variant in session.scalars(
            sa.select(Variant).where(Variant.experiment_id.in_(chunk)).order_by(Variant.position)
        ):
            found[variant.experiment_id].append(variant)
    return found


def delete_audience_records(session: Session, audience_ids: Sequence[str]) -> None:
    """The decision path's records have no foreign keys (see models); delete them with their owner."""
    for chunk in chunks(audience_ids):
        session.execute(sa.delete(CapCounter).where(CapCounter.audience_id.in_(chunk)))
        experiment_ids = list(
            session.scalars(sa.select(Experiment.id).where(Experiment.audience_id.in_(chunk)))
        )
        delete_experiment_records(session, experiment_ids)


def delete_experiment_records(session: Session, experiment_ids: Sequence[str]) -> None:
    for chunk in chunks(experiment_ids):
        session.execute(sa.delete(Exposure).where(Exposure.experiment_id.in_(chunk)))
        session.execute(sa.delete(Conversion).where(Conversion.experiment_id.in_(chunk)))
