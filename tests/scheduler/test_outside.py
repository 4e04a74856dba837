"""The real adapters to outside systems: HTTP API client, TCP probe, Redis worker registry."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from services.scheduler.api import HttpSchedulerApi
from services.scheduler.errors import ApiCallError, ApiConflictError
from services.scheduler.probe import TcpProbe, split_address
from services.scheduler.workers import RedisWorkerDirectory
from shared.api_client import ApiClient
from shared.api_client.schemas import ServerDTO, ServerStatus, TaskSchedule
from shared.contracts import TaskDTO, TaskStatus, TaskType
from tests.support.scheduler import server


def api_with(handler: httpx.MockTransport) -> HttpSchedulerApi:
    """The scheduler's API adapter on the shared client, its requests going to `handler`."""
    return HttpSchedulerApi(ApiClient("http://api.test", key="k-123", transport=handler))


async def test_listing_follows_every_page() -> None:
    """list_servers asks by status, with the credential, and reads pages until `total`."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        offset = int(request.url.params["offset"])
        items = [
            server(f"s{n}", ServerStatus.PENDING_SETUP).model_dump(mode="json")
            for n in range(offset, min(offset + 500, 700))
        ]
        return httpx.Response(
            200, json={"items": items, "total": 700, "limit": 500, "offset": offset}
        )

    api = api_with(httpx.MockTransport(handle))
    servers = await api.list_servers(ServerStatus.PENDING_SETUP)
    await api.aclose()
    assert len(servers) == 700
    assert [r.url.params["status"] for r in seen] == ["pending_setup", "pending_setup"]
    assert [r.url.path for r in seen] == ["/api/servers", "/api/servers"]
    assert {r.headers["Authorization"] for r in seen} == {"Bearer k-123"}


async def test_failing_a_task_patches_its_status_and_reason() -> None:
    """fail_task sends PATCH /api/tasks/{id} with status failed and the reason as result."""
    bodies: list[tuple[str, str, dict[str, object]]] = []
    task = TaskDTO(
        id="t1",
        project_id="p1",
        type=TaskType.DEPLOY,
        status=TaskStatus.FAILED,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append((request.method, request.url.path, json.loads(request.content)))
        if request.url.path.startswith("/api/tasks/"):
            return httpx.Response(200, json=task.model_dump(mode="json"))
        return httpx.Response(
            200, json=server("srv", ServerStatus.UNREACHABLE).model_dump(mode="json")
        )

    api = api_with(httpx.MockTransport(handle))
    await api.fail_task("t1", "deadline exceeded")
    await api.set_server_status("srv", ServerStatus.UNREACHABLE)
    assert bodies == [
        ("PATCH", "/api/tasks/t1", {"status": "failed", "result": {"error": "deadline exceeded"}}),
        ("PATCH", "/api/servers/srv", {"status": "unreachable"}),
    ]


async def test_tasks_are_listed_with_their_schedule_and_redriven() -> None:
    """list_tasks reads /api/tasks/schedules by status; redrive_task posts .../redrive."""
    seen: list[tuple[str, str, str]] = []
    task = TaskSchedule(
        id="t1",
        project_id="p1",
        type=TaskType.ENGINEERING,
        status=TaskStatus.QUEUED,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        correlation_id="c1",
        deadline_at=datetime(2026, 1, 1, 3, tzinfo=UTC),
    )

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.url.params.get("status", "")))
        if request.method == "POST":
            return httpx.Response(200, json=task.model_dump(mode="json") | {"redrive_count": 1})
        page = {"items": [task.model_dump(mode="json")], "total": 1, "limit": 500, "offset": 0}
        return httpx.Response(200, json=page)

    api = api_with(httpx.MockTransport(handle))
    listed = await api.list_tasks(TaskStatus.QUEUED)
    redriven = await api.redrive_task("t1")
    await api.aclose()
    assert listed == [task]
    assert redriven.redrive_count == 1
    assert seen == [
        ("GET", "/api/tasks/schedules", "queued"),
        ("POST", "/api/tasks/t1/redrive", ""),
    ]


async def test_api_errors_become_scheduler_errors() -> None:
    """409 → ApiConflictError; 5xx and connection failures → ApiCallError (code, no text)."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/tasks/t"):
            return httpx.Response(409, json={"code": "invalid_transition", "message": "secret"})
        if request.url.path == "/api/tasks/schedules":
            raise httpx.ConnectError("refused")
        return httpx.Response(500, json={"code": "internal", "message": "secret"})

    api = api_with(httpx.MockTransport(handle))
    with pytest.raises(ApiConflictError, match="invalid_transition") as conflict:
        await api.fail_task("t1", "late")
    assert "secret" not in str(conflict.value)
    with pytest.raises(ApiCallError, match="ApiUnavailableError"):
        await api.list_tasks(TaskStatus.RUNNING)
    with pytest.raises(ApiCallError, match="HTTP 500") as failure:
        await api.set_server_status("srv", ServerStatus.READY)
    assert "secret" not in str(failure.value)


@pytest.fixture
async def ports() -> AsyncIterator[dict[str, int]]:
    """Local TCP ports: `ssh` sends an SSH banner, `mute` accepts and says nothing."""

    async def ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-test\r\n")
        await writer.drain()
        writer.close()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the probe hangs up
        writer.close()

    servers = [await asyncio.start_server(cb, "127.0.0.1", 0) for cb in (ssh, mute)]
    try:
        yield {
            name: int(s.sockets[0].getsockname()[1])
            for name, s in zip(("ssh", "mute"), servers, strict=True)
        }
    finally:
        for s in servers:
            s.close()
            await s.wait_closed()


def closed_port() -> int:
    """A TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def at(port: int) -> ServerDTO:
    """A ready server at 127.0.0.1:port."""
    return server(f"s{port}", ServerStatus.READY, address=f"127.0.0.1:{port}")


async def test_tcp_probe_wants_the_ssh_banner(ports: dict[str, int]) -> None:
    """Reachable when the port answers `SSH-`; a refused port or a mute one is not."""
    probe = TcpProbe(port=22, timeout_s=1.0)
    assert await probe.reachable(at(ports["ssh"])) is True
    assert await probe.reachable(at(closed_port())) is False
    started = asyncio.get_running_loop().time()
    assert await probe.reachable(at(ports["mute"])) is False
    assert asyncio.get_running_loop().time() - started < 5.0  # the timeout, not a hang


async def test_tcp_probe_without_banner_needs_only_a_connection(ports: dict[str, int]) -> None:
    """With an empty banner an accepting port suffices; local addresses are never probed."""
    probe = TcpProbe(port=closed_port(), timeout_s=1.0, banner=b"", local_addresses={"localhost"})
    assert await probe.reachable(at(ports["mute"])) is True
    assert await probe.reachable(at(closed_port())) is False
    assert await probe.reachable(server("l", ServerStatus.READY, address="localhost")) is True


def test_addresses_split_into_host_and_port() -> None:
    """host, host:port, IPv6 literals with and without a port."""
    assert split_address("10.0.0.1", 22) == ("10.0.0.1", 22)
    assert split_address("example.org:2222", 22) == ("example.org", 2222)
    assert split_address("[::1]:2200", 22) == ("::1", 2200)
    assert split_address("[::1]", 22) == ("::1", 22)
    assert split_address("fe80::1", 22) == ("fe80::1", 22)


async def test_redis_worker_directory_reads_the_worker_managers_registry(
    redis_client: aioredis.Redis,
) -> None:
    """Running workers inactive since the cutoff are idle; busy, stopped, active ones not."""
    directory = RedisWorkerDirectory(redis_client)
    records: dict[str, dict[Any, Any]] = {
        "old": {"status": "running", "created_at": "50", "last_activity_at": "100"},
        "never-used": {"status": "running", "created_at": "150", "last_activity_at": "0"},
        "edge": {"status": "running", "created_at": "10", "last_activity_at": "200"},
        "recent": {"status": "running", "created_at": "10", "last_activity_at": "300"},
        "working": {"status": "busy", "created_at": "10", "last_activity_at": "100"},
        "gone": {"status": "stopped", "created_at": "10", "last_activity_at": "100"},
    }
    for worker_id, fields in records.items():
        await redis_client.hset(f"workers:{{{worker_id}}}", mapping=fields)
    await redis_client.sadd("workers:index", *records, "expired")
    idle = await directory.idle_workers(inactive_since_s=200.0)
    assert [(w.worker_id, w.last_activity_s) for w in idle] == [
        ("edge", 200.0),
        ("never-used", 150.0),
        ("old", 100.0),
    ]


async def test_redis_worker_directory_finds_a_tasks_live_workers(
    redis_client: aioredis.Redis,
) -> None:
    """task_workers: live workers (starting, running, busy) whose record names the task."""
    directory = RedisWorkerDirectory(redis_client)
    records = {
        "a": ("t1", "busy"),
        "b": ("t1", "starting"),
        "c": ("t1", "stopped"),
        "d": ("t2", "running"),
        "e": ("", "running"),
    }
    for worker_id, (task_id, status) in records.items():
        await redis_client.hset(
            f"workers:{{{worker_id}}}", mapping={"status": status, "task_id": task_id}
        )
    await redis_client.sadd("workers:index", *records)
    assert await directory.task_workers("t1") == ["a", "b"]
    assert await directory.task_workers("t3") == []
