"""The one exception hierarchy services raise; `overture.api` maps it to HTTP in one place."""

from __future__ import annotations

from typing import Any


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
