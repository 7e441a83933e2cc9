"""Settings: one object, read from OVERTURE_* environment variables (and a .env file if present)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OVERTURE_", env_file=".env", extra="ignore")

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
    egress_allow: list[str] = Field(
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
        min_length=32,
        description="Signs dashboard session cookies and CSRF tokens. Set the same value on every API "
        "process; default: a random key kept in OVERTURE_HOME/secret_key (mode 600).",
    )

    @field_validator("egress_allow", mode="before")
    @classmethod
    def _split_cidrs(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("egress_allow")
    @classmethod
    def _check_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'overture.db').resolve()}"

    @cached_property
    def resolved_data_url(self) -> str:
        return self.data_url or f"duckdb:///{(self.home / 'data.duckdb').resolve()}"

    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home
