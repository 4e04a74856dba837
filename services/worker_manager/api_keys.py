"""User-scoped API keys of workers: minted when a worker starts, revoked when it ends.

A create command asks for a key by reference, never by value (secrets never travel in a
queue message): its context names the environment variable (`api_key_env`, e.g.
`PO_API_TOKEN`) and the user (`owner`, the API's user id). The manager mints a `user` key
for that user through the API with its own credential (service scope), puts it only into the
worker's environment, and keeps only the key's id (`workers:api-keys`: worker id → key id).
The key is revoked when the worker is deleted, fails, is stopped idle or is replaced; each
monitor pass sweeps the ids of workers that are no longer live, so a revocation that failed
(API down) or never ran (a crash) happens later.

`ApiKeyIssuer` is the API as this module needs it; `ApiClientKeyIssuer` is the real one,
`MemoryApiKeyIssuer` a fake for tests.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
import structlog

from services.worker_manager.errors import InvalidWorkerConfigError, WorkerApiKeyError
from services.worker_manager.keys import API_KEYS
from services.worker_manager.registry import as_text
from shared.api_client import ApiClient, ApiClientError, NotFoundError
from shared.api_client.schemas import ApiKeyCreate

__all__ = [
    "API_KEY_ENV_CONTEXT",
    "OWNER_CONTEXT",
    "ApiClientKeyIssuer",
    "ApiKeyIssuer",
    "ApiKeyRequest",
    "MemoryApiKeyIssuer",
    "WorkerApiKeys",
    "api_key_request",
]

log = structlog.get_logger("services.worker_manager")

API_KEY_ENV_CONTEXT = "api_key_env"
"""Context entry of a create command: the variable that receives the owner's API key."""
OWNER_CONTEXT = "owner"
"""Context entry of a create command: the API user id the worker acts for."""
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
_RESERVED_PREFIXES = ("WORKER_", "ORCHESTRATOR_")
"""The wrapper keeps variables with these prefixes from its agent."""


@dataclass(frozen=True)
class ApiKeyRequest:
    """A key a create command asks for: which variable, for which user."""

    env_name: str
    user_id: int


def api_key_request(context: Mapping[str, str]) -> ApiKeyRequest | None:
    """The key a create command's context asks for (None: none); clear errors when invalid."""
    env_name = context.get(API_KEY_ENV_CONTEXT)
    if not env_name:
        return None
    if not _ENV_NAME.match(env_name) or env_name.startswith(_RESERVED_PREFIXES):
        raise InvalidWorkerConfigError(
            f"invalid {API_KEY_ENV_CONTEXT} {env_name!r}: use an upper-case variable name "
            f"not starting with {' or '.join(_RESERVED_PREFIXES)}"
        )
    owner = context.get(OWNER_CONTEXT, "")
    if not owner.isdigit() or int(owner) < 1:
        raise InvalidWorkerConfigError(
            f"{API_KEY_ENV_CONTEXT} needs the context's {OWNER_CONTEXT} (an API user id), "
            f"not {owner!r}"
        )
    return ApiKeyRequest(env_name=env_name, user_id=int(owner))


class ApiKeyIssuer(Protocol):
    """Mints and revokes user-scoped API keys."""

    async def mint(self, *, user_id: int, name: str) -> tuple[int, str]:
        """A new `user` key of `user_id`: (its id, its secret)."""
        ...

    async def revoke(self, key_id: int) -> None:
        """Revoke a key (a key already revoked or gone is no error)."""
        ...


class ApiClientKeyIssuer:
    """`ApiKeyIssuer` on the REST API, with the manager's own (service) credential."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def mint(self, *, user_id: int, name: str) -> tuple[int, str]:
        """POST /api/keys (scope `user`)."""
        try:
            created = await self.client.create_key(
                ApiKeyCreate(name=name, scope="user", user_id=user_id)
            )
        except ApiClientError as error:
            raise WorkerApiKeyError(f"cannot mint the worker's API key: {error}") from None
        return created.id, created.key

    async def revoke(self, key_id: int) -> None:
        """DELETE /api/keys/{id}."""
        try:
            await self.client.revoke_key(key_id)
        except NotFoundError:
            return
        except ApiClientError as error:
            raise WorkerApiKeyError(f"cannot revoke API key {key_id}: {error}") from None


@dataclass
class MemoryApiKeyIssuer:
    """`ApiKeyIssuer` in memory (tests): `live` maps key ids to (user id, secret)."""

    live: dict[int, tuple[int, str]] = field(default_factory=dict)
    revoked: list[int] = field(default_factory=list)
    down: bool = False
    """While True, every call fails as if the API were unreachable."""
    _next_id: int = 1

    async def mint(self, *, user_id: int, name: str) -> tuple[int, str]:
        """A fresh key in memory."""
        self._fail_if_down()
        key_id, self._next_id = self._next_id, self._next_id + 1
        self.live[key_id] = (user_id, "orc_" + secrets.token_urlsafe(16))
        return key_id, self.live[key_id][1]

    async def revoke(self, key_id: int) -> None:
        """Forget the key."""
        self._fail_if_down()
        if self.live.pop(key_id, None) is not None:
            self.revoked.append(key_id)

    def _fail_if_down(self) -> None:
        if self.down:
            raise WorkerApiKeyError("the API is unreachable (fake)")


@dataclass
class WorkerApiKeys:
    """The keys of this manager's workers: mint at start, revoke at the end, sweep leftovers."""

    redis: aioredis.Redis
    issuer: ApiKeyIssuer | None
    """None: no API credential configured; a command asking for a key is refused."""

    async def issue(self, worker_id: str, request: ApiKeyRequest) -> str:
        """Mint the key of a worker (its id is kept for revocation); returns the secret."""
        if self.issuer is None:
            raise WorkerApiKeyError(
                "this worker-manager has no API credential to mint the worker's key "
                "(set ORCHESTRATOR_WORKERS__API_KEY or ORCHESTRATOR_API__KEY, service scope)"
            )
        key_id, secret = await self.issuer.mint(user_id=request.user_id, name=f"worker {worker_id}")
        await self.redis.hset(API_KEYS, worker_id, str(key_id))
        log.info(
            "worker_api_key_minted", worker_id=worker_id, key_id=key_id, user_id=request.user_id
        )
        return secret

    async def release(self, worker_id: str) -> bool:
        """Revoke the worker's key, if it has one; False when the API refused (kept for the
        sweep)."""
        raw = await self.redis.hget(API_KEYS, worker_id)
        if raw is None:
            return True
        key_id = int(as_text(raw))
        if self.issuer is None:  # kept: a manager with a credential revokes it
            log.warning("worker_api_key_not_revoked", worker_id=worker_id, key_id=key_id)
            return False
        try:
            await self.issuer.revoke(key_id)
        except WorkerApiKeyError as error:
            log.warning("worker_api_key_revoke_failed", worker_id=worker_id, error=str(error))
            return False
        await self.redis.hdel(API_KEYS, worker_id)
        log.info("worker_api_key_revoked", worker_id=worker_id, key_id=key_id)
        return True

    async def sweep(self, is_live: Callable[[str], Awaitable[bool]]) -> int:
        """Revoke the keys of workers that `is_live` says are gone; returns how many."""
        revoked = 0
        for raw in await self.redis.hkeys(API_KEYS):
            worker_id = as_text(raw)
            if not await is_live(worker_id) and await self.release(worker_id):
                revoked += 1
        return revoked
