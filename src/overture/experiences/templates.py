"""Experience templates (seed 000): reusable vehicle defaults; `templateId` on an experience copies
them (the experience's own fields win)."""

from __future__ import annotations

import sqlalchemy as sa

from overture.db.lookup import get_or_404
from overture.db.session import Session
from overture.experiences.models import Template
from overture.experiences.schemas import TemplateCreate, TemplateRead, TemplateUpdate, VehicleIn, VehicleRead

__all__ = [
    "create_template",
    "delete_template",
    "get_template",
    "list_templates",
    "template_read",
    "update_template",
]


def template_read(t: Template) -> TemplateRead:
    vehicle = VehicleIn.model_validate(t.vehicle or {})
    return TemplateRead(
        id=t.id,
        name=t.name,
        description=t.description,
        vehicle=VehicleRead(**{name: getattr(vehicle, name) for name in VehicleIn.model_fields}),
        created_at=t.created_at,
        updated_at=t.updated_at,
    )


def _stored(vehicle: VehicleIn) -> dict[str, object]:
    """Only the fields the template sets (snake_case), so an experience copies exactly those."""
    return vehicle.model_dump(mode="json", include=vehicle.model_fields_set, by_alias=False)


def create_template(session: Session, body: TemplateCreate) -> Template:
    template = Template(name=body.name, description=body.description, vehicle=_stored(body.vehicle))
    session.add(template)
    session.flush()
    return template


def list_templates(session: Session) -> list[Template]:
    return list(session.scalars(sa.select(Template).order_by(Template.created_at, Template.id)))


def get_template(session: Session, template_id: str) -> Template:
    return get_or_404(session, Template, template_id, what="template")


def update_template(session: Session, template_id: str, body: TemplateUpdate) -> Template:
    template = get_template(session, template_id)
    if body.name is not None:
        template.name = body.name
    if "description" in body.model_fields_set:
        template.description = body.description
    if body.vehicle is not None:
        template.vehicle = {**(template.vehicle or {}), **_stored(body.vehicle)}
    session.flush()
    return template


def delete_template(session: Session, template_id: str) -> None:
    """Experiences made from it keep their fields (their templateId becomes null)."""
    template = get_template(session, template_id)
    session.delete(template)
    session.flush()
