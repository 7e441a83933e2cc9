"""Settings: one object, read from OVERTURE_* environment variables (and a .env file if present).

Every setting accepts the form docs/configuration.md writes; `load_settings()` turns any bad value
into one `SettingsProblem` naming the variable, what is wrong and what is accepted, which the CLI
prints as one line (no traceback)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ByteSize, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "OVERTURE_"

#: What each setting accepts, said in the one-line error (and kept beside the field it describes).
ACCEPTED: dict[str, str] = {
    "home": "a directory path that can be created and written",
    "database_url": "a SQLAlchemy URL such as sqlite:///path/overture.db or "
    "postgresql+psycopg://user@host:5432/db",
    "data_url": "a SQLAlchemy URL such as duckdb:///path/data.duckdb or postgresql+psycopg://user@host:5432/db",
    "egress_allow": "comma-separated CIDR ranges such as 127.0.0.1/32,10.0.0.0/8 (or a JSON list)",
    "run_workers": "true or false (also 1/0, yes/no, on/off)",
    "worker_concurrency": "a whole number from 1 to 64",
    "log_format": "text or json",
    "server": "uvicorn or granian",
    "secret_key": "a random string of at least 32 characters (a key ring: several, comma-separated, newest "
    "first), the same on every process",
    "body_limit": "a size in bytes, or with a unit such as 512KiB or 4MiB",
    "body_limit_decision": "a size in bytes, or with a unit such as 512KiB or 4MiB",
    "body_limit_events": "a size in bytes, or with a unit such as 512KiB or 4MiB",
    "body_limit_import": "a size in bytes, or with a unit such as 512KiB or 4MiB",
    "worker_poll_seconds": "a number of seconds from 0.01 to 300",
    "worker_lease_seconds": "a whole number of seconds from 2 to 86400",
    "worker_heartbeat_seconds": "a number of seconds above 0, less than OVERTURE_WORKER_LEASE_SECONDS",
    "retention_jobs_days": "a whole number of days, 0 to keep forever",
    "retention_outbox_days": "a whole number of days, 0 to keep forever",
    "retention_runs_days": "a whole number of days, 0 to keep forever",
    "retention_cap_sessions_days": "a whole number of days, 0 to keep forever",
    "retention_event_ids_days": "a whole number of days, 0 to keep forever",
    "retention_batch": "a whole number from 10 to 100000",
    "rate_limit_key": "a whole number of requests per second, 0 for no limit",
    "rate_limit_address": "a whole number of requests per second, 0 for no limit",
    "rate_limit_window": "a whole number of seconds from 1 to 3600",
    "rate_limit_exempt": "comma-separated CIDR ranges such as 127.0.0.0/8,::1/128 (or a JSON list), "
    "or [] for none",
}


class SettingsProblem(ValueError):
    """A setting that cannot be used: `str()` is the one line to show."""

    def __init__(self, variable: str, value: object, problem: str, accepted: str) -> None:
        shown = "" if value is None else f"={value!r}"
        super().__init__(f"{variable}{shown}: {problem}; accepted: {accepted}")
        self.variable = variable


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(value).get_dialect()
    except NoSuchModuleError:  # (a subclass of ArgumentError)
        raise ValueError(f"unknown database kind '{value.split(':', 1)[0]}'") from None
    except ArgumentError:
        raise ValueError("not a database URL") from None
    return value


class Settings(BaseSettings):
    # An empty variable (`OVERTURE_DATABASE_URL=`) means "use the default", in the environment and in .env.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", env_ignore_empty=True
    )

    home: Path = Field(
        default=Path(".overture"),
        description="Directory holding all embedded state (SQLite database, DuckDB profile data, files).",
    )
    database_url: str | None = Field(
        default=None,
        description="Application database (SQLAlchemy URL). Default: SQLite file overture.db under home. "
        "A postgresql+psycopg:// URL works the same.",
    )
    data_url: str | None = Field(
        default=None,
        description="Profile data source for audiences (SQLAlchemy URL). "
        "Default: DuckDB file data.duckdb under home.",
    )
    # NoDecode: the environment's text reaches the validator as written (a comma list), not as JSON.
    egress_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDR ranges outbound requests may reach even though they are private/loopback "
        "(comma-separated, e.g. 127.0.0.1/32 for local development).",
    )
    run_workers: bool = Field(
        default=True, description="Run the scheduler and a worker inside `overture serve` (embedded default)."
    )
    worker_concurrency: int = Field(default=2, ge=1, le=64, description="Worker threads per process.")
    secret_key: str | None = Field(
        default=None,
        description="Encrypts stored secrets (destination and provider credentials) and signs dashboard "
        "sessions: a key ring, comma-separated, newest first. Set the same value on every process; "
        "default: a ring kept in OVERTURE_HOME/secret_key (mode 600), made on first start.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text, or as one JSON object each (with the request id)."
    )
    server: Literal["uvicorn", "granian"] = Field(
        default="uvicorn",
        description="The HTTP server `overture serve` runs the API under (granian: `overture[granian]`).",
    )
    # Request bodies, by route class (docs/operations.md, "Limits"); larger bodies answer 413 unread.
    body_limit: ByteSize = Field(
        default=ByteSize(1024 * 1024),
        description="Largest request body of a route without a class of its own.",
    )
    body_limit_decision: ByteSize = Field(
        default=ByteSize(64 * 1024), description="Largest body of a decision (register, experience decide)."
    )
    body_limit_events: ByteSize = Field(
        default=ByteSize(1024 * 1024),
        description="Largest body of an SDK events batch, and of any request made with a public key.",
    )
    body_limit_import: ByteSize = Field(
        default=ByteSize(32 * 1024 * 1024),
        description="Largest body of a bulk import (records, events, experiences).",
    )
    worker_poll_seconds: float | None = Field(
        default=None,
        ge=0.01,
        le=300,
        description="How often idle job threads and the dispatcher look for due work. Default: 1 on "
        "SQLite, 10 on PostgreSQL (where LISTEN/NOTIFY wakes them as soon as work is enqueued).",
    )
    worker_lease_seconds: int = Field(
        default=60,
        ge=2,
        le=86400,
        description="How long a claimed job or message stays with its worker "
        "without a heartbeat; a dead worker's work is taken over after it.",
    )
    worker_heartbeat_seconds: float | None = Field(
        default=None,
        gt=0,
        description="How often a worker extends its leases. Default: a third of the lease.",
    )
    retention_jobs_days: int = Field(default=7, ge=0, description="Finished jobs are deleted after this.")
    retention_outbox_days: int = Field(
        default=30,
        ge=0,
        description="Sent and failed outbox messages are deleted this long after the last attempt.",
    )
    retention_runs_days: int = Field(
        default=90, ge=0, description="Finished journey runs and settled broadcast recipients go after it."
    )
    retention_cap_sessions_days: int = Field(
        default=30, ge=0, description="Per-session paywall cap counters are deleted this long after a change."
    )
    retention_event_ids_days: int = Field(
        default=30, ge=0, description="Event ids are remembered (a retried batch stored once) this long."
    )
    retention_batch: int = Field(default=1000, ge=10, le=100_000, description="Rows per retention DELETE.")
    # Public keys ship in apps: their requests are rate-limited per key and per client address.
    rate_limit_key: int = Field(
        default=1000,
        ge=0,
        description="Requests per second one public key may make (averaged over a window).",
    )
    rate_limit_address: int = Field(
        default=100, ge=0, description="Requests per second one client address may make with public keys."
    )
    rate_limit_window: int = Field(default=10, ge=1, le=3600, description="The rate limits' window, seconds.")
    rate_limit_exempt: Annotated[list[str], NoDecode] = Field(
        default="127.0.0.0/8,::1/128",  # as written in the environment (validated like it)
        validate_default=True,
        description="Client addresses never rate-limited (CIDR ranges; default: this machine).",
    )

    @field_validator("egress_allow", "rate_limit_exempt", mode="before")
    @classmethod
    def _split_cidrs(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                try:
                    return json.loads(text)
                except ValueError:
                    raise ValueError("not a valid JSON list") from None
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("egress_allow", "rate_limit_exempt")
    @classmethod
    def _check_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"'{cidr}' is not a CIDR range") from None
        return value

    @field_validator("worker_heartbeat_seconds")
    @classmethod
    def _heartbeat_within_lease(cls, value: float | None, info: ValidationInfo) -> float | None:
        lease = info.data.get("worker_lease_seconds")
        if value is not None and lease is not None and value >= lease:
            raise ValueError(f"must be less than OVERTURE_WORKER_LEASE_SECONDS ({lease})")
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_key_ring(cls, value: str | None) -> str | None:
        if value is None:
            return None
        entries = [part.strip() for part in value.split(",")]
        if any(len(entry) < 32 for entry in entries):
            raise ValueError("every key must have at least 32 characters")
        return ",".join(entries)

    @field_validator("database_url", "data_url")
    @classmethod
    def _check_urls(cls, value: str | None) -> str | None:
        return _check_url(value)

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'overture.db').resolve()}"

    @cached_property
    def resolved_data_url(self) -> str:
        return self.data_url or f"duckdb:///{(self.home / 'data.duckdb').resolve()}"

    @cached_property
    def heartbeat_seconds(self) -> float:
        """Seconds between lease extensions (the setting, or a third of the lease)."""
        return self.worker_heartbeat_seconds or self.worker_lease_seconds / 3

    def ensure_home(self) -> Path:
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            probe = self.home / ".write-check"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            problem = f"cannot be used ({exc.strerror or exc})"
            raise SettingsProblem(f"{ENV_PREFIX}HOME", str(self.home), problem, ACCEPTED["home"]) from None
        return self.home


def _problem_of(exc: ValidationError) -> SettingsProblem:
    first = exc.errors()[0]
    name = str(first["loc"][0]) if first.get("loc") else ""
    value: Any = first.get("input")
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if isinstance(value, (dict, list)) or "secret" in name:  # a secret is never echoed
        value = None
    return SettingsProblem(
        f"{ENV_PREFIX}{name.upper()}", value, message, ACCEPTED.get(name, "see docs/configuration.md")
    )


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and .env; a bad value is one `SettingsProblem`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise _problem_of(exc) from None
