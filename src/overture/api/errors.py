"""Every error answer in one envelope, `{"detail", "code", "field"?, "errors"?: [{"field", "message",
"code"}]}`, with one path notation (`tiles[1].config.unit`): service errors, request validation,
malformed JSON (400, with line and column), a body that is not JSON (415), unknown routes, and the
database refusing a value. Seed 002's public API answers in its own envelope on its own paths."""

from __future__ import annotations

import json
import logging
from email.message import Message
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from overture.errors import OvertureError, field_path

log = logging.getLogger(__name__)

_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
}


class ErrorItem(BaseModel):
    field: str | None
    message: str
    code: str


class ErrorBody(BaseModel):
    """The error envelope, as OpenAPI declares it for every 4xx."""

    detail: str
    code: str
    field: str | None = None
    errors: list[ErrorItem] | None = None


def _encodable(value: Any) -> Any:
    """An error may quote the input: a lone surrogate in it is written escaped (`\\ud800`) so that
    the answer itself can be encoded as UTF-8."""
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    return value


def error_response(status: int, detail: str, code: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail, "code": code}
    body.update({k: v for k, v in extra.items() if v is not None})
    body = _encodable(body)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def overture_error_response(exc: OvertureError) -> JSONResponse:
    body = exc.to_dict()
    return error_response(exc.status_code, body.pop("detail"), body.pop("code"), **body)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # FastAPI parses a body without a type as JSON
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    is_json = subtype == "json" or subtype.endswith("+json")
    return message.get_content_maintype() == "application" and is_json


def _where_json_broke(body: Any, offset: int) -> tuple[int, int, str]:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return exc.lineno, exc.colno, exc.msg
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1, "invalid JSON"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OvertureError)
    async def _overture_error(_request: Request, exc: OvertureError) -> JSONResponse:
        return overture_error_response(exc)

    @app.exception_handler(sa.exc.DataError)
    async def _data_error(_request: Request, exc: sa.exc.DataError) -> JSONResponse:
        # The database refused a value the schema let through (a NUL byte in text, an integer out of
        # range): the input is bad, the transaction was rolled back, nothing changed.
        reason = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
        return error_response(422, f"a value cannot be stored: {reason}", "invalid")

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        response = error_response(exc.status_code, str(exc.detail), code)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        raw = exc.errors()
        broken = next((e for e in raw if e.get("type") == "json_invalid"), None)
        if broken is not None:
            loc = broken.get("loc", ())
            offset = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
            raw_body = exc.body if exc.body is not None else await request.body()
            line, column, why = _where_json_broke(raw_body, offset)
            return error_response(
                400, f"the JSON body is malformed at line {line}, column {column}: {why}", "malformed_json"
            )
        content_type = request.headers.get("content-type")
        if (
            exc.body not in (None, b"")
            and not _is_json(content_type)
            and any(tuple(e.get("loc", ()))[:1] == ("body",) for e in raw)
        ):
            return error_response(
                415,
                f"the body must be JSON: send it with 'Content-Type: application/json' "
                f"(got '{content_type}')",
                "unsupported_media_type",
            )
        errors = []
        for err in raw:
            # A free-form JSON value (overture.schemas.JsonCheck) says where inside it the problem is.
            loc = [*err.get("loc", ()), *(err.get("ctx") or {}).get("json_path", ())]
            if loc and loc[0] in _LOCATIONS and (len(loc) > 1 or loc[0] != "body"):
                loc = loc[1:]
            field = field_path(loc) or None
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            errors.append({"field": field, "message": message, "code": str(err.get("type", "invalid"))})
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        detail = f"{first['field']}: {first['message']}" if first["field"] else str(first["message"])
        return error_response(422, detail, "invalid", field=first["field"], errors=errors)
