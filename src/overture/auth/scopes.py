"""The one list of API key scopes. `admin` grants every scope."""

from __future__ import annotations

SCOPES: dict[str, str] = {
    "admin": "Everything, including managing API keys.",
    "campaigns:read": "Read paywall campaigns, broadcasts, batch campaigns and experiences.",
    "campaigns:write": "Create and change campaigns, placements, audiences, paywalls, experiences.",
    "analytics:read": "Read metrics, experiment results and journey stats.",
    "journeys:read": "Read journeys, their runs and members.",
    "journeys:write": "Create, change, activate, pause and trigger journeys.",
    "segments:read": "Read segments, their reach and members.",
    "segments:write": "Create, change and evaluate segments.",
    "models:read": "Read entity models and profile records.",
    "models:write": "Create entity models and write profile records.",
    "events:write": "Send events.",
    "destinations:read": "Read destinations (secrets are never returned).",
    "destinations:write": "Create, change and test destinations.",
    "decisions:write": "Call the real-time decision endpoint (register).",
}

#: What a public key (`pk_…`) may do: only the SDK decision and event endpoints.
PUBLIC_SCOPES: frozenset[str] = frozenset({"decisions:write", "events:write"})

ADMIN = "admin"


def unknown_scopes(scopes: list[str]) -> list[str]:
    return [s for s in scopes if s not in SCOPES]


def grants(held: frozenset[str], needed: str) -> bool:
    return ADMIN in held or needed in held
