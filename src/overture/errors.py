"""The one exception hierarchy services raise; `overture.api` maps it to HTTP in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from overture.core.filters import FilterError


class OvertureError(Exception):
    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The one error envelope every API answer uses (seed 002's public API keeps its own):
        `{"detail", "code", "field"?, "errors"?: [{"field", "message", "code"}]}`."""
        body: dict[str, Any] = {"detail": self.message, "code": self.code}
        if self.field is not None:
            body["field"] = self.field
        listed = self.details.get("errors") if isinstance(self.details, dict) else None
        if listed:
            body["errors"] = [self._item(e) for e in listed]
        return body

    def _item(self, error: object) -> dict[str, Any]:
        if isinstance(error, dict):
            return {
                "field": error.get("field"),
                "message": str(error.get("message", "")),
                "code": str(error.get("code") or self.code),
            }
        return {"field": None, "message": str(error), "code": self.code}


class Invalid(OvertureError):
    """Input that parses but breaks a rule (unknown scope, bad filter, cycle in a DAG...)."""

    status_code = 422
    code = "invalid"


class Unauthorized(OvertureError):
    status_code = 401
    code = "unauthorized"


class Forbidden(OvertureError):
    status_code = 403
    code = "forbidden"


class NotFound(OvertureError):
    status_code = 404
    code = "not_found"


class Conflict(OvertureError):
    status_code = 409
    code = "conflict"


class TooLarge(OvertureError):
    status_code = 413
    code = "too_large"


class Unavailable(OvertureError):
    """A dependency (data source, destination) cannot be reached right now."""

    status_code = 503
    code = "unavailable"


def field_path(loc: Sequence[str | int]) -> str:
    """The one path notation of error fields: `a.b[0].c` (a location as pydantic gives it)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def invalid_filter(exc: FilterError, *, prefix: str | None = None) -> Invalid:
    """The one translation of a filter-language error to a 422: the message and `field` name the
    path in the request (``filter.all[2].operator``); `prefix` roots a path that starts inside the
    filter (``audiences[0].filters``)."""
    path = f"{prefix}.{exc.path}" if prefix and exc.path else (prefix or exc.path)
    return Invalid(f"{path}: {exc.message}" if path else exc.message, field=path or None)
