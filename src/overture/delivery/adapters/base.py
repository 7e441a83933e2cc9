"""What every destination type implements, and the immutable view of a destination adapters get."""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from overture.delivery.messages import Message, Outcome
from overture.errors import Invalid, field_path

if TYPE_CHECKING:
    from overture.db.context import AppContext
    from overture.delivery.models import Destination

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Target:
    """A destination as adapters see it: plain values, safe to use after its session closed."""

    id: str
    workspace_id: str
    name: str
    type: str
    config: dict[str, Any]

    @classmethod
    def of(cls, destination: Destination) -> Target:
        return cls(
            id=destination.id,
            workspace_id=destination.workspace_id,
            name=destination.name,
            type=destination.type,
            config=dict(destination.config or {}),
        )


def parse_config(model: type[M], config: dict[str, Any]) -> M:
    """Validate a config; the 422 names the field as the API user wrote it (`config.url`)."""
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = field_path(err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        field = f"config.{loc}" if loc else "config"
        raise Invalid(f"{field}: {msg}", field=field) from None


class Adapter(ABC):
    """One destination type. Adapters are stateless singletons; their connections live in
    process-wide services on the AppContext (`ctx.service`)."""

    type: ClassVar[str]
    config_model: ClassVar[builtins.type[BaseModel]]

    def normalize(self, ctx: AppContext, config: dict[str, Any]) -> dict[str, Any]:
        """Validate `config` and return the form that is stored (defaults filled in). Raises Invalid."""
        parsed: BaseModel = parse_config(self.config_model, config)
        stored: dict[str, Any] = parsed.model_dump(by_alias=True, exclude_none=True)
        return stored

    def check_egress(self, ctx: AppContext, config: dict[str, Any]) -> None:  # noqa: B027
        """Raise an EgressError (with `field`) if the config points somewhere Overture must not go.
        Types that make no network connection have nothing to check."""

    @abstractmethod
    def send_batch(self, ctx: AppContext, target: Target, messages: Sequence[Message]) -> list[Outcome]:
        """One Outcome per message, in order. Must not raise for a per-message failure."""

    def test_payload(self, target: Target, now_iso: str) -> dict[str, Any]:
        return {"type": "overture.test", "destination_id": target.id, "sent_at": now_iso}
