"""A Redis ACL user per worker (redis_acl=True), tested from inside a worker.

The agent here is `sh` running the prompt: it finds its wrapper's process, reads the Redis
URL from the wrapper's environment (the agent runs as the same uid), and tries what a
hostile agent would. The worker's own user lets it do its wrapper's work and nothing else.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from services.worker_manager.redis_users import worker_username
from tests.support.waiting import eventually
from tests.support.workers import Client, ManagerRunner
from tests.workers.helpers import git, make_repo_with_remote

PROBE = """
import os, sys
import redis
from redis.exceptions import NoPermissionError

worker_id = sys.argv[1]
url = None
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().split(b"\\0")
        if b"services.worker_wrapper" in cmdline and worker_id.encode() in cmdline:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                for item in handle.read().split(b"\\0"):
                    if item.startswith(b"WORKER_REDIS_URL="):
                        url = item.split(b"=", 1)[1].decode()
    except OSError:
        continue
print("stolen:", "yes" if url else "no")
client = redis.Redis.from_url(url)
attempts = {
    "own-input-length": lambda: client.xlen(f"worker:{worker_id}:input"),
    "own-registry": lambda: client.hget("workers:{" + worker_id + "}", "status"),
    "engineering-queue": lambda: client.xadd("engineering:queue", {"payload": "{}"}),
    "worker-commands": lambda: client.xadd("worker:commands", {"payload": "{}"}),
    "other-input": lambda: client.xadd("worker:someone-else:input", {"payload": "{}"}),
    "other-output": lambda: client.xrange("worker:someone-else:output"),
    "other-registry": lambda: client.hgetall("workers:{someone-else}"),
    "po-conversation": lambda: client.xrange("worker:po-user-1:output"),
    "keys": lambda: client.keys("*"),
    "flushall": lambda: client.flushall(),
    "acl": lambda: client.acl_list(),
    "client-kill": lambda: client.client_kill_filter(skipme=True, _type="normal"),
    "config": lambda: client.config_get("*"),
}
for name, attempt in attempts.items():
    try:
        attempt()
        print(name, "allowed")
    except NoPermissionError:
        print(name, "refused")
"""


def probe_prompt(python: str, worker_id: str) -> str:
    """The shell script the agent runs: the probe with `python` (which has redis-py)."""
    return f"{python} - {worker_id} <<'PROBE'\n{PROBE}\nPROBE\n"


EXPECTED = {
    "stolen: yes",
    "own-input-length allowed",
    "own-registry allowed",
    "engineering-queue refused",
    "worker-commands refused",
    "other-input refused",
    "other-output refused",
    "other-registry refused",
    "po-conversation refused",
    "keys refused",
    "flushall refused",
    "acl refused",
    "client-kill refused",
    "config refused",
}


async def acl_users(redis: aioredis.Redis) -> set[str]:
    """The server's ACL user names."""
    names = await redis.acl_users()
    return {name.decode() if isinstance(name, bytes) else str(name) for name in names}


def shell_agent() -> dict[str, Any]:
    """Manager overrides: the `command` adapter running each prompt with sh."""
    return {
        "adapter": "command",
        "command_template": ["sh", "{prompt_file}"],
        "command_output_format": "text",
        "redis_acl": True,
    }


async def test_a_worker_with_a_stolen_credential_reaches_only_its_own_keys(
    manager: ManagerRunner, client: Client, redis_url: str
) -> None:
    """An agent that reads its wrapper's Redis URL can touch its own streams and registry
    hash, and is refused every other stream (queues, other workers, PO conversations),
    KEYS, FLUSHALL, ACL, CLIENT KILL and CONFIG; the user dies with the worker."""
    await manager.start(**shell_agent())
    worker_id = (await client.create()).worker_id
    answer = await client.send(worker_id, probe_prompt(sys.executable, worker_id))
    assert answer.success, answer.error
    assert set(answer.response.splitlines()) == EXPECTED
    assert worker_username(worker_id) in await acl_users(client.redis)
    stolen = answer  # the credential itself never reaches the answer
    assert "WORKER_REDIS_URL" not in stolen.response
    assert (await client.delete(worker_id)).success
    assert worker_username(worker_id) not in await acl_users(client.redis)


async def _progress_has(client: Client, stream: str, text: str) -> bool:
    """True once an event of the progress stream mentions `text`."""
    return text in " ".join(str(f) for _, f in await client.redis.xrange(stream) or [])


async def test_with_acl_users_the_builtin_agent_still_commits_and_reports_progress(
    manager: ManagerRunner, client: Client, tmp_path: Path
) -> None:
    """The wrapper's whole job works under its ACL user: input, once-keys, output,
    heartbeats, the task's progress stream, and the commit pushed."""
    _, remote = make_repo_with_remote(tmp_path)
    await manager.start(adapter="builtin", redis_acl=True)
    created = await client.create(
        context={"repo_url": str(remote), "branch": "feature", "task_id": "t-acl"}
    )
    assert created.success, created.error
    answer = await client.send(created.worker_id, "implement the spec")
    assert answer.success, answer.error
    assert answer.response.endswith(f"commit: {git(remote, 'rev-parse', 'feature')}")
    await eventually(  # published right after the answer: it may come a moment later
        lambda: _progress_has(client, "task_progress:t-acl", "agent answered"),
        timeout_s=20,
        what="the agent's answer in the task's progress",
    )
    record = await client.record(created.worker_id)
    assert record.heartbeat_at
    assert (await client.delete(created.worker_id)).success


async def test_with_acl_users_a_warm_worker_is_bound_released_and_serves(
    manager: ManagerRunner, client: Client, tmp_path: Path
) -> None:
    """A warm worker under its ACL user pops its binding, waits for the release on its own
    list, then does the whole job (its user re-issued with the task's progress stream)."""
    _, remote = make_repo_with_remote(tmp_path)
    await manager.start(
        adapter="builtin",
        redis_acl=True,
        pool={"size": 1, "prewarm": ["claude-code/developer"], "idle_s": 600.0},
    )

    async def warm() -> bool:
        return any(r.status == "warm" for r in await client.registry.all())

    await eventually(warm, timeout_s=60, what="a warm worker")
    created = await client.create(
        context={"repo_url": str(remote), "branch": "feature", "task_id": "t-acl-warm"}
    )
    assert created.success, created.error
    assert created.worker_id.startswith("warm-")
    answer = await client.send(created.worker_id, "implement the spec")
    assert answer.success, answer.error
    assert answer.response.endswith(f"commit: {git(remote, 'rev-parse', 'feature')}")
    await eventually(  # published right after the answer: it may come a moment later
        lambda: _progress_has(client, "task_progress:t-acl-warm", "agent answered"),
        timeout_s=20,
        what="the agent's answer in the task's progress",
    )
    assert (await client.delete(created.worker_id)).success


async def test_a_deleted_workers_credential_no_longer_authenticates(
    manager: ManagerRunner, client: Client, redis_url: str
) -> None:
    """The URL an agent stole stops working once its worker is deleted: its connection is
    closed and a new one is refused."""
    await manager.start(**shell_agent())
    worker_id = (await client.create()).worker_id
    script = "tr '\\0' '\\n' < /proc/$PPID/environ | grep '^WORKER_REDIS_URL=' | cut -d= -f2-"
    found = await client.send(worker_id, script)
    url = found.response.strip()
    assert f"{worker_username(worker_id)}:" in url, found
    thief: aioredis.Redis = aioredis.Redis.from_url(url)
    later: aioredis.Redis = aioredis.Redis.from_url(url)
    try:
        assert await thief.xlen(f"worker:{worker_id}:input") >= 0
        assert (await client.delete(worker_id)).success
        with pytest.raises(RedisConnectionError):  # its open connection was closed
            await thief.xlen(f"worker:{worker_id}:input")
        with pytest.raises(AuthenticationError):  # and a new one is refused
            await later.xlen(f"worker:{worker_id}:input")
    finally:
        await thief.aclose()
        await later.aclose()


async def test_a_wrapper_whose_user_is_deleted_stops_at_once(
    manager: ManagerRunner, client: Client
) -> None:
    """Redis refusing the wrapper's credential (its ACL user deleted, as the monitor does for
    a worker no longer live) stops the wrapper at its next heartbeat, not after the orphan
    timeout."""
    await manager.start(redis_acl=True)
    worker_id = (await client.create()).worker_id
    pid = int((await client.record(worker_id)).runtime_ref.split(":", 1)[0])
    await client.redis.acl_deluser(worker_username(worker_id))
    for _ in range(100):
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return
        await asyncio.sleep(0.1)
    pytest.fail("the wrapper kept running")
