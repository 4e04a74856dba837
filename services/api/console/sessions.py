"""Console sign-in: sessions and one-time sign-in links, kept as API keys.

A console session is an API key minted for the browser (name `console-session`), a child of
the key the person signed in with: it has that key's scope and user, revoking the signing key
ends its sessions (the key table's own cascade), and signing out revokes the session key. The
browser holds its secret in an HttpOnly, SameSite=Strict cookie and nothing else; the CSRF
token of its forms is an HMAC of that secret, so a page that cannot read the cookie cannot
forge it, and the server stores nothing more.

A one-time sign-in link (`orchestrator console`) is a key named `console-link`, a child of
the key that asked for it. Opening it revokes it (one use) and mints a session as a child of
the asking key. A link or session older than its time to live is refused (and revoked).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth.models import ApiKey
from services.api.auth.principal import Principal
from services.api.auth.repository import ApiKeyRepository
from services.api.auth.service import AuthService, hash_key
from services.api.db import utc_now
from services.api.errors import UnauthenticatedError
from shared.api_client.schemas import Scope
from shared.settings import ConsoleSettings

__all__ = [
    "LINK_NAME",
    "SESSION_NAME",
    "ConsoleSession",
    "ConsoleSessions",
    "csrf_matches",
    "csrf_token",
]

SESSION_NAME = "console-session"
LINK_NAME = "console-link"


def csrf_token(session_secret: str) -> str:
    """The CSRF token of the forms of one session."""
    return hmac.new(session_secret.encode(), b"console-csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_secret: str, token: str | None) -> bool:
    """True when `token` is the session's CSRF token (constant-time)."""
    return token is not None and hmac.compare_digest(csrf_token(session_secret), token)


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in browser: who it acts as, and its secret (for the CSRF token)."""

    principal: Principal
    secret: str
    expires_at: datetime

    @property
    def csrf(self) -> str:
        """The CSRF token its forms carry."""
        return csrf_token(self.secret)


def _aware(value: datetime) -> datetime:
    """SQLite gives naive datetimes back; they are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class ConsoleSessions:
    """Sign in (with a key or a link), check a session cookie, sign out."""

    def __init__(self, session: AsyncSession, settings: ConsoleSettings) -> None:
        self.keys = ApiKeyRepository(session)
        self.auth = AuthService(session)
        self.settings = settings

    async def sign_in(self, api_key: str) -> tuple[str, datetime]:
        """A new session for the holder of `api_key`; its secret and expiry.
        `UnauthenticatedError` for an unknown or revoked key, or a console key itself."""
        principal = await self.auth.authenticate(api_key.strip())
        parent = await self.keys.get(principal.key_id)
        if parent is None or parent.name in (SESSION_NAME, LINK_NAME):
            raise UnauthenticatedError("sign in with an API key, not a console credential")
        return await self._session(parent)

    async def create_link(self, principal: Principal) -> tuple[str, datetime]:
        """A one-time sign-in link's secret for the caller's own key, and when it expires."""
        parent = await self.keys.get(principal.key_id)
        if parent is None or parent.name in (SESSION_NAME, LINK_NAME):
            raise UnauthenticatedError("a sign-in link is asked for with an API key")
        secret, created = await self._mint(LINK_NAME, parent)
        return secret, created + timedelta(seconds=self.settings.link_ttl_s)

    async def use_link(self, link_secret: str) -> tuple[str, datetime]:
        """Spend a one-time link: a new session; `UnauthenticatedError` when it is unknown,
        used or expired."""
        link = await self.keys.by_hash(hash_key(link_secret))
        if link is None or link.name != LINK_NAME or link.revoked_at is not None:
            raise UnauthenticatedError("this sign-in link is unknown or was used already")
        await self.keys.revoke(link, utc_now())  # one use, whatever follows
        if _aware(link.created_at) + timedelta(seconds=self.settings.link_ttl_s) < utc_now():
            raise UnauthenticatedError("this sign-in link has expired: ask for a new one")
        parent = await self.keys.get(link.parent_id) if link.parent_id is not None else None
        if parent is None or parent.revoked_at is not None:
            raise UnauthenticatedError("the key this link was made for is revoked")
        return await self._session(parent)

    async def check(self, secret: str | None) -> ConsoleSession:
        """The session of a cookie; `UnauthenticatedError` when missing, forged, revoked or
        expired."""
        if not secret:
            raise UnauthenticatedError("not signed in")
        key = await self.keys.by_hash(hash_key(secret))
        if key is None or key.name != SESSION_NAME or key.revoked_at is not None:
            raise UnauthenticatedError("this console session is unknown or ended")
        expires = _aware(key.created_at) + timedelta(seconds=self.settings.session_ttl_s)
        if expires < utc_now():
            await self.keys.revoke(key, utc_now())
            raise UnauthenticatedError("this console session has expired: sign in again")
        principal = await self.auth.authenticate(secret)
        return ConsoleSession(principal=principal, secret=secret, expires_at=expires)

    async def sign_out(self, secret: str) -> None:
        """End a session (its key is revoked)."""
        key = await self.keys.by_hash(hash_key(secret))
        if key is not None and key.name == SESSION_NAME and key.revoked_at is None:
            await self.keys.revoke(key, utc_now())

    async def _session(self, parent: ApiKey) -> tuple[str, datetime]:
        secret, created = await self._mint(SESSION_NAME, parent)
        return secret, created + timedelta(seconds=self.settings.session_ttl_s)

    async def _mint(self, name: str, parent: ApiKey) -> tuple[str, datetime]:
        """A child key of `parent` with its scope and user; its secret and creation time."""
        scope: Scope = (
            "admin"
            if parent.scope == "admin"
            else "service"
            if parent.scope == "service"
            else "user"
        )
        row, secret = await self.auth.create_key(name, scope, parent.user_id, parent_id=parent.id)
        return secret, _aware(row.created_at)
