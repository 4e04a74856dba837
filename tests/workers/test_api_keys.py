"""A worker's user-scoped API key: asked for by reference in the create command, minted by
the worker-manager into the worker's environment only, revoked whenever the worker ends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import psutil
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from services.worker_manager.api_keys import (
    ApiKeyRequest,
    MemoryApiKeyIssuer,
    WorkerApiKeys,
    api_key_request,
)
from services.worker_manager.errors import InvalidWorkerConfigError
from services.worker_manager.keys import API_KEYS
from shared.api_client import ApiClient, ForbiddenError, UnauthorizedError
from shared.api_client.schemas import ApiKeyCreate, UserCreate
from shared.chat.po_profile import PO_API_TOKEN_ENV, po_worker_command
from shared.contracts import CreateWorkerResponse
from shared.settings import Settings
from tests.chat.system import ChatSystem, chat_system
from tests.support.workers import Client, ManagerRunner


@pytest.fixture
async def api(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[ChatSystem]:
    """The real API (HTTP, SQLite) with an admin key and a service key."""
    async with chat_system(tmp_path / "api", redis_url, redis_client, fake_manager=False) as system:
        yield system


def _system(api: ChatSystem, key: str | None) -> Settings:
    """The system's settings as the worker-manager sees them, with `key` as its credential."""
    credential = SecretStr(key) if key else None
    changes: dict[str, Any] = {"key": credential, "service_key": None}
    return api.settings.model_copy(update={"api": api.settings.api.model_copy(update=changes)})


async def _user(api: ChatSystem, telegram_id: int = 4321) -> int:
    async with api.api() as admin:
        return (await admin.create_user(UserCreate(telegram_id=telegram_id))).id


async def _create_po(client: Client, api: ChatSystem, user_id: int) -> CreateWorkerResponse:
    command = po_worker_command(
        user_id=user_id, agent="claude-code", api_url=api.settings.api.base_url
    )
    reply = await client.call(command)
    assert isinstance(reply, CreateWorkerResponse)
    return reply


async def _token_of(client: Client, worker_id: str) -> str:
    """The key in the worker process's environment (read from the process table)."""
    record = await client.record(worker_id)
    pid = int(record.runtime_ref.split(":", 1)[0])
    environ: dict[str, str] = psutil.Process(pid).environ()
    return environ[PO_API_TOKEN_ENV]


async def _works(api: ChatSystem, token: str) -> bool:
    async with ApiClient(api.settings.api.base_url, key=token) as client:
        try:
            await client.list_projects()
        except UnauthorizedError:
            return False
    return True


async def _eventually_refused(api: ChatSystem, token: str) -> None:
    deadline = asyncio.get_running_loop().time() + 15
    while await _works(api, token):
        assert asyncio.get_running_loop().time() < deadline, "the key was never revoked"
        await asyncio.sleep(0.1)


async def _redis_dump(redis: aioredis.Redis) -> str:
    """Every value of every key, as text (to search it for a secret)."""
    parts: list[str] = []
    async for key in redis.scan_iter(count=500):
        raw_kind = await redis.type(key)
        kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
        if kind == "string":
            parts.append(repr(await redis.get(key)))
        elif kind == "hash":
            parts.append(repr(await redis.hgetall(key)))
        elif kind == "list":
            parts.append(repr(await redis.lrange(key, 0, -1)))
        elif kind == "set":
            parts.append(repr(await redis.smembers(key)))
        elif kind == "zset":
            parts.append(repr(await redis.zrange(key, 0, -1)))
        elif kind == "stream":
            parts.append(repr(await redis.xrange(key)))
        parts.append(repr(key))
    return "\n".join(parts)


def _files_text(root: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in root.rglob("*") if path.is_file())


async def test_the_po_key_travels_by_reference_works_in_the_worker_and_dies_with_it(
    api: ChatSystem,
    manager: ManagerRunner,
    client: Client,
    redis_client: aioredis.Redis,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The create command on the stream holds no token; the worker's environment has one
    that works (its PO agent creates a project); Redis and the logs never hold it; after the
    delete it is refused (401)."""
    user_id = await _user(api)
    command = po_worker_command(
        user_id=user_id, agent="claude-code", api_url=api.settings.api.base_url
    )
    entry_id = await client.bus.publish("worker:commands", command)
    entries = await redis_client.xrange("worker:commands")
    [(_, fields)] = cast(list[tuple[bytes, dict[bytes, bytes]]], entries)
    payload = json.loads(fields[b"payload"])
    assert sorted(payload["config"]["env_vars"]) == ["AGENT_PROFILE", "PO_API_URL"]
    assert payload["context"]["api_key_env"] == PO_API_TOKEN_ENV
    assert payload["context"]["owner"] == str(user_id)
    assert b"orc_" not in b"".join(fields.values())

    await manager.start(system=_system(api, api.service_key), adapter="builtin")
    created = await client.bus.wait_reply(
        "worker:responses", command.request_id, since_id=entry_id, timeout_s=60
    )
    assert isinstance(created, CreateWorkerResponse)
    assert created.success, created.error
    assert created.worker_id is not None
    token = await _token_of(client, created.worker_id)
    async with ApiClient(api.settings.api.base_url, key=token) as as_worker:
        assert (await as_worker.me()).id == user_id
    answer = await client.send(created.worker_id, "create project garden")
    assert answer.success, answer.error
    assert "Created project garden" in answer.response
    async with api.api() as admin:
        projects = await admin.list_projects(owner_id=user_id)
    assert [p.name for p in projects.items] == ["garden"]

    assert token not in await _redis_dump(redis_client)
    worker_files = _files_text(manager.data_dir / created.worker_id)  # gone after the delete
    assert "worker_ready" in worker_files or "wrapper" in worker_files
    deleted = await client.delete(created.worker_id)
    assert deleted.success, deleted.error
    assert not await _works(api, token)
    logs = "".join(capfd.readouterr())
    assert "worker_api_key_minted" in logs  # the logs were captured...
    assert "worker_api_key_revoked" in logs
    assert token not in logs + worker_files  # ...and never hold the key


async def test_a_worker_that_dies_loses_its_key(
    api: ChatSystem, manager: ManagerRunner, client: Client
) -> None:
    """A PO worker killed by SIGKILL is marked failed and its key revoked."""
    await manager.start(system=_system(api, api.service_key), adapter="builtin")
    created = await _create_po(client, api, await _user(api))
    assert created.success, created.error
    assert created.worker_id is not None
    token = await _token_of(client, created.worker_id)
    assert await _works(api, token)
    record = await client.record(created.worker_id)
    os.kill(int(record.runtime_ref.split(":", 1)[0]), signal.SIGKILL)
    await client.wait_status(created.worker_id, "failed")
    await _eventually_refused(api, token)
    assert await client.redis.hget(API_KEYS, created.worker_id) is None


async def test_an_idle_worker_loses_its_key(
    api: ChatSystem, manager: ManagerRunner, client: Client
) -> None:
    """A PO worker stopped for idleness has its key revoked."""
    await manager.start(system=_system(api, api.service_key), adapter="builtin", idle_timeout_s=1.0)
    created = await _create_po(client, api, await _user(api))
    assert created.success, created.error
    assert created.worker_id is not None
    token = await _token_of(client, created.worker_id)
    await client.wait_status(created.worker_id, "stopped")
    await _eventually_refused(api, token)


async def test_an_adopted_worker_keeps_its_key(
    api: ChatSystem, manager: ManagerRunner, client: Client
) -> None:
    """A restart of the manager adopts the live PO worker; its key keeps working."""
    system = _system(api, api.service_key)
    await manager.start(system=system, adapter="builtin")
    created = await _create_po(client, api, await _user(api))
    assert created.success, created.error
    assert created.worker_id is not None
    token = await _token_of(client, created.worker_id)
    await manager.stop()
    await manager.start(system=system, adapter="builtin")
    answer = await client.send(created.worker_id, "create project orchard")
    assert answer.success, answer.error
    assert await _works(api, token)


async def test_without_a_credential_the_create_is_refused_clearly(
    api: ChatSystem, manager: ManagerRunner, client: Client
) -> None:
    """A manager with no API credential refuses a create that asks for a key; no worker runs."""
    await manager.start(system=_system(api, None), adapter="builtin")
    created = await _create_po(client, api, await _user(api))
    assert not created.success
    assert "no API credential" in (created.error or "")
    [record] = await client.registry.all()
    assert record.status == "failed"


async def test_a_key_for_an_unknown_user_is_refused(
    api: ChatSystem, manager: ManagerRunner, client: Client
) -> None:
    """The API refuses a key for a user it does not know; the create fails with its reason."""
    await manager.start(system=_system(api, api.service_key), adapter="builtin")
    created = await _create_po(client, api, 999_999)
    assert not created.success
    assert "cannot mint the worker's API key" in (created.error or "")
    assert "999999" in (created.error or "")


async def test_the_service_credential_mints_and_revokes_only_user_tokens(api: ChatSystem) -> None:
    """The manager's service key may mint and revoke user tokens, nothing more."""
    user_id = await _user(api)
    async with ApiClient(api.settings.api.base_url, key=api.service_key) as service:
        token = await service.create_key(ApiKeyCreate(name="w", user_id=user_id))
        assert token.scope == "user"
        with pytest.raises(ForbiddenError):
            await service.create_key(ApiKeyCreate(name="x", scope="admin", user_id=user_id))
        async with api.api() as admin:
            other = await admin.create_key(ApiKeyCreate(name="svc", scope="service"))
        with pytest.raises(ForbiddenError):
            await service.revoke_key(other.id)
        await service.revoke_key(token.id)
    assert not await _works(api, token.key)
    assert await _works(api, other.key)


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        ({"api_key_env": "po token"}, "invalid api_key_env"),
        ({"api_key_env": "WORKER_TOKEN", "owner": "3"}, "invalid api_key_env"),
        ({"api_key_env": "PO_API_TOKEN"}, "needs the context's owner"),
        ({"api_key_env": "PO_API_TOKEN", "owner": "alice"}, "needs the context's owner"),
    ],
)
def test_invalid_key_requests_are_refused(context: dict[str, str], problem: str) -> None:
    """A reference naming a bad variable or no user is refused before anything starts."""
    with pytest.raises(InvalidWorkerConfigError, match=problem):
        api_key_request(context)


def test_a_context_without_a_reference_asks_for_no_key() -> None:
    """Developer workers (no `api_key_env`) get no key."""
    assert api_key_request({"owner": "3", "task_id": "t"}) is None
    assert api_key_request({"api_key_env": "A_KEY", "owner": "3"}) == ApiKeyRequest("A_KEY", 3)


async def test_a_revocation_missed_while_the_api_was_down_is_swept_later(
    redis_client: aioredis.Redis,
) -> None:
    """The API down at release: the key id is kept; the next sweep revokes it, sparing
    live workers' keys."""
    issuer = MemoryApiKeyIssuer()
    keys = WorkerApiKeys(redis_client, issuer)
    request = ApiKeyRequest("PO_API_TOKEN", 7)
    await keys.issue("gone", request)
    await keys.issue("alive", request)
    issuer.down = True
    assert not await keys.release("gone")
    assert len(issuer.live) == 2

    async def is_live(worker_id: str) -> bool:
        return worker_id == "alive"

    assert await keys.sweep(is_live) == 0  # still down: nothing lost, nothing revoked
    issuer.down = False
    assert await keys.sweep(is_live) == 1
    assert [user for user, _ in issuer.live.values()] == [7]
    assert await redis_client.hkeys(API_KEYS) == [b"alive"]


async def test_a_manager_without_a_credential_keeps_key_ids_for_one_with_it(
    redis_client: aioredis.Redis,
) -> None:
    """A key minted by an earlier run stays on record when this run cannot revoke it."""
    issuer = MemoryApiKeyIssuer()
    await WorkerApiKeys(redis_client, issuer).issue("w-1", ApiKeyRequest("PO_API_TOKEN", 7))
    assert not await WorkerApiKeys(redis_client, None).release("w-1")
    assert await WorkerApiKeys(redis_client, issuer).release("w-1")
    assert issuer.live == {}
