"""External providers (seed 000's import and export): a plugin interface, the built-in `http`
provider, provider credentials (`auth_id`) and the import use cases.

A provider lists the campaigns a credential can import, fetches one, and turns a published
experience into the message its export sends. Exports go through the runtime (a job) and the outbox
(a webhook destination made with the credential, holding the bearer token as a write-only secret),
so the egress guard, retries and idempotency keys apply as to any other message.

The `http` provider's feed (documented in docs/experiences.md):
    GET  <url>                 -> {"campaigns": [campaign...]}
    GET  <url>/<externalId>    -> campaign
    POST <url>/export          <- {"type": "experience.published", "experience": {...}}
    campaign = {"id", "name", "channel"?, "tactic"?, "startDate"?, "endDate"?, "ended"?, "detail"?}
every request with `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import sqlalchemy as sa

from overture.core.encode import isoformat_z
from overture.db.lookup import get_or_404
from overture.db.session import Session
from overture.delivery import service as destinations
from overture.delivery.egress import EgressError, guard_for
from overture.delivery.schemas import DestinationCreate
from overture.errors import Invalid, NotFound, OvertureError, Unavailable
from overture.experiences.models import Experience, ProviderAuth
from overture.experiences.schemas import AuthCreate, AuthRead, ImportBody
from overture.experiences.states import ExperienceStatus

__all__ = [
    "PROVIDERS",
    "HttpProvider",
    "Importable",
    "Provider",
    "auth_read",
    "check_exportable",
    "create_auth",
    "delete_auth",
    "export_payload",
    "get_auth",
    "import_experiences",
    "importable",
    "is_external",
    "list_auths",
    "register_provider",
]

#: The most of a feed we read (a hostile feed cannot make us buffer more).
MAX_FEED_BYTES = 5 * 1024 * 1024
FEED_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Importable:
    """One campaign an external provider offers for import."""

    external_id: str
    name: str
    channel: str | None = None
    tactic: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    ended: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


class Provider(ABC):
    """A provider plugin. `auth` is the credential's row; `token` its secret."""

    slug: str

    @abstractmethod
    def list_campaigns(self, session: Session, auth: ProviderAuth, token: str) -> list[Importable]: ...

    @abstractmethod
    def fetch(self, session: Session, auth: ProviderAuth, token: str, external_id: str) -> Importable: ...

    def export(self, experience: Experience) -> dict[str, Any]:
        """The message a published experience's export sends (the outbox delivers it)."""
        return {"type": "experience.published", "experience": export_payload(experience)}


PROVIDERS: dict[str, Provider] = {}


def register_provider(provider: Provider) -> Provider:
    PROVIDERS[provider.slug] = provider
    return provider


def is_external(slug: str | None) -> bool:
    return slug is not None and slug in PROVIDERS


def export_payload(e: Experience) -> dict[str, Any]:
    return {
        "id": e.id,
        "name": e.name,
        "externalId": e.external_id,
        "providerChannel": e.provider_channel,
        "tactic": e.tactic,
        "aggression": e.aggression,
        "detail": e.detail,
        "detailOverride": e.detail_override,
        "startDate": isoformat_z(e.start_date) if e.start_date else None,
        "endDate": isoformat_z(e.end_date) if e.end_date else None,
    }


# -- the http provider --------------------------------------------------------------------------------
def _instant(value: Any, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise Unavailable(f"provider feed: {where} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise Unavailable(f"provider feed: {where} has no time zone: {value!r}")
    return parsed


def _campaign(raw: Any, where: str) -> Importable:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str | int) or not str(raw.get("id")):
        raise Unavailable(f"provider feed: {where} is not a campaign with an id")
    detail = raw.get("detail") or {}
    if not isinstance(detail, dict):
        raise Unavailable(f"provider feed: {where}.detail is not an object")
    return Importable(
        external_id=str(raw["id"])[:200],
        name=str(raw.get("name") or raw["id"])[:200],
        channel=str(raw["channel"])[:100] if raw.get("channel") else None,
        tactic=raw.get("tactic") if isinstance(raw.get("tactic"), str) else None,
        start_date=_instant(raw.get("startDate"), f"{where}.startDate"),
        end_date=_instant(raw.get("endDate"), f"{where}.endDate"),
        ended=bool(raw.get("ended", False)),
        detail=detail,
    )


class HttpProvider(Provider):
    slug = "http"

    def _get(self, session: Session, url: str, token: str) -> Any:
        guard = guard_for(session.ctx)
        try:
            guard.check_url(url)
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            with guard.client().stream("GET", url, headers=headers, timeout=FEED_TIMEOUT_SECONDS) as response:
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_FEED_BYTES:
                        raise Unavailable(f"provider feed: more than {MAX_FEED_BYTES} bytes")
        except EgressError as exc:
            raise Invalid(
                f"auth_id: the credential's url is refused: {exc.message}", field="auth_id"
            ) from None
        except httpx.HTTPError as exc:
            raise Unavailable(f"provider feed unreachable: {type(exc).__name__}: {exc}") from None
        if response.status_code == 404:
            raise NotFound("provider feed: not found")
        if response.status_code in (401, 403):
            raise Invalid(
                f"auth_id: the provider refused the token ({response.status_code})", field="auth_id"
            )
        if response.status_code != 200:
            raise Unavailable(f"provider feed answered {response.status_code}")
        try:
            return json.loads(body)
        except ValueError:
            raise Unavailable("provider feed: the answer is not JSON") from None

    def list_campaigns(self, session: Session, auth: ProviderAuth, token: str) -> list[Importable]:
        doc = self._get(session, auth.url, token)
        items = doc.get("campaigns") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise Unavailable('provider feed: expected {"campaigns": [...]}')
        return [_campaign(item, f"campaigns[{i}]") for i, item in enumerate(items)]

    def fetch(self, session: Session, auth: ProviderAuth, token: str, external_id: str) -> Importable:
        url = f"{auth.url.rstrip('/')}/{quote(external_id, safe='')}"
        return _campaign(self._get(session, url, token), "campaign")


register_provider(HttpProvider())


# -- credentials ----------------------------------------------------------------------------------------
def auth_read(auth: ProviderAuth) -> AuthRead:
    return AuthRead(
        id=auth.id,
        provider_slug=auth.provider_slug,
        name=auth.name,
        url=auth.url,
        destination_id=auth.destination_id,
        created_at=auth.created_at,
        updated_at=auth.updated_at,
    )


def create_auth(session: Session, body: AuthCreate) -> ProviderAuth:
    """A credential: the feed URL and a webhook destination holding the token (write-only)."""
    if body.provider_slug not in PROVIDERS:
        known = ", ".join(sorted(PROVIDERS))
        raise Invalid(f"auth.providerSlug: unknown provider (known: {known})", field="auth.providerSlug")
    if not body.url.lower().startswith(("http://", "https://")):
        raise Invalid("auth.url: must be an http:// or https:// URL", field="auth.url")
    auth = ProviderAuth(provider_slug=body.provider_slug, name=body.name, url=body.url, destination_id="")
    auth.id = _new_id()
    config = {"url": f"{body.url.rstrip('/')}/export", "headers": {"Authorization": f"Bearer {body.token}"}}
    try:
        destination = destinations.create_destination(
            session,
            DestinationCreate(
                name=f"experiences:{body.provider_slug}:{auth.id}", type="webhook", config=config
            ),
        )
    except OvertureError as exc:
        field = "auth.url" if exc.field and "url" in exc.field else "auth"
        raise Invalid(f"{field}: {exc.message}", field=field) from None
    auth.destination_id = destination.id
    session.add(auth)
    session.flush()
    return auth


def _new_id() -> str:
    from overture.db.base import new_id

    return new_id()


def get_auth(session: Session, auth_id: str) -> ProviderAuth:
    return get_or_404(session, ProviderAuth, auth_id, what="provider credential")


def list_auths(session: Session) -> list[ProviderAuth]:
    return list(session.scalars(sa.select(ProviderAuth).order_by(ProviderAuth.created_at, ProviderAuth.id)))


def delete_auth(session: Session, auth_id: str) -> None:
    auth = get_auth(session, auth_id)
    destination_id = auth.destination_id
    session.delete(auth)
    session.flush()
    destinations.delete_destination(session, destination_id)


def _token(session: Session, auth: ProviderAuth) -> str:
    destination = destinations.get_destination(session, auth.destination_id)
    header = str((destination.config.get("headers") or {}).get("Authorization", ""))
    return header.removeprefix("Bearer ")


def _credential(
    session: Session, provider_slug: str | None, auth_id: str | None
) -> tuple[Provider, ProviderAuth]:
    if not provider_slug:
        raise Invalid("provider_slug: required", field="provider_slug")
    if not auth_id:
        raise Invalid("auth_id: required", field="auth_id")
    provider = PROVIDERS.get(provider_slug)
    if provider is None:
        raise Invalid(f"provider_slug: unknown provider '{provider_slug}'", field="provider_slug")
    auth = session.get(ProviderAuth, auth_id)
    if auth is None or auth.workspace_id != session.workspace_id:
        raise Invalid(f"auth_id: credential '{auth_id}' not found", field="auth_id")
    if auth.provider_slug != provider_slug:
        raise Invalid(
            f"auth_id: credential '{auth_id}' is for provider '{auth.provider_slug}'", field="auth_id"
        )
    return provider, auth


def check_exportable(session: Session, e: Experience) -> None:
    """An external provider's experience names the credential its export uses (vehicle.providerId)."""
    if not is_external(e.provider_slug):
        return
    auth = session.get(ProviderAuth, e.provider_id) if e.provider_id else None
    if auth is None or auth.workspace_id != session.workspace_id or auth.provider_slug != e.provider_slug:
        raise Invalid(
            f"experience.vehicle.providerId: provider '{e.provider_slug}' is external; providerId must name "
            "one of its credentials (POST /api/experience/auth)",
            field="experience.vehicle.providerId",
        )


def _imported(session: Session, provider_slug: str) -> dict[str, Experience]:
    rows = session.scalars(
        sa.select(Experience).where(
            Experience.provider_slug == provider_slug, Experience.external_id.is_not(None)
        )
    )
    return {str(e.external_id): e for e in rows}


def importable(
    session: Session,
    provider_slug: str | None,
    auth_id: str | None,
    *,
    include_existing: bool,
    include_ended: bool,
) -> list[dict[str, Any]]:
    provider, auth = _credential(session, provider_slug, auth_id)
    campaigns = provider.list_campaigns(session, auth, _token(session, auth))
    existing = _imported(session, provider.slug)
    now = session.now()
    out = []
    for c in campaigns:
        ended = c.ended or (c.end_date is not None and c.end_date <= now)
        if ended and not include_ended:
            continue
        imported = existing.get(c.external_id)
        if imported is not None and not include_existing:
            continue
        out.append(
            {
                "externalId": c.external_id,
                "name": c.name,
                "providerSlug": provider.slug,
                "providerChannel": c.channel,
                "tactic": c.tactic,
                "startDate": c.start_date,
                "endDate": c.end_date,
                "ended": ended,
                "detail": c.detail,
                "imported": imported is not None,
                "experienceId": imported.id if imported is not None else None,
            }
        )
    return out


def import_experiences(session: Session, body: ImportBody) -> list[Experience]:
    """Import as draft orphans, idempotently by (provider, externalId): an id imported before returns
    the experience it made, changed nothing."""
    provider, auth = _credential(session, body.provider_slug, body.auth_id)
    token = _token(session, auth)
    if body.external_ids is None:
        campaigns = provider.list_campaigns(session, auth, token)
    else:
        campaigns = []
        for i, external_id in enumerate(body.external_ids):
            try:
                campaigns.append(provider.fetch(session, auth, token, external_id))
            except NotFound:
                raise Invalid(
                    f"externalIds[{i}]: the provider has no campaign '{external_id}'",
                    field=f"externalIds[{i}]",
                ) from None
    existing = _imported(session, provider.slug)
    out: list[Experience] = []
    from overture.experiences.schemas import TACTICS

    for c in campaigns:
        found = existing.get(c.external_id)
        if found is None:
            found = Experience(
                name=c.name,
                parent_id=None,
                position=0,
                provider_slug=provider.slug,
                provider_id=auth.id,
                provider_channel=c.channel,
                tactic=c.tactic if c.tactic in TACTICS else None,
                external_id=c.external_id,
                detail=c.detail,
                status=ExperienceStatus.DRAFT,
                start_date=c.start_date,
                end_date=c.end_date
                if c.start_date is None or (c.end_date and c.end_date > c.start_date)
                else None,
                publish_count=0,
            )
            session.add(found)
            existing[c.external_id] = found
        out.append(found)
    session.flush()
    return out
