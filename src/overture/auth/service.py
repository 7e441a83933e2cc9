"""Workspaces and API keys: creation, authentication (cached, constant-time), revocation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from overture.auth.models import ApiKey, Workspace
from overture.auth.schemas import WorkspaceUpdate
from overture.auth.scopes import ADMIN, PUBLIC_SCOPES, grants, unknown_scopes
from overture.clock import Clock, SystemClock
from overture.core.schedules import ScheduleError, parse_zone
from overture.db.engine import transaction
from overture.db.lookup import get_or_404
from overture.db.notify import bus
from overture.db.session import Session
from overture.errors import Forbidden, Invalid, Unauthorized

KEY_TOPIC = "api_keys"
PREFIX_LEN = 11  # "sk_" + 8 characters of the secret
LAST_USED_RESOLUTION = timedelta(seconds=60)
#: Without PostgreSQL NOTIFY (SQLite), how often a process looks for revocations made by another
#: process (`overture keys revoke` beside a running server): a revoked key stops within this.
REVOCATION_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Caller:
    workspace_id: str
    key_id: str
    scopes: frozenset[str]
    public: bool

    def has(self, scope: str) -> bool:
        if self.public and scope not in PUBLIC_SCOPES:
            return False
        return grants(self.scopes, scope)

    def require(self, scope: str) -> None:
        if not self.has(scope):
            if self.public:
                raise Forbidden("public keys may only call the SDK decision and event endpoints")
            raise Forbidden(f"this key lacks the '{scope}' scope", details={"required_scope": scope})


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_workspace(session: Session, name: str, timezone: str | None = None) -> Workspace:
    ws = Workspace(name=name, timezone=timezone, settings={})
    session.add(ws)
    session.flush()
    return ws


def get_workspace(session: Session, workspace_id: str) -> Workspace:
    return get_or_404(session, Workspace, workspace_id, what="workspace")


def update_workspace(session: Session, workspace_id: str, body: WorkspaceUpdate) -> Workspace:
    """Change the name and/or the default timezone (null clears it: schedules then fall back to UTC)."""
    ws = get_workspace(session, workspace_id)
    if body.name is not None:
        ws.name = body.name
    if "timezone" in body.model_fields_set:
        if body.timezone is not None:
            try:
                parse_zone(body.timezone)
            except ScheduleError as exc:
                raise Invalid(f"timezone: {exc.message}", field="timezone")
        ws.timezone = body.timezone
    session.flush()
    return ws


def create_key(
    session: Session, workspace_id: str, *, name: str, scopes: list[str], public: bool = False
) -> tuple[ApiKey, str]:
    """Create a key; returns the record and the secret, which is never retrievable again."""
    bad = unknown_scopes(scopes)
    if bad:
        raise Invalid(f"unknown scope '{bad[0]}'", field="scopes")
    if public:
        extra = sorted(set(scopes) - PUBLIC_SCOPES)
        if extra:
            raise Invalid(
                f"public keys may only carry {sorted(PUBLIC_SCOPES)}; got '{extra[0]}'", field="scopes"
            )
        scopes = sorted(set(scopes) or PUBLIC_SCOPES)
    elif not scopes:
        raise Invalid("a private key needs at least one scope", field="scopes")
    token = ("pk_" if public else "sk_") + secrets.token_urlsafe(32)
    key = ApiKey(
        workspace_id=workspace_id,
        name=name,
        prefix=token[:PREFIX_LEN],
        key_hash=hash_key(token),
        scopes=sorted(set(scopes)),
        public=public,
        created_at=session.now(),
    )
    session.add(key)
    session.flush()
    return key, token


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(sa.select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def caller_for_key(session: Session, key_id: str) -> Caller:
    """The caller a live key stands for (the dashboard's session points at a key, not at a secret);
    401 once the key is revoked or deleted, so revoking a key also ends its dashboard sessions."""
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        raise Unauthorized("invalid or revoked API key")
    return Caller(key.workspace_id, key.id, frozenset(key.scopes), key.public)


def revoke_key(session: Session, key_id: str) -> None:
    key = get_or_404(session, ApiKey, key_id, what="API key", revoked_at=None)
    key.revoked_at = session.now()
    bus.publish_on_commit(session, KEY_TOPIC, key.workspace_id)


@dataclass
class _Cached:
    caller: Caller
    last_used_at: datetime | None


class KeyAuthenticator:
    """Resolves bearer tokens to callers. Valid keys are cached in memory (the decision path must
    not pay a database read per request) and dropped the moment any key of their workspace is
    revoked, in this process and, on PostgreSQL, in every other."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock | None = None) -> None:
        self._sessions = sessions
        self._clock = clock or SystemClock()
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self._generation = 0  # bumped on invalidation; a load that raced a revocation is not cached
        bus.subscribe(KEY_TOPIC, self._invalidate_workspace)
        # PostgreSQL tells every process through NOTIFY; elsewhere, poll a revocation marker.
        self._poll = sessions.kw["bind"].dialect.name != "postgresql"
        self._marker: tuple[object, ...] | None = None
        self._polled_at = 0.0

    def _invalidate_workspace(self, workspace_id: str) -> None:
        with self._lock:
            self._generation += 1
            for digest in [d for d, c in self._cache.items() if c.caller.workspace_id == workspace_id]:
                del self._cache[digest]

    def cached(self, token: str | None) -> Caller | None:
        """The caller of a key answered from memory, or None when `authenticate` would touch the
        database (a cache miss, a revocation poll or a last-used stamp due): callers on an event
        loop then run `authenticate` in a thread."""
        if not token or len(token) > 200:
            return None
        if self._poll and time.monotonic() - self._polled_at >= REVOCATION_POLL_SECONDS:
            return None
        cached = self._cache.get(hash_key(token))
        if cached is None or cached.last_used_at is None:
            return None
        if self._clock.now() - cached.last_used_at > LAST_USED_RESOLUTION:
            return None
        return cached.caller

    def authenticate(self, token: str | None) -> Caller:
        if not token or not token.startswith(("sk_", "pk_")) or len(token) > 200:
            raise Unauthorized("missing or malformed API key")
        digest = hash_key(token)
        if self._poll and time.monotonic() - self._polled_at >= REVOCATION_POLL_SECONDS:
            self._check_revocations()
        cached = self._cache.get(digest)
        if cached is None:
            cached = self._load(token, digest)
        now = self._clock.now()
        if cached.last_used_at is None or now - cached.last_used_at > LAST_USED_RESOLUTION:
            cached.last_used_at = now
            self._touch(cached.caller.key_id, now)
        return cached.caller

    def _check_revocations(self) -> None:
        """One cheap read: when the set of revoked keys changed since the last look, drop the cache."""
        self._polled_at = time.monotonic()
        with transaction(self._sessions, write=False) as session:
            revoked = sa.select(sa.func.count(), sa.func.max(ApiKey.revoked_at))
            row = session.execute(revoked.where(ApiKey.revoked_at.is_not(None))).one()
        marker = tuple(row)
        if self._marker is not None and marker != self._marker:
            with self._lock:
                self._generation += 1
                self._cache.clear()
        self._marker = marker

    def _load(self, token: str, digest: str) -> _Cached:
        generation = self._generation
        with transaction(self._sessions, write=False) as session:
            candidates = session.scalars(
                sa.select(ApiKey).where(ApiKey.prefix == token[:PREFIX_LEN], ApiKey.revoked_at.is_(None))
            ).all()
            match = next((k for k in candidates if hmac.compare_digest(k.key_hash, digest)), None)
            if match is None:
                raise Unauthorized("invalid or revoked API key")
            entry = _Cached(
                Caller(match.workspace_id, match.id, frozenset(match.scopes), match.public),
                match.last_used_at,
            )
        with self._lock:
            if generation == self._generation:
                self._cache[digest] = entry
        return entry

    def _touch(self, key_id: str, now: datetime) -> None:
        with transaction(self._sessions) as session:
            session.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


def bootstrap_workspace(session: Session, name: str) -> tuple[Workspace, str, str]:
    """A new workspace with an admin private key and a public key (what `overture init` prints)."""
    ws = create_workspace(session, name)
    _, secret = create_key(session, ws.id, name="admin", scopes=[ADMIN])
    _, public = create_key(session, ws.id, name="public", scopes=sorted(PUBLIC_SCOPES), public=True)
    return ws, secret, public
