"""One "get or 404": the row with this id in the session's workspace, or NotFound naming the thing."""

from __future__ import annotations

from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from overture.errors import NotFound

__all__ = ["get_or_404"]

T = TypeVar("T")


def get_or_404(
    session: Session,
    model: type[T],
    id_: Any,
    *,
    what: str | None = None,
    field: str | None = None,
    lock: bool = False,
    **where: Any,
) -> T:
    """The `model` row whose primary key is `id_` and whose columns equal `where` (a parent id, a
    `deleted=False`...). A workspace-bound session only sees its workspace's rows, so another
    workspace's id is a 404 like a missing one, never a 403. `what` names it in the message
    ("segment not found"); `field` is the request field that named it, when there is one."""
    label = what or getattr(model, "__tablename__", model.__name__).rstrip("s").replace("_", " ")
    if id_ is None or (isinstance(id_, str) and not id_):
        raise NotFound(f"{label} not found", field=field)
    mapper = sa.inspect(model)
    (pk,) = mapper.primary_key
    stmt = sa.select(model).where(pk == id_)
    for column, value in where.items():
        stmt = stmt.where(getattr(model, column) == value)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).one_or_none()
    if row is None:
        raise NotFound(f"{label} not found", field=field)
    return row
