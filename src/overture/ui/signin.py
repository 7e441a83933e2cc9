"""Signing in to the dashboard: an API key (or a one-time link) is exchanged for a server-side
session; the browser holds only a signed random token in an HttpOnly, SameSite=Strict cookie.

The key itself is read once from the sign-in form and never stored, echoed, put in a URL or logged.
Every request re-reads the session row and the key it points at (`caller_for_key`), so sign-out,
expiry or revoking the key ends the session at once, in every process."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from itsdangerous import BadSignature, Signer

from overture.auth.deps import caller_of_token
from overture.auth.service import Caller, caller_for_key
from overture.db.context import AppContext
from overture.errors import Forbidden, NotFound, Unauthorized
from overture.ui.models import UiSession

COOKIE = "overture_session"
SESSION_TTL = timedelta(hours=12)
LINK_TTL = timedelta(hours=1)


@dataclass(frozen=True)
class UiUser:
    caller: Caller
    token_hash: str
    csrf: str

    def can(self, scope: str) -> bool:
        return self.caller.has(scope)


def _signer(ctx: AppContext, purpose: str) -> Signer:
    """Signs with the key ring's newest key and accepts any of its keys (itsdangerous wants the newest
    last), so `overture secrets rotate` signs nobody out until it retires the old key."""
    ring = ctx.keyring
    ring.ensure()
    return Signer(list(reversed(ring.entries())), salt=f"overture-ui-{purpose}")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_row(ctx: AppContext, caller: Caller, kind: str, ttl: timedelta) -> str:
    token = secrets.token_urlsafe(32)
    now = ctx.clock.now()
    with ctx.transaction() as session:
        session.add(
            UiSession(
                token_hash=_hash(token),
                kind=kind,
                workspace_id=caller.workspace_id,
                key_id=caller.key_id,
                created_at=now,
                expires_at=now + ttl,
            )
        )
    return token


def sign_in_with_key(ctx: AppContext, api_key: str) -> str:
    """A new session for a private key; returns the cookie value. 401 for a bad key, 403 for a
    public (SDK) key: those may only call the decision and event endpoints."""
    caller = caller_of_token(ctx, api_key.strip())
    if caller.public:
        raise Forbidden("public (pk_) keys cannot sign in to the dashboard; use a private sk_ key")
    return _signer(ctx, "session").sign(_new_row(ctx, caller, "session", SESSION_TTL)).decode()


def create_link(ctx: AppContext, api_key: str) -> str:
    """A one-time sign-in link token for a private key (what `overture serve --first-run` prints)."""
    caller = caller_of_token(ctx, api_key)
    if caller.public:
        raise Forbidden("public keys cannot sign in to the dashboard")
    return _new_row(ctx, caller, "link", LINK_TTL)


def redeem_link(ctx: AppContext, link_token: str) -> str:
    """Use a one-time link (it is spent whatever happens next); returns a new session's cookie value."""
    now = ctx.clock.now()
    with ctx.transaction() as session:
        spent = session.execute(
            sa.update(UiSession)
            .where(
                UiSession.token_hash == _hash(link_token),
                UiSession.kind == "link",
                UiSession.revoked_at.is_(None),
                UiSession.expires_at > now,
            )
            .values(revoked_at=now)
            .returning(UiSession.key_id)
        ).first()
        if spent is None:
            raise NotFound("this sign-in link was already used or has expired")
        caller = caller_for_key(session, spent[0])
    return _signer(ctx, "session").sign(_new_row(ctx, caller, "session", SESSION_TTL)).decode()


def resolve(ctx: AppContext, cookie: str | None) -> UiUser:
    """The signed-in user of a cookie; 401 when there is none, or it is forged, expired or ended."""
    if not cookie or len(cookie) > 300:
        raise Unauthorized("not signed in")
    try:
        token = _signer(ctx, "session").unsign(cookie).decode()
    except BadSignature:
        raise Unauthorized("not signed in")
    token_hash = _hash(token)
    with ctx.transaction(write=False) as session:
        row = session.get(UiSession, token_hash)
        if (
            row is None
            or row.kind != "session"
            or row.revoked_at is not None
            or row.expires_at <= ctx.clock.now()
        ):
            raise Unauthorized("your session has ended; sign in again")
        caller = caller_for_key(session, row.key_id)
    csrf = _signer(ctx, "csrf").get_signature(token_hash).decode()
    return UiUser(caller, token_hash, csrf)


def check_csrf(user: UiUser, sent: str | None) -> None:
    if not sent or not hmac.compare_digest(sent, user.csrf):
        raise Forbidden("the form's security token is missing or stale; reload the page and try again")


def sign_out(ctx: AppContext, user: UiUser) -> None:
    with ctx.transaction() as session:
        session.execute(
            sa.update(UiSession)
            .where(UiSession.token_hash == user.token_hash, UiSession.revoked_at.is_(None))
            .values(revoked_at=ctx.clock.now())
        )
