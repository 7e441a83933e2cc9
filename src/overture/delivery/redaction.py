"""Write-only secrets: which config values are secret, masking them on the way out, and keeping them
when an update does not re-send them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from overture.errors import Invalid

__all__ = ["MASK", "merge_config", "redact", "reject_masks", "secret_paths"]

MASK = "********"
Path = tuple[str, ...]

#: A header or storage option whose (lower-cased) name contains one of these is treated as a secret.
_SECRET_WORDS = ("secret", "key", "token", "password", "credential", "authorization", "cookie", "signature")


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _secret_keys_deep(value: Any, prefix: Path) -> Iterator[Path]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if _is_secret_name(str(key)):
                yield (*prefix, str(key))
            else:
                yield from _secret_keys_deep(inner, (*prefix, str(key)))


def secret_paths(dest_type: str, config: dict[str, Any]) -> list[Path]:
    """Paths of the secret values present in `config` (e.g. `("headers", "Authorization")`)."""
    paths: list[Path] = []
    if dest_type == "webhook":
        if config.get("secret") is not None:
            paths.append(("secret",))
        headers = config.get("headers")
        if isinstance(headers, dict):
            paths.extend(("headers", str(name)) for name in headers if _is_secret_name(str(name)))
    elif dest_type == "smtp":
        if config.get("password") is not None:
            paths.append(("password",))
    elif dest_type == "file":
        options = config.get("storage_options")
        if isinstance(options, dict):
            paths.extend(_secret_keys_deep(options, ("storage_options",)))
    return paths


def _get(config: dict[str, Any], path: Path) -> Any:
    current: Any = config
    for part in path:
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _set(config: dict[str, Any], path: Path, value: Any) -> None:
    current = config
    for part in path[:-1]:
        current = current[part]
    current[path[-1]] = value


def redact(dest_type: str, config: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config` with every secret value replaced by MASK: the only form that leaves."""
    shown = copy.deepcopy(config)
    for path in secret_paths(dest_type, shown):
        if _get(shown, path) is not None:
            _set(shown, path, MASK)
    return shown


def reject_masks(dest_type: str, config: dict[str, Any]) -> None:
    """A new config must carry real secrets, not the mask copied from a GET."""
    for path in secret_paths(dest_type, config):
        if _get(config, path) == MASK:
            raise Invalid(
                f"'{MASK}' is the placeholder Overture shows for a secret; send the secret itself",
                field="config." + ".".join(path),
            )


def merge_config(dest_type: str, stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Merge an update into the stored config: top-level keys sent replace stored ones, null removes
    a key (back to its default), and any secret sent as MASK (or not sent) keeps the stored value."""
    merged = copy.deepcopy(stored)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = copy.deepcopy(value)
    for path in secret_paths(dest_type, merged):
        if _get(merged, path) == MASK:
            kept = _get(stored, path)
            if kept is None:
                raise Invalid(
                    f"'{MASK}' is the placeholder Overture shows for a secret, and none is stored here; "
                    "send the secret itself",
                    field="config." + ".".join(path),
                )
            _set(merged, path, kept)
    return merged
