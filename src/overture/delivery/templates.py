"""Email templates: `string.Template` syntax over the message payload, nothing executable.

`$name` or `${name}` inserts a payload field, `${user.first_name}` a nested one, `$$` a literal `$`.
A missing or null field renders as an empty string; a dict or list renders as JSON. There are no
expressions, filters, attribute lookups or loops, so a template cannot run code or reach anything
but the payload it is given."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from overture.core.encode import to_text

__all__ = ["EmailTemplate", "lookup"]


def lookup(payload: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of nested mappings, or None."""
    current: Any = payload
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
        if current is None:
            return None
    return current


class _PayloadView(Mapping[str, str]):
    """What `Template.substitute` reads: dotted names resolved against the payload."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self._payload = payload

    def __getitem__(self, key: str) -> str:
        return to_text(lookup(self._payload, key))

    def __iter__(self) -> Any:
        return iter(self._payload)

    def __len__(self) -> int:
        return len(self._payload)


class EmailTemplate(string.Template):
    idpattern = r"(?a:[_a-z][_a-z0-9]*(?:\.[_a-z0-9]+)*)"

    @classmethod
    def check(cls, text: str) -> None:
        """Raise ValueError naming the problem if `text` has a malformed placeholder."""
        template = cls(text)
        if not template.is_valid():
            try:
                template.substitute({})
            except ValueError as exc:
                raise ValueError(f"invalid template placeholder ({exc}); write $$ for a literal $") from None
            except KeyError:
                pass

    def render(self, payload: Mapping[str, Any]) -> str:
        return self.substitute(_PayloadView(payload))
