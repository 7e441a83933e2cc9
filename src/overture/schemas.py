"""Base classes for every request and response body, so each rule is written once.

- `Strict`: unknown fields are a 422 naming them (every request body of every surface).
- `Camel`: a `Strict` model whose JSON names are camelCase (`startDate`) while requests also accept
  the snake_case spelling (`start_date`); responses are written in camelCase. Seeds 000, 002 and 003
  speak camelCase; Python code keeps snake_case attribute names."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["Camel", "Strict"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Camel(Strict):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )
