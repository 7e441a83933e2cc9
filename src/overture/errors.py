"""The one exception hierarchy services raise; `overture.api` maps it to HTTP in one place."""

from __future__ import annotations

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
        body: dict[str, Any] = {"detail": self.message, "code": self.code}
        if self.field is not None:
            body["field"] = self.field
        if self.details is not None:
            body["details"] = self.details
        return body


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


def invalid_filter(exc: FilterError, *, prefix: str | None = None) -> Invalid:
    """The one translation of a filter-language error to a 422: the message and `field` name the
    path in the request (``filter.all[2].operator``); `prefix` roots a path that starts inside the
    filter (``audiences[0].filters``)."""
    path = f"{prefix}.{exc.path}" if prefix and exc.path else (prefix or exc.path)
    return Invalid(f"{path}: {exc.message}" if path else exc.message, field=path or None)
