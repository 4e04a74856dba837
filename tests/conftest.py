"""Fixtures shared by the whole suite: a private Redis server, async clients, a Docker engine."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from shared.redis_server import RedisServer
from tests import docker_engine as docker_engines
from tests.docker_engine import Engine
from tests.support.docker import docker_unavailable
from tests.support.system import UpSystem


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    """A private redis-server on a free port, or None when REDIS_URL names a server to use."""
    if os.environ.get("REDIS_URL"):
        yield None
        return
    server = RedisServer(appendonly=False).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    """URL of the Redis the tests use (private by default; REDIS_URL when set)."""
    if redis_server is None:
        return os.environ["REDIS_URL"]
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client on an empty database; the database is flushed before each test."""
    client: aioredis.Redis = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """A real Docker engine (found, or installed and started: tests/docker_engine.py); the
    one this run started is stopped at the end unless another run still uses it."""
    try:
        engine = docker_engines.acquire()
    except docker_engines.EngineUnavailableError as exc:
        docker_unavailable(f"no Docker engine: {exc}")
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="session")
def worker_image(docker_engine: Engine) -> str:
    """The worker image, built on the local Debian base (both cached between runs)."""
    from services.worker_manager import images

    try:
        docker_engines.install_missing("mmdebstrap")
    except docker_engines.EngineUnavailableError as exc:
        docker_unavailable(f"cannot build the base image: {exc}")
    client = docker_engine.client()
    try:
        base = images.ensure_base_image(client)
        worker = images.ensure_worker_image(client)
    finally:
        client.close()
    for report in (base, worker):
        print(f"\n{report.image}: {report.action} in {report.seconds:.1f} s")
    return worker.image


@pytest.fixture
def up_system(tmp_path: Path) -> Iterator[UpSystem]:
    """`orchestrator up` on a fresh data directory, on its embedded defaults; imports allowed
    from `tmp_path / "sources"`. Like `make up`, it runs with the venv off its PATH (the
    system must not rely on it: a deployed project's bare `python` once did)."""
    settings = {"ORCHESTRATOR_API__IMPORT_ROOTS": json.dumps([str(tmp_path / "sources")])}
    with UpSystem(tmp_path, settings=settings, venv_on_path=False) as system:
        yield system
