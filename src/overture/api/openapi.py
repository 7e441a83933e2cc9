"""An OpenAPI document that says what the server really does: the bearer scheme on every route that
authenticates, the error answers each operation can give in the envelope it really sends, and the
`/docs` and `/redoc` pages served from assets inside the package (an offline box still has them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from overture.api.errors import ErrorBody

STATIC = Path(__file__).parent / "static"
ASSETS = "/docs-assets"
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
OWN_ENVELOPE = ("/public/",)
WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})
_DESCRIPTIONS = {
    "400": "The JSON body is malformed (the message gives its line and column)",
    "401": "No API key, a malformed one, or a revoked one",
    "403": "The key lacks the scope this operation needs (public keys reach only register and events)",
    "404": "Not found, or another workspace's (never 403: that would confirm it exists)",
    "409": "The change conflicts with the current state (a lifecycle move, a name in use, an object in use)",
    "413": "The body is larger than this operation accepts",
    "415": "The body is not sent as JSON",
    "422": "A value breaks a rule; `field` names it (`a.b[0].c`) and `errors` lists every problem",
    "429": "A public key's rate limit is reached (per key or per client address); see `Retry-After`",
}


def _authenticates(operation: dict[str, Any]) -> bool:
    return "security" in operation


def _errors_of(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    codes = []
    has_body = "requestBody" in operation
    has_params = bool(operation.get("parameters")) or has_body
    if _authenticates(operation):
        codes += ["401", "403", "429"]
    if "{" in path:
        codes.append("404")
    if method in WRITE_METHODS:
        codes.append("409")
    if has_body:
        codes += ["400", "413", "415"]
    if has_params:
        codes.append("422")
    return codes


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    body_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in body_schema.pop("$defs", {}).items():
        schemas[name] = definition
    schemas["ErrorBody"] = body_schema
    for path, item in schema.get("paths", {}).items():
        if path.startswith(OWN_ENVELOPE):
            _hoist_defs(item, schemas)
            continue  # seed 002's public API declares its own envelope and error codes
        for method, operation in item.items():
            _hoist_defs(operation, schemas)
            responses = operation.setdefault("responses", {})
            codes = _errors_of(path, method, operation)
            if "422" in responses and "422" not in codes:
                codes.append("422")
            for code in codes:
                described = responses.get(code, {}).get("description")
                responses[code] = {
                    "description": described if described and code != "422" else _DESCRIPTIONS[code],
                    "content": {"application/json": {"schema": ERROR_REF}},
                }
    # FastAPI's default 422 schema is not what the server sends: drop it where nothing uses it.
    if "HTTPValidationError" not in str(schema.get("paths")):
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
    app.openapi_schema = schema
    return schema


def _hoist_defs(node: Any, schemas: dict[str, Any]) -> None:
    """Inline schemas given as `model_json_schema()` (register's body) carry local `$defs`: move them
    to the components and point their references there, so every `$ref` resolves."""
    if isinstance(node, dict):
        defs = node.pop("$defs", None)
        if defs:
            for name, definition in defs.items():
                schemas.setdefault(name, definition)
                _hoist_defs(definition, schemas)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        for value in node.values():
            _hoist_defs(value, schemas)
    elif isinstance(node, list):
        for value in node:
            _hoist_defs(value, schemas)


def install(app: FastAPI) -> None:
    """`/openapi.json` as above; `/docs` (Swagger UI, whose Authorize button takes a key) and
    `/redoc`, both from the vendored assets in `api/static` (see its SOURCES.md)."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon-32x32.png",
            with_google_fonts=False,
        )
