"""Rules of credentials: how secrets are made, hashed, checked and who may create them.

Secrets are 256 random bits (`orc_` + URL-safe base64). Because they are random, not chosen
by people, one SHA-256 is enough to store them safely: no dictionary can reverse it, and the
lookup by hash stays a single indexed query per request.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth.cache import CredentialCache
from services.api.auth.models import ApiKey
from services.api.auth.principal import Principal
from services.api.auth.repository import ApiKeyRepository
from services.api.db import Database, utc_now
from services.api.direct import Unavailable
from services.api.errors import (
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    UnauthenticatedError,
)
from services.api.users.repository import UserRepository
from shared.api_client.schemas import ApiKeyCreate, Scope

__all__ = [
    "KEY_PREFIX",
    "REVOKED",
    "AuthService",
    "authenticate_direct",
    "hash_key",
    "new_secret",
]

KEY_PREFIX = "orc_"


def new_secret() -> str:
    """A fresh random credential."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    """The stored form of a credential (hex SHA-256)."""
    return hashlib.sha256(secret.encode()).hexdigest()


_KEYS = ApiKey.__table__
_KEY_BY_HASH = select(_KEYS.c.id, _KEYS.c.scope, _KEYS.c.user_id, _KEYS.c.revoked_at).where(
    _KEYS.c.key_hash == bindparam("key_hash")
)
"""What authentication reads of a key, on the table (a direct read)."""

_MISSING = "missing credential: send `Authorization: Bearer <API key or user token>`"
_INVALID = "invalid or revoked credential"


async def authenticate_direct(
    secret: str | None, cache: CredentialCache, database: Database
) -> Principal:
    """The principal of a credential: from `cache` while its entry is fresh, else one
    direct read of the key (through a session when the direct path cannot answer); a
    valid credential is then cached. `UnauthenticatedError` when missing, unknown or
    revoked."""
    if not secret:
        raise UnauthenticatedError(_MISSING)
    key_hash = hash_key(secret)
    cached = cache.get(key_hash)
    if cached is not None:
        return cached
    generation = cache.generation
    row = await database.direct.fetch_one(_KEY_BY_HASH, {"key_hash": key_hash})
    if isinstance(row, Unavailable):
        async with database.sessionmaker() as session:
            principal = await AuthService(session).authenticate(secret)
    elif row is None or row["revoked_at"] is not None:
        raise UnauthenticatedError(_INVALID)
    else:
        principal = Principal(key_id=row["id"], scope=_scope(row["scope"]), user_id=row["user_id"])
    cache.put(key_hash, principal, generation)
    return principal


class AuthService:
    """Authenticate requests; create, list and revoke keys."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.keys = ApiKeyRepository(session)
        self.users = UserRepository(session)

    async def authenticate(self, secret: str | None) -> Principal:
        """The principal of a credential; `UnauthenticatedError` when missing or unknown."""
        if not secret:
            raise UnauthenticatedError(_MISSING)
        key = await self.keys.by_hash(hash_key(secret))
        if key is None or key.revoked_at is not None:
            raise UnauthenticatedError(_INVALID)
        return Principal(key_id=key.id, scope=_scope(key.scope), user_id=key.user_id)

    async def create(
        self, principal: Principal, request: ApiKeyCreate, *, secret: str | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key; admins any, services `user` tokens of any user (the worker-manager
        gives each worker its owner's token), users only `user` tokens for themselves."""
        user_id = request.user_id
        if principal.scope == "service":
            if request.scope != "user":
                raise ForbiddenError("a service creates only user tokens")
        elif not principal.is_admin:
            principal.require("admin", "user")
            if request.scope != "user":
                raise InvalidRequestError("only admins create admin or service keys", field="scope")
            user_id = user_id or principal.user_id
            if user_id != principal.user_id:
                raise InvalidRequestError(
                    "a user creates tokens only for themselves", field="user_id"
                )
        # a user token's own tokens die with it (a worker's minted key cannot outlive it)
        parent_id = principal.key_id if principal.scope == "user" else None
        return await self.create_key(
            request.name, request.scope, user_id, secret=secret, parent_id=parent_id
        )

    async def create_key(
        self,
        name: str,
        scope: Scope,
        user_id: int | None,
        *,
        secret: str | None = None,
        parent_id: int | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key without a caller (bootstrap, CLI); returns the row and the secret."""
        if scope == "user" and user_id is None:
            raise InvalidRequestError("a user token needs a user_id", field="user_id")
        if user_id is not None and await self.users.get(user_id) is None:
            raise NotFoundError(f"user {user_id} not found", field="user_id")
        secret = secret or new_secret()
        row = ApiKey(
            name=name, scope=scope, key_hash=hash_key(secret), user_id=user_id, parent_id=parent_id
        )
        return await self.keys.add(row), secret

    async def ensure_key(self, name: str, scope: Scope, secret: str) -> ApiKey:
        """Register a known secret (idempotent): the embedded mode's shared service key."""
        existing = await self.keys.by_hash(hash_key(secret))
        if existing is not None:
            return existing
        row, _ = await self.create_key(name, scope, None, secret=secret)
        return row

    async def list(self, *, limit: int, offset: int) -> tuple[Sequence[ApiKey], int]:
        """A page of keys."""
        return await self.keys.list(limit=limit, offset=offset)

    async def revoke(self, key_id: int, principal: Principal | None = None) -> None:
        """Revoke a key and the tokens it minted; they stop working at once. Admins revoke any,
        services user tokens."""
        if principal is not None and not principal.is_admin:
            principal.require("admin", "service")
        key = await self.keys.get(key_id)
        if key is None:
            raise NotFoundError(f"API key {key_id} not found")
        if principal is not None and not principal.is_admin and key.scope != "user":
            raise ForbiddenError("a service revokes only user tokens")
        if key.revoked_at is None:
            await self.keys.revoke(key, utc_now())
            # the request's session empties this process's credential cache now and once more
            # after its commit (`deps.session`)
            self.session.info[REVOKED] = True


REVOKED = "auth.revoked"
"""Session info flag: this transaction revoked credentials."""


def _scope(value: str) -> Scope:
    if value == "admin":
        return "admin"
    if value == "service":
        return "service"
    return "user"
