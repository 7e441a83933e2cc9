"""Request/response bodies for destinations, and the validated config of each destination type."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from email.utils import parseaddr
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from overture.delivery.templates import EmailTemplate
from overture.schemas import JsonObject, Strict

DestinationType = Literal["webhook", "smtp", "file", "log"]
DESTINATION_TYPES: tuple[str, ...] = ("webhook", "smtp", "file", "log")

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$")
#: Headers Overture sets itself (or that would break framing); a destination cannot override them.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "upgrade",
        "expect",
        "idempotency-key",
    }
)
_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


# -- per-type configs ---------------------------------------------------------------------------


class WebhookConfig(Strict):
    url: str = Field(min_length=1, max_length=2048, description="http(s) URL the JSON payload is POSTed to.")
    secret: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="When set, each request carries `X-Overture-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "
        "'<t>.<body>'>`. Write-only.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, max_length=50, description="Extra request headers (e.g. Authorization)."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        if "@" in value.split("://", 1)[1].split("/", 1)[0]:
            # The URL is shown back to API users; credentials belong in a write-only header.
            raise ValueError("must not embed credentials (user:password@); use headers.Authorization")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header_value in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"'{name}' is not a valid header name")
            lowered = name.lower()
            if lowered in RESERVED_HEADERS or lowered.startswith("x-overture-"):
                raise ValueError(f"header '{name}' is set by Overture and cannot be configured")
            if not header_value.isascii() or not header_value.isprintable() or len(header_value) > 4096:
                raise ValueError(f"header '{name}' must be printable ASCII of at most 4096 characters")
        return value


class SmtpConfig(Strict):
    model_config = ConfigDict(populate_by_name=True)

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    username: str | None = Field(default=None, max_length=512)
    password: str | None = Field(default=None, max_length=512, description="Write-only.")
    starttls: bool = Field(default=False, description="Upgrade the connection with STARTTLS (port 587).")
    ssl: bool = Field(default=False, description="Implicit TLS from the first byte (port 465).")
    from_: str = Field(alias="from", min_length=3, max_length=320, description="Sender address.")
    subject: str = Field(min_length=1, max_length=998, description="Template, e.g. 'Hi $first_name'.")
    body: str = Field(min_length=1, max_length=100_000, description="Plain-text body template.")
    to_field: str = Field(
        default="email", max_length=200, description="Payload field (dotted path) holding the recipient."
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=120)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        bare = value.strip("[]")
        try:
            ipaddress.ip_address(bare)
            return bare
        except ValueError:
            pass
        if any(c in value for c in "/:@[] \r\n\t"):
            raise ValueError("must be a host name or IP address, without scheme or port") from None
        return value

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str) -> str:
        if any(c in value for c in "\r\n") or "@" not in parseaddr(value)[1]:
            raise ValueError("must be an email address")
        return value

    @field_validator("subject", "body")
    @classmethod
    def _template(cls, value: str) -> str:
        EmailTemplate.check(value)
        return value

    @field_validator("to_field")
    @classmethod
    def _to_field(cls, value: str) -> str:
        if not _FIELD_PATH.match(value):
            raise ValueError("must be a field name or dotted path like 'user.email'")
        return value

    @model_validator(mode="after")
    def _tls_and_auth(self) -> SmtpConfig:
        if self.ssl and self.starttls:
            raise ValueError("choose either ssl (implicit TLS) or starttls, not both")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self


#: s3fs options a destination may set. Deliberately absent: `profile` (would borrow the server's
#: AWS profile), `session`/`loop` (objects), `config_kwargs.proxies` (would route around the guard).
S3_OPTIONS = frozenset(
    {
        "key",
        "secret",
        "token",
        "anon",
        "endpoint_url",
        "client_kwargs",
        "config_kwargs",
        "s3_additional_kwargs",
        "requester_pays",
        "use_ssl",
        "default_block_size",
        "version_aware",
    }
)
S3_CLIENT_KWARGS = frozenset(
    {
        "endpoint_url",
        "region_name",
        "verify",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    }
)
S3_CONFIG_KWARGS = frozenset({"signature_version", "s3", "connect_timeout", "read_timeout", "retries"})


def _check_keys(value: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValueError(
            f"{where}: unsupported option '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})"
        )


class FileConfig(Strict):
    url: str = Field(
        min_length=1,
        max_length=1024,
        description="A directory under OVERTURE_HOME/files (relative path, or absolute inside it), or "
        "s3://bucket/prefix.",
    )
    format: Literal["csv", "jsonl"] = "csv"
    storage_options: JsonObject = Field(
        default_factory=dict,
        description="Passed to s3fs (key, secret, client_kwargs...). Secret keys write-only.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if sep and scheme.lower() not in ("s3", "file"):
            raise ValueError("must be a local path or an s3://bucket/prefix URL")
        if sep and scheme.lower() == "s3":
            bucket = rest.split("/", 1)[0]
            if not _BUCKET.match(bucket):
                raise ValueError(f"'{bucket}' is not a valid S3 bucket name")
        return value

    @field_validator("storage_options")
    @classmethod
    def _known_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_keys(value, S3_OPTIONS, "storage_options")
        for name, allowed in (("client_kwargs", S3_CLIENT_KWARGS), ("config_kwargs", S3_CONFIG_KWARGS)):
            inner = value.get(name)
            if inner is not None:
                if not isinstance(inner, dict):
                    raise ValueError(f"storage_options.{name} must be an object")
                _check_keys(inner, allowed, f"storage_options.{name}")
        return value

    @model_validator(mode="after")
    def _options_only_for_s3(self) -> FileConfig:
        if self.storage_options and not self.url.lower().startswith("s3://"):
            raise ValueError("storage_options only apply to s3:// URLs")
        return self


class LogConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    file: bool = Field(default=True, description="Also append JSON lines to OVERTURE_HOME/delivery-log/.")


CONFIG_MODELS: dict[str, type[BaseModel]] = {
    "webhook": WebhookConfig,
    "smtp": SmtpConfig,
    "file": FileConfig,
    "log": LogConfig,
}


# -- HTTP bodies --------------------------------------------------------------------------------


class DestinationCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    type: DestinationType
    config: JsonObject = Field(default_factory=dict, description="Type-specific; see docs/destinations.md.")
    enabled: bool = True


class DestinationUpdate(Strict):
    """Every field optional. `config` is merged key by key into the stored one: keys not sent keep
    their value (secrets included), a key sent as null returns to its default, and a secret sent back
    as the mask '********' keeps the stored secret. The type cannot change."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    config: JsonObject | None = None
    enabled: bool | None = None


class DestinationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    type: str
    config: dict[str, Any] = Field(description="Secrets appear as '********'.")
    enabled: bool
    created_at: datetime
    updated_at: datetime


class DestinationTest(Strict):
    payload: JsonObject | None = Field(
        default=None,
        description="Payload of the test message. Default: a small `overture.test` event (SMTP needs the "
        'recipient field, so send e.g. {"email": "me@example.com"}).',
    )


class TestOutcome(BaseModel):
    idempotency_key: str
    status: Literal["sent", "retry", "failed"]
    error: str | None = None
    retry_after: float | None = None
